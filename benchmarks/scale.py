"""Benchmark: ALS training and ``recommend --all`` at shop scale, against implicit alone.

Targets (issue): on a generated log of 10M events, 1M customers and 100k items,

- training tailorcast's ALS-class default (``ALSRecommender()``, the whole ``fit``) takes at
  most 1.2x implicit's ``AlternatingLeastSquares`` alone with the same factors, iterations,
  regularization, alpha, seed and threads, fitted on the same matrix;
- ``recommend --all -k 10 --exclude-seen`` (the CLI's batch path:
  :func:`tailorcast.recommend.recommend_for` with ``Rules(exclude_seen=True)`` for every
  customer with history, reasons on, the table sorted by customer) serves at least as many
  customers per second as implicit's own batch
  ``model.recommend(userids, user_items, N=10, filter_already_liked_items=True)``;
- the peak resident memory of the whole process stays under 8 GB.

The events are generated in memory (``large_events_table``: clean canonical events, every
customer with at least one visit) and the training view is built with
``Interactions.from_events`` from that frame, not through a store: ingest has its own
benchmark. ``recommend_for`` gets an empty store that keeps shop IDs as they are
(``pseudonymize = false``), so re-identifying pseudonyms is not part of the figure.

Both sides run in this one process, alternating their order (tailorcast first on even
repeats), and the ratios compare medians from the same run because absolute seconds on a
shared 2-core machine drift. Before timing, both sides fit once on a 1% slice (one-time
imports and first calls are not training time). At full size the recommend comparison uses a
random sample of customers (``--sample``, 20k; the same customers on both sides, tailorcast
through ``recommend_for(store, model, ids)``): implicit needs about an hour for all 1M on
2 cores. tailorcast's real ``--all`` (``recommend_for(store, model, None)``, every customer,
the whole table in memory) then runs once, for its throughput and memory. The store is
empty, so the items come from the model's own snapshot (``catalog=Catalog.from_model``).

Peak memory is the resident high-water mark (``VmHWM``), reset before each phase through
``/proc/self/clear_refs`` so each phase reports its own peak; the process peak is the
largest of them (or ``ru_maxrss`` where the reset is not available). The first tailorcast
recommend run (and the ``--all`` run) also times its parts (scoring + top-k, reasons, the
rest of ``recommend``, the table), which gives the throughput without reasons too; the
first tailorcast fit times implicit's fit inside it against the rest of ``fit``.

Usage::

    python benchmarks/scale.py             # 10M events, 1M customers, 100k items (~40 min)
    python benchmarks/scale.py --quick     # 1M events, 100k customers, 10k items (~2 min)

Figures go to ``benchmarks/results/scale.json`` (``--out``); a short table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import implicit
import implicit.cpu.als
import numpy as np
from threadpoolctl import threadpool_limits

from tailorcast.catalog import Catalog
from tailorcast.data.interactions import Interactions
from tailorcast.datasets._large import large_events_table
from tailorcast.models.factorization import ALSRecommender
from tailorcast.recommend import recommend_for
from tailorcast.rules import Rules
from tailorcast.store import Store

TRAIN_RATIO_TARGET = 1.2
RECOMMEND_RATIO_TARGET = 1.0
PEAK_TARGET_MB = 8192.0
K = 10
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "scale.json"
#: Sizes; ``sample``: customers whose recommend throughput is compared (0 = all of them).
#: implicit serves ~300 customers/s on 100k items here, so comparing on all 1M customers
#: would take an hour; the sample compares the same customers on both sides, and
#: tailorcast's real ``--all`` then runs once over every customer.
FULL = {"events": 10_000_000, "customers": 1_000_000, "items": 100_000, "sample": 20_000}
QUICK = {"events": 1_000_000, "customers": 100_000, "items": 10_000, "sample": 0}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    memory = _Memory()
    result: dict[str, Any] = {
        "benchmark": "scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "source": _git_state(),
        "sizes": sizes,
        "seed": args.seed,
        "repeat": args.repeat,
        "k": K,
        "data_path": "generated in memory (large_events_table) -> Interactions.from_events",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # implicit asks for single-threaded BLAS (it runs its own OpenMP pool); tailorcast's
    # scoring threads its blocks itself, so one BLAS thread is right for both sides.
    with threadpool_limits(limits=1, user_api="blas"):
        inter = _build_view(sizes, args.seed, memory, result)
        _write(out, result, memory, complete=False)  # long runs leave figures as they go
        models = _train(inter, args.repeat, memory, result)
        _write(out, result, memory, complete=False)
        sample, run_all = sizes["sample"], not args.skip_all
        _recommend(inter, *models, args.repeat, sample, args.seed, run_all, memory, result)
    _write(out, result, memory, complete=True)
    _print_table(result, out)
    return 0


def _write(out: Path, result: dict[str, Any], memory: _Memory, *, complete: bool) -> None:
    result["complete"] = complete
    result["memory"] = memory.report()
    if complete:
        result["pass"] = _verdict(result)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M events, 100k customers, 10k items")
    parser.add_argument("--events", type=int, help="events (overrides the size preset)")
    parser.add_argument("--customers", type=int, help="customers (overrides the size preset)")
    parser.add_argument("--items", type=int, help="items (overrides the size preset)")
    parser.add_argument(
        "--sample", type=int, help="customers compared in recommend (0 = all; default 20k full)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per side (default 2)")
    parser.add_argument(
        "--skip-all", action="store_true", help="with a sample: leave out the one --all run"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# -- phases -------------------------------------------------------------------------------------
def _build_view(
    sizes: dict[str, int], seed: int, memory: _Memory, result: dict[str, Any]
) -> Interactions:
    with memory.phase("generate"), _timer() as gen:
        table = large_events_table(
            sizes["events"], n_customers=sizes["customers"], n_items=sizes["items"], seed=seed
        )
        frame = table.to_pandas()
        del table
    with memory.phase("interactions"), _timer() as build:
        inter = Interactions.from_events(frame)
        del frame
        gc.collect()
    result["data"] = {
        "events": len(inter.events),
        "customers_with_events": inter.n_users,
        "items": inter.n_items,
        "matrix_nnz": int(inter.matrix.nnz),
        "generate_seconds": gen.seconds,
        "interactions_seconds": build.seconds,
    }
    print(f"view: {inter!r} ({gen.seconds:.1f} s + {build.seconds:.1f} s)", flush=True)
    return inter


def _train(
    inter: Interactions, repeat: int, memory: _Memory, result: dict[str, Any]
) -> tuple[ALSRecommender, implicit.cpu.als.AlternatingLeastSquares]:
    ours = ALSRecommender()
    cfg = ours._validated_config()  # the defaults, as fit will see them

    def peer_model(iterations: int) -> implicit.cpu.als.AlternatingLeastSquares:
        return implicit.cpu.als.AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=iterations,
            random_state=cfg.random_state,
            num_threads=cfg.num_threads,
            dtype=np.float32,
        )

    # Warm-up on a slice, untimed: one-time imports (tailorcast's fit pulls in scipy.stats
    # lazily) and first-call costs are not what a second-long training is about.
    warm = inter.with_events(inter.events["user_idx"].to_numpy() < max(1, inter.n_users // 100))
    ALSRecommender(iterations=1).fit(warm)
    peer_model(1).fit(warm.matrix, show_progress=False)
    del warm
    matrix = inter.matrix
    runs: list[dict[str, Any]] = []
    parts: dict[str, float] = {}
    for r in range(repeat):
        for side in _sides(r):
            gc.collect()
            with memory.phase(f"train_{side}"), _timer() as clock:
                if side == "tailorcast":
                    with _timed_parts(ours, parts if not parts else None, {"_learn": "learn"}):
                        ours.fit(inter)
                else:  # a fresh model: implicit's fit continues from existing factors
                    peer = peer_model(cfg.iterations)
                    peer.fit(matrix, show_progress=False)
            runs.append({"side": side, "repeat": r, "seconds": clock.seconds, **_load()})
            print(f"train {side:<10} {clock.seconds:8.1f} s", flush=True)
    same = np.allclose(ours.user_factors_, peer.user_factors, atol=1e-4) and np.allclose(
        ours.item_factors_, peer.item_factors, atol=1e-4
    )
    if parts:  # what fit does besides implicit's own fit (inside _learn)
        parts["other"] = parts["total"] - parts["learn"]
    result["train"] = {
        "config": cfg.model_dump(mode="json"),
        "runs": runs,
        **_medians(runs, lower_is_better=True),
        "first_fit_seconds": parts,
        "same_factors": bool(same),
    }
    return ours, peer


#: Steps of one recommend_for call timed separately (method -> key).
_RECOMMEND_PARTS = {"_rank": "rank", "_reasons": "reasons", "recommend": "recommend"}


def _recommend(
    inter: Interactions,
    ours: ALSRecommender,
    peer: implicit.cpu.als.AlternatingLeastSquares,
    repeat: int,
    sample: int,
    seed: int,
    run_all: bool,
    memory: _Memory,
    result: dict[str, Any],
) -> None:
    n_users = inter.n_users
    sampled = 0 < sample < n_users
    rows = np.arange(n_users, dtype=np.int64)
    if sampled:
        rows = np.sort(np.random.default_rng(seed).choice(n_users, sample, replace=False))
    asked = None if not sampled else inter.user_ids[rows].tolist()
    runs: list[dict[str, Any]] = []
    parts: dict[str, float] = {}
    all_parts: dict[str, float] = {}
    ours_top: Any = None
    peer_top: Any = None
    catalog = Catalog.from_model(ours)  # the items as trained on (the store has no items)
    # `recommend --all --exclude-seen`: implicit filters liked items, so must we (the CLI's
    # own default decides from the data and may keep seen items in a shop where people rebuy)
    rules = Rules(exclude_seen=True)
    with tempfile.TemporaryDirectory(prefix="tc-scale-") as tmp:
        store = Store.open(Path(tmp) / "store", create=True)
        store.set_meta("pseudonymize", "false")  # shop IDs as they are: no re-identification
        try:
            for r in range(repeat):
                for side in _sides(r):
                    gc.collect()
                    timing = parts if side == "tailorcast" and not parts else None
                    with memory.phase(f"recommend_{side}"), _timer() as clock:
                        if side == "tailorcast":
                            with _timed_parts(ours, timing, _RECOMMEND_PARTS):
                                frame = recommend_for(
                                    store, ours, asked, k=K, rules=rules, catalog=catalog
                                )
                            count = len(frame)
                        else:
                            ids, _ = peer.recommend(
                                rows.astype(np.int32),
                                inter.matrix[rows],
                                N=K,
                                filter_already_liked_items=True,
                            )
                            count = int((ids >= 0).sum())
                    if side == "tailorcast":
                        if ours_top is None:
                            ours_top = _top_items(inter, frame, rows)
                        del frame
                    elif peer_top is None:
                        peer_top = ids
                    runs.append(_run(side, r, clock.seconds, len(rows), count))
            all_run = None
            if sampled and run_all:  # the real --all once: every customer, the whole table
                gc.collect()
                with (
                    memory.phase("recommend_all_tailorcast"),
                    _timer() as clock,
                    _timed_parts(ours, all_parts, _RECOMMEND_PARTS),
                ):
                    frame = recommend_for(store, ours, None, k=K, rules=rules, catalog=catalog)
                all_run = _run("tailorcast", 0, clock.seconds, n_users, len(frame))
                del frame
        finally:
            store.close()
    medians = _medians(runs, lower_is_better=True)
    ours_s, peer_s = medians["tailorcast_median_seconds"], medians["implicit_median_seconds"]
    peer_rate = len(rows) / peer_s
    result["recommend"] = {
        "users": len(rows),
        "sampled": sampled,
        "runs": runs,
        "tailorcast_median_seconds": ours_s,
        "implicit_median_seconds": peer_s,
        "tailorcast_users_per_second": len(rows) / ours_s,
        "implicit_users_per_second": peer_rate,
        # throughput ratio: > 1 means tailorcast serves more customers per second
        "ratio": peer_s / ours_s,
        "breakdown_seconds": _breakdown(parts, len(rows), peer_rate),
        "top10_agreement": _agreement(ours_top, peer_top),
        "all": None
        if all_run is None
        else {
            **all_run,
            "ratio_vs_implicit_sample": all_run["users_per_second"] / peer_rate,
            "breakdown_seconds": _breakdown(all_parts, n_users, peer_rate),
        },
    }


def _run(side: str, repeat: int, seconds: float, users: int, rows: int) -> dict[str, Any]:
    print(f"recommend {side:<10} {seconds:8.1f} s {users / seconds:10.0f} users/s", flush=True)
    return {
        "side": side,
        "repeat": repeat,
        "users": users,
        "seconds": seconds,
        "users_per_second": users / seconds,
        "rows": rows,
        **_load(),
    }


def _breakdown(parts: dict[str, float], users: int, peer_rate: float) -> dict[str, float]:
    """The timed parts, plus the throughput without reasons (total less the reasons)."""
    out = dict(parts)
    if parts:
        rest = parts["recommend"] - parts["rank"] - parts["reasons"]
        out["recommend_other"] = rest
        out["table"] = parts["total"] - parts["recommend"]
        rate = users / (parts["total"] - parts["reasons"])
        out["users_per_second_without_reasons"] = rate
        out["ratio_without_reasons"] = rate / peer_rate
    return out


def _top_items(inter: Interactions, frame: Any, rows: Any) -> Any:
    """The recommendation table as a (customers x K) item-index array, row ``i`` for view
    row ``rows[i]``; None when some customer got fewer than K items."""
    if len(frame) != len(rows) * K:
        return None
    users = inter.user_index(frame["user_id"].to_numpy()).reshape(-1, K)
    if (users != users[:, :1]).any():
        return None
    where = np.searchsorted(rows, users[:, 0])  # rows is sorted
    top = np.empty((len(rows), K), dtype=np.int64)
    top[where] = inter.item_index(frame["item_id"].to_numpy()).reshape(-1, K)
    return top


def _agreement(ours: Any, peer: Any) -> float | None:
    """Share of customers whose top-10 set is the same on both sides (same factors, so it
    should be ~1; float rounding may swap near-ties at the 10th place)."""
    if ours is None or peer is None:
        return None
    same = np.sort(ours, axis=1) == np.sort(np.asarray(peer, dtype=np.int64), axis=1)
    return float(same.all(axis=1).mean())


@contextmanager
def _timed_parts(
    model: ALSRecommender, into: dict[str, float] | None, steps: dict[str, str]
) -> Iterator[None]:
    """Time the steps (``{method: key}``) of one call by wrapping the model's methods;
    instance attributes shadow the methods for this call only. ``into["total"]`` is the
    whole block."""
    if into is None:
        yield
        return
    for attr, key in steps.items():
        setattr(model, attr, _stopwatch(getattr(model, attr), into, key))
    start = time.perf_counter()
    try:
        yield
    finally:
        into["total"] = time.perf_counter() - start
        for attr in steps:
            delattr(model, attr)


def _stopwatch(fn: Callable[..., Any], into: dict[str, float], key: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - start

    return timed


# -- measuring ----------------------------------------------------------------------------------
class _Clock:
    seconds: float = 0.0


@contextmanager
def _timer() -> Iterator[_Clock]:
    clock = _Clock()
    start = time.perf_counter()
    try:
        yield clock
    finally:
        clock.seconds = time.perf_counter() - start


class _Memory:
    """Peak resident memory per phase (VmHWM, reset before each phase where Linux allows)."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.resettable = _reset_peak()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.resettable:
            _reset_peak()
        try:
            yield
        finally:
            peak = _vm_hwm_mb() if self.resettable else _ru_maxrss_mb()
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak)

    def report(self) -> dict[str, Any]:
        peak = max([*self.peaks.values(), 0.0 if self.resettable else _ru_maxrss_mb()])
        return {
            "process_peak_mb": peak,
            "phase_peak_mb": self.peaks,
            "method": "VmHWM reset per phase" if self.resettable else "ru_maxrss",
        }


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _vm_hwm_mb() > 0


def _vm_hwm_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> dict[str, float]:
    return {"load_avg_after": os.getloadavg()[0]}


def _sides(repeat: int) -> tuple[str, str]:
    return ("tailorcast", "implicit") if repeat % 2 == 0 else ("implicit", "tailorcast")


def _medians(runs: list[dict[str, Any]], *, lower_is_better: bool) -> dict[str, Any]:
    ours = statistics.median(r["seconds"] for r in runs if r["side"] == "tailorcast")
    peer = statistics.median(r["seconds"] for r in runs if r["side"] == "implicit")
    return {
        "tailorcast_median_seconds": ours,
        "implicit_median_seconds": peer,
        "ratio": ours / peer if lower_is_better else peer / ours,
    }


def _verdict(result: dict[str, Any]) -> dict[str, bool]:
    train = result["train"]["ratio"] <= TRAIN_RATIO_TARGET
    recommend = result["recommend"]["ratio"] >= RECOMMEND_RATIO_TARGET
    peak = result["memory"]["process_peak_mb"] < PEAK_TARGET_MB
    return {
        "train": train,
        "recommend": recommend,
        "peak": peak,
        "all": train and recommend and peak,
    }


def _print_table(result: dict[str, Any], out: Path) -> None:
    train, rec, mem = result["train"], result["recommend"], result["memory"]
    data = result["data"]
    print(
        f"\n{data['events']:,} events, {data['customers_with_events']:,} customers, "
        f"{data['items']:,} items, nnz {data['matrix_nnz']:,}"
    )
    print(f"{'':<28}{'tailorcast':>12}{'implicit':>12}{'ratio':>8}  target")
    print(
        f"{'train (median s)':<28}{train['tailorcast_median_seconds']:>12.1f}"
        f"{train['implicit_median_seconds']:>12.1f}{train['ratio']:>8.2f}  <= {TRAIN_RATIO_TARGET}"
    )
    print(
        f"{'recommend (users/s)':<28}{rec['tailorcast_users_per_second']:>12.0f}"
        f"{rec['implicit_users_per_second']:>12.0f}{rec['ratio']:>8.2f}"
        f"  >= {RECOMMEND_RATIO_TARGET}"
    )
    without = rec["breakdown_seconds"].get("users_per_second_without_reasons")
    if without is not None:
        print(f"{'  without reasons (users/s)':<28}{without:>12.0f}")
    if rec["all"] is not None:
        every = rec["all"]
        print(
            f"{'--all, every customer':<28}{every['users_per_second']:>12.0f}{'':>12}"
            f"{every['ratio_vs_implicit_sample']:>8.2f}  ({every['users']:,} customers, "
            f"{every['seconds']:.0f} s)"
        )
        without = every["breakdown_seconds"].get("users_per_second_without_reasons")
        if without is not None:
            print(f"{'  without reasons (users/s)':<28}{without:>12.0f}")
    print(
        f"{'peak memory (MB)':<28}{mem['process_peak_mb']:>12.0f}{'':>20}  < {PEAK_TARGET_MB:.0f}"
    )
    print(f"pass: {result['pass']}  -> {out}")


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "implicit": implicit.__version__,
        "tailorcast": _version("tailorcast"),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_start": os.getloadavg()[0],
    }


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


def _git_state() -> dict[str, Any] | None:
    """The commit measured, and the source files changed on top of it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "changed": [line[3:] for line in changed]}


if __name__ == "__main__":
    sys.exit(main())
