"""Precomputed candidates: answers equal full scoring, and events, catalog updates and model
swaps never let a stale answer through."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from engine_fixtures import PARAMS, catalog, copy_store, customers, demo_store, keys_of

from tailorcast.artifacts import latest_version
from tailorcast.rules import Rules
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.online import OnlineModel
from tailorcast.store import Store
from tailorcast.training import train

FAMILIES = ["als", "itemknn", "bpr"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = demo_store(tmp_path_factory.mktemp("base"), model=None)
    out: dict[str, Path] = {}
    for family in FAMILIES:
        target = copy_store(base, tmp_path_factory.mktemp(family) / "store")
        with Store.open(target, read_only=True) as opened:
            train(opened, family, params=PARAMS[family])
        out[family] = target
    return out


def _engine(stores: dict[str, Path], family: str, tmp_path: Path) -> ServingEngine:
    store = copy_store(stores[family], tmp_path / "store")
    return ServingEngine(store, keys=keys_of(store), background=False)


def _full(engine: ServingEngine, user: str, k: int, **kwargs: Any) -> list[dict[str, Any]]:
    """The same request answered by full scoring (the table set aside for the call)."""
    state = engine._current()
    table, state.candidates = state.candidates, None
    try:
        return engine.recommend(user, k, **kwargs)
    finally:
        state.candidates = table


def _from_table(engine: ServingEngine, user: str, k: int, rules: Rules | None = None) -> bool:
    """Whether the table (not full scoring) answers this request."""
    state = engine._current()
    target, overlay = engine._target(user, state)
    if overlay is not None:
        return False
    filters = engine.catalog.compiled(state, rules)
    return state.cached(target, k, filters, True) is not None


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [(r["item_id"], r["rank"], r["reason"]) for r in a] == [
        (r["item_id"], r["rank"], r["reason"]) for r in b
    ]
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_table_answers_equal_full_scoring(
    stores: dict[str, Path], family: str, tmp_path: Path
) -> None:
    engine = _engine(stores, family, tmp_path)
    try:
        assert engine._current().candidates is not None  # built before the engine serves
        known = customers(engine.store_dir, engine.keys, n=40)  # type: ignore[arg-type]
        users = [*known, "never-seen-customer"]
        products = catalog(engine.store_dir)
        category = str(products[0]["category"])
        prices = sorted(float(p["price"]) for p in products if p["price"] == p["price"])
        some = tuple(str(p["item_id"]) for p in products[::3])
        cases: list[Rules | None] = [
            None,
            Rules(exclude_categories=(category,)),
            Rules(include_categories=(category,)),
            Rules(min_price=prices[len(prices) // 2]),
            Rules(items=some),
            Rules(exclude_items=some[:5]),
            Rules(max_per_category=2),  # changes the order: full scoring
            Rules(exclude_seen=True),  # another seen rule: full scoring
        ]
        hits = [0] * len(cases)
        for user in users:
            for n, rules in enumerate(cases):
                for k in (1, 10, 20, 30):
                    for explain in (True, False):
                        got = engine.recommend(user, k, rules=rules, explain=explain)
                        _same(got, _full(engine, user, k, rules=rules, explain=explain))
                hits[n] += _from_table(engine, user, 10, rules)
        assert hits[0] == len(users)  # the default request: always the table
        assert sum(hits[1:6]) >= len(users)  # filters too, unless they exhaust the candidates
        assert hits[6] == hits[7] == 0
        assert not _from_table(engine, users[0], 10, Rules(max_per_category=2))
    finally:
        engine.close()


def test_events_catalog_updates_and_swaps_invalidate(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    engine = _engine(stores, "als", tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[0]  # type: ignore[arg-type]
        before = engine.recommend(user, 10)
        assert _from_table(engine, user, 10)

        # A catalog update counts at once: an unavailable product leaves the list (still from
        # the table, which is filtered per request), and comes back when available again.
        top = before[0]["item_id"]
        engine.upsert_items([{"item_id": top, "available": False}])
        hidden = engine.recommend(user, 10)
        assert top not in [r["item_id"] for r in hidden]
        _same(hidden, _full(engine, user, 10))
        engine.upsert_items([{"item_id": top, "available": True}])
        _same(engine.recommend(user, 10), before)

        # An event: the customer's next answer is full scoring with the event folded in.
        bought = [r["item_id"] for r in before[:3]]
        now = time.time()
        events = [
            {"user_id": user, "item_id": item, "event_type": "purchase", "timestamp": now - 9 + i}
            for i, item in enumerate(bought)
        ]
        assert engine.add_events(events)["accepted"] == 3
        assert not _from_table(engine, user, 10)
        after = engine.recommend(user, 10)
        assert [r["item_id"] for r in after] != [r["item_id"] for r in before]
        _same(after, _full(engine, user, 10))

        # A new model version: served at once by full scoring, its own table built meanwhile.
        with Store.open(engine.store_dir, read_only=True) as opened:
            train(opened, "als", params={**PARAMS["als"], "factors": 8})
        old = engine._current()
        version = latest_version(engine.store_dir)
        assert version is not None and version != old.version
        engine.swap(version)
        state: OnlineModel = engine._current()
        assert state.version == version
        assert state.candidates is None or state.candidates.version == version
        other = customers(engine.store_dir, engine.keys)[1]  # type: ignore[arg-type]
        _same(engine.recommend(other, 10), _full(engine, other, 10))
        deadline = time.monotonic() + 60
        while state.candidates is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.candidates is not None and state.candidates.version == version
        assert _from_table(engine, other, 10)
        _same(engine.recommend(other, 10), _full(engine, other, 10))
    finally:
        engine.close()
