"""A killed ingest leaves the store exactly as it was, or exactly as a complete ingest would.

The CLI runs in a subprocess on a 200k-row file and is SIGKILLed: once at a known point
inside the open transaction (``TAILORCAST_TEST_PAUSE_BEFORE_COMMIT`` makes it announce that
point on stderr and wait there), and at random moments.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tailorcast.datasets import write_events_csv
from tailorcast.store import Store

pytestmark = pytest.mark.slow

PAUSE_LINE = "ingest transaction open, about to commit"
TABLES = ("events", "rejects", "batches", "identities", "user_flags", "audit_log")
N_BIG = 200_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crash")
    # A year that ends in the past, so no row's fate depends on when the test runs
    # ("timestamp in the future" is judged against the clock).
    big = write_events_csv(
        folder / "big.csv", N_BIG, n_customers=5000, n_items=2000, start="2025-01-01"
    )
    small = write_events_csv(
        folder / "small.csv", 2000, n_customers=5000, n_items=2000, seed=3, start="2025-01-01"
    )
    return {"big": Path(big), "small": Path(small), "folder": folder}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILORCAST_")}
    env.update(extra)
    return env


def _cmd(events: Path, store: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tailorcast.cli.main",
        "ingest",
        str(events),
        "--store",
        str(store),
        "--insecure-dev",
        "--json",
    ]


def _ingest(events: Path, store: Path) -> dict[str, Any]:
    """A normal, complete CLI ingest; returns its JSON totals after checking they reconcile."""
    done = subprocess.run(
        _cmd(events, store),
        cwd=store.parent,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    totals: dict[str, Any] = json.loads(done.stdout)
    assert totals["rows_read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]
    return totals


def _snapshot(store_dir: Path) -> dict[str, Any]:
    """Row counts of every table an ingest writes, plus a checksum of the events."""
    with Store.open(store_dir, read_only=True) as store:
        snap: dict[str, Any] = {t: store.count(t) for t in TABLES}
        rows = store.con.execute(
            "SELECT coalesce(sum(hash(event_key, batch_id, session_id) % 1000003), 0), "
            "coalesce(max(batch_id), 0) FROM events"
        ).fetchall()
        snap["events_checksum"], snap["last_event_batch"] = (int(v) for v in rows[0])
    return snap


@pytest.fixture(scope="module")
def base(data: dict[str, Path]) -> Path:
    """A store holding one earlier, successful small ingest (copied by each test)."""
    store = data["folder"] / "base"
    first = _ingest(data["small"], store)
    assert first["accepted"] > 1000
    return store


@pytest.fixture(scope="module")
def reference(data: dict[str, Path], base: Path) -> tuple[dict[str, Any], float]:
    """The snapshot a complete big ingest makes of ``base`` (on a copy), and its wall time."""
    store = _copy(base, "reference")
    started = time.monotonic()
    _ingest(data["big"], store)
    return _snapshot(store), time.monotonic() - started


def _copy(base: Path, name: str) -> Path:
    store = base.parent / name
    shutil.copytree(base, store)
    return store


def _check_rerun(store: Path, data: dict[str, Path], before: dict[str, Any]) -> dict[str, Any]:
    """A normal re-run after a crash succeeds, reconciles and lands exactly on top of ``before``."""
    totals = _ingest(data["big"], store)
    assert totals["rows_read"] == N_BIG
    after = _snapshot(store)
    assert after["events"] == before["events"] + totals["accepted"]
    assert after["rejects"] == before["rejects"] + totals["rejected"]
    assert after["batches"] == before["batches"] + 1
    assert after["audit_log"] == before["audit_log"] + 1
    assert after["identities"] >= before["identities"]
    with Store.open(store, read_only=True) as opened:
        [(accepted,)] = opened.con.execute(
            "SELECT accepted FROM batches ORDER BY batch_id DESC LIMIT 1"
        ).fetchall()
    assert accepted == totals["accepted"]
    return after


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_kill_inside_the_open_transaction_leaves_the_store_as_before(
    data: dict[str, Path], base: Path, reference: tuple[dict[str, Any], float]
) -> None:
    store = _copy(base, "paused")
    before = _snapshot(store)
    proc = subprocess.Popen(
        _cmd(data["big"], store),
        cwd=store.parent,
        env=_env(TAILORCAST_TEST_PAUSE_BEFORE_COMMIT="30"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        lines = _stderr_lines(proc)
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"ingest ended before the pause: {''.join(seen)}"
            seen.append(line)
            if PAUSE_LINE in line:
                break
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()

    assert _snapshot(store) == before
    after = _check_rerun(store, data, before)
    assert after["events"] > before["events"] + 150_000
    # the re-run lands exactly where an ingest that was never interrupted does
    assert after == reference[0]


def test_kill_at_a_random_moment_leaves_no_partial_state(
    data: dict[str, Path], base: Path, reference: tuple[dict[str, Any], float]
) -> None:
    before = _snapshot(base)
    complete, full_run = reference
    assert complete["events"] > before["events"]
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    # One kill 0.3-1.5 s in, one anywhere in a full run's wall time (so that one is likely to
    # land while the ingest is writing, not while Python is still importing).
    delays = [rng.uniform(0.3, 1.5), rng.uniform(0.3, full_run)]
    outcomes = []
    for k, delay in enumerate(delays):
        store = _copy(base, f"killed-{k}")
        proc = subprocess.Popen(
            _cmd(data["big"], store),
            cwd=store.parent,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        state = _snapshot(store)
        where = f"seed {seed}, kill {k} after {delay:.2f} s (full run {full_run:.2f} s)"
        assert state in (before, complete), where
        outcomes.append("before" if state == before else "complete")
    # The store of the latest kill works normally afterwards: a re-run ends where a complete
    # run does (adding nothing if the killed run had committed).
    totals = _ingest(data["big"], store)
    final = _snapshot(store)
    for table in ("events", "rejects", "identities", "user_flags"):
        assert final[table] == complete[table], (table, where)
    assert final["events_checksum"] == complete["events_checksum"], where
    expected = complete["events"] - before["events"] if state == before else 0
    assert totals["accepted"] == expected, where
    print(f"random kills (seed {seed}): {list(zip(delays, outcomes, strict=True))}")
