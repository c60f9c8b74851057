"""One store, several processes: a real ``tailorcast ingest`` process holds the store while the
engine accepts events; crashes between a merge and the segment's removal add nothing twice."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_fixtures import customers, demo_store, keys_of, stored_event_ids

from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.spool import SpoolWriter, merge_pending, segments
from tailorcast.store import Store

PAUSE_LINE = "ingest transaction open, about to commit"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILORCAST_")}
    env.update(extra)
    return env


def _ingest(args: list[str], store: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailorcast.cli.main",
            "ingest",
            *args,
            "--store",
            str(store),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def _event(user: str, n: int, prefix: str, start: float) -> dict[str, str]:
    return {
        "user_id": user,
        "item_id": f"P{n % 80 + 1:05d}",
        "event_type": "cart",
        "timestamp": str(int(start + 10 * n)),
        "event_id": f"{prefix}-{n}",
    }


@pytest.mark.slow
def test_cli_ingest_and_server_at_once(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "shop", model="itemknn")
    keys = keys_of(store)
    users = customers(store, keys, 20)
    start = time.time() - 300_000
    # The CLI file: its own events plus 30 the server will also receive (a client that
    # sends to both): each must be stored once.
    cli_rows = [_event(users[n % 20], n, "cli", start) for n in range(300)]
    shared = [_event(users[n % 20], n, "both", start + 7) for n in range(30)]
    path = tmp_path / "cli.csv"
    with path.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(cli_rows[0]))
        out.writeheader()
        out.writerows(cli_rows + shared)
    engine = ServingEngine(store, keys=keys, merge_interval_s=0.1)
    try:
        proc = _ingest([str(path)], store, TAILORCAST_TEST_PAUSE_BEFORE_COMMIT="3")
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and PAUSE_LINE not in line:
            line = proc.stderr.readline()
        assert PAUSE_LINE in line  # the CLI now holds the store's write lock
        # 4 and 7 s after the CLI rows of the same customer and item: not double clicks.
        api_rows = [_event(users[n % 20], n, "api", start + 4) for n in range(200)]
        accepted = 0
        for i in range(0, len(api_rows), 25):
            accepted += engine.add_events(api_rows[i : i + 25])["accepted"]
        accepted += engine.add_events(shared)["accepted"]
        assert accepted == 230  # every write answered while the CLI holds the store
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert engine.flush(timeout_s=60)
        assert engine.counters["merge_busy"] > 0  # the server really had to wait
    finally:
        engine.close()
    stored = Counter(
        i for i in stored_event_ids(store) if i.split("-")[0] in ("cli", "api", "both")
    )
    expected = {r["event_id"] for r in cli_rows + shared + api_rows}
    assert set(stored) == expected
    assert max(stored.values()) == 1
    assert not segments(store)


def test_cli_merges_what_the_server_spooled(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "shop", model=None)
    keys = keys_of(store)
    user = customers(store, keys, 1)[0]
    engine = ServingEngine(store, keys=keys, background=False)
    rows = [_event(user, n, "spooled", time.time() - 10_000) for n in range(5)]
    assert engine.add_events(rows)["accepted"] == 5
    engine._writer.seal()
    items = tmp_path / "items.csv"
    items.write_text("item_id,category\nP09999,garden\n")
    proc = _ingest(["--items", str(items)], store)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert sorted(i for i in stored_event_ids(store) if i.startswith("spooled")) == sorted(
        r["event_id"] for r in rows
    )
    engine.close()


def test_replayed_segment_adds_nothing(tmp_path: Path) -> None:
    """A crash after the merge's commit but before the segment is removed: the segment is
    merged again on restart, and its batch labels make that a no-op."""
    store = demo_store(tmp_path / "shop", model=None)
    keys = keys_of(store)
    user = customers(store, keys, 2)
    writer = SpoolWriter(store, keys)
    start = time.time() - 20_000
    writer.append("events", [_event(user[0], n, "replay", start) for n in range(10)])
    writer.append("items", [{"item_id": "P07777", "category": "garden", "available": False}])
    writer.append("forget", [{"user_id": user[1]}])
    sealed = writer.seal()
    assert sealed is not None
    backup = tmp_path / "copy.seg"
    shutil.copy(sealed, backup)
    with Store.open(store) as opened:
        first = merge_pending(opened, keys)
        shutil.copy(backup, sealed)  # the segment "survived" the crash
        again = merge_pending(opened, keys)
        events = opened.con.execute(
            "SELECT count(*) FROM events WHERE event_id LIKE 'replay-%'"
        ).fetchall()[0][0]
        erasures = opened.con.execute("SELECT count(*) FROM erasures").fetchall()[0][0]
        available = opened.con.execute(
            "SELECT available FROM items WHERE item_id = 'P07777'"
        ).fetchall()
    assert (first.groups, first.events_accepted) == (3, 10)
    assert (again.groups, again.skipped_groups) == (0, 3)
    assert events == 10 and erasures == 1 and available == [(False,)]
    assert not segments(store)


def test_abandoned_open_segment_is_adopted(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "shop", model=None)
    keys = keys_of(store)
    user = customers(store, keys, 1)[0]
    writer = SpoolWriter(store, keys)
    writer.append("events", [_event(user, 1, "orphan", time.time() - 5000)])
    # The writing process dies: its lock goes, its segment stays ``.open``.
    os.close(writer._fd)
    writer._fd = -1
    with Store.open(store) as opened:
        report = merge_pending(opened, keys)
    assert report.events_accepted == 1
    assert "orphan-1" in stored_event_ids(store)
