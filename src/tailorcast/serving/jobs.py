"""Background retraining for the server: on demand and on a schedule, one at a time per store.

A retrain merges the spool first (so the new model sees every accepted event), reads the
training view in one short read-only visit, trains and saves a version with the same code as
``tailorcast train`` and swaps it in. Several server processes on one store take turns through
a file lock (``spool/retrain.lock``); a scheduled retrain that finds it taken is skipped, as
the other process's new version reaches every server through ``LATEST``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from tailorcast.data.interactions import Interactions, InteractionsConfig
from tailorcast.errors import TailorcastError, UserError
from tailorcast.serving.spool import spool_dir
from tailorcast.serving.state import try_open

if TYPE_CHECKING:
    from tailorcast.serving.engine import ServingEngine

__all__ = ["Retrainer"]

logger = logging.getLogger(__name__)

_LOCK_FILE: Final = "retrain.lock"
_MAX_JOBS: Final = 50


class Retrainer:
    """Runs retrain jobs in worker threads and remembers their outcome."""

    def __init__(self, engine: ServingEngine, interval_s: float | None) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._running: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s:
            self._thread = threading.Thread(
                target=self._schedule, name="tailorcast-retrain-schedule", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(list(self.jobs.values())[-1]) if self.jobs else None

    def submit(self, model: str, budget_s: float, *, wait_for_lock: bool = True) -> str:
        """Start a job; returns its id. A job already running is returned instead."""
        with self._lock:
            if self._running is not None:
                return self._running
            job_id = f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            self.jobs[job_id] = {
                "id": job_id,
                "state": "running",
                "model": model,
                "budget_s": budget_s,
                "started_at": datetime.now(UTC).isoformat(),
                "version": None,
                "error": None,
            }
            while len(self.jobs) > _MAX_JOBS:
                self.jobs.pop(next(iter(self.jobs)))
            self._running = job_id
        threading.Thread(
            target=self._run,
            args=(job_id, model, budget_s, wait_for_lock),
            name=job_id,
            daemon=True,
        ).start()
        return job_id

    def wait(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        """The job's record once it has finished (or after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                job = dict(self.jobs[job_id])
            if job["state"] != "running":
                return job
            time.sleep(0.05)
        return job

    def _schedule(self) -> None:
        assert self.interval_s
        while not self._stop.wait(self.interval_s):
            self.submit("auto", max(5.0, min(60.0, self.interval_s / 4)), wait_for_lock=False)

    def _run(self, job_id: str, model: str, budget_s: float, wait_for_lock: bool) -> None:
        outcome: dict[str, Any]
        try:
            with _file_lock(spool_dir(self.engine.store_dir), blocking=wait_for_lock) as got:
                if not got:
                    outcome = {"state": "skipped", "error": "another server process is retraining"}
                else:
                    outcome = {"state": "done", "version": self._train(model, budget_s)}
        except TailorcastError as exc:
            outcome = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # a bug: logged with its traceback, reported as failed
            logger.exception("retrain %s failed", job_id)
            outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self.jobs[job_id].update(outcome, finished_at=datetime.now(UTC).isoformat())
            self._running = None

    def _train(self, model: str, budget_s: float) -> str:
        from tailorcast.training import train

        engine = self.engine
        if not engine.flush(timeout_s=60.0):
            raise UserError("the store stayed busy for 60 s; spooled events not merged, retry")
        config = self._interactions_config()
        with engine._db_lock:
            store = try_open(engine.store_dir, read_only=True, attempts=30)
            if store is None:
                raise UserError("the store is in use by another process; retry later")
            try:
                inter = Interactions.from_store(store, config=config)
            finally:
                store.close()
        result = train(inter, model, budget_seconds=budget_s, store_dir=engine.store_dir)
        assert result.version is not None
        engine.swap(result.version)
        return result.version

    def _interactions_config(self) -> InteractionsConfig | None:
        state = self.engine._model
        if state is None:
            return None
        saved = dict(state.info.get("interactions") or {})
        saved.pop("as_of", None)  # the new model sees up to the newest event
        return InteractionsConfig(**saved) if saved else None


@contextlib.contextmanager
def _file_lock(folder: Any, *, blocking: bool) -> Iterator[bool]:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
