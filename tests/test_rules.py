"""Business rules: validation, compilation to per-item arrays, and their effect on lists."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorcast.catalog import Catalog
from tailorcast.data import Interactions
from tailorcast.errors import ConfigError
from tailorcast.models import ItemKNNRecommender, Recommender, make_model
from tailorcast.rules import (
    Rules,
    boost_scores,
    build_rules,
    cap_per_category,
    parse_boost,
    place_pins,
)

T0 = 1_700_000_000
DAY = 86_400
CATEGORIES = ["shoes", "bags", "hats"]


def shop(seed: int = 3, n_users: int = 60, n_items: int = 30) -> Interactions:
    """Random events; item iN is in category N % 3, costs N euros, i5 and i7 are sold out."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    n = 900
    events = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, n_users, n)],
            "item_id": [f"i{x}" for x in rng.choice(n_items, n, p=p / p.sum())],
            "event_type": rng.choice(["view", "cart", "purchase"], n),
            "timestamp": T0 + rng.integers(0, 30 * DAY, n),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{x}" for x in range(n_items)],
            "category": [CATEGORIES[x % 3] for x in range(n_items)],
            "price": [float(x) for x in range(n_items)],
            "available": [x not in (5, 7) for x in range(n_items)],
            "title": [f"Item number {x}" for x in range(n_items)],
        }
    )
    return Interactions.from_events(events, items=items)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return shop()


@pytest.fixture(scope="module")
def model(data: Interactions) -> Recommender[Any]:
    return ItemKNNRecommender(neighbors=20).fit(data)


def number(item: object) -> int:
    return int(str(item)[1:])


def listed(recs: Any) -> list[list[str]]:
    return [[x for x in row if x is not None] for row in recs.item_ids.tolist()]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_price": 10, "max_price": 5}, "min_price 10.0 is above max_price 5.0"),
        ({"boost": {"i1": 0}}, "boost factor of 'i1' must be a number > 0"),
        ({"boost": {"i1": float("inf")}}, "boost factor of 'i1'"),
        ({"max_per_category": 0}, "max_per_category"),
        ({"seen_event_types": ("bought",)}, "unknown event type(s) bought"),
        ({"min_price": float("nan")}, "min_price"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_rules_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid rules") as caught:
        build_rules(**fields)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_rules_round_trip_as_json() -> None:
    rules = Rules(include_categories=("shoes",), boost={"i1": 2.0}, pin=("i3",), min_price=1)
    assert Rules.model_validate_json(rules.model_dump_json()) == rules


def test_parse_boost() -> None:
    assert parse_boost(["a=1.5", " b = 2 "]) == {"a": 1.5, "b": 2.0}
    for bad in (["a"], ["=2"], ["a=x"]):
        with pytest.raises(ConfigError, match="boost"):
            parse_boost(bad)


# -- compiling ----------------------------------------------------------------------------------
def test_compile_builds_item_masks(model: Recommender[Any]) -> None:
    ids = model.item_ids_
    compiled = Rules(
        include_categories=("SHOES", "bags "),  # case and spaces do not matter
        exclude_categories=("bags",),
        min_price=3,
        max_price=20,
        exclude_items=("i9", "nope"),
    ).compile(model)
    assert compiled.allowed is not None
    allowed = {number(x) for x in ids[compiled.allowed]}
    assert allowed == {x for x in range(3, 21) if x % 3 == 0 and x != 9}
    whitelist = Rules(items=("i1", "i2", "i5", "ghost")).compile(model)
    assert whitelist.allowed is not None
    assert set(ids[whitelist.allowed]) == {"i1", "i2"}  # i5 is sold out
    everything = Rules(available_only=False).compile(model)
    assert everything.allowed is None and everything.factor is None


def test_compile_boost_pins_and_categories(model: Recommender[Any]) -> None:
    compiled = Rules(
        boost={"i4": 2.0, "ghost": 3.0},
        pin=("i8", "i5", "i2", "i8", "ghost"),
        max_per_category=2,
    ).compile(model)
    ids = model.item_ids_.tolist()
    assert compiled.factor is not None
    assert compiled.factor[ids.index("i4")] == 2.0 and (compiled.factor != 1).sum() == 1
    # Each pin once, in order; sold-out i5 and unknown IDs dropped.
    assert [ids[p] for p in compiled.pinned] == ["i8", "i2"]
    assert compiled.category_codes is not None
    codes = compiled.category_codes
    assert codes[ids.index("i0")] == codes[ids.index("i3")] != codes[ids.index("i1")]


def test_a_fresh_catalog_overrides_the_training_snapshot(model: Recommender[Any]) -> None:
    fresh = Catalog.from_frame(
        pd.DataFrame({"item_id": ["i5", "i1"], "available": ["yes", "false"], "price": [1.0, None]})
    )
    compiled = Rules(max_price=2).compile(model, fresh)
    assert compiled.allowed is not None
    allowed = set(model.item_ids_[compiled.allowed])
    # i5 is back in stock and cheap; i1 is sold out now; i0 keeps its snapshot price 0.
    assert allowed == {"i0", "i2", "i5"}


# -- vectorised helpers -------------------------------------------------------------------------
def test_cap_per_category_by_hand() -> None:
    codes = np.array([0, 0, 1, 1, -1, 0], dtype=np.int32)  # item 4 has no category
    idx = np.array([[0, 1, 5, 2, 4, 3], [2, 3, 4, 4, 0, -1]])
    keep = cap_per_category(idx, codes, 1)
    assert keep.tolist() == [
        [True, False, False, True, True, False],
        [True, False, True, True, True, False],
    ]
    forced = np.zeros_like(keep)
    forced[0, 1] = True  # a pinned item survives and still counts
    assert cap_per_category(idx, codes, 1, keep=forced)[0].tolist() == [
        True,
        True,
        False,
        True,
        True,
        False,
    ]


def test_place_pins_by_hand() -> None:
    idx = np.array([[3, 4, -1], [4, 3, 0]])
    scores = np.array([[0.9, 0.5, -np.inf], [0.7, 0.6, 0.1]], dtype=np.float32)
    eligible = np.array([[True, False], [True, True]])
    out, out_scores, pinned = place_pins(idx, scores, np.array([7, 8]), eligible)
    assert out.tolist() == [[7, 3, 4, -1, -1], [7, 8, 4, 3, 0]]
    assert out_scores[0, :3].tolist() == pytest.approx([0.9, 0.9, 0.5])
    assert pinned.tolist() == [
        [True, False, False, False, False],
        [True, True, False, False, False],
    ]


def test_boost_is_sign_aware() -> None:
    scores = np.array([[2.0, -2.0, 1.0]], dtype=np.float32)
    boost_scores(scores, np.array([2.0, 2.0, 0.5], dtype=np.float32))
    assert scores.tolist() == [[4.0, -1.0, 0.5]]


# -- effect on recommendations -------------------------------------------------------------------
def test_filters_hold_for_warm_and_cold_customers(
    model: Recommender[Any], data: Interactions
) -> None:
    users = [*data.user_ids[:20].tolist(), "ghost"]
    compiled = Rules(include_categories=("hats",), max_price=25, exclude_seen=True).compile(model)
    recs = model.recommend(users, k=5, filters=compiled)
    for row in listed(recs):
        assert row and all(number(x) % 3 == 2 and number(x) <= 25 for x in row)
    # Without a rule, sold-out items never appear either (available_only is the default).
    default = model.recommend(users, k=28, filters=Rules().compile(model))
    assert not {"i5", "i7"} & {x for row in listed(default) for x in row}


def test_pins_come_first_with_the_promoted_reason(
    model: Recommender[Any], data: Interactions
) -> None:
    users = data.user_ids[:15].tolist()
    compiled = Rules(pin=("i20", "i21"), exclude_seen=True).compile(model)
    recs = model.recommend([*users, "ghost"], k=6, filters=compiled)
    seen = data.seen(data.user_index(users), ["view", "favorite", "cart", "purchase"])
    for row, items in enumerate(listed(recs)):
        assert len(items) == 6 and len(set(items)) == 6
        already = set() if row == len(users) else set(data.item_ids[seen[row].indices])
        expected_pins = [p for p in ("i20", "i21") if p not in already]
        assert items[: len(expected_pins)] == expected_pins
        assert recs.reasons[row, : len(expected_pins)].tolist() == ["promoted"] * len(expected_pins)
        assert "promoted" not in recs.reasons[row, len(expected_pins) :].tolist()
        assert (np.diff(recs.scores[row]) <= 0).all()


def test_boost_lifts_an_item(model: Recommender[Any], data: Interactions) -> None:
    users = data.user_ids[:10].tolist()
    plain = model.recommend(users, k=10, exclude_seen=True)
    target = str(plain.item_ids[0, 9])
    boosted = model.recommend(
        users, k=10, filters=Rules(boost={target: 50.0}, exclude_seen=True).compile(model)
    )
    assert boosted.item_ids[0, 0] == target


def test_category_cap_refetches_rows_it_left_short() -> None:
    # 40 "shoes" are far more popular than 5 "bags" and 5 "hats": the first candidates are
    # all shoes, so a cap of 1 needs a deeper fetch than the first over-fetch.
    rows = []
    for u in range(30):
        for i in range(40):
            rows.append((f"u{u}", f"s{i}"))
        rows.append((f"u{u}", f"b{u % 5}"))
        rows.append((f"u{u}", f"h{u % 5}"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id"])
    events["event_type"] = "purchase"
    events["timestamp"] = T0
    ids = [f"s{i}" for i in range(40)] + [f"b{i}" for i in range(5)] + [f"h{i}" for i in range(5)]
    items = pd.DataFrame({"item_id": ids, "category": [x[0] for x in ids]})
    inter = Interactions.from_events(events, items=items)
    model = make_model("popularity").fit(inter)
    recs = model.recommend(
        ["ghost", "u1"],
        k=3,
        exclude_seen=False,
        filters=Rules(max_per_category=1).compile(model),
    )
    for row in listed(recs):
        assert len(row) == 3 and sorted(x[0] for x in row) == ["b", "h", "s"]
    capped = model.recommend(
        ["ghost"], k=5, exclude_seen=False, filters=Rules(max_per_category=1).compile(model)
    )
    assert len(listed(capped)[0]) == 3  # only three categories exist: padded, not looped on


def test_rules_in_a_batch_equal_one_by_one(model: Recommender[Any], data: Interactions) -> None:
    compiled = Rules(
        max_per_category=2, pin=("i3",), boost={"i11": 1.7}, exclude_categories=("bags",)
    ).compile(model)
    users = ["u3", "ghost", "u0", "u3", "u9", "u17"]
    batch = model.recommend(users, k=6, filters=compiled)
    for row, user in enumerate(users):
        single = model.recommend([user], k=6, filters=compiled)
        np.testing.assert_array_equal(single.item_ids[0], batch.item_ids[row])
        np.testing.assert_array_equal(single.reasons[0], batch.reasons[row])
    for row in listed(batch):
        cats = pd.Series([number(x) % 3 for x in row]).value_counts()
        assert cats.max() <= 2 and 1 not in cats.index  # 1 = bags


def test_seen_by_event_type(model: Recommender[Any], data: Interactions) -> None:
    users = data.user_ids[:25].tolist()
    idx = data.user_index(users)
    bought = data.seen(idx, ["purchase"])
    anything = data.seen(idx)
    compiled = Rules(seen_event_types=("purchase",)).compile(model)  # implies exclusion
    recs = model.recommend(users, k=20, filters=compiled)
    kept_viewed = 0
    for row, items in enumerate(listed(recs)):
        purchased = set(data.item_ids[bought[row].indices])
        assert not purchased & set(items)
        kept_viewed += len((set(data.item_ids[anything[row].indices]) - purchased) & set(items))
    assert kept_viewed > 0  # merely viewed items stay recommendable


def test_filters_from_another_model_are_refused(model: Recommender[Any]) -> None:
    other = make_model("popularity").fit(shop(seed=4, n_items=12))
    with pytest.raises(ConfigError, match="compiled for another model"):
        model.recommend(["u1"], k=3, filters=Rules(max_per_category=1).compile(other))
