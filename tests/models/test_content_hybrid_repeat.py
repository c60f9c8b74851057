"""Known answers for the content, hybrid and repeat-purchase models."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / implicit load

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tailorcast.data import Interactions, InteractionsConfig
from tailorcast.errors import ConfigError
from tailorcast.models import (
    COLD_START_REASON,
    ContentConfig,
    ContentRecommender,
    HybridRecommender,
    Recommender,
    RepeatRecommender,
    allows_repurchase,
    repeat_share,
)
from tailorcast.models.content import item_vectors
from tailorcast.models.hybrid import _simplex_grid, _standardise
from tailorcast.models.repeat import _due_probability, _estimate_shape

T0 = datetime(2026, 1, 1)


def view(
    rows: list[tuple[str, str, str, float]],
    items: pd.DataFrame | None = None,
    as_of: datetime | None = None,
) -> Interactions:
    """Events (customer, item, event type, day after T0) as a training view."""
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "day"])
    events["timestamp"] = [T0 + timedelta(days=float(d)) for d in events.pop("day")]
    return Interactions.from_events(events, items=items, config=InteractionsConfig(as_of=as_of))


def top(recs: Any, row: int = 0) -> list[str]:
    return [x for x in recs.item_ids[row].tolist() if x is not None]


# -- content --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tea_shop() -> Interactions:
    """Two customers with tea / tool histories; t-new and h-new have no events at all."""
    items = pd.DataFrame(
        {
            "item_id": ["t1", "t2", "t3", "h1", "h2", "h3", "t-new", "h-new"],
            "category": ["tea", "tea", "tea", "tools", "tools", "tools", "tea", "tools"],
            "title": [
                "organic green tea loose leaf",
                "black tea breakfast blend",
                "herbal chamomile infusion",
                "steel claw hammer",
                "cordless power drill",
                "screwdriver set steel",
                "organic green tea matcha",
                "steel hammer heavy",
            ],
            "price": [6.0, 5.0, 4.0, 25.0, 90.0, 15.0, 7.0, 30.0],
        }
    )
    rows = [
        ("alice", "t1", "purchase", 1),
        ("alice", "t2", "view", 2),
        ("bob", "h1", "purchase", 1),
        ("bob", "h2", "view", 3),
        # Popular items of the other department, so popularity alone would mislead.
        *((f"c{u}", "h3", "purchase", 2) for u in range(6)),
        *((f"d{u}", "t3", "purchase", 2) for u in range(6)),
    ]
    return view(rows, items)


def test_content_recommends_items_sharing_text_and_category(tea_shop: Interactions) -> None:
    model = ContentRecommender().fit(tea_shop)
    recs = model.recommend(["alice", "bob"], k=3)
    # The new matcha shares "organic green tea" and the category with alice's purchase.
    assert top(recs, 0)[0] == "t-new"
    assert set(top(recs, 0)[:2]) == {"t-new", "t3"}
    assert top(recs, 1)[0] == "h-new"  # "steel hammer", tools
    assert set(top(recs, 1)[:2]) == {"h-new", "h3"}
    assert recs.reasons[0, 0] == (  # titles, not IDs
        "because you bought organic green tea loose leaf and viewed black tea breakfast blend"
    )
    assert recs.reasons[1, 0].startswith("because you bought steel claw hammer")
    # Never-touched items score by the profile like all others (cosines in [0, 1]).
    assert 0 < recs.scores[0, 0] <= 1


def test_new_item_without_events_is_recommended_by_content(tea_shop: Interactions) -> None:
    assert (
        tea_shop.seen(np.arange(tea_shop.n_users)).getnnz(axis=0)[tea_shop.item_index(["t-new"])[0]]
        == 0
    )
    model = ContentRecommender().fit(tea_shop)
    recs = model.recommend(["alice"], k=1, items=["t-new", "t3", "h3", "h-new"])
    assert top(recs) == ["t-new"]
    sims = model.similar_items(["t1"], k=2)
    assert top(sims)[0] == "t-new"
    assert sims.reasons[0, 0] == "similar to organic green tea loose leaf"


def test_item_vectors_blocks() -> None:
    items = pd.DataFrame(
        {
            "category": ["a", "a", "b", None],
            "brand": ["Kite & Kin", "Kite & Kin", "Other", None],
            "price": [1.0, 1.0, 1000.0, np.nan],
        },
        index=pd.Index(["x", "y", "z", "w"], name="item_id"),
    )
    vectors, names = item_vectors(items, ContentConfig(text_weight=0.0))
    assert "brand=Kite & Kin" in names and "category=a" in names
    assert names[-2:] == ["price_cos", "price_sin"]
    gram = (vectors @ vectors.T).toarray()
    np.testing.assert_allclose(np.diag(gram)[:3], 1.0, rtol=1e-6)
    np.testing.assert_allclose(gram[0, 1], 1.0, rtol=1e-6)  # same everything
    assert gram[0, 2] == pytest.approx(0.0, abs=1e-7)  # other category, brand, price extreme
    assert vectors[3].nnz == 0  # nothing known: a zero vector, never a NaN
    # Price only: cos of the angle between price percentiles (cheapest vs dearest: 0).
    price_only = ContentConfig(text_weight=0.0, attribute_weight=0.0)
    pv, _ = item_vectors(items, price_only)
    assert float((pv[0] @ pv[2].T).toarray()[0, 0]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ConfigError, match="all 0"):
        item_vectors(items, ContentConfig(text_weight=0, attribute_weight=0, price_weight=0))
    with pytest.raises(ConfigError, match="empty column name"):
        item_vectors(items, ContentConfig(text_columns="title++tags"))


def test_content_without_attributes_falls_back_to_popularity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [("u1", "a", "purchase", 1), ("u2", "b", "view", 1), ("u3", "b", "view", 2)]
    rows += [("u4", "c", "view", 1), ("u5", "c", "view", 1), ("u6", "c", "view", 1)]
    inter = view(rows)  # no items frame at all
    with caplog.at_level(logging.WARNING, logger="tailorcast.models.content"):
        model = ContentRecommender().fit(inter)
    assert "no usable item attributes" in caplog.text
    assert model.uses_identity
    recs = model.recommend(["u1"], k=2)
    assert top(recs) == ["c", "b"]  # popularity order
    assert recs.reasons[0].tolist() == [COLD_START_REASON] * 2
    # Unfiltered, the customer's own item is the only one resembling their history.
    assert top(model.recommend(["u1"], k=1, exclude_seen=False)) == ["a"]


# -- hybrid ---------------------------------------------------------------------------------------
def pairs_shop(n: int = 30) -> Interactions:
    """Customer p buys the two items of pair p and nothing else: no item is shared, so
    collaborative filtering and popularity cannot find the second item; the pair shares a
    title word and a category, so content can. Item ``pNN-new`` (no events) matches too."""
    rows, titles, cats, ids = [], [], [], []
    for p in range(n):
        cat = ["shoes", "bags", "hats"][p % 3]
        for side, word in (("a", "red"), ("b", "blue")):
            item = f"p{p:02d}{side}"
            rows.append((f"u{p:02d}", item, "purchase", 1 + p % 5 + (side == "b")))
            ids.append(item)
            titles.append(f"{word} zq{p:02d}x {cat}")
            cats.append(cat)
    ids.append("p00-new")
    titles.append("green zq00x shoes")
    cats.append("shoes")
    items = pd.DataFrame({"item_id": ids, "title": titles, "category": cats})
    return view(rows, items)


def blocks_shop(seed: int = 0) -> Interactions:
    """Two groups of customers, each choosing among its own 8 items (no item attributes):
    collaborative filtering finds the group, content knows nothing."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(40):
        group = u % 2
        for i in rng.choice(8, size=5, replace=False):
            rows.append((f"u{u:02d}", f"g{group}i{i}", "purchase", float(rng.integers(1, 20))))
    return view(rows)


def test_hybrid_weights_favour_content_when_cf_is_useless() -> None:
    model = HybridRecommender(component_params={"ease": {"regularization": 1.0}})
    model.fit(pairs_shop())
    blend = model.blend_
    assert list(blend) == ["ease", "content", "popularity"]
    assert blend["content"] == max(blend.values()) and blend["content"] >= 0.9
    assert sum(blend.values()) == pytest.approx(1.0)
    assert model.validation_ndcg_ > 0.9  # the held-out partner comes first
    ease, content, popularity = model.component_ndcg_
    assert content > 0.9 and ease < 0.3 and popularity < 0.3
    # The new item of the same pair reaches its customer, explained by content.
    recs = model.recommend(["u00"], k=1)
    assert top(recs) == ["p00-new"]
    assert recs.reasons[0, 0].startswith("because you bought red zq00x")  # p00's title


def test_hybrid_weights_favour_cf_when_content_is_useless() -> None:
    model = HybridRecommender(components="cf+content+popularity", weight_step=0.25)
    model.set_params(component_params={"ease": {"regularization": 5.0}})
    model.fit(blocks_shop())
    blend = model.blend_
    assert blend["ease"] == max(blend.values()) and blend["ease"] >= 0.5
    assert blend["content"] == 0.0
    assert model.components_["content"].uses_identity  # type: ignore[attr-defined]
    # Recommendations stay inside the customer's group.
    recs = model.recommend(["u00", "u01"], k=3)
    assert all(x.startswith("g0") for x in top(recs, 0))
    assert all(x.startswith("g1") for x in top(recs, 1))


def test_hybrid_without_validation_data_blends_equally() -> None:
    rows = [(f"u{u}", f"i{u % 4}", "purchase", 1) for u in range(12)]  # 1 item per customer
    model = HybridRecommender(components="itemknn+popularity").fit(view(rows))
    assert model.blend_ == {"itemknn": 0.5, "popularity": 0.5}
    assert np.isnan(model.validation_ndcg_)


def test_hybrid_saves_components_in_one_state_file(tmp_path: Path) -> None:
    model = HybridRecommender(components="itemknn+content").fit(pairs_shop(12))
    folder = model.save(tmp_path / "hybrid")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "state.npz"]
    params = json.loads((folder / "config.json").read_text())["params"]
    assert params["components"] == "itemknn+content"
    with np.load(folder / "state.npz", allow_pickle=False) as npz:
        assert "content.vector_data" in npz.files and "itemknn.similarity_data" in npz.files
    loaded = Recommender.load(folder)
    assert isinstance(loaded, HybridRecommender)
    assert loaded.blend_ == model.blend_
    assert list(loaded.components_) == ["itemknn", "content"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"components": "ease+nope"}, "unknown model 'nope'"),
        ({"components": "ease+hybrid"}, "cannot contain a hybrid"),
        ({"components": "ease+ease"}, "names a model twice"),
        ({"components": "ease+"}, "joined by"),
        ({"weight_step": 0.3}, "whole number"),
        ({"weight_step": 0.001}, "use a larger step"),
        ({"component_params": {"als": {"factors": 2}}}, "not a component"),
        ({"component_params": {"content": {"bogus": 1}}}, "no parameter 'bogus'"),
        ({"component_params": {"content": {"price_weight": -1}}}, "price_weight"),
    ],
)
def test_hybrid_refuses_bad_configs(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HybridRecommender(**params).fit(pairs_shop(6))


def test_simplex_grid_and_standardise() -> None:
    grid = _simplex_grid(3, 0.1)
    assert grid.shape == (66, 3)  # C(12, 2)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all() and len({tuple(r) for r in grid.tolist()}) == 66
    assert grid[0].tolist() == [1.0, 0.0, 0.0]
    z = _standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert z[1].tolist() == [0.0, 0.0, 0.0]


# -- repeat ---------------------------------------------------------------------------------------
AS_OF = T0 + timedelta(days=70)


def rebuy_shop(overdue_days: float = 0.0) -> Interactions:
    """``me`` buys milk every 7 days (last 7 days before as_of, plus ``overdue_days``) and a
    lamp once, 60 days before; other customers rebuy milk and buy coffee in the same
    category."""
    rows = [("me", "milk", "purchase", d - overdue_days) for d in (35, 42, 49, 56, 63)]
    rows.append(("me", "lamp", "purchase", 10))
    rows.append(("me", "lamp", "view", 9))
    for u in range(4):
        rows += [(f"o{u}", "milk", "purchase", d + u) for d in (20, 27, 34)]
        rows += [(f"o{u}", "coffee", "purchase", 30 + u)]
        rows += [(f"o{u}", "lamp", "purchase", 5 + u)]
    rows += [(f"v{u}", "sofa", "view", 60) for u in range(8)]  # the most popular item
    items = pd.DataFrame(
        {
            "item_id": ["milk", "coffee", "lamp", "sofa"],
            "category": ["dairy", "dairy", "home", "home"],
        }
    )
    return view(rows, items, as_of=AS_OF)


def test_repeat_ranks_a_regular_due_item_above_an_old_one_off() -> None:
    model = RepeatRecommender(horizon_days=7).fit(rebuy_shop())
    recs = model.recommend(["me"], k=4, exclude_seen=False)
    ranked = top(recs)
    assert ranked[0] == "milk" and ranked.index("milk") < ranked.index("lamp")
    milk_score, lamp_score = recs.scores[0, [0, ranked.index("lamp")]]
    assert milk_score > 0.5 > 0.05 > lamp_score
    reasons = dict(zip(ranked, recs.reasons[0].tolist(), strict=True))
    assert reasons["milk"] == "you usually rebuy milk every ~7 days"
    assert reasons["lamp"] == (
        "you bought lamp 60 days ago; customers usually rebuy it after ~7 days"
    )
    # Dairy is due: coffee, which others buy, is the likely other item of this restock.
    assert reasons["coffee"].startswith("because you restock dairy")
    plan = model.next_purchases(["me", "nobody"])
    assert plan["item_id"].tolist() == ["milk", "lamp"]
    milk = plan.iloc[0]
    assert milk["purchases"] == 5 and milk["typical_gap_days"] == pytest.approx(7.0)
    assert milk["expected_next"] == pd.Timestamp(AS_OF)  # 63 + 7 days
    # The same rhythm long overdue: the customer has probably stopped.
    late = RepeatRecommender(horizon_days=7).fit(rebuy_shop(overdue_days=30))
    late_milk = late.recommend(["me"], k=1, items=["milk"], exclude_seen=False)
    assert late_milk.scores[0, 0] < 0.2 * recs.scores[0, 0]


def test_repeat_suggests_other_items_of_a_restocked_category() -> None:
    model = RepeatRecommender(horizon_days=14).fit(rebuy_shop())
    recs = model.recommend(["me"], k=2, exclude_seen=True)  # coffee and sofa remain
    assert top(recs) == ["coffee", "sofa"]
    assert recs.scores[0, 0] > 0 and recs.scores[0, 1] == 0
    assert recs.reasons[0, 0] == "because you restock dairy about every 7 days (last: milk)"
    assert recs.reasons[0, 1] == COLD_START_REASON


def test_repeat_share_groceries_versus_fashion() -> None:
    grocery = [
        (f"u{u}", f"g{i}", "purchase", 7 * week + u % 3)
        for u in range(10)
        for i in range(2)
        for week in range(4)
    ]
    grocery += [("u0", "g0", "purchase", 0.1)]  # the same day again: still one occasion
    fashion = [(f"u{u}", f"f{u}-{i}", "purchase", 10 * i) for u in range(10) for i in range(4)]
    fashion += [(f"u{u}", f"f{u}-0", "view", 31) for u in range(10)]  # views are not buying
    groceries, clothes = view(grocery), view(fashion)
    assert repeat_share(groceries) == pytest.approx(0.75)  # 3 of every 4 occasions rebuy
    assert repeat_share(clothes) == 0.0
    assert allows_repurchase(groceries) and not allows_repurchase(clothes)
    assert not allows_repurchase(groceries, threshold=0.8)
    # exclude_seen="auto" follows the data; True / False override it.
    grocer = RepeatRecommender().fit(groceries)
    assert grocer.repeat_share_ == pytest.approx(0.75) and grocer.allows_repurchase_
    assert set(top(grocer.recommend(["u1"], k=2, exclude_seen="auto"))) == {"g0", "g1"}
    assert not {"g0", "g1"} & set(top(grocer.recommend(["u1"], k=2, exclude_seen=True)))
    tailor = RepeatRecommender().fit(clothes)
    assert not tailor.allows_repurchase_
    assert not {f"f1-{i}" for i in range(4)} & set(
        top(tailor.recommend(["u1"], k=40, exclude_seen="auto"))
    )
    with pytest.raises(ConfigError, match="'auto'"):
        grocer.recommend(["u1"], exclude_seen="sometimes")  # type: ignore[arg-type]


def test_due_probability_matches_the_gamma_distribution() -> None:
    since, gap, horizon, shape = np.array([3.0, 10.0]), np.array([7.0, 7.0]), 5.0, 3.0
    dist = stats.gamma(shape, scale=7.0 / stats.gamma(shape).median())
    certain = _due_probability(since, gap, np.ones(2), shape, horizon)
    expected = (dist.sf(since) - dist.sf(since + horizon)) / dist.sf(since)
    np.testing.assert_allclose(certain, expected, rtol=1e-9)
    # A customer who rebuys with chance q: the no-show so far lowers it (Bayes).
    q = 0.4
    mixed = _due_probability(since, gap, np.full(2, q), shape, horizon)
    alive = dist.sf(since)
    np.testing.assert_allclose(mixed, q * alive * expected / ((1 - q) + q * alive), rtol=1e-9)


def test_gap_shape_is_estimated_from_repeated_gaps() -> None:
    rng = np.random.default_rng(3)
    n_pairs, per_pair, shape = 400, 6, 6.0
    scales = rng.uniform(2.0, 20.0, n_pairs)  # every customer has their own rhythm
    gaps = rng.gamma(shape, np.repeat(scales, per_pair))
    pair = np.repeat(np.arange(n_pairs), per_pair)
    n_own = np.full(n_pairs, per_pair)
    assert _estimate_shape(np.log(gaps), pair, n_own) == pytest.approx(shape, rel=0.15)
    assert _estimate_shape(np.zeros(0), np.zeros(0, np.int64), np.zeros(3, np.int64)) == 2.0
