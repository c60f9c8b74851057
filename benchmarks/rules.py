"""Benchmark: what business rules and cold start cost in a batch ``recommend``.

On a generated log (default 1M events, 100k customers, 10k items in 20 categories with
prices, 5% sold out, customers with age and city) an ALS model is fitted once, then, in the
same run, alternating order, ``--repeats`` times each (medians reported):

- ``plain``: ``model.recommend(users, k=10, exclude_seen=True)`` for ``--users`` customers
  with history (the evaluation path);
- ``rules``: the same customers under a full rule set compiled once (a category excluded, a
  price range, sold-out items hidden, 100 boosted items, 3 pinned items, at most 2 items per
  category): the mask and boost enter the blocked top-k, pins and the cap work on
  over-fetched candidates;
- ``segment``: as many unknown customers with attributes (age, city) as ``plain`` has:
  popularity among similar customers;
- ``session``: a tenth as many unknown customers, each with 3 session items.

Also timed: ``Rules.compile`` (first call, building the catalogue view, and later calls)
and the share of ``fit`` spent on the cold-start state (``cold_state``).

Figures are customers per second and the ratio of each path to ``plain``; they go to
``benchmarks/results/rules.json`` (``--out``). No target is set by the issue; the point is
that the rules stay array work (no loop over customers), so the ratio stays near 1.

Usage::

    python benchmarks/rules.py            # 1M events (~3 min on 2 cores)
    python benchmarks/rules.py --quick    # 200k events, 20k customers, 5k items
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tailorcast.catalog import Catalog
from tailorcast.data.interactions import Interactions
from tailorcast.datasets._large import large_events_table
from tailorcast.models import ALSRecommender, Recommender
from tailorcast.models.base import _common_state
from tailorcast.models.coldstart import cold_state
from tailorcast.rules import Rules

ROOT = Path(__file__).resolve().parent
CITIES = ["Berlin", "Paris", "Rome", "Madrid", "Vienna", "Oslo"]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = (
        {"events": 200_000, "customers": 20_000, "items": 5_000}
        if args.quick
        else {"events": args.events, "customers": args.customers, "items": args.items}
    )
    rng = np.random.default_rng(args.seed)
    events = large_events_table(
        sizes["events"], n_customers=sizes["customers"], n_items=sizes["items"], seed=args.seed
    ).to_pandas()
    item_ids = pd.unique(events["item_id"])
    n_items = len(item_ids)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "category": [f"cat{x % 20:02d}" for x in range(n_items)],
            "price": np.round(rng.lognormal(3.0, 0.8, n_items), 2),
            "available": rng.random(n_items) >= 0.05,
            "title": [f"Product {x}" for x in range(n_items)],
        }
    )
    customer_ids = pd.unique(events["user_id"])
    users = pd.DataFrame(
        {
            "user_id": customer_ids,
            "age": rng.integers(18, 80, len(customer_ids)),
            "city": np.asarray(CITIES, dtype=object)[
                rng.integers(0, len(CITIES), len(customer_ids))
            ],
        }
    )
    inter = Interactions.from_events(events, items=items, users=users)
    del events
    print(f"view: {inter!r}", flush=True)

    start = time.perf_counter()
    model = ALSRecommender(factors=32, iterations=5, num_threads=2, random_state=args.seed)
    model.fit(inter)
    fit_s = time.perf_counter() - start
    common = _common_state(inter)
    matrix = sp.csr_matrix(
        (common["history_weight"], common["history_indices"], common["history_indptr"]),
        shape=inter.matrix.shape,
    )
    cold_s = _best(lambda: cold_state(inter, matrix, place_new_items=True), 2)

    catalog = Catalog.from_frame(items)
    ids = model.item_ids_
    rules = Rules(
        exclude_categories=("cat00",),
        min_price=5.0,
        max_price=120.0,
        boost={str(x): 1.5 for x in ids[rng.choice(len(ids), 100, replace=False)]},
        pin=tuple(str(x) for x in ids[:3]),
        max_per_category=2,
        exclude_seen=True,
    )
    start = time.perf_counter()
    compiled = rules.compile(model, catalog)
    compile_first_s = time.perf_counter() - start
    compile_s = _best(lambda: rules.compile(model, catalog), 5)

    warm = model.user_ids_[rng.choice(len(model.user_ids_), args.users, replace=False)]
    cold = np.asarray([f"new-{i}" for i in range(args.users)], dtype=object)
    attributes = pd.DataFrame(
        {
            "age": rng.integers(18, 80, len(cold)),
            "city": np.asarray(CITIES, dtype=object)[rng.integers(0, len(CITIES), len(cold))],
        },
        index=pd.Index(cold, name="user_id"),
    )
    browsing = cold[: max(1, args.users // 10)]
    sessions = {
        str(u): [str(x) for x in ids[rng.choice(len(ids), 3, replace=False)]] for u in browsing
    }
    paths: dict[str, tuple[Any, int]] = {
        "plain": (lambda: model.recommend(warm, k=10, exclude_seen=True), len(warm)),
        "rules": (lambda: model.recommend(warm, k=10, filters=compiled), len(warm)),
        "segment": (
            lambda: model.recommend(cold, k=10, user_attributes=attributes),
            len(cold),
        ),
        "session": (
            lambda: model.recommend(browsing, k=10, session_items=sessions),
            len(browsing),
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            call, _ = paths[name]
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    rate = {name: paths[name][1] / statistics.median(seconds[name]) for name in names}
    check = model.recommend(warm[:200], k=10, filters=compiled)
    result = {
        "benchmark": "rules",
        "data": {
            "events": len(inter.events),
            "customers": inter.n_users,
            "items": inter.n_items,
        },
        "fit_seconds": fit_s,
        "cold_state_seconds": cold_s,
        "cold_state_share_of_fit": cold_s / fit_s,
        "compile_first_seconds": compile_first_s,
        "compile_seconds": compile_s,
        "customers_per_second": rate,
        "ratio_to_plain": {name: rate[name] / rate["plain"] for name in names},
        "seconds": seconds,
        "rules_hold_in_sample": _rules_hold(check, model, catalog, rules),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name in names:
        print(f"{name:8s} {rate[name]:10,.0f} customers/s  x{rate[name] / rate['plain']:.2f}")
    print(
        f"fit {fit_s:.1f} s, cold-start state {cold_s:.2f} s ({cold_s / fit_s:.1%}); "
        f"compile {compile_first_s * 1000:.0f} ms first, {compile_s * 1000:.1f} ms cached"
    )
    print(f"figures written to {args.out}")
    return 0


def _rules_hold(recs: Any, model: Recommender[Any], catalog: Catalog, rules: Rules) -> bool:
    """The sample lists obey the category, price, availability and cap rules."""
    frame = recs.to_frame()
    view = catalog.aligned(frame["item_id"].to_numpy(dtype=object))
    per = pd.DataFrame({"u": frame["user_id"], "c": view.category})
    pinned = frame["reason"] == "promoted"
    plain = ~pinned.to_numpy()
    return bool(
        (view.category[plain] != "cat00").all()
        and (view.price[plain] >= 5.0).all()
        and (view.price[plain] <= 120.0).all()
        and view.available.all()
        and per.groupby(["u", "c"]).size().max() <= max(2, len(rules.pin))
    )


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small log (about 30 s)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=20_000, help="customers per path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "rules.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.users = min(args.users, 5_000)
    return args


if __name__ == "__main__":
    sys.exit(main())
