"""Purchase propensity: the probability that a customer buys in a category in the next window.

The classic set-up: features from the events up to a cutoff, labels from the window after
it. Training takes ``cutoff = as_of - window_days`` (features up to the cutoff, label = a
purchase in the category in ``(cutoff, as_of]``); scoring then applies the models to the
features at ``as_of`` to predict the window after it.

Per category, a decision tree, a random forest and gradient boosting (scikit-learn) are fitted
on 60% of the customers; the best ROC-AUC on a validation 20% wins; that family is refitted
on train + validation inside ``CalibratedClassifierCV`` (one model, its probabilities mapped
by a calibrator fitted on 3-fold out-of-fold predictions, so they mean what they say: of the
customers scored 0.2, about a fifth buy), and the remaining 20% (test) give the
reported ROC-AUC, PR-AUC, lift in the top decile and Brier score. Importances are permutation
importances (drop in validation ROC-AUC) of the chosen family, comparable across families.

Features: :func:`tailorcast.features.user_features` (RFM, funnel, activity, category shares)
plus the customer's history with the target category (views, carts, purchases, days since the
last event and events in the last 30 days there; days since the last purchase there, the mean
gap between purchases there and their ratio, for consumables that come due), named
``target_*`` so one model per category reads the same columns.

Models are saved with skops (``<store>/marketing/propensity/``), not pickle: skops rebuilds
scikit-learn objects from a schema and refuses any type not on an explicit allow-list, so a
tampered file cannot run code on load. It is maintained alongside scikit-learn, reads every
estimator used here, and keeps calibration wrappers intact (ONNX would need two more
packages and drops ``CalibratedClassifierCV``; trees to JSON would be a hand-written format).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from tailorcast.errors import ConfigError, DataError, NotFoundError
from tailorcast.features import user_features
from tailorcast.marketing._data import AsOf, read_events, read_items, resolve_as_of
from tailorcast.store import Store

__all__ = [
    "FAMILIES",
    "PropensityModels",
    "lift_at",
    "load_propensity",
    "propensity_features",
    "propensity_folder",
    "propensity_labels",
    "split_customers",
    "train_propensity",
]

FAMILIES: Final = ("decision_tree", "random_forest", "gradient_boosting")
MODEL_DIR: Final = Path("marketing") / "propensity"
_TARGET_COLUMNS: Final = (
    "view",
    "cart",
    "purchase",
    "days_since",
    "events_30d",
    "days_since_purchase",
    "purchase_gap",
    "purchase_due",
)
_MIN_POSITIVES: Final = 10
_SECONDS_PER_DAY: Final = 86_400.0
Matrix = np.ndarray[tuple[int, int], np.dtype[np.float64]]
Vector = np.ndarray[tuple[int], np.dtype[np.float64]]


def propensity_folder(store_folder: str | Path) -> Path:
    """Where a store keeps its propensity models: ``<store>/marketing/propensity``."""
    return Path(store_folder) / MODEL_DIR


def _estimator(family: str, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    if family == "decision_tree":
        return DecisionTreeClassifier(max_depth=6, min_samples_leaf=20, random_state=seed)
    if family == "random_forest":
        return RandomForestClassifier(
            n_estimators=100, min_samples_leaf=5, max_depth=10, n_jobs=1, random_state=seed
        )
    return HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.08,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


def propensity_features(store: Store, as_of: pd.Timestamp, categories: list[str]) -> pd.DataFrame:
    """Base features plus, per category, ``target_<what>__<category>`` (index ``user_id``)."""
    events = read_events(store, as_of)
    if events.empty:
        raise DataError(f"no customer events up to {as_of.isoformat()}")
    items = read_items(store)
    base = user_features(events, items, as_of=as_of)
    category = events["item_id"].map(items.set_index("item_id")["category"])
    frame = pd.DataFrame(
        {
            "user_id": events["user_id"],
            "category": category,
            "event_type": events["event_type"],
            "days_ago": (as_of - events["timestamp"]).dt.total_seconds() / _SECONDS_PER_DAY,
        }
    )
    frame = frame[frame["category"].isin(categories)]
    counts: pd.DataFrame = (
        frame[frame["event_type"].isin(["view", "cart", "purchase"])]
        .groupby(["user_id", "category", "event_type"], observed=True)
        .size()
        .unstack(["event_type", "category"], fill_value=0)
    )
    by_pair = frame.groupby(["user_id", "category"], observed=True)["days_ago"]
    since: pd.DataFrame = by_pair.min().unstack("category")
    recent: pd.DataFrame = (
        frame[frame["days_ago"] <= 30]
        .groupby(["user_id", "category"], observed=True)
        .size()
        .unstack("category", fill_value=0)
    )
    # Re-buying: days since the last purchase there, the mean gap between purchases there,
    # and their ratio (about 1 when a consumable is due again).
    bought = frame[frame["event_type"] == "purchase"].groupby(["user_id", "category"])
    last_buy: pd.DataFrame = bought["days_ago"].min().unstack("category")
    span = bought["days_ago"].max() - bought["days_ago"].min()
    gap: pd.DataFrame = (span / (bought.size() - 1).where(lambda n: n > 0)).unstack("category")
    # Never touched: longer ago than anything observed.
    never = float(base["tenure_days"].max()) + 1.0 if len(base) else 1.0
    blocks = {}
    for c in categories:
        for what in ("view", "cart", "purchase"):
            key = (what, c)
            col = counts[key] if key in counts.columns else pd.Series(dtype=float)
            blocks[f"target_{what}__{c}"] = col.reindex(base.index, fill_value=0).astype(float)
        blocks[f"target_days_since__{c}"] = (
            (since[c].reindex(base.index) if c in since.columns else pd.Series(index=base.index))
            .fillna(never)
            .astype(float)
        )
        since_buy = _column(last_buy, c, base.index).fillna(never)
        mean_gap = _column(gap, c, base.index).fillna(never)
        blocks[f"target_days_since_purchase__{c}"] = since_buy
        blocks[f"target_purchase_gap__{c}"] = mean_gap
        blocks[f"target_purchase_due__{c}"] = since_buy / mean_gap.clip(lower=1.0)
        blocks[f"target_events_30d__{c}"] = (
            (recent[c] if c in recent.columns else pd.Series(dtype=float))
            .reindex(base.index, fill_value=0)
            .astype(float)
        )
    return pd.concat([base.astype(float), pd.DataFrame(blocks, index=base.index)], axis=1)


def _column(table: pd.DataFrame, column: str, index: pd.Index) -> pd.Series:
    """``table[column]`` on ``index`` (all missing when the column is absent), as floats."""
    if column not in table.columns:
        return pd.Series(np.nan, index=index, dtype=float)
    return table[column].reindex(index).astype(float)


def _category_matrix(features: pd.DataFrame, base: list[str], category: str) -> Matrix:
    """The columns one category's model reads: base features + that category's block."""
    target = [f"target_{w}__{category}" for w in _TARGET_COLUMNS]
    block = features.reindex(columns=base, fill_value=0.0)
    out: Matrix = np.hstack([block.to_numpy(dtype=float), features[target].to_numpy(dtype=float)])
    return out


def propensity_labels(
    store: Store, cutoff: pd.Timestamp, end: pd.Timestamp, users: pd.Index, categories: list[str]
) -> pd.DataFrame:
    """1 where the customer bought in the category in ``(cutoff, end]`` (users x categories)."""
    bought = read_events(store, end, since=cutoff, purchases_only=True)
    category = bought["item_id"].map(read_items(store).set_index("item_id")["category"])
    pairs = pd.DataFrame({"user_id": bought["user_id"], "category": category}).drop_duplicates()
    table = pd.crosstab(pairs["user_id"], pairs["category"]).clip(upper=1)
    return table.reindex(index=users, columns=categories, fill_value=0).astype(np.int64)


def lift_at(y: Any, score: Any, share: float = 0.1) -> float:
    """Buy rate among the top ``share`` of customers by score, over the overall buy rate."""
    y_arr, s_arr = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    if y_arr.sum() == 0:
        return float("nan")
    top = np.argsort(-s_arr, kind="stable")[: max(1, round(share * len(s_arr)))]
    return float(y_arr[top].mean() / y_arr.mean())


def _metrics(y: Any, p: Any) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "lift_top_decile": lift_at(y, p, 0.1),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(np.mean(y)),
    }


@dataclass(eq=False)
class PropensityModels:
    """Calibrated per-category purchase models, their metrics and how they were trained.

    Attributes:
        models: category -> calibrated classifier.
        base_features: the customer feature columns (before the ``target_*`` block).
        metrics: category -> chosen ``family``, validation ROC-AUC per family, test
            ``roc_auc, pr_auc, lift_top_decile, brier, base_rate``, sizes, ``importances``.
        as_of, cutoff, window_days, seed: the training set-up.
        skipped: category -> why no model was trained (too few buyers).
    """

    models: dict[str, Any]
    base_features: list[str]
    metrics: dict[str, dict[str, Any]]
    as_of: pd.Timestamp
    cutoff: pd.Timestamp
    window_days: int
    seed: int
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return list(self.models)

    @property
    def feature_names(self) -> list[str]:
        return [*self.base_features, *(f"target_{w}" for w in _TARGET_COLUMNS)]

    def score(self, store: Store, as_of: AsOf | None = None) -> pd.DataFrame:
        """``user_id, category, probability`` of buying in each category within
        ``window_days`` after ``as_of`` (default: the latest event), for every customer
        with an event up to it; rows by customer, then category."""
        cutoff = resolve_as_of(store, as_of)
        features = propensity_features(store, cutoff, self.categories)
        parts = []
        for category, model in self.models.items():
            matrix = _category_matrix(features, self.base_features, category)
            parts.append(
                pd.DataFrame(
                    {
                        "user_id": features.index.astype(str),
                        "category": category,
                        "probability": model.predict_proba(matrix)[:, 1],
                    }
                )
            )
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values(["user_id", "category"], kind="stable", ignore_index=True)

    def metrics_frame(self) -> pd.DataFrame:
        """One row per category: family and the test metrics."""
        keys = ("family", "roc_auc", "pr_auc", "lift_top_decile", "brier", "base_rate")
        rows = [{"category": c, **{k: m[k] for k in keys}} for c, m in self.metrics.items()]
        return pd.DataFrame(rows)

    def save(self, folder: str | Path) -> Path:
        """Write the models (skops) and their metadata (JSON) into ``folder``."""
        import skops.io as sio

        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        names = {}
        # New file names each time, and meta.json swapped in last: a crash half-way leaves
        # the previous models readable.
        token = secrets.token_hex(4)
        for i, (category, model) in enumerate(self.models.items()):
            name = f"model_{token}_{i}.skops"
            tmp = target / f".{name}.tmp"
            sio.dump(model, tmp)
            tmp.replace(target / name)
            names[category] = name
        meta = {
            "files": names,
            "base_features": self.base_features,
            "metrics": self.metrics,
            "as_of": self.as_of.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "window_days": self.window_days,
            "seed": self.seed,
            "skipped": self.skipped,
        }
        tmp = target / ".meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=float), encoding="utf-8")
        tmp.replace(target / "meta.json")
        for stale in set(target.glob("model_*.skops")) - {target / n for n in names.values()}:
            stale.unlink()
        return target


#: The only types a saved propensity model may contain beyond skops' defaults.
_TRUSTED: Final = frozenset(
    {
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.frozen._frozen.FrozenEstimator",
        "sklearn.isotonic.IsotonicRegression",
        "sklearn.tree._tree.Tree",
        "scipy.interpolate._interpolate.interp1d",
        "numpy.dtype",
        "builtins.float",
    }
)


def load_propensity(folder: str | Path) -> PropensityModels:
    """Read models written by :meth:`PropensityModels.save`.

    Raises:
        NotFoundError: no saved models in ``folder``.
        DataError: a file holds a type outside the allow-list (tampered or foreign).
    """
    import skops.io as sio

    source = Path(folder)
    meta_file = source / "meta.json"
    if not meta_file.exists():
        raise NotFoundError(
            f"no propensity models in {source} (run `tailorcast propensity train` first)"
        )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    models = {}
    for category, name in meta["files"].items():
        path = source / Path(name).name
        unknown = [t for t in sio.get_untrusted_types(file=path) if t not in _TRUSTED]
        if unknown:
            raise DataError(f"refusing to load types {unknown}", source=str(path))
        models[category] = sio.load(path, trusted=sorted(_TRUSTED))
    return PropensityModels(
        models=models,
        base_features=list(meta["base_features"]),
        metrics=meta["metrics"],
        as_of=pd.Timestamp(meta["as_of"]),
        cutoff=pd.Timestamp(meta["cutoff"]),
        window_days=int(meta["window_days"]),
        seed=int(meta["seed"]),
        skipped=dict(meta.get("skipped", {})),
    )


def split_customers(n: int, stratify: Any, seed: int) -> tuple[Any, Any, Any]:
    """Positions of the train (60%), validation (20%) and test (20%) customers, stratified
    by ``stratify`` (e.g. "bought anything in the window") where each class is big enough."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    strat = stratify if np.bincount(np.asarray(stratify)).min() >= 5 else None
    train, rest = train_test_split(idx, test_size=0.4, random_state=seed, stratify=strat)
    strat_rest = None if strat is None else np.asarray(stratify)[rest]
    if strat_rest is not None and np.bincount(strat_rest).min() < 2:
        strat_rest = None
    valid, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=strat_rest)
    return train, valid, test


def _fit_category(
    x: Matrix, y: Any, split: tuple[Any, Any, Any], names: list[str], seed: int
) -> tuple[Any, dict[str, Any]]:
    # Histogram boosting starts an OpenMP team per split; on a small, shared machine that
    # costs more than it gains, and nested with other work it oversubscribes the cores.
    with threadpool_limits(limits=1):
        return _fit_category_serial(x, y, split, names, seed)


def _fit_category_serial(
    x: Matrix, y: Any, split: tuple[Any, Any, Any], names: list[str], seed: int
) -> tuple[Any, dict[str, Any]]:
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score

    train, valid, test = split
    validation: dict[str, float] = {}
    fitted: dict[str, Any] = {}
    for family in FAMILIES:
        model = _estimator(family, seed).fit(x[train], y[train])
        fitted[family] = model
        validation[family] = float(roc_auc_score(y[valid], model.predict_proba(x[valid])[:, 1]))
    best = max(FAMILIES, key=lambda f: validation[f])
    importance = permutation_importance(
        fitted[best], x[valid], y[valid], scoring="roc_auc", n_repeats=3, random_state=seed
    )
    learn = np.concatenate([train, valid])
    positives = int(y[learn].sum())
    method = "isotonic" if positives >= 500 else "sigmoid"
    # ensemble=False: one model on all the learning customers, calibrated on its 3-fold
    # out-of-fold predictions; a third of the trees of the default ensemble to save and load.
    calibrated = CalibratedClassifierCV(
        clone(_estimator(best, seed)), method=method, cv=3, ensemble=False
    )
    calibrated.fit(x[learn], y[learn])
    metrics: dict[str, Any] = {
        "family": best,
        "validation_roc_auc": validation,
        "calibration": method,
        **_metrics(y[test], calibrated.predict_proba(x[test])[:, 1]),
        "customers": {"train": len(train), "validation": len(valid), "test": len(test)},
        "buyers": {"train": int(y[train].sum()), "test": int(y[test].sum())},
        "importances": dict(
            sorted(
                (
                    (n, round(float(v), 5))
                    for n, v in zip(names, importance.importances_mean, strict=True)
                ),
                key=lambda pair: -pair[1],
            )
        ),
    }
    return calibrated, metrics


def train_propensity(
    store: Store,
    categories: list[str] | None = None,
    as_of: AsOf | None = None,
    window_days: int = 30,
    seed: int = 2026,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> PropensityModels:
    """Train one calibrated purchase-propensity model per category.

    Args:
        store: an open store.
        categories: categories to model (default: every catalogue category with enough
            buyers in the window).
        as_of: end of the labelled window (default: the latest event); features come from
            the events up to ``as_of - window_days``.
        window_days: length of the prediction window.
        seed: seeds the split and the models.
        progress: called with (category, done, total) as each category finishes.

    Raises:
        ConfigError: unknown categories or a window that is not positive.
        DataError: no category has at least 10 buyers in the training split.
    """
    if window_days < 1:
        raise ConfigError(f"window_days must be at least 1, got {window_days}")
    end = resolve_as_of(store, as_of)
    cutoff = end - pd.Timedelta(days=window_days)
    known = sorted(read_items(store)["category"].dropna().astype(str).unique())
    if categories:
        unknown = sorted(set(categories) - set(known))
        if unknown:
            raise ConfigError(f"unknown categories {', '.join(unknown)}; known: {', '.join(known)}")
        wanted = list(dict.fromkeys(categories))
    else:
        wanted = known
    features = propensity_features(store, cutoff, wanted)
    labels = propensity_labels(store, cutoff, end, features.index, wanted)
    base = [c for c in features.columns if not c.startswith("target_")]
    names = [*base, *(f"target_{w}" for w in _TARGET_COLUMNS)]
    split = split_customers(len(features), labels.to_numpy().max(axis=1), seed)
    models: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for done, category in enumerate(wanted, start=1):
        if progress is not None:
            progress(category, done - 1, len(wanted))
        y = labels[category].to_numpy()
        counts = [int(y[part].sum()) for part in split]
        if (
            counts[0] < _MIN_POSITIVES
            or min(counts[1:]) < 2
            or min(len(part) - c for part, c in zip(split, counts, strict=True)) < 2
        ):
            skipped[category] = f"too few buyers in the window (train/valid/test: {counts})"
            continue
        x = _category_matrix(features, base, category)
        models[category], metrics[category] = _fit_category(x, y, split, names, seed)
    if not models:
        raise DataError(
            f"no category has {_MIN_POSITIVES}+ buyers between {cutoff.date()} and "
            f"{end.date()} to learn from: {skipped}"
        )
    return PropensityModels(models, base, metrics, end, cutoff, window_days, seed, skipped)
