"""Customer and item feature tables on small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tailorcast.errors import ConfigError, DataError
from tailorcast.features import (
    USER_FEATURE_COLUMNS,
    item_features,
    select_features,
    user_features,
)

AS_OF = pd.Timestamp("2024-01-10")


def _events() -> pd.DataFrame:
    """3 customers, 10 events; the last one (u1, Jan 20) is after AS_OF."""
    stamps = [
        "2024-01-01T10:00",
        "2024-01-01T11:00",
        "2024-01-02T00:00",
        "2024-01-03T00:00",
        "2024-01-05T00:00",
        "2024-01-05T00:00",
        "2024-01-06T00:00",
        "2024-01-09T00:00",
        "2024-01-10T00:00",
        "2024-01-20T00:00",
    ]
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u2", "u3", "u3", "u1"],
            "item_id": ["a", "a", "b", "b", "c", "c", "a", "b", "c", "z"],
            "event_type": [
                "view",
                "purchase",
                "view",
                "purchase",
                "view",
                "cart",
                "purchase",
                "view",
                "favorite",
                "view",
            ],
            "timestamp": pd.to_datetime(pd.Series(stamps), format="ISO8601"),
            "amount": [np.nan, 10.0, np.nan, 30.0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
            "quantity": [1, 2, 1, 1, 1, 1, 3, 1, 1, 1],
            "session_id": ["s1", "s1", "s2", "s3", "s4", "s4", "s5", "s6", "s7", "s8"],
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "category": ["shoes", "hats", "shoes"],
            "price": [5.0, 30.0, 100.0],
        }
    )


def test_user_features_hand_computed() -> None:
    f = user_features(_events(), _items(), as_of=AS_OF)
    assert f.index.name == "user_id"
    assert f.index.tolist() == ["u1", "u2", "u3"]
    assert list(f.columns) == [*USER_FEATURE_COLUMNS, "cat_share_shoes", "cat_share_hats"]
    # u1 first event Jan 1 10:00 -> as_of: 8 days 14 hours.
    tenure_u1 = 8 + 14 / 24
    expected = {
        "u1": dict(
            recency_days=7.0,  # last purchase Jan 3
            has_purchased=1,
            frequency=2,  # sessions s1 and s3
            monetary=40.0,
            avg_order_value=20.0,
            n_view=2,  # the Jan 20 view is after as_of
            n_favorite=0,
            n_cart=0,
            n_purchase=2,
            n_sessions=3,
            days_active=3,
            tenure_days=tenure_u1,
            view_to_purchase_rate=1.0,
            avg_basket_size=1.5,  # (2 + 1) units / 2 orders
            cat_share_shoes=0.5,
            cat_share_hats=0.5,
        ),
        "u2": dict(
            recency_days=4.0,
            has_purchased=1,
            frequency=1,
            monetary=15.0,  # no amount: price 5 x quantity 3
            avg_order_value=15.0,
            n_view=1,
            n_favorite=0,
            n_cart=1,
            n_purchase=1,
            n_sessions=2,
            days_active=2,
            tenure_days=5.0,
            view_to_purchase_rate=1.0,
            avg_basket_size=3.0,
            cat_share_shoes=1.0,
            cat_share_hats=0.0,
        ),
        "u3": dict(
            recency_days=tenure_u1 + 1,  # never bought: whole window + 1 day
            has_purchased=0,
            frequency=0,
            monetary=0.0,
            avg_order_value=0.0,
            n_view=1,
            n_favorite=1,
            n_cart=0,
            n_purchase=0,
            n_sessions=2,
            days_active=2,
            tenure_days=1.0,
            view_to_purchase_rate=0.0,
            avg_basket_size=0.0,
            cat_share_shoes=0.5,
            cat_share_hats=0.5,
        ),
    }
    for user, values in expected.items():
        for column, value in values.items():
            assert f.loc[user, column] == pytest.approx(value), (user, column)


def test_as_of_excludes_later_events_and_later_customers() -> None:
    events = _events()
    late = pd.DataFrame(
        {
            "user_id": ["u9"],
            "item_id": ["a"],
            "event_type": ["purchase"],
            "timestamp": [pd.Timestamp("2024-01-15")],
            "amount": [99.0],
            "quantity": [1],
            "session_id": ["s9"],
        }
    )
    events = pd.concat([events, late], ignore_index=True)
    early = user_features(events, as_of=AS_OF)
    assert "u9" not in early.index
    assert early.loc["u1", "n_view"] == 2
    # Default as_of = the latest event (Jan 20): the late view counts and recency grows.
    full = user_features(events)
    assert full.loc["u1", "n_view"] == 3
    assert full.loc["u1", "recency_days"] == pytest.approx(17.0)
    assert full.loc["u9", "monetary"] == pytest.approx(99.0)


def test_tz_aware_as_of_is_compared_in_utc() -> None:
    berlin = pd.Timestamp("2024-01-10 01:00", tz="Europe/Berlin")  # = Jan 10 00:00 UTC
    pd.testing.assert_frame_equal(
        user_features(_events(), as_of=berlin), user_features(_events(), as_of=AS_OF)
    )


def test_frequency_counts_order_ids_then_sessions_then_days() -> None:
    stamps = pd.to_datetime(
        pd.Series(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-03", "2024-01-04"])
    )
    events = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "item_id": ["a", "b", "c", "d", "e"],
            "event_type": ["purchase"] * 5,
            "timestamp": stamps,
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
            # one order split over two sessions, one line with only a session.
            "order_id": ["o1", "o1", None, None, None],
            "session_id": ["s1", "s2", "s3", "s3", None],
        }
    )
    f = user_features(events)
    # o1, session s3, and the Jan 4 line (no order, no session) by its day.
    assert f.loc["u", "frequency"] == 3
    assert f.loc["u", "avg_order_value"] == pytest.approx(15.0 / 3)
    by_day = user_features(events.drop(columns=["order_id", "session_id"]))
    assert by_day.loc["u", "frequency"] == 4  # Jan 1, 2, 3, 4
    assert by_day.loc["u", "n_sessions"] == 4  # no session_id: active days


def test_top_categories_limits_the_share_columns() -> None:
    f = user_features(_events(), _items(), as_of=AS_OF, top_categories=1)
    assert [c for c in f.columns if c.startswith("cat_share_")] == ["cat_share_shoes"]
    assert "cat_share_shoes" not in user_features(_events(), as_of=AS_OF).columns


def test_user_features_bad_input() -> None:
    with pytest.raises(DataError, match="user_id"):
        user_features(_events().drop(columns="user_id"))
    bad = _events().assign(timestamp=lambda d: d["timestamp"].astype(str))
    with pytest.raises(DataError, match="timestamp"):
        user_features(bad)
    with pytest.raises(ConfigError):
        user_features(_events(), top_categories=-1)


def test_user_features_empty_before_as_of() -> None:
    f = user_features(_events(), as_of=pd.Timestamp("2000-01-01"))
    assert f.empty
    assert list(f.columns) == list(USER_FEATURE_COLUMNS)


def test_item_features_one_hot_and_price() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "category": ["shoes", "hats", "shoes", None],
            "price": [0.0, math.e - 1, math.e**2 - 1, np.nan],
        }
    )
    f = item_features(items)
    assert f.index.name == "item_id"
    assert list(f.columns) == ["cat_hats", "cat_shoes", "price_scaled"]
    assert f["cat_shoes"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert f["cat_hats"].tolist() == [0.0, 1.0, 0.0, 0.0]
    # log1p -> 0, 1, 2 and the missing price -> median 1: median 1, IQR 1.25 - 0.75.
    assert f["price_scaled"].tolist() == pytest.approx([-2.0, 0.0, 2.0, 0.0])


def test_item_features_popularity_counts_and_weights() -> None:
    f = item_features(_items(), _events())
    pops = f[["pop_view", "pop_favorite", "pop_cart", "pop_purchase"]]
    assert pops.loc["a"].to_numpy().tolist() == [1, 0, 0, 2]
    assert f.loc["a", "popularity"] == pytest.approx(1 * 1.0 + 2 * 5.0)
    # c: 1 view, 1 cart, 1 favorite; the event on unknown item "z" is ignored.
    assert f.loc["c", "popularity"] == pytest.approx(1.0 + 3.0 + 2.0)
    assert "z" not in f.index


def test_item_features_text_tokens() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "category": ["x", "x", "y"],
            "price": [1.0, 2.0, 3.0],
            "title": ["Wool hat", "hat", None],
            "tags": [["winter"], None, "boot|leather"],
        }
    )
    f = item_features(items)
    tokens = sorted(c for c in f.columns if c.startswith("tok_"))
    assert tokens == ["tok_boot", "tok_hat", "tok_leather", "tok_winter", "tok_wool"]
    assert f.loc["b", "tok_hat"] == pytest.approx(1.0)  # its only token, l2-normalised
    assert f.loc["b", "tok_wool"] == 0.0
    assert f.loc["c", "tok_boot"] == pytest.approx(f.loc["c", "tok_leather"])
    assert f["tok_winter"].to_numpy()[0] > 0
    limited = item_features(items, max_tokens=1)
    assert [c for c in limited.columns if c.startswith("tok_")] == ["tok_hat"]
    plain = item_features(items, text_columns=())
    assert not any(c.startswith("tok_") for c in plain.columns)


def test_item_features_last_duplicate_wins() -> None:
    items = pd.DataFrame({"item_id": ["a", "a", "b"], "category": ["x", "y", "y"]})
    f = item_features(items)
    assert f.index.tolist() == ["a", "b"]
    assert f.loc["a", "cat_y"] == 1.0
    assert list(f.columns) == ["cat_y"]


def test_select_features_drops_constant_columns_in_order() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0], "c": [0.0, 0.0, 0.1]})
    assert select_features(frame) == ["a", "c"]
    assert select_features(frame, min_variance=0.01) == ["a"]
    assert select_features(frame[["b"]]) == []


def test_select_features_keeps_the_informative_column() -> None:
    rng = np.random.default_rng(0)
    target = pd.Series(np.repeat([0, 1], 50), index=[f"u{i}" for i in range(100)])
    frame = pd.DataFrame(
        {
            "noise1": rng.normal(size=100),
            "signal": target.to_numpy() * 5.0 + rng.normal(scale=0.1, size=100),
            "noise2": rng.normal(size=100),
            "constant": np.ones(100),
        },
        index=target.index,
    )
    assert select_features(frame, target, k=1) == ["signal"]
    shuffled = target.sample(frac=1.0, random_state=1)  # aligned by index
    assert select_features(frame, shuffled, k=1) == ["signal"]
    assert select_features(frame, target, k=10) == ["noise1", "signal", "noise2"]
    continuous = pd.Series(frame["signal"].to_numpy() * 2 + 1, index=frame.index)
    assert select_features(frame, continuous, k=1) == ["signal"]


def test_select_features_bad_input() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(DataError, match="'b'"):
        select_features(frame)
    numeric = frame[["a"]]
    with pytest.raises(ConfigError, match="target"):
        select_features(numeric, k=1)
    with pytest.raises(DataError, match="target"):
        select_features(numeric, pd.Series([0, 1], index=["p", "q"]), k=1)
