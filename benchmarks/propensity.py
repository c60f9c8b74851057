"""Benchmark: per-category purchase propensity against a recency-frequency logistic baseline.

Target (issue): on the demo shop, ROC-AUC at least 0.10 above a logistic regression on
recency and frequency only.

The shop is the default demo shop (customers churn, mean active life
``DEFAULT_LIFETIME_DAYS``), as ``benchmarks/clv.py``'s target shop.
``train_propensity`` learns one calibrated model per category (tree, forest or boosting, the
best on validation) from the features up to ``as_of - window`` and purchases in the window
after. The baseline sees the same customers, the same labels and the same train+validation /
test split, but only ``log1p(recency_days)`` and ``log1p(frequency)`` (standardised). Both are
scored on the same test customers. The target holds when the mean ROC-AUC gain over the
categories is >= 0.10; per-category figures (ROC-AUC, PR-AUC, lift in the top decile) are kept.

Usage::

    python benchmarks/propensity.py                     # 12,000 customers (~6 min on 2 cores)
    python benchmarks/propensity.py --customers 5000    # quicker, noisier (few test buyers)

Figures go to ``benchmarks/results/propensity.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from _marketing_shop import build_store, machine
from tailorcast.datasets.demo_shop import DEFAULT_LIFETIME_DAYS
from tailorcast.marketing import train_propensity
from tailorcast.marketing.propensity import (
    lift_at,
    propensity_features,
    propensity_labels,
    split_customers,
)
from tailorcast.store import Store

TARGET_GAIN = 0.10
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "propensity.json"


def baseline(
    store: Store, cutoff: pd.Timestamp, end: pd.Timestamp, categories: list[str], seed: int
) -> dict[str, dict[str, float]]:
    """Logistic regression on recency + frequency, same customers, labels and split."""
    features = propensity_features(store, cutoff, categories)
    labels = propensity_labels(store, cutoff, end, features.index, categories)
    train, valid, test = split_customers(len(features), labels.to_numpy().max(axis=1), seed)
    learn = np.concatenate([train, valid])
    x = features[["recency_days", "frequency"]].to_numpy(dtype=float)
    out = {}
    for category in categories:
        y = labels[category].to_numpy()
        model = make_pipeline(
            FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression()
        ).fit(x[learn], y[learn])
        p = model.predict_proba(x[test])[:, 1]
        out[category] = {
            "roc_auc": float(roc_auc_score(y[test], p)),
            "pr_auc": float(average_precision_score(y[test], p)),
            "lift_top_decile": lift_at(y[test], p, 0.1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=12000)
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--lifetime-days", type=float, default=DEFAULT_LIFETIME_DAYS)
    parser.add_argument("--start", default="2025-06-02")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Keep the generated store here (and reuse it)."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tc-propensity-") as tmp:
        store_dir, shop = build_store(
            args.workdir or Path(tmp),
            customers=args.customers,
            days=args.days,
            start=args.start,
            seed=args.seed,
            lifetime_days=args.lifetime_days,
        )
        end = pd.Timestamp(args.start) + pd.Timedelta(days=args.days)
        with Store.open(store_dir, read_only=True) as store:
            began = time.perf_counter()
            models = train_propensity(store, None, end, args.window_days, args.seed)
            train_seconds = time.perf_counter() - began
            began = time.perf_counter()
            scores = models.score(store)
            score_seconds = time.perf_counter() - began
            base = baseline(store, models.cutoff, models.as_of, models.categories, args.seed)

    per_category: dict[str, Any] = {}
    for category, m in models.metrics.items():
        b = base[category]
        per_category[category] = {
            "family": m["family"],
            "model": {k: m[k] for k in ("roc_auc", "pr_auc", "lift_top_decile", "brier")},
            "baseline": b,
            "roc_auc_gain": m["roc_auc"] - b["roc_auc"],
            "buyers_test": m["buyers"]["test"],
            "base_rate": m["base_rate"],
            "validation_roc_auc": m["validation_roc_auc"],
            "top_features": list(m["importances"])[:5],
        }
    gains = np.array([c["roc_auc_gain"] for c in per_category.values()])
    weights = np.array([max(c["buyers_test"], 1) for c in per_category.values()], dtype=float)
    summary = {
        "categories": len(per_category),
        "mean_roc_auc_model": float(
            np.mean([c["model"]["roc_auc"] for c in per_category.values()])
        ),
        "mean_roc_auc_baseline": float(
            np.mean([c["baseline"]["roc_auc"] for c in per_category.values()])
        ),
        "mean_gain": float(gains.mean()),
        "buyer_weighted_gain": float(np.average(gains, weights=weights)),
        "min_gain": float(gains.min()),
        "train_seconds": round(train_seconds, 1),
        "score_seconds": round(score_seconds, 1),
        "scored_rows": len(scores),
    }
    passed = summary["mean_gain"] >= TARGET_GAIN
    result = {
        **machine(),
        "shop": shop,
        "as_of": models.as_of.isoformat(),
        "cutoff": models.cutoff.isoformat(),
        "window_days": args.window_days,
        "target": {"mean_roc_auc_gain": TARGET_GAIN},
        "summary": summary,
        "categories": per_category,
        "skipped": models.skipped,
        "pass": passed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")

    print(
        f"{'category':<12} {'model':<18} {'AUC':>6} {'base AUC':>8} {'gain':>6} "
        f"{'PR-AUC':>6} {'lift@10%':>8} {'buyers':>6}"
    )
    for name, c in per_category.items():
        print(
            f"{name:<12} {c['family']:<18} {c['model']['roc_auc']:>6.3f} "
            f"{c['baseline']['roc_auc']:>8.3f} {c['roc_auc_gain']:>+6.3f} "
            f"{c['model']['pr_auc']:>6.3f} {c['model']['lift_top_decile']:>8.2f} "
            f"{c['buyers_test']:>6}"
        )
    print(
        f"mean ROC-AUC {summary['mean_roc_auc_model']:.3f} vs baseline "
        f"{summary['mean_roc_auc_baseline']:.3f}: gain {summary['mean_gain']:+.3f} "
        f"(target >= {TARGET_GAIN}): {'pass' if passed else 'FAIL'}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
