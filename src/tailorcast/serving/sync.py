"""Keeping a server process and the store in step: the background merge, the tailing of other
processes' spool segments, and short visits to the store file.

A mixin of :class:`~tailorcast.serving.engine.ServingEngine` (the engine's state lives there);
see docs/serving.md, "One store, several processes", for the design.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from tailorcast.errors import UserError
from tailorcast.privacy import Keys
from tailorcast.serving.catalog import CatalogState
from tailorcast.serving.spool import SpoolWriter, merge_pending, read_segment, segments
from tailorcast.serving.state import try_open
from tailorcast.store import Store

__all__ = ["StoreSync"]

logger = logging.getLogger(__name__)

_TICK_S: Final = 0.2
_LATEST_EVERY_S: Final = 1.0
#: Sealed segments wait this long before a merge, so other workers can tail them first.
_MERGE_MIN_AGE_S: Final = 1.0


class StoreSync:
    """Background merging and tailing for the engine (attributes set by its ``__init__``)."""

    store_dir: Path
    keys: Keys | None
    merge_interval_s: float
    counters: dict[str, int]
    catalog: CatalogState
    _lock: threading.RLock
    _db_lock: threading.Lock
    _writer: SpoolWriter
    _stop: threading.Event
    _known: np.ndarray[Any, np.dtype[np.uint64]]
    _recent_keys: set[int]
    _offsets: dict[str, int]
    _snapshot_due: bool
    _next_merge: float
    _merge_backoff: float
    _next_latest: float

    def _apply_events(self, canon: list[list[Any]], arrival: float) -> None:
        raise NotImplementedError

    def _forget(self, pseudonym: str, at: float) -> None:
        raise NotImplementedError

    def _load_latest(self) -> bool:
        raise NotImplementedError

    def _take_snapshot(self, attempts: int = 1) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def open_store(self, *, write: bool = False, timeout_s: float = 10.0) -> Iterator[Store]:
        """A short visit to the store for routes that need it (audiences, campaigns): DuckDB
        lets a process hold the file one way at a time, so visits take turns with the
        engine's own, and wait (up to ``timeout_s``) while another process holds it."""
        deadline = time.monotonic() + timeout_s
        with self._db_lock:
            while True:
                store = try_open(self.store_dir, read_only=not write)
                if store is not None:
                    break
                if time.monotonic() > deadline:
                    raise UserError(
                        f"the store at {self.store_dir} is in use by another tailorcast "
                        "process; try again when it has finished"
                    )
                time.sleep(0.1)
            try:
                yield store
            finally:
                store.close()

    def _loop(self) -> None:
        while not self._stop.wait(_TICK_S):
            self._guard(self._tail)
            now = time.monotonic()
            if now >= self._next_merge:
                ok = self._guard(lambda: self.merge(min_age_s=_MERGE_MIN_AGE_S))
                self._merge_backoff = (
                    self.merge_interval_s if ok else min(self._merge_backoff * 2, 10.0)
                )
                self._next_merge = now + self._merge_backoff
            if now >= self._next_latest:
                self._next_latest = now + _LATEST_EVERY_S
                self._guard(self._load_latest)
                if self._snapshot_due:
                    self._guard(self._take_snapshot)

    def _guard(self, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except Exception:  # the loop must outlive any one failure; it is logged
            logger.exception("background step failed (will retry)")
            return False

    def merge(self, *, min_age_s: float = 0.0) -> bool:
        """Seal this process's segment and merge sealed ones into the store, if the store's
        write lock is free now. True when nothing is left waiting on this process."""
        self._writer.seal(min_age_s=0.5 if min_age_s else 0.0)
        if not segments(self.store_dir, sealed_only=True) and self._writer.current is None:
            return True
        with self._db_lock:
            store = try_open(self.store_dir, read_only=False)
            if store is None:
                self.counters["merge_busy"] += 1
                return False
            try:
                report = merge_pending(store, self.keys, min_age_s=min_age_s)
            finally:
                store.close()
        self.counters["merges"] += report.segments
        self.counters["events_merged"] += report.events_accepted
        self._compact_keys()
        return True

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Merge everything spooled so far, retrying while the store is busy."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            self._writer.seal()
            if self.merge() and not segments(self.store_dir, sealed_only=True):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _compact_keys(self) -> None:
        with self._lock:
            if len(self._recent_keys) > 100_000:
                fresh = np.fromiter(self._recent_keys, dtype=np.uint64)
                self._known = np.union1d(self._known, fresh)
                self._recent_keys.clear()

    def _tail(self) -> None:
        """Apply other processes' spooled writes (their workers' events count here too)."""
        for path in segments(self.store_dir):
            stem = path.stem
            if stem in self._writer.names:
                continue
            try:
                records, offset, _ = read_segment(path, self.keys, self._offsets.get(stem, 0))
            except FileNotFoundError:
                continue
            self._offsets[stem] = offset
            for rec in records:
                if rec.op == "events":
                    self._apply_events(rec.canon, rec.at)
                elif rec.op == "items":
                    self.catalog.upsert(rec.rows)
                elif rec.op == "forget":
                    for (p,) in rec.canon:
                        self._forget(str(p), rec.at)
