"""A retrain over HTTP on a real server while clients read and post events: every request
is answered, and every event accepted ends up in the store exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from api_fixtures import trained_store
from test_api_server import CLI, _free_port, _key

from tailorcast.config import Settings
from tailorcast.privacy import resolve_keys
from tailorcast.serving.engine import ServingEngine
from tailorcast.store import Store

pytestmark = pytest.mark.slow


def _stored(store: Path) -> Counter[str]:
    # What a later server or CLI job would do with anything still spooled: merge it first.
    keys = resolve_keys(Settings(), store, insecure_dev=True, create=False)
    engine = ServingEngine(store, keys=keys, background=False)
    try:
        assert engine.flush(timeout_s=60)
    finally:
        engine.close()
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute(
            "SELECT event_id FROM events WHERE event_id LIKE 'swap-%'"
        ).fetchall()
    return Counter(str(r[0]) for r in rows)


def test_http_retrain_swap_loses_nothing(tmp_path: Path) -> None:
    store = trained_store(tmp_path)
    keys = {scope: _key(store, scope)["key"] for scope in ("read", "write", "admin")}
    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--store",
                str(store),
                "--insecure-dev",
                "--port",
                str(port),
                "--rate-limit",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    posted: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    start = time.time() - 400_000
    threads: list[threading.Thread] = []

    def reader(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": keys["read"]}) as c:
            n = offset
            while not stop.is_set():
                try:
                    answer = c.get(f"/v1/customers/C{n % 250 + 1:06d}/recommendations?k=5")
                    with lock:
                        statuses[answer.status_code] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                n += 1

    def writer() -> None:
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": keys["write"]}) as c:
            n = 0
            while not stop.is_set():
                events = [
                    {
                        "user_id": f"C{(n + j) % 250 + 1:06d}",
                        "item_id": f"P{(n + j) % 80 + 1:05d}",
                        "event_type": "view",
                        "timestamp": start + 3 * (n + j),
                        "event_id": f"swap-{n + j}",
                    }
                    for j in range(20)
                ]
                try:
                    answer = c.post("/v1/events", json={"events": events})
                    with lock:
                        statuses[answer.status_code] += 1
                    if answer.status_code == 200 and answer.json()["accepted"] == 20:
                        posted.extend(e["event_id"] for e in events)
                    else:
                        failures.append(answer.text[:200])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                n += 20

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        admin = {"X-API-Key": keys["admin"]}
        before = httpx.get(f"{base}/v1/model", headers=admin).json()["version"]
        threads.extend(threading.Thread(target=reader, args=(i,)) for i in range(2))
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        time.sleep(0.5)
        job = httpx.post(
            f"{base}/v1/model/retrain", json={"model": "als", "budget_s": 5}, headers=admin
        )
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 180
        while httpx.get(f"{base}/v1/model", headers=admin).json()["version"] == before:
            assert time.monotonic() < deadline, "the retrained model was never swapped in"
            time.sleep(0.3)
        time.sleep(0.5)  # traffic on the new model too
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not failures, failures[:5]
    assert set(statuses) == {200} and statuses[200] > 20, statuses
    stored = _stored(store)
    assert set(stored) == set(posted) and len(posted) > 0
    assert max(stored.values()) == 1
