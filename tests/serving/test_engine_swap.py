"""Zero-downtime swaps: retrains replace the model while threads recommend and post events;
every request is answered and every event ends up in the store exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_fixtures import customers, demo_store, keys_of, stored_event_ids

from tailorcast.serving.engine import ServingEngine

pytestmark = pytest.mark.slow


def test_retrain_swaps_while_threads_hammer(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "shop", model="itemknn")
    keys = keys_of(store)
    engine = ServingEngine(store, keys=keys, merge_interval_s=0.2)
    users = customers(store, keys, 30)
    errors: list[BaseException] = []
    answered = Counter[str]()
    posted: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    start = time.time() - 400_000

    def reader(offset: int) -> None:
        n = offset
        while not stop.is_set():
            try:
                recs = engine.recommend(users[n % len(users)], 10)
                assert len(recs) == 10
                engine.similar(f"P{n % 80 + 1:05d}", 5)
                with lock:
                    answered["requests"] += 1
            except BaseException as exc:  # counted, never lost
                errors.append(exc)
            n += 1

    def writer() -> None:
        n = 0
        while not stop.is_set():
            # Distinct times 3 s apart: no row is a double click of another.
            rows = [
                {
                    "user_id": users[(n + j) % len(users)],
                    "item_id": f"P{(n + j) % 80 + 1:05d}",
                    "event_type": "view",
                    "timestamp": start + 3 * (n + j),
                    "event_id": f"load-{n + j}",
                }
                for j in range(20)
            ]
            try:
                report = engine.add_events(rows)
                assert report["accepted"] == 20, report
                with lock:
                    posted.extend(r["event_id"] for r in rows)
            except BaseException as exc:
                errors.append(exc)
            n += 20

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=writer))
    try:
        for t in threads:
            t.start()
        versions = [engine.model_info["version"]]
        for model in ("als", "itemknn"):
            job = engine.retrain(model=model, budget_s=5)
            record = engine.retrainer.wait(job, 180)
            assert record["state"] == "done", record
            versions.append(record["version"])
            assert engine.model_info["version"] == record["version"]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    try:
        assert not errors, errors[:3]
        assert answered["requests"] > 0 and len(posted) > 0
        assert len(set(versions)) == 3
        assert engine.flush(timeout_s=60)
        engine.close()  # this process may hold the file one way at a time
        stored = Counter(i for i in stored_event_ids(store) if i.startswith("load-"))
        assert set(stored) == set(posted)
        assert max(stored.values()) == 1
    finally:
        engine.close()
