"""Recommendation tables: shop IDs in and out, one batch, seen items, cold start, files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import ingest_demo_shop
from tailorcast.artifacts import load_model
from tailorcast.catalog import Catalog
from tailorcast.data import Interactions
from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.models import COLD_START_REASON, Recommender
from tailorcast.models.coldstart import SEGMENT_REASON
from tailorcast.privacy import Keys
from tailorcast.recommend import RECOMMENDATION_COLUMNS, recommend_for, similar_to, write_table
from tailorcast.rules import Rules
from tailorcast.store import Store, open_store
from tailorcast.training import train

SHOP_ID = r"^C\d{6}$"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    ingest_demo_shop(root)
    with Store.open(root / "store", read_only=True) as opened:
        train(opened, "itemknn")
    return root / "store"


@pytest.fixture
def opened(store_dir: Path) -> Iterator[tuple[Store, Keys]]:
    store, keys = open_store(store_dir, read_only=True)
    assert keys is not None
    with store:
        yield store, keys


@pytest.fixture(scope="module")
def model(store_dir: Path) -> Recommender[Any]:
    return load_model(store_dir)


def _seen_pairs(store: Store, keys: Keys, frame: pd.DataFrame) -> pd.Series:
    """Per frame row: did that (shop customer, item) pair have a training event?"""
    inter = Interactions.from_store(store)
    pseudonyms = keys.pseudonymizer().many(frame["user_id"].astype(str).tolist())
    users = inter.user_index(pseudonyms)
    items = inter.item_index(frame["item_id"].to_numpy(dtype=object))
    known = (users >= 0) & (items >= 0)
    seen = np.zeros(len(frame), dtype=bool)
    seen[known] = np.asarray(inter.matrix[users[known], items[known]]).ravel() > 0
    return pd.Series(seen, index=frame.index)


def test_all_customers_come_back_with_shop_ids_and_no_seen_items(
    opened: tuple[Store, Keys], model: Recommender[Any]
) -> None:
    store, keys = opened
    frame = recommend_for(store, model, k=5, keys=keys, rules=Rules(exclude_seen=True))
    assert list(frame.columns) == list(RECOMMENDATION_COLUMNS)
    assert frame["user_id"].str.fullmatch(SHOP_ID).all()
    # Exactly the customers of the model, re-identified: one list of 5 each.
    expected = set(store.reidentify(model.user_ids_.tolist(), keys))
    assert set(frame["user_id"]) == expected
    assert frame["user_id"].is_monotonic_increasing  # by shop ID, not by pseudonym
    assert (frame.groupby("user_id")["rank"].agg(list).map(lambda r: r == [1, 2, 3, 4, 5])).all()
    assert not _seen_pairs(store, keys, frame).any()
    assert frame["reason"].notna().all()
    assert (frame.groupby("user_id")["score"].diff().dropna() <= 0).all()


def test_include_seen_and_no_explain(opened: tuple[Store, Keys], model: Recommender[Any]) -> None:
    store, keys = opened
    frame = recommend_for(
        store, model, k=5, keys=keys, rules=Rules(exclude_seen=False), explain=False
    )
    assert _seen_pairs(store, keys, frame).any()  # item-kNN ranks a customer's items high
    assert frame["reason"].isna().all()
    assert frame["user_id"].str.fullmatch(SHOP_ID).all()


def test_one_batch_call_for_all_customers(
    opened: tuple[Store, Keys], model: Recommender[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, keys = opened
    calls: list[int] = []
    original = model.recommend

    def counting(user_ids: Any, k: int = 10, **kwargs: Any) -> Any:
        calls.append(len(user_ids))
        return original(user_ids, k, **kwargs)

    monkeypatch.setattr(model, "recommend", counting)
    frame = recommend_for(store, model, k=3, keys=keys)
    assert calls == [frame["user_id"].nunique()]


def test_asked_customers_known_and_unknown(
    opened: tuple[Store, Keys], model: Recommender[Any]
) -> None:
    store, keys = opened
    known = store.reidentify(model.user_ids_[:1].tolist(), keys)[0]
    assert known is not None
    frame = recommend_for(
        store, model, [" C999999 ", known, known], k=4, keys=keys, rules=Rules(exclude_seen=True)
    )
    assert list(pd.unique(frame["user_id"])) == ["C999999", known]  # trimmed, deduplicated
    cold = frame[frame["user_id"] == "C999999"]
    assert len(cold) == 4 and (cold["reason"] == COLD_START_REASON).all()
    warm = frame[frame["user_id"] == known]
    assert len(warm) == 4 and (warm["reason"] != COLD_START_REASON).any()
    assert not _seen_pairs(store, keys, warm).any()


def test_seen_items_by_default_only_where_customers_rebuy(
    opened: tuple[Store, Keys], model: Recommender[Any]
) -> None:
    store, keys = opened
    frame = recommend_for(store, model, k=10, keys=keys)
    seen = _seen_pairs(store, keys, frame)
    rebuyable = set(model.item_ids_[model.cold_start_.rebuyable])
    # The demo shop mixes groceries (rebought) with fashion and electronics (not).
    assert 0 < len(rebuyable) < model.n_items
    assert seen.any() and frame.loc[seen, "item_id"].isin(rebuyable).all()
    categories = set(model.item_categories_[model.cold_start_.rebuyable])
    assert "groceries" in categories and "electronics" not in categories


def test_rules_end_to_end_with_titles(opened: tuple[Store, Keys], model: Recommender[Any]) -> None:
    store, keys = opened
    catalog = Catalog.from_store(store)
    items = pd.DataFrame(
        {"category": catalog.category, "price": catalog.price, "available": catalog.available},
        index=catalog.item_ids,
    )
    sold_out = set(items.index[~items["available"]])
    assert sold_out  # the demo shop has a few
    customers = store.reidentify(model.user_ids_[:40].tolist(), keys)
    promoted = str(items.index[items["available"] & (items["category"] == "home")][0])
    rules = Rules(
        exclude_categories=("books",),
        max_price=150,
        pin=(promoted,),
        max_per_category=2,
        exclude_seen=True,
    )
    frame = recommend_for(store, model, customers, k=6, keys=keys, rules=rules)
    assert frame.groupby("user_id").size().eq(6).all()
    rows = items.loc[frame["item_id"]]
    assert not (rows["category"] == "books").any() and (rows["price"] <= 150).all()
    assert not set(frame["item_id"]) & sold_out
    per_category = frame.assign(category=rows["category"].to_numpy())
    assert per_category.groupby(["user_id", "category"]).size().max() <= 2
    firsts = frame[frame["rank"] == 1]
    unseen = ~_seen_pairs(store, keys, firsts.assign(item_id=promoted))
    assert (firsts.loc[unseen, "item_id"] == promoted).all() and unseen.any()
    assert (firsts.loc[~unseen, "item_id"] != promoted).all()  # seen: not pushed again
    assert (frame.loc[frame["item_id"] == promoted, "reason"] == "promoted").all()
    # Reasons name items by title, never by ID.
    personal = frame.loc[frame["reason"].str.startswith("because you"), "reason"]
    assert len(personal) and not personal.str.contains(r"P\d{5}").any()
    assert personal.map(lambda r: any(t in r for t in catalog.title)).all()
    # Sold-out items come back on request.
    everything = recommend_for(
        store, model, customers, k=80, keys=keys, rules=Rules(available_only=False)
    )
    assert set(everything["item_id"]) & sold_out


def test_new_customer_known_to_the_store_or_browsing(
    opened: tuple[Store, Keys], model: Recommender[Any]
) -> None:
    store, keys = opened
    quiet = store.con.sql(
        "SELECT user_id FROM users WHERE user_id NOT IN (SELECT user_id FROM events) "
        "ORDER BY user_id LIMIT 1"
    ).fetchall()[0][0]
    shop_id = store.reidentify([quiet], keys)[0]
    assert shop_id is not None
    frame = recommend_for(store, model, [shop_id, "C999999"], k=5, keys=keys)
    mine = frame[frame["user_id"] == shop_id]
    assert len(mine) == 5 and SEGMENT_REASON in set(mine["reason"])
    assert set(frame.loc[frame["user_id"] == "C999999", "reason"]) <= {COLD_START_REASON} | {
        r for r in frame["reason"] if r.startswith("trending in ")
    }
    viewed = str(model.item_ids_[3])
    title = Catalog.from_store(store).titles([viewed])[0]
    browsing = recommend_for(store, model, ["C999999"], k=5, keys=keys, session_items=[viewed])
    assert viewed not in set(browsing["item_id"])
    assert (browsing["reason"] == f"because you viewed {title}").any()


def test_keys_are_needed_for_a_pseudonymized_store(
    opened: tuple[Store, Keys], model: Recommender[Any]
) -> None:
    store, _ = opened
    with pytest.raises(ConfigError, match="keys are needed to write shop customer IDs"):
        recommend_for(store, model, k=3)
    with pytest.raises(ConfigError, match="keys are needed"):
        recommend_for(store, model, ["C000001"], k=3)


def test_similar_to(model: Recommender[Any]) -> None:
    item = str(model.item_ids_[0])
    frame = similar_to(model, item, k=4)
    assert list(frame.columns) == ["source_item_id", "item_id", "rank", "score", "reason"]
    assert len(frame) == 4 and (frame["source_item_id"] == item).all()
    assert item not in set(frame["item_id"])
    with pytest.raises(NotFoundError, match="unknown item 'NOPE'"):
        similar_to(model, "NOPE")


@pytest.mark.parametrize("name", ["recs.csv", "recs.parquet", "recs.json"])
def test_write_table_round_trips(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["C000001", "C000001"],
            "item_id": ["P1", "P2"],
            "rank": [1, 2],
            "score": np.array([0.5, 0.25], dtype=np.float32),
            "reason": ["because you viewed P3", None],
        }
    )
    path = write_table(frame, tmp_path / name)
    if name.endswith(".csv"):
        back = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    elif name.endswith(".parquet"):
        back = pd.read_parquet(path)
    else:
        back = pd.DataFrame(json.loads(path.read_text()))
    assert back["user_id"].tolist() == ["C000001", "C000001"]
    assert back["rank"].tolist() == [1, 2]
    assert np.allclose(back["score"].astype(float), [0.5, 0.25])
    assert back["reason"].iloc[0] == "because you viewed P3" and pd.isna(back["reason"].iloc[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_write_table_refuses_unknown_formats_and_missing_folders(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(UserError, match=r"unknown extension '\.xlsx'"):
        write_table(frame, tmp_path / "out.xlsx")
    with pytest.raises(UserError, match="does not exist"):
        write_table(frame, tmp_path / "missing" / "out.csv")
    assert list(tmp_path.iterdir()) == []
