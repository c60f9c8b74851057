"""Benchmark: tailorcast's ``auto`` model against tuned peers on MovieLens 100K.

Claim (issue 3): under both protocols, tailorcast's ``train(model="auto")`` is at least as good
as the best of implicit ALS, implicit BPR, implicit item-kNN (cosine, BM25) and EASE in NDCG@10
and Recall@10; the goal is +5% over the best.

Protocol, identical for every model in one run:

1. MovieLens 100K (``--data``), every rating a positive ``purchase`` event (the tailorcast view
   uses its default event weights; the peers get the 0/1 matrix of the same events).
2. Outer split of :mod:`tailorcast.data.splits`: ``random`` (per customer a random 20% of their
   items, seed 2026) and ``temporal`` (per customer the last 20% of their items by time,
   ``split_last``). Seen items are excluded, K=10.
3. One validation split carved from the outer *train* part only
   (:func:`tailorcast.data.validation_split`, the same protocol and seed) -- the split that
   ``train`` tunes on (auto's hybrid learns its blend weights on a further split carved from
   that split's train part). Every peer is tuned on it with a small grid (best validation NDCG@10),
   then refitted on the whole train part. tailorcast runs ``train(train_part, "auto",
   budget_seconds=...)``, which carves that same validation split itself. The test part is
   only used for the final scores.
4. Every top-10 list, peer or not, is scored with tailorcast's evaluator
   (:func:`tailorcast.evaluation.per_user`, RecBole definitions), and auto is compared with the
   best peer per customer (:func:`tailorcast.evaluation.paired_comparison`).

Usage::

    python benchmarks/movielens.py                 # both protocols, full grids (minutes)
    python benchmarks/movielens.py --quick         # smoke run: small grids, short budget

Figures go to ``benchmarks/results/movielens.json`` (``--out``); a short table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice; before numpy loads

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.bpr import BayesianPersonalizedRanking
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from implicit.utils import ParameterWarning
from threadpoolctl import threadpool_limits

from tailorcast.data import Interactions, make_split, validation_split
from tailorcast.datasets.movielens import load_movielens
from tailorcast.evaluation import paired_comparison, per_user
from tailorcast.training import train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "movielens.json"
K = 10
SEED = 2026
TEST_FRACTION = 0.2
#: Benchmark protocol name -> tailorcast split protocol.
PROTOCOLS = {"random": "random", "temporal": "last"}
GOAL = 1.05

Ints = npt.NDArray[np.int64]
#: Fits a peer on a 0/1 customer x item matrix; returns its top-K (seen items excluded).
Recommend = Callable[[sp.csr_matrix, Ints], Ints]


# -- peers ------------------------------------------------------------------------------------
def ease_peer(regularization: float) -> Callable[[sp.csr_matrix], Callable[[Ints], Any]]:
    """Plain closed-form EASE (Steck 2019): the reference implementation of the peer."""

    def fit(x: sp.csr_matrix) -> Callable[[Ints], Any]:
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += regularization
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        return lambda users: np.asarray(x[users] @ b)

    return fit


def _top_k_dense(scores: npt.NDArray[Any], seen: sp.csr_matrix, k: int) -> Ints:
    scores = np.array(scores, dtype=np.float64)
    scores[seen.nonzero()] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.asarray(np.take_along_axis(top, order, axis=1), dtype=np.int64)


def _implicit_top_k(model: Any, x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    ids, _ = model.recommend(users, x[users], N=k, filter_already_liked_items=True)
    out = np.asarray(ids, dtype=np.int64)
    if out.shape[1] < k:  # implicit returns fewer columns when few items are left
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out


@dataclass(frozen=True)
class Peer:
    """A peer family: a grid of parameters and how to fit + recommend with one point."""

    name: str
    grid: list[dict[str, Any]]
    run: Callable[[dict[str, Any], sp.csr_matrix, Ints, int], Ints]


def _run_ease(params: dict[str, Any], x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    scorer = ease_peer(params["regularization"])(x)
    return _top_k_dense(scorer(users), x[users], k)


def _run_als(params: dict[str, Any], x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(random_state=SEED, **params)
        model.fit(x, show_progress=False)
        return _implicit_top_k(model, x, users, k)


def _run_bpr(params: dict[str, Any], x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    with threadpool_limits(limits=1, user_api="blas"):
        model = BayesianPersonalizedRanking(random_state=SEED, num_threads=1, **params)
        model.fit(x, show_progress=False)
        return _implicit_top_k(model, x, users, k)


def _run_cosine(params: dict[str, Any], x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    model = CosineRecommender(**params)
    with warnings.catch_warnings():  # implicit's own fit hands itself a COO matrix
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(x, show_progress=False)
    return _implicit_top_k(model, x, users, k)


def _run_bm25(params: dict[str, Any], x: sp.csr_matrix, users: Ints, k: int) -> Ints:
    model = BM25Recommender(**params)
    with warnings.catch_warnings():  # as above
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(x, show_progress=False)
    return _implicit_top_k(model, x, users, k)


def _grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def peers(quick: bool) -> list[Peer]:
    """The peer families and their validation grids (``quick``: a few points each)."""
    if quick:
        return [
            Peer("ease", _grid(regularization=[100.0, 400.0]), _run_ease),
            Peer("als", _grid(factors=[32], regularization=[0.1], alpha=[5.0]), _run_als),
            Peer("bpr", _grid(factors=[32], learning_rate=[0.05], iterations=[50]), _run_bpr),
            Peer("itemknn-cosine", _grid(K=[50]), _run_cosine),
            Peer("itemknn-bm25", _grid(K=[50]), _run_bm25),
        ]
    return [
        Peer(
            "ease",
            _grid(regularization=[50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0]),
            _run_ease,
        ),
        Peer(
            "als",
            _grid(
                factors=[32, 64, 128],
                regularization=[0.01, 0.1, 1.0],
                alpha=[1.0, 5.0, 20.0],
                iterations=[15],
            ),
            _run_als,
        ),
        Peer(
            "bpr",
            _grid(
                factors=[64, 128],
                learning_rate=[0.01, 0.05],
                regularization=[0.001, 0.01],
                iterations=[100],
            ),
            _run_bpr,
        ),
        Peer("itemknn-cosine", _grid(K=[20, 50, 100, 200, 400]), _run_cosine),
        Peer(
            "itemknn-bm25",
            _grid(K=[20, 50, 100, 200, 400], K1=[1.2], B=[0.5, 0.75, 1.0]),
            _run_bm25,
        ),
    ]


# -- measuring --------------------------------------------------------------------------------
def _binary(inter: Interactions) -> sp.csr_matrix:
    x = sp.csr_matrix(inter.matrix, dtype=np.float32, copy=True)
    x.data[:] = 1.0
    x.eliminate_zeros()
    return x


def _targets(test: Interactions) -> tuple[Ints, sp.csr_matrix]:
    """Customers with held-out items, and their held-out rows."""
    relevant = sp.csr_matrix(test.matrix)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0).astype(np.int64)
    return users, sp.csr_matrix(relevant[users])


def _scores(recommended: Ints, relevant: sp.csr_matrix) -> tuple[dict[str, float], Any]:
    table = per_user(recommended, relevant, k=K)
    metrics = {c: float(table[c].mean()) for c in table.columns if "@" in c}
    return metrics, table


def tune_peer(
    peer: Peer, fit_train: Interactions, valid: Interactions
) -> tuple[dict[str, Any], float, list[dict[str, Any]], float]:
    """Best grid point by validation NDCG@10: (params, its ndcg, every trial, seconds)."""
    x = _binary(fit_train)
    users, relevant = _targets(valid)
    trials: list[dict[str, Any]] = []
    started = time.perf_counter()
    for params in peer.grid:
        t0 = time.perf_counter()
        recommended = peer.run(params, x, users, K)
        ndcg = _scores(recommended, relevant)[0][f"ndcg@{K}"]
        trials.append({"params": params, "ndcg@10": ndcg, "seconds": time.perf_counter() - t0})
    best = max(trials, key=lambda t: t["ndcg@10"])
    return best["params"], best["ndcg@10"], trials, time.perf_counter() - started


def run_protocol(
    inter: Interactions, protocol: str, *, quick: bool, budget: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every peer and tailorcast auto on one outer split of ``inter``."""
    split = make_split(inter, PROTOCOLS[protocol], seed=SEED, test_fraction=TEST_FRACTION)
    fit_train, valid = validation_split(split.train, PROTOCOLS[protocol], seed=SEED)
    users, relevant = _targets(split.test)
    x_train = _binary(split.train)
    models: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {}
    for peer in peers(quick):
        params, val_ndcg, trials, tune_s = tune_peer(peer, fit_train, valid)
        t0 = time.perf_counter()
        recommended = peer.run(params, x_train, users, K)
        final_s = time.perf_counter() - t0
        metrics, tables[peer.name] = _scores(recommended, relevant)
        models[peer.name] = {
            "kind": "peer",
            "params": params,
            "validation_ndcg@10": val_ndcg,
            "metrics": metrics,
            "tune_seconds": round(tune_s, 3),
            "final_fit_seconds": round(final_s, 3),
            "trials": trials,
        }
        log(
            f"  {protocol:<9}{peer.name:<16} ndcg@10 {metrics['ndcg@10']:.4f}  "
            f"recall@10 {metrics['recall@10']:.4f}  ({len(trials)} trials, {tune_s:.1f} s)"
        )

    t0 = time.perf_counter()
    result = train(
        split.train,
        "auto",
        budget_seconds=budget,
        protocol=PROTOCOLS[protocol],
        seed=SEED,
        save=False,
    )
    auto_s = time.perf_counter() - t0
    recs = result.model.recommend(split.train.user_ids[users], k=K, exclude_seen=True)
    padded = np.asarray(recs.item_ids == None)  # noqa: E711 - element-wise
    idx = split.train.item_index(np.where(padded, "", recs.item_ids).ravel())
    idx = idx.reshape(recs.item_ids.shape)
    idx[padded] = -1
    metrics, tables["auto"] = _scores(idx, relevant)
    models["auto"] = {
        "kind": "tailorcast",
        "chosen_model": result.name,
        "params": result.params,
        # A hybrid's learned blend weights, e.g. {"ease": 0.7, "als": 0.3}.
        "blend": getattr(result.model, "blend_", None),
        "validation_ndcg@10": result.metrics.get(f"ndcg@{K}"),
        "metrics": metrics,
        "seconds": round(auto_s, 3),
        "budget_seconds": budget,
        "n_trials": len(result.trials),
        "trials_per_model": _count(t.model for t in result.trials),
    }
    log(
        f"  {protocol:<9}{'auto':<16} ndcg@10 {metrics['ndcg@10']:.4f}  "
        f"recall@10 {metrics['recall@10']:.4f}  ({result.name}, {auto_s:.1f} s)"
    )

    peer_names = [name for name, m in models.items() if m["kind"] == "peer"]
    best_peer = max(peer_names, key=lambda n: models[n]["metrics"][f"ndcg@{K}"])
    ratios: dict[str, Any] = {}
    for metric in (f"ndcg@{K}", f"recall@{K}"):
        best = max(models[n]["metrics"][metric] for n in peer_names)
        ratio = metrics[metric] / best if best > 0 else float("nan")
        comp = paired_comparison(
            tables["auto"][metric].to_numpy(),
            tables[best_peer][metric].to_numpy(),
            a="auto",
            b=best_peer,
            metric=metric,
            seed=SEED,
        )
        ratios[metric] = {
            "best_peer_value": best,
            "auto": metrics[metric],
            "ratio": ratio,
            "at_least_best": ratio >= 1.0,
            "goal_met": ratio >= GOAL,
            "vs_best_ndcg_peer": comp.to_dict(),
        }
    return {
        "split": {
            "protocol": PROTOCOLS[protocol],
            "test_fraction": TEST_FRACTION,
            "seed": SEED,
            "n_train_events": len(split.train.events),
            "n_test_events": len(split.test.events),
            "n_test_users": int(users.size),
            "n_validation_train_events": len(fit_train.events),
            "n_validation_events": len(valid.events),
        },
        "best_peer": best_peer,
        "models": models,
        "auto_vs_best_peer": ratios,
    }


def _count(names: Iterator[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in names:
        out[name] = out.get(name, 0) + 1
    return out


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    ml = load_movielens(args.data)
    events = ml.events
    if args.users is not None:  # a seeded subsample of customers, for smoke tests
        rng = np.random.default_rng(SEED)
        ids = np.sort(events["user_id"].unique())
        keep = set(rng.choice(ids, size=min(args.users, len(ids)), replace=False).tolist())
        events = events[events["user_id"].isin(keep)]
    inter = Interactions.from_events(events, items=ml.items, users=ml.users)
    budget = args.budget if args.budget is not None else (10.0 if args.quick else 300.0)
    print(f"MovieLens: {inter!r}; auto budget {budget:g} s", flush=True)
    protocols = {}
    for protocol in args.protocols:
        protocols[protocol] = run_protocol(
            inter, protocol, quick=args.quick, budget=budget, log=lambda s: print(s, flush=True)
        )
    result = {
        "benchmark": "movielens",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "source": _git_state(),
        "data": str(args.data),
        "quick": args.quick,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "n_events": len(inter.events),
        "k": K,
        "goal_ratio": GOAL,
        "protocols": protocols,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write(Path(args.out), result)
    _print_table(result)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MovieLens 100K folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    parser.add_argument("--quick", action="store_true", help="small grids, short budget")
    parser.add_argument("--budget", type=float, default=None, help="auto's budget in seconds")
    parser.add_argument("--users", type=int, default=None, help="subsample this many customers")
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=list(PROTOCOLS),
        default=list(PROTOCOLS),
        help="protocols to run",
    )
    return parser.parse_args(argv)


def _print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'protocol':<10}{'model':<16}{'ndcg@10':>9}{'recall@10':>11}  chosen / params")
    for protocol, part in result["protocols"].items():
        for name, model in part["models"].items():
            m = model["metrics"]
            what = model.get("chosen_model", "")
            params = json.dumps(model["params"], sort_keys=True)
            print(
                f"{protocol:<10}{name:<16}{m['ndcg@10']:>9.4f}{m['recall@10']:>11.4f}  "
                f"{what + ' ' if what else ''}{params[:70]}"
            )
        for metric, r in part["auto_vs_best_peer"].items():
            print(
                f"{protocol:<10}auto / best peer {metric}: {r['ratio']:.3f} "
                f"(>= 1: {'yes' if r['at_least_best'] else 'NO'}; goal {GOAL}: "
                f"{'yes' if r['goal_met'] else 'no'})"
            )
    print(f"total {result['seconds']} s")


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implicit": version("implicit"),
        "numpy": np.__version__,
        "tailorcast": version("tailorcast"),
    }


def _git_state() -> dict[str, Any] | None:
    """The commit measured, and the source files changed on top of it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "changed": [line[3:] for line in changed]}


if __name__ == "__main__":
    sys.exit(main())
