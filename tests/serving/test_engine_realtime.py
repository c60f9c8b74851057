"""Real time: new events change the next recommendations, new products are recommendable,
writes are validated like ingest and reach the store exactly once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from engine_fixtures import catalog, copy_store, customers, demo_store, keys_of, stored_event_ids

from tailorcast.errors import DataError, NoModelError, NotFoundError
from tailorcast.rules import Rules
from tailorcast.serving.engine import ServingEngine
from tailorcast.store import Store

FAMILIES = ["als", "itemknn", "ease", "content", "bpr", "popularity"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = demo_store(tmp_path_factory.mktemp("base"), model=None)
    out: dict[str, Path] = {"none": base}
    for family in FAMILIES:
        from engine_fixtures import PARAMS

        from tailorcast.training import train

        target = copy_store(base, tmp_path_factory.mktemp(family) / "store")
        with Store.open(target, read_only=True) as opened:
            train(opened, family, params=PARAMS[family])
        out[family] = target
    return out


def _engine(stores: dict[str, Path], family: str, tmp_path: Path) -> ServingEngine:
    store = copy_store(stores[family], tmp_path / "store")
    return ServingEngine(store, keys=keys_of(store), background=False)


def _events(
    user: str, items: list[str], etype: str = "purchase", prefix: str = "e"
) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "user_id": user,
            "item_id": item,
            "event_type": etype,
            "timestamp": now - 60 + i,
            "event_id": f"{prefix}-{user}-{i}",
        }
        for i, item in enumerate(items)
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_new_events_change_the_next_recommendations(
    stores: dict[str, Path], family: str, tmp_path: Path
) -> None:
    engine = _engine(stores, family, tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[0]  # type: ignore[arg-type]
        fresh = Rules(exclude_seen=True)
        before = [r["item_id"] for r in engine.recommend(user, 10, rules=fresh)]
        # Buy what they were about to be recommended, plus a few more: the new history must
        # show at once (bought items leave the list; the list is recomputed, not cached).
        bought = before[:3]
        report = engine.add_events(_events(user, bought))
        assert report["accepted"] == 3
        after = engine.recommend(user, 10, rules=fresh)
        after_ids = [r["item_id"] for r in after]
        assert not set(bought) & set(after_ids), family
        assert after_ids != before
        assert all(r["reason"] for r in after)
        assert engine.model_info["online_updates"] in ("fold-in", "session re-ranking")
    finally:
        engine.close()


def test_fold_in_moves_als_towards_the_new_taste(stores: dict[str, Path], tmp_path: Path) -> None:
    """A customer who suddenly buys one category gets more of that category."""
    engine = _engine(stores, "als", tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[1]  # type: ignore[arg-type]
        items = catalog(engine.store_dir)
        by_cat: dict[str, list[str]] = {}
        for row in items:
            by_cat.setdefault(str(row["category"]), []).append(str(row["item_id"]))
        before = engine.recommend(user, 10)
        share = {c: sum(r["item_id"] in ids for r in before) for c, ids in by_cat.items()}
        target = min(share, key=lambda c: (share[c], c))
        engine.add_events(_events(user, by_cat[target][:6]))
        after = engine.recommend(user, 10)
        assert sum(r["item_id"] in by_cat[target] for r in after) > share[target]
        assert engine.model_info["online_updates"] == "fold-in"
    finally:
        engine.close()


def test_new_product_recommendable_by_content(stores: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(stores, "itemknn", tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[0]  # type: ignore[arg-type]
        items = {str(r["item_id"]): r for r in catalog(engine.store_dir)}
        liked = [r["item_id"] for r in engine.recommend(user, 3)]
        model = next(iter(items.values()))
        engine.add_events(_events(user, liked))
        twin = items[liked[0]]
        assert (
            engine.upsert_items(
                [
                    {
                        "item_id": "NEW-1",
                        "category": twin["category"],
                        "title": twin["title"],
                        "price": twin["price"],
                    }
                ]
            )
            == 1
        )
        recs = engine.recommend(user, 10)
        new = [r for r in recs if r["item_id"] == "NEW-1"]
        assert new and new[0]["reason"].startswith("new in the shop, like")
        similar = engine.similar("NEW-1", 5)
        assert similar[0]["item_id"] == liked[0] or similar[0]["score"] >= 0.99
        assert "NEW-1" in [r["item_id"] for r in engine.similar(liked[0], 10)]
        # Unavailable products are never recommended, new or trained.
        assert engine.delete_item("NEW-1") and engine.delete_item(str(model["item_id"]))
        ids = [r["item_id"] for r in engine.recommend(user, 20)]
        assert "NEW-1" not in ids and model["item_id"] not in ids
        assert not engine.delete_item("no-such-item")
        with pytest.raises(NotFoundError, match="no-such-item"):
            engine.similar("no-such-item")
        with pytest.raises(DataError, match="price"):
            engine.upsert_items([{"item_id": "X", "price": -1}])
    finally:
        engine.close()


def test_validation_duplicates_and_exactly_once(stores: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(stores, "als", tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[0]  # type: ignore[arg-type]
        rows = _events(user, ["P00001", "P00002", "P00003"], etype="view")
        rows += [
            {"user_id": user, "item_id": "P00004", "event_type": "teleport", "timestamp": 1.7e9},
            {"user_id": "", "item_id": "P00004", "event_type": "view", "timestamp": 1.7e9},
            {"user_id": user, "item_id": "P00004", "event_type": "view", "timestamp": "soon"},
            dict(rows[0]),  # same event_id again in the batch
        ]
        report = engine.add_events(rows)
        assert (
            report["rows_read"],
            report["accepted"],
            report["rejected"],
            report["duplicates"],
        ) == (7, 3, 3, 1)
        assert report["rejected_by_reason"] == {
            "missing user_id": 1,
            "unknown event type": 1,
            "unparseable timestamp": 1,
        }
        assert [r["index"] for r in report["rejects"]] == [3, 4, 5]
        again = engine.add_events(rows[:3])  # a client retry
        assert again["duplicates"] == 3 and again["accepted"] == 0
        assert engine.flush(timeout_s=30)
        ids = stored_event_ids(engine.store_dir)
        assert sorted(i for i in ids if i.startswith("e-")) == sorted(
            r["event_id"] for r in rows[:3]
        )
        # The engine restarted on the same store still knows them (from the store now).
        engine.close()
        engine = ServingEngine(engine.store_dir, keys=engine.keys, background=False)
        assert engine.add_events(rows[:3])["duplicates"] == 3
    finally:
        engine.close()


def test_erasure(stores: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(stores, "als", tmp_path)
    try:
        user = customers(engine.store_dir, engine.keys)[0]  # type: ignore[arg-type]
        cold = engine.recommend("someone-new", 5)
        assert engine.delete_customer(user)
        assert engine.recommend(user, 5) == cold  # no trace of their history
        assert engine.flush(timeout_s=30)
        pseudonym = engine.keys.pseudonymizer().one(user)  # type: ignore[union-attr]
        with Store.open(engine.store_dir, read_only=True) as opened:
            left = opened.con.execute(
                "SELECT (SELECT count(*) FROM events WHERE user_id = $p) + "
                "(SELECT count(*) FROM users WHERE user_id = $p) + "
                "(SELECT count(*) FROM identities WHERE pseudonym = $p)",
                {"p": pseudonym},
            ).fetchall()[0][0]
            erased = opened.con.execute("SELECT count(*) FROM erasures").fetchall()[0][0]
        assert left == 0 and erased == 1
        # A restarted server keeps the customer out of the (older) model.
        engine.close()
        engine = ServingEngine(engine.store_dir, keys=engine.keys, background=False)
        assert engine.recommend(user, 5) == cold
    finally:
        engine.close()


def test_no_model_then_retrain(stores: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(stores, "none", tmp_path)
    try:
        assert not engine.ready
        with pytest.raises(NoModelError, match="tailorcast train"):
            engine.recommend("C000001")
        job = engine.retrain(model="popularity", budget_s=5)
        record = engine.retrainer.wait(job, 120)
        assert record["state"] == "done", record
        assert engine.ready and engine.model_info["version"] == record["version"]
        assert len(engine.recommend("C000001", 3)) == 3
    finally:
        engine.close()


def test_events_posted_to_another_worker_count_here(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """``--workers N``: each process tails the others' spool segments."""
    store = copy_store(stores["als"], tmp_path / "store")
    keys = keys_of(store)
    posting = ServingEngine(store, keys=keys, background=False)
    serving = ServingEngine(store, keys=keys, merge_interval_s=0.2)
    try:
        user = customers(store, keys)[2]
        fresh = Rules(exclude_seen=True)
        before = [r["item_id"] for r in serving.recommend(user, 10, rules=fresh)]
        posting.add_events(_events(user, before[:4], prefix="w"))
        deadline = time.monotonic() + 10
        after = before
        while time.monotonic() < deadline and after == before:
            time.sleep(0.05)
            after = [r["item_id"] for r in serving.recommend(user, 10, rules=fresh)]
        assert not set(before[:4]) & set(after)
    finally:
        serving.close()
        posting.close()
