"""RFM scores and segments: known answers on hand-made orders, and the store path (bots left
out, outlier amounts replaced, only orders up to as_of)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ingest_demo_shop
from tailorcast.marketing import SEGMENTS, rfm_segments
from tailorcast.marketing.rfm import RFM_COLUMNS, rfm_scores
from tailorcast.store import Store

AS_OF = pd.Timestamp("2026-03-01")


def _orders(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """(customer, days before AS_OF, value) per order."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "timestamp": [AS_OF - pd.Timedelta(days=r[1]) for r in rows],
            "value": [r[2] for r in rows],
        }
    )


def test_scores_and_segments_on_known_customers() -> None:
    rows = [
        *(("champ", d, 100.0) for d in (1, 10, 20, 30, 40, 50)),  # recent, often, much
        *(("lapsed_vip", d, 120.0) for d in (200, 210, 220, 230, 240, 250)),
        ("newbie", 2, 30.0),
        ("gone", 300, 5.0),
        *(("mid", d, 20.0) for d in (60, 90)),
    ]
    # Filler customers spread the quintiles: one order each at various ages and values.
    rows += [(f"f{i}", 5 + 15 * i, 10.0 + i) for i in range(15)]
    table = rfm_scores(_orders(rows), AS_OF).set_index("user_id")
    assert list(table.reset_index().columns) == list(RFM_COLUMNS)
    assert table.loc["champ", ["r", "f", "m"]].tolist() == [5, 5, 5]
    assert table.loc["champ", "segment"] == "Champions"
    assert table.loc["champ", "frequency"] == 6 and table.loc["champ", "monetary"] == 600.0
    assert table.loc["champ", "recency_days"] == pytest.approx(1.0)
    assert table.loc["lapsed_vip", "segment"] == "Cannot lose"
    assert table.loc["newbie", "segment"] == "New"
    assert table.loc["gone", "segment"] == "Lost"
    assert table.loc["gone", "r"] == 1
    assert set(table["segment"]) <= set(SEGMENTS)


def test_tied_single_order_customers_share_the_lowest_frequency_score() -> None:
    rows = [(f"c{i}", i + 1, 10.0) for i in range(20)] + [("two", 3, 10.0), ("two", 9, 10.0)]
    table = rfm_scores(_orders(rows), AS_OF).set_index("user_id")
    assert (table.drop(index="two")["f"] == 1).all()
    assert table.loc["two", "f"] == 5


def test_every_score_pair_gets_exactly_one_segment() -> None:
    rng = np.random.default_rng(0)
    rows = [
        (f"c{i}", int(rng.integers(0, 365)), float(rng.lognormal(3, 1)))
        for i in range(400)
        for _ in range(int(rng.geometric(0.35)))
    ]
    table = rfm_scores(_orders(rows), AS_OF)
    assert table["segment"].notna().all()
    assert set(table["segment"]) == set(SEGMENTS)  # a varied shop fills every segment
    assert table["r"].between(1, 5).all() and table["m"].between(1, 5).all()


def test_empty_orders_give_an_empty_table() -> None:
    assert rfm_scores(_orders([]), AS_OF).empty


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_demo_shop(tmp_path_factory.mktemp("rfm-shop"))


def test_rfm_from_the_store_leaves_out_bots_outliers_and_later_orders(store_dir: Path) -> None:
    with Store.open(store_dir, read_only=True) as store:
        table = rfm_segments(store).set_index("user_id")
        early = rfm_segments(store, as_of="2026-01-20")
        bots = {
            r[0]
            for r in store.con.execute("SELECT user_id FROM user_flags WHERE is_bot").fetchall()
        }
        outliers = store.con.execute(
            "SELECT e.user_id, sum(e.amount), sum(i.price * e.quantity) FROM events e "
            "JOIN items i USING (item_id) WHERE e.amount_outlier GROUP BY e.user_id"
        ).fetchall()
    assert not bots & set(table.index)
    assert len(early) < len(table)
    assert (early["recency_days"] >= 0).all()
    for user, raw, priced in outliers:
        if user in table.index:
            # the flagged amount (tens of times the price) is not in the customer's money
            assert table.loc[user, "monetary"] < raw
            assert priced < raw
