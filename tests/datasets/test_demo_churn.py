"""Churn in the demo shop: by default customers lapse after an exponential active life (as in
real shops, and as BG/NBD and the RFM "At risk"/"Lost" segments assume); ``None`` switches it
off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailorcast.datasets import DemoShop, demo_shop
from tailorcast.datasets.demo_shop import DEFAULT_LIFETIME_DAYS

SIZE = {"n_customers": 1500, "n_items": 120, "days": 240, "seed": 9, "dirt": False}


def _times(events: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(events["timestamp"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)


@pytest.fixture(scope="module")
def lapsing() -> DemoShop:
    return demo_shop(**SIZE)


def test_default_customers_lapse_at_the_planted_rate(lapsing: DemoShop) -> None:
    truth = lapsing.truth
    assert truth.churn_day is not None
    customers = truth.customers.set_index("user_id")
    start = pd.Timestamp("2026-01-05")
    joined = (pd.to_datetime(customers["signup_date"]) - start).dt.days.clip(lower=0)
    left = (pd.to_datetime(truth.churn_day) - start).dt.days
    # Exponential life from joining (or from the first day): the share still active at the
    # end is the mean of exp(-remaining days / mean life), censored lives included.
    remaining = (SIZE["days"] - joined).clip(lower=0)
    expected = np.exp(-remaining / DEFAULT_LIFETIME_DAYS).mean()
    assert truth.churn_day.isna().mean() == pytest.approx(expected, abs=0.04)
    lives = (left - joined.reindex(left.index)).dropna()
    assert (lives >= 0).all()


def test_lapsed_customers_do_not_come_back(lapsing: DemoShop) -> None:
    truth = lapsing.truth
    events = lapsing.events
    gone = truth.churn_day.dropna()
    last = _times(events).groupby(events["user_id"]).max()
    lapsed = last.reindex(gone.index).dropna()
    assert len(lapsed) > 100
    churned_at = pd.to_datetime(gone.reindex(lapsed.index)).dt.tz_localize("UTC")
    assert (lapsed < churned_at).all()


def test_none_gives_the_stationary_shop(lapsing: DemoShop) -> None:
    stationary = demo_shop(**SIZE, mean_lifetime_days=None)
    assert stationary.truth.churn_day is None
    assert len(stationary.events) > 1.3 * len(lapsing.events)
    # same customers, items and tastes: only the lapsing differs
    pd.testing.assert_frame_equal(stationary.customers, lapsing.customers)
    pd.testing.assert_frame_equal(stationary.items, lapsing.items)
