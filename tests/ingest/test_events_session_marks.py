"""Derived sessions where a batch meets stored events, and the pseudonym thread's results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tailorcast.ingest.events import IngestSummary, ingest_events
from tailorcast.privacy import Keys
from tailorcast.store import Store

KEYS = Keys(b"s" * 32, b"t" * 32)
T0 = datetime(2026, 3, 2, 10, 0, 0)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ingest(store: Store, rows: list[tuple[str, ...]], columns: list[str]) -> IngestSummary:
    summary = ingest_events(store, pd.DataFrame(rows, columns=columns), keys=KEYS)
    assert summary.rows_read == summary.accepted + summary.rejected + summary.duplicates
    return summary


def sessions(store: Store, user: str) -> list[str]:
    return [
        str(r[0])
        for r in store.con.execute(
            'SELECT session_id FROM events WHERE user_id = ? ORDER BY "timestamp", item_id',
            [KEYS.pseudonymizer().one(user)],
        ).fetchall()
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "s", create=True)
    yield s
    s.close()


BASE = ["user_id", "item_id", "event_type", "timestamp"]


def test_a_stored_shop_session_is_continued_even_at_the_same_second(store: Store) -> None:
    # The shop's own session ID, stored earlier, 2 hours after the customer's last event.
    ingest(store, [("u1", "i0", "view", at(0))], BASE)
    ingest(store, [("u1", "i1", "view", at(120), "S-shop")], [*BASE, "session_id"])
    s = ingest(
        store,
        [
            ("u1", "i2", "view", at(120)),  # the same second as the stored event
            ("u1", "i3", "view", at(130)),  # 10 minutes later: still that session
            ("u1", "i4", "view", at(200)),  # 70 minutes later: a new derived session
        ],
        BASE,
    )
    first, stored, same_second, later, new = sessions(store, "u1")
    assert stored == same_second == later == "S-shop"
    assert new not in (first, stored)
    assert s.sessions_derived == 1


def test_new_customers_get_identities_once_and_known_ones_none(store: Store) -> None:
    s = ingest(store, [("u1", "i1", "view", at(0)), (" u2 ", "i1", "view", at(0))], BASE)
    assert s.new_customers == 2
    s = ingest(store, [("u2", "i2", "view", at(5)), ("u3", "i1", "view", at(5))], BASE)
    assert s.new_customers == 1
    assert store.reidentify([KEYS.pseudonymizer().one(u) for u in ("u1", "u2", "u3")], KEYS) == [
        "u1",
        "u2",
        "u3",
    ]
    # " u2 " and "u2" are one customer: one session, one pseudonym
    assert len(sessions(store, "u2")) == 2
