"""Cold start (attributes, session, trending, new items) and the data-driven repurchase default."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorcast.data import Interactions
from tailorcast.models import (
    COLD_START_REASON,
    EASERecommender,
    ItemKNNRecommender,
    Recommender,
    make_model,
)
from tailorcast.models.coldstart import SEGMENT_REASON
from tailorcast.models.repeat import repeat_share

T0 = 1_700_000_000
DAY = 86_400


def top(recs: Any, row: int = 0) -> list[str]:
    return [x for x in recs.item_ids[row].tolist() if x is not None]


# -- customers like you ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cities() -> Interactions:
    """Berlin customers buy b-items, Paris customers p-items; c0 is the bestseller of both;
    "nobody" and "newbie" are customers without events."""
    rows = []
    rng = np.random.default_rng(0)
    for u in range(40):
        city = "Berlin" if u % 2 else "Paris"
        prefix = "b" if city == "Berlin" else "p"
        for i in rng.choice(4, size=2, replace=False):
            rows.append((f"u{u}", f"{prefix}{i}", "purchase", T0 + int(rng.integers(0, 20 * DAY))))
        rows.append((f"u{u}", "c0", "purchase", T0 + int(rng.integers(0, 20 * DAY))))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(40)],
            "city": ["Berlin" if u % 2 else "Paris" for u in range(40)],
            "age": [20 + u for u in range(40)],
        }
    )
    return Interactions.from_events(events, users=users)


@pytest.mark.parametrize("name", ["popularity", "ease", "als"])
def test_new_customer_gets_what_similar_customers_chose(name: str, cities: Interactions) -> None:
    params = {"als": {"factors": 4, "iterations": 3, "num_threads": 1}}.get(name, {})
    model = make_model(name, **params).fit(cities)
    attributes = pd.DataFrame(
        {"city": ["Paris", "Berlin", "Rome", None]},
        index=pd.Index(["new-paris", "new-berlin", "new-rome", "new-unknown"], name="user_id"),
    )
    recs = model.recommend(list(attributes.index), k=5, user_attributes=attributes)
    paris, berlin = top(recs, 0), top(recs, 1)
    assert {x[0] for x in paris[:4]} <= {"p", "c"} and "c0" in paris[:5]
    assert {x[0] for x in berlin[:4]} <= {"b", "c"}
    favoured = [r for x, r in zip(paris, recs.reasons[0], strict=True) if x.startswith("p")]
    assert favoured and set(favoured) == {SEGMENT_REASON}
    # An unknown value or no attribute at all: the global list.
    for row in (2, 3):
        assert recs.reasons[row].tolist() == [COLD_START_REASON] * 5


def test_numeric_attributes_are_binned(cities: Interactions) -> None:
    model = make_model("popularity").fit(cities)
    assert model.cold_start_.attr_names == ["city", "age"]
    attributes = pd.DataFrame({"age": [20.0, 200.0]}, index=["young", "old"])
    codes = model.cold_start_.segment_codes(attributes)
    assert (codes[:, 0] == -1).all() and codes[0, 1] != codes[1, 1]


def test_customer_in_the_view_without_events_uses_stored_attributes(cities: Interactions) -> None:
    u0 = cities.user_index(["u0"])[0]  # Paris
    without = cities.with_events(cities.events["user_idx"].to_numpy() != u0)
    model = ItemKNNRecommender(neighbors=10).fit(without)
    recs = model.recommend(["u0"], k=3)
    assert set(recs.reasons[0].tolist()) <= {SEGMENT_REASON, COLD_START_REASON}
    assert SEGMENT_REASON in recs.reasons[0].tolist()
    assert any(x.startswith("p") for x in top(recs))


# -- session ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs() -> Interactions:
    """Items come in pairs (a0 with a1, b0 with b1...); titles name them."""
    rows = []
    for u in range(30):
        pair = "abcde"[u % 5]
        rows += [(f"u{u}", f"{pair}0", "purchase"), (f"u{u}", f"{pair}1", "view")]
    rows += [("fan", "a0", "view")] * 1 + [(f"z{u}", "e1", "view") for u in range(10)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type"])
    events["timestamp"] = T0
    names = [f"{p}{i}" for p in "abcde" for i in (0, 1)]
    items = pd.DataFrame({"item_id": names, "title": [f"The {n.upper()}" for n in names]})
    return Interactions.from_events(events, items=items)


def test_session_items_drive_a_new_customers_list(pairs: Interactions) -> None:
    model = ItemKNNRecommender(neighbors=5).fit(pairs)
    recs = model.recommend(["visitor", "other"], k=3, session_items={"visitor": ["b0", "zz"]})
    assert top(recs, 0)[0] == "b1"
    assert recs.reasons[0, 0] == "because you viewed The B0"
    assert "b0" not in top(recs, 0)  # what they are looking at is not suggested back
    assert recs.reasons[1].tolist() == [COLD_START_REASON] * 3  # no session for "other"
    shared = model.recommend(["x", "y"], k=1, session_items=["c1"])
    assert top(shared, 0) == top(shared, 1) == ["c0"]
    # Only unknown items: the global list.
    unknown = model.recommend(["x"], k=2, session_items=["nope"])
    assert unknown.reasons[0].tolist() == [COLD_START_REASON] * 2
    # Customers with history keep their own list.
    warm = model.recommend(["u0"], k=2, session_items=["c1"], exclude_seen=True)
    assert "because you viewed The C1" not in warm.reasons[0].tolist()


def test_popularity_ignores_sessions(pairs: Interactions) -> None:
    model = make_model("popularity").fit(pairs)
    recs = model.recommend(["x"], k=2, session_items=["b0"])
    assert recs.reasons[0].tolist() == [COLD_START_REASON] * 2


# -- trending ----------------------------------------------------------------------------------
def test_trending_items_say_so() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for u in range(200):  # steady sellers over 60 days
        for item in rng.choice(["s0", "s1", "s2"], size=2, replace=False):
            rows.append((f"u{u}", item, T0 + int(rng.integers(0, 60 * DAY))))
    for u in range(60):  # a hit of the last week
        rows.append((f"h{u}", "hit", T0 + 54 * DAY + int(rng.integers(0, 6 * DAY))))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    events["event_type"] = "purchase"
    items = pd.DataFrame(
        {"item_id": ["s0", "s1", "s2", "hit"], "category": ["games", "games", "toys", "toys"]}
    )
    model = make_model("ease", regularization=10.0).fit(
        Interactions.from_events(events, items=items)
    )
    trending = dict(zip(model.item_ids_.tolist(), model.cold_start_.trending.tolist(), strict=True))
    assert trending == {"hit": True, "s0": False, "s1": False, "s2": False}
    recs = model.recommend(["ghost"], k=4)
    reasons = dict(zip(top(recs), recs.reasons[0].tolist(), strict=True))
    assert reasons["hit"] == "trending in toys"
    assert reasons["s0"] == COLD_START_REASON


# -- new items ----------------------------------------------------------------------------------
def new_item_shop() -> Interactions:
    """Tea drinkers and tool buyers; "t-new" (tea) and "h-new" (tools) have no events."""
    items = pd.DataFrame(
        {
            "item_id": ["t1", "t2", "t3", "h1", "h2", "h3", "t-new", "h-new"],
            "category": ["tea", "tea", "tea", "tools", "tools", "tools", "tea", "tools"],
            "title": [
                "green tea",
                "black tea",
                "white tea",
                "claw hammer",
                "power drill",
                "screwdriver",
                "green tea matcha",
                "claw hammer heavy",
            ],
        }
    )
    rows = []
    for u in range(12):
        tea = u % 2 == 0
        picks = ["t1", "t2", "t3"] if tea else ["h1", "h2", "h3"]
        rows += [(f"u{u}", item, "purchase") for item in picks[: 2 + (u // 2) % 2]]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type"])
    events["timestamp"] = T0
    return Interactions.from_events(events, items=items)


def test_items_without_events_are_placed_by_content() -> None:
    inter = new_item_shop()
    model = EASERecommender(regularization=1.0).fit(inter)
    assert sorted(model.item_ids_[model.cold_start_.new_items]) == ["h-new", "t-new"]
    recs = model.recommend(["u0"], k=2, exclude_seen=True)  # u0 bought t1, t2
    assert "t-new" in top(recs)
    reason = recs.reasons[0, top(recs).index("t-new")]
    assert reason.startswith("because you bought") and "tea" in reason
    assert "h-new" not in top(recs)
    # Similar items of a new item: its neighbours, not an arbitrary popularity order.
    sims = model.similar_items(["t-new"], k=3)
    assert set(top(sims)) == {"t1", "t2", "t3"}
    # And as a session item.
    session = model.recommend(["visitor"], k=1, session_items=["h-new"])
    assert top(session)[0].startswith("h")


# -- repurchase default ------------------------------------------------------------------------
def repeat_shop(rebuy: bool) -> Interactions:
    """Each customer buys items on several days: the same ones again (groceries) or new ones."""
    rows = []
    for u in range(20):
        for day in range(6):
            item = f"i{u % 4}" if rebuy else f"i{(u + day) % 12}"
            rows.append((f"u{u}", item, "purchase", T0 + day * 7 * DAY))
    return Interactions.from_events(
        pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    )


@pytest.mark.parametrize("name", ["itemknn", "popularity", "repeat"])
def test_repurchase_default_follows_the_data(name: str, tmp_path: Path) -> None:
    grocer = make_model(name).fit(repeat_shop(rebuy=True))
    tailor = make_model(name).fit(repeat_shop(rebuy=False))
    assert grocer.repeat_share_ == pytest.approx(repeat_share(repeat_shop(rebuy=True)))
    assert grocer.allows_repurchase_ and grocer.repeat_share_ > 0.5
    assert not tailor.allows_repurchase_ and tailor.repeat_share_ == 0.0
    assert "i0" in top(grocer.recommend(["u0"], k=12))  # u0's own groceries come back
    assert "i0" not in top(grocer.recommend(["u0"], k=12, exclude_seen=True))
    bought = {f"i{d % 12}" for d in range(6)}
    assert not bought & set(top(tailor.recommend(["u0"], k=12)))
    assert bought <= set(top(tailor.recommend(["u0"], k=12, exclude_seen=False)))
    loaded: Recommender[Any] = type(grocer).load(grocer.save(tmp_path / name))
    assert loaded.allows_repurchase_ and loaded.repeat_share_ == grocer.repeat_share_
    np.testing.assert_array_equal(
        loaded.recommend(["u0", "ghost"], k=5).item_ids,
        grocer.recommend(["u0", "ghost"], k=5).item_ids,
    )


def test_cold_start_survives_save_and_load(cities: Interactions, tmp_path: Path) -> None:
    model = ItemKNNRecommender(neighbors=10).fit(cities)
    loaded = type(model).load(model.save(tmp_path / "m"))
    attributes = pd.DataFrame({"city": ["Berlin"], "age": [31]}, index=["new"])
    for kwargs in ({"user_attributes": attributes}, {"session_items": ["p1"]}):
        a = model.recommend(["new", "u3"], k=4, **kwargs)
        b = loaded.recommend(["new", "u3"], k=4, **kwargs)
        np.testing.assert_array_equal(a.item_ids, b.item_ids)
        np.testing.assert_array_equal(a.reasons, b.reasons)


def test_repurchase_default_is_decided_per_category() -> None:
    """Groceries are rebought, fashion is not: in one shop, seen groceries come back and
    seen fashion does not."""
    rows = []
    for u in range(30):
        for week in range(5):
            rows.append((f"u{u}", f"g{u % 3}", T0 + week * 7 * DAY))  # the same milk weekly
            rows.append((f"u{u}", f"f{(u + week) % 15}", T0 + week * 7 * DAY))  # new clothes
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    events["event_type"] = "purchase"
    ids = [f"g{i}" for i in range(3)] + [f"f{i}" for i in range(15)]
    items = pd.DataFrame({"item_id": ids, "category": ["groceries"] * 3 + ["fashion"] * 15})
    model = ItemKNNRecommender(neighbors=20).fit(Interactions.from_events(events, items=items))
    rebuyable = dict(
        zip(model.item_ids_.tolist(), model.cold_start_.rebuyable.tolist(), strict=True)
    )
    assert all(rebuyable[x] for x in ids[:3]) and not any(rebuyable[x] for x in ids[3:])
    got = set(top(model.recommend(["u0"], k=18)))
    assert "g0" in got  # u0's own milk
    assert not got & {f"f{w % 15}" for w in range(5)}  # u0's own clothes
