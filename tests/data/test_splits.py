"""Splits: every event on at most one side, shared vocabularies, the unseen-items protocol,
fractions, per-customer recency and sessions, seeds, and validation splits inside train."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorcast.data import (
    PROTOCOLS,
    Interactions,
    InteractionsConfig,
    Split,
    make_split,
    split_last,
    split_last_session,
    split_random,
    split_temporal,
    validation_split,
)
from tailorcast.datasets.movielens import load_movielens
from tailorcast.errors import ConfigError

T0 = datetime(2026, 3, 2, 12, 0, 0)
ML_100K = Path("/work/shared/data/ml-100k")


def at(days: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def build(rows: list[tuple[Any, ...]], **config: Any) -> Interactions:
    """(user, item, type, time[, session]) rows; each event gets an ``eid`` to track it."""
    width = max(len(r) for r in rows)
    columns = ["user_id", "item_id", "event_type", "timestamp", "session_id"][:width]
    data = pd.DataFrame(rows, columns=columns)
    data["eid"] = np.arange(len(data))
    return Interactions.from_events(data, config=InteractionsConfig(**config))


@pytest.fixture(scope="module")
def shop() -> Interactions:
    """80 customers, 30 items, sessions of a few events, repeated items within a customer."""
    rng = np.random.default_rng(11)
    n = 3000
    user = rng.integers(0, 80, n)
    session = rng.integers(0, 4, n)  # per customer
    start = session * 2.0 + rng.random(n) * 0.01  # session k on day 2k, minutes apart
    data = pd.DataFrame(
        {
            "user_id": [f"u{u:02d}" for u in user],
            "item_id": [f"i{i:02d}" for i in rng.zipf(1.6, n) % 30],
            "event_type": rng.choice(["view", "view", "cart", "purchase", "favorite"], n),
            "timestamp": pd.Timestamp(T0) + pd.to_timedelta(start, unit="D"),
            "session_id": [f"s{u}-{s}" for u, s in zip(user, session, strict=True)],
            "eid": np.arange(n),
        }
    )
    data = pd.concat(
        [data, pd.DataFrame([["solo", "i00", "view", T0, "x", n]], columns=data.columns)]
    )
    return Interactions.from_events(data)


@pytest.fixture(scope="module")
def movielens() -> Interactions:
    ml = load_movielens(ML_100K)
    ev = ml.events.assign(eid=np.arange(len(ml.events)))
    return Interactions.from_events(ev, config=InteractionsConfig(rating_column="rating"))


def eids(inter: Interactions) -> set[int]:
    return set(inter.events["eid"].tolist())


def pairs(inter: Interactions) -> set[tuple[int, int]]:
    ev = inter.events
    return set(zip(ev["user_idx"].tolist(), ev["item_idx"].tolist(), strict=True))


def check(inter: Interactions, split: Split) -> None:
    """What every split guarantees."""
    train, test = split
    for side in split:
        assert side.user_ids is inter.user_ids and side.item_ids is inter.item_ids
        assert side.matrix.shape == inter.matrix.shape
        assert side.events["eid"].is_unique
    assert not eids(train) & eids(test)
    assert (eids(train) | eids(test)) <= eids(inter)
    assert not pairs(train) & pairs(test)  # unseen items only
    # what is in neither side is exactly test events of pairs the customer has in train
    dropped = inter.events[~inter.events["eid"].isin(eids(train) | eids(test))]
    assert pairs(inter.with_events(inter.events["eid"].isin(dropped["eid"]).to_numpy())) <= pairs(
        train
    )
    np.testing.assert_allclose(train.matrix.sum(), train.events["weight"].sum(), rtol=1e-5)


def by_user(inter: Interactions) -> dict[int, pd.DataFrame]:
    return dict(tuple(inter.events.groupby("user_idx")))


# -- random -------------------------------------------------------------------------------------
def test_random_split_holds_out_a_fifth_of_each_users_items(movielens: Interactions) -> None:
    split = split_random(movielens, test_fraction=0.2, seed=1)
    check(movielens, split)
    train_n = np.bincount(split.train.events["user_idx"], minlength=943)
    test_n = np.bincount(split.test.events["user_idx"], minlength=943)
    total = train_n + test_n
    assert (total == np.bincount(movielens.events["user_idx"], minlength=943)).all()
    np.testing.assert_array_equal(test_n, np.floor(0.2 * total + 0.5))
    assert (test_n >= 1).all() and (train_n >= 1).all()
    assert len(split.test.events) / 100_000 == pytest.approx(0.2, abs=0.01)


def test_random_split_moves_every_event_of_a_held_out_pair(shop: Interactions) -> None:
    split = split_random(shop, test_fraction=0.3, seed=5)
    check(shop, split)
    assert len(split.train.events) + len(split.test.events) == len(shop.events)  # nothing dropped
    held = shop.events.set_index(["user_idx", "item_idx"]).index.isin(
        split.test.events.set_index(["user_idx", "item_idx"]).index
    )
    assert held.sum() == len(split.test.events)
    repeated = split.test.events.duplicated(["user_idx", "item_idx"]).sum()
    assert repeated > 0  # the fixture has pairs with several events; they moved together


def test_random_split_leaves_small_users_alone(shop: Interactions) -> None:
    [solo] = shop.user_index(["solo"])
    split = split_random(shop, seed=2, min_user_events=2)
    assert solo not in set(split.test.events["user_idx"])
    distinct = shop.events.groupby("user_idx")["item_idx"].nunique()
    many = split_random(shop, seed=2, min_user_events=12)
    tested = set(many.test.events["user_idx"])
    assert tested == set(distinct.index[distinct >= 12])
    one = split_random(shop, seed=2, min_user_events=1)
    assert solo in set(one.test.events["user_idx"])  # asked for: a lone item goes to test


def test_random_split_is_seeded(shop: Interactions) -> None:
    a = split_random(shop, seed=7)
    b = split_random(shop, seed=7)
    c = split_random(shop, seed=8)
    assert a.test.fingerprint() == b.test.fingerprint()
    assert a.train.fingerprint() == b.train.fingerprint()
    assert eids(a.test) != eids(c.test)
    assert len(eids(a.test) ^ eids(c.test)) > 100


# -- temporal -----------------------------------------------------------------------------------
def test_temporal_split_cuts_at_the_quantile(movielens: Interactions) -> None:
    split = split_temporal(movielens, test_fraction=0.2)
    check(movielens, split)
    train, test = split
    assert train.events["timestamp"].max() < test.events["timestamp"].min()
    ts = movielens.events["timestamp"]
    after = (ts > train.events["timestamp"].max()).mean()
    assert after == pytest.approx(0.2, abs=0.005)
    assert len(train.events) + len(test.events) == 100_000  # ratings are unique pairs


def test_temporal_split_with_a_cutoff_and_unseen_items() -> None:
    inter = build(
        [
            ("u1", "i1", "view", at(-2)),
            ("u1", "i1", "purchase", at(1)),  # seen in train: not a test hit
            ("u1", "i2", "purchase", at(2)),
            ("u2", "i3", "view", at(-1)),
            ("u3", "i1", "cart", at(3)),  # u3 only after the cut: a cold customer in test
        ]
    )
    split = split_temporal(inter, cutoff=at(0))
    check(inter, split)
    assert sorted(eids(split.train)) == [0, 3]
    assert sorted(eids(split.test)) == [2, 4]
    [u3] = inter.user_index(["u3"])
    assert split.train.matrix[u3].nnz == 0 and split.test.matrix[u3].nnz == 1
    # a zone-aware cutoff means the same instant
    tokyo = timezone(timedelta(hours=9))
    same = split_temporal(inter, cutoff=(at(0) + timedelta(hours=9)).replace(tzinfo=tokyo))
    assert eids(same.test) == eids(split.test)
    # an event exactly at the cutoff stays in train
    assert eids(split_temporal(inter, cutoff=at(2)).test) == {4}


# -- last items ---------------------------------------------------------------------------------
def test_last_split_takes_each_users_latest_items(movielens: Interactions) -> None:
    split = split_last(movielens, test_fraction=0.2)
    check(movielens, split)
    train, test = by_user(split.train), by_user(split.test)
    assert set(test) == set(train) == set(range(943))
    for u, held in test.items():
        assert held["timestamp"].min() >= train[u]["timestamp"].max()
        n = len(held) + len(train[u])
        assert len(held) == np.floor(0.2 * n + 0.5)


def test_last_split_orders_items_by_first_interaction_with_ties_by_item() -> None:
    inter = build(
        [
            ("u1", "i1", "view", at(0)),
            ("u1", "i2", "view", at(1)),
            ("u1", "i1", "purchase", at(9)),  # i1's first interaction is still at(0)
            ("u1", "i3", "view", at(2)),
            ("u2", "i3", "view", at(0)),
            ("u2", "i1", "view", at(0)),
            ("u2", "i2", "view", at(0)),
            ("u3", "i1", "view", at(0)),  # one item: stays in train
        ]
    )
    split = split_last(inter, test_fraction=0.34)
    check(inter, split)
    assert sorted(eids(split.test)) == [3, 4]  # u1's i3, u2's tie broken towards i3
    assert 7 in eids(split.train)
    assert split_last(inter, test_fraction=0.34).test.fingerprint() == split.test.fingerprint()


# -- last session -------------------------------------------------------------------------------
def test_last_session_split_takes_each_users_last_session(shop: Interactions) -> None:
    split = split_last_session(shop)
    check(shop, split)
    events = shop.events
    last_event = events.groupby(["user_idx", "session_id"])["timestamp"].max().reset_index()
    last = last_event.sort_values(["user_idx", "timestamp"]).groupby("user_idx").tail(1)
    last_session = dict(zip(last["user_idx"], last["session_id"], strict=True))
    n_sessions = events.groupby("user_idx")["session_id"].nunique()
    test = split.test.events
    assert len(test) > 0
    assert (test["session_id"] == test["user_idx"].map(last_session)).all()
    [solo] = shop.user_index(["solo"])
    assert n_sessions[solo] == 1 and solo not in set(test["user_idx"])
    # every customer's last-session events are in test unless the item was seen before
    expected = events[
        (events["session_id"] == events["user_idx"].map(last_session))
        & (events["user_idx"].map(n_sessions) >= 2)
    ]
    held_or_dropped = set(expected["eid"]) - eids(split.train)
    assert held_or_dropped == set(expected["eid"])
    assert eids(split.test) <= set(expected["eid"])
    none = split_last_session(shop, min_sessions=5)
    assert len(none.test.events) == 0 and len(none.train.events) == len(events)


def test_last_session_falls_back_to_the_last_day() -> None:
    inter = build(
        [
            ("u1", "i1", "view", at(0)),
            ("u1", "i2", "view", at(0, 30)),
            ("u1", "i1", "purchase", at(1)),  # item seen the day before: dropped
            ("u1", "i3", "cart", at(1, 5)),
            ("u2", "i1", "view", at(0)),
        ]
    )
    assert inter.events["session_id"].isna().all()
    split = split_last_session(inter)
    check(inter, split)
    assert sorted(eids(split.train)) == [0, 1, 4]
    assert sorted(eids(split.test)) == [3]


# -- validation and dispatch --------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_validation_split_stays_inside_train(shop: Interactions, protocol: str) -> None:
    outer = make_split(shop, protocol, seed=3)
    inner = validation_split(outer.train, protocol, seed=3)
    check(outer.train, inner)
    assert eids(inner.train) | eids(inner.test) <= eids(outer.train)
    assert not (eids(inner.train) | eids(inner.test)) & eids(outer.test)
    assert len(inner.test.events) > 0
    assert inner.train.user_ids is shop.user_ids


def test_make_split_dispatches_and_checks_arguments(shop: Interactions) -> None:
    assert (
        make_split(shop, "random", seed=4).test.fingerprint()
        == split_random(shop, seed=4).test.fingerprint()
    )
    assert eids(make_split(shop, "last", test_fraction=0.5).test) == eids(
        split_last(shop, test_fraction=0.5).test
    )
    with pytest.raises(ConfigError, match="unknown split protocol 'kfold'"):
        make_split(shop, "kfold")
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="test_fraction"):
            split_random(shop, test_fraction=bad)
    with pytest.raises(ConfigError, match="min_sessions"):
        split_last_session(shop, min_sessions=0)


def test_splits_unpack_and_keep_the_config(shop: Interactions) -> None:
    train, test = split_temporal(shop)
    assert test.config == shop.config
    # the train view is as of the cut (its latest event), not as of the whole view's end
    assert train.config.model_copy(update={"as_of": shop.config.as_of}) == shop.config
    assert train.config.as_of is not None and shop.config.as_of is not None
    assert train.config.as_of < shop.config.as_of
    cut = np.datetime64(train.config.as_of, "us")
    assert cut == train.events["timestamp"].max().to_datetime64().astype("datetime64[us]")
    assert isinstance(split_temporal(shop), tuple)
