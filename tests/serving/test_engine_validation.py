"""The server's per-row validation agrees with the ingest's, row by row, on a hostile batch."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import ingest_events
from tailorcast.privacy import Keys, generate_key
from tailorcast.serving.validate import EventValidator, event_id_key
from tailorcast.store import Store


def _keys() -> Keys:
    import base64

    return Keys(base64.b64decode(generate_key()), base64.b64decode(generate_key()))


def _rows() -> list[dict[str, Any]]:
    now = time.time()
    good = {"user_id": "C1", "event_type": "view", "timestamp": "2026-01-02T03:04:05Z"}
    variants: list[dict[str, Any]] = [
        {},
        {"timestamp": "2026-01-02T03:04:05+02:00"},
        {"timestamp": "2026-01-02"},
        {"timestamp": "2026-01-02 03:04:05.123456"},
        {"timestamp": 1_767_000_000},
        {"timestamp": "1767000000.5"},
        {"timestamp": 1_767_000_000_123},
        {"timestamp": 1e15},
        {"timestamp": "soon"},
        {"timestamp": ""},
        {"timestamp": now + 10 * 86_400},
        {"timestamp": "1985-05-05T00:00:00"},
        {"user_id": None},
        {"user_id": "   "},
        {"user_id": "x" * 300},
        {"user_id": " C2 "},
        {"item_id": ""},
        {"item_id": "a\x00b"},
        {"event_type": "teleport"},
        {"event_type": " Add_To_Cart "},
        {"event_type": None},
        {"amount": "abc"},
        {"amount": -5},
        {"amount": "inf"},
        {"amount": "12.50"},
        {"quantity": 0},
        {"quantity": "2.5"},
        {"quantity": "3"},
        {"quantity": "x"},
        {"session_id": "s1", "amount": 3},
    ]
    rows = []
    for i, change in enumerate(variants):
        row = {**good, "item_id": f"I{i}", "event_id": f"v-{i}", **change}
        rows.append(row)
    return rows


def test_validator_agrees_with_ingest(tmp_path: Path) -> None:
    keys = _keys()
    config = IngestConfig()
    rows = _rows()
    check = EventValidator(config, keys).check(rows)
    columns = list(dict.fromkeys(c for r in rows for c in r))
    frame = pd.DataFrame(
        {c: [None if r.get(c) is None else str(r[c]) for r in rows] for c in columns},
        dtype=object,
    )
    with Store.open(tmp_path / "store", create=True) as store:
        summary = ingest_events(store, frame, config=config, keys=keys)
        rejects = dict(store.con.execute("SELECT line, reason FROM rejects").fetchall())
        stored = {
            str(e): (u, t, ts)
            for e, u, t, ts in store.con.execute(
                'SELECT event_id, user_id, event_type, "timestamp" FROM events'
            ).fetchall()
        }
        keys_stored = dict(
            store.con.execute(
                "SELECT event_id, CAST(event_key & 18446744073709551615 AS UBIGINT) FROM events"
            ).fetchall()
        )
    mismatch = [
        (i, rows[i], check.reasons[i], rejects.get(i + 1))
        for i in range(len(rows))
        if check.reasons[i] != rejects.get(i + 1)
    ]
    assert not mismatch, mismatch
    assert summary.rejected == sum(r is not None for r in check.reasons)
    for i, row in enumerate(rows):
        assert check.reasons[i] == rejects.get(i + 1), (i, row)
        if check.reasons[i] is None:
            user, etype, ts = stored[row["event_id"]]
            assert check.pseudonyms[i] == user and check.event_types[i] == etype, row
            assert (
                check.timestamps_ns[i]
                == int(
                    (ts.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
                    * 1_000_000
                )
                * 1000
            ), row
            assert check.keys[i] == keys_stored[row["event_id"]] == event_id_key(row["event_id"])
