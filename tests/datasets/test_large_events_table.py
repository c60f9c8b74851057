"""The in-memory benchmark log: exact size, clean canonical events, every customer present."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from tailorcast.datasets._large import large_events_table
from tailorcast.errors import ConfigError
from tailorcast.schema import EVENT_TYPES


def test_clean_canonical_events_with_every_customer() -> None:
    table = large_events_table(40_000, n_customers=3_000, n_items=500, seed=3, chunk_size=15_000)
    assert table.num_rows == 40_000
    assert table.column_names == [
        "user_id",
        "item_id",
        "event_type",
        "timestamp",
        "amount",
        "quantity",
    ]
    assert set(table.column("event_type").to_pylist()) <= set(EVENT_TYPES)
    assert table.column("user_id").null_count == 0
    assert pc.count_distinct(table.column("user_id")).as_py() == 3_000
    frame = table.to_pandas()
    assert not frame.duplicated().any()
    purchase = frame["event_type"] == "purchase"
    assert frame.loc[purchase, "amount"].gt(0).all()
    assert frame.loc[~purchase, "amount"].isna().all()
    share = frame["event_type"].value_counts(normalize=True)
    assert 0.65 < share["view"] < 0.85  # the shop's funnel, as in the CSV generator
    # each chunk (15k rows, its share of the year) is sorted by time, and they follow each other
    seconds = frame["timestamp"].astype("int64").to_numpy()
    chunks = [seconds[i : i + 15_000] for i in range(0, 40_000, 15_000)]
    assert all((np.diff(chunk) >= 0).all() for chunk in chunks)
    assert chunks[0].mean() < chunks[1].mean() < chunks[2].mean()


def test_seeded_and_activity_only_mode() -> None:
    a = large_events_table(5_000, n_customers=400, n_items=100, seed=1)
    b = large_events_table(5_000, n_customers=400, n_items=100, seed=1)
    assert a.equals(b)
    by_activity = large_events_table(
        5_000, n_customers=4_000, n_items=100, seed=1, every_customer=False
    )
    assert pc.count_distinct(by_activity.column("user_id")).as_py() < 4_000
    assert large_events_table(0, n_customers=400, n_items=100).num_rows == 0
    with pytest.raises(ConfigError):
        large_events_table(-1, n_customers=400, n_items=100)
