"""The serving engine: everything the HTTP API does to data and models, without HTTP.

- Reads are served from memory: the current model version (an :class:`OnlineModel`), the
  catalog with a content index, and each customer's events that are newer than the model
  (the *overlay*), folded in per request (see :mod:`tailorcast.serving.online`). Customers
  without new events are answered from each model version's precomputed candidates
  (:mod:`tailorcast.serving.candidates`, ranked in batch when the version loads) whenever
  those answer exactly what full scoring would; the others are scored in full.
- Writes are validated like ingest (:mod:`tailorcast.serving.validate`), appended durably to
  the spool (:mod:`tailorcast.serving.spool`) and applied to memory before the call returns;
  a background thread merges the spool into the store whenever it can get the store's write
  lock, and tails other server processes' segments so their writes count here too.
- A new model version (retrained here, by another worker, or by ``tailorcast train``) is
  swapped in by replacing one reference; a request in flight keeps the version it started
  with, so a swap never fails a request.

Example::

    engine = ServingEngine(Path("shop"), keys=keys)
    engine.add_events([{"user_id": "C1", "item_id": "I9", "event_type": "view",
                        "timestamp": "2026-11-28T10:00:00Z"}])
    engine.recommend("C1", k=5)          # already reflects the view
    engine.close()
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from tailorcast.artifacts import latest_version, load_artifact
from tailorcast.errors import DataError, NoModelError, NotFoundError
from tailorcast.ingest.config import IngestConfig, PrivacyConfig
from tailorcast.privacy import Keys
from tailorcast.rules import Rules
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS
from tailorcast.serving.candidates import DEPTH, build_candidates
from tailorcast.serving.catalog import CatalogState
from tailorcast.serving.jobs import Retrainer
from tailorcast.serving.online import OnlineModel, Overlay
from tailorcast.serving.spool import SpoolWriter
from tailorcast.serving.state import StoreSnapshot, read_snapshot, try_open
from tailorcast.serving.sync import StoreSync
from tailorcast.serving.validate import EventValidator
from tailorcast.store import DB_FILE

__all__ = ["ServingEngine"]

logger = logging.getLogger(__name__)

_NO_MODEL: Final = "no model trained yet: run `tailorcast train` (or POST the retrain route)"
#: A customer's overlay keeps at most this many newest events (older ones wait for retrain).
_MAX_OVERLAY: Final = 500
#: Forgotten customers are scored as this (an ID no model knows): cold start + their new events.
_ERASED: Final = "\x00erased"


class ServingEngine(StoreSync):
    """Everything the API does to data and models; thread-safe; no HTTP in here."""

    def __init__(
        self,
        store_dir: Path,
        *,
        keys: Keys | None,
        retrain_interval_s: float | None = None,
        merge_interval_s: float = 1.0,
        background: bool = True,
        candidate_depth: int = DEPTH,
    ) -> None:
        self.store_dir = Path(store_dir)
        if not (self.store_dir / DB_FILE).is_file():
            raise NotFoundError(
                f"no store at {self.store_dir} (run `tailorcast ingest` first, or pass --store)"
            )
        self.keys = keys
        self.merge_interval_s = merge_interval_s
        self.candidate_depth = candidate_depth
        # The first version's candidates are built before the engine serves (a started
        # server is a fast one); later versions' in the background while the old one serves.
        self._build_inline = True
        self._closed = False
        self._lock = threading.RLock()  # overlay, keys, erasures, model reference
        self._db_lock = threading.Lock()  # this process's visits to the store file
        self._writer = SpoolWriter(self.store_dir, keys)
        self._model: OnlineModel | None = None
        self._overlay: dict[str, list[tuple[str, str, int, float]]] = {}
        self._known = np.zeros(0, np.uint64)
        self._recent_keys: set[int] = set()
        self._erased: dict[str, float] = {}
        self._customers: set[str] = set()
        self._offsets: dict[str, int] = {}
        self._snapshot_due = True
        self._next_merge = 0.0
        self._merge_backoff = merge_interval_s
        self._next_latest = 0.0
        self.counters: dict[str, int] = {
            "events_accepted": 0,
            "events_rejected": 0,
            "events_duplicates": 0,
            "events_merged": 0,
            "merges": 0,
            "merge_busy": 0,
            "swaps": 0,
        }
        self.catalog = CatalogState()
        self._snapshot_pseudonymize = True
        self._load_latest()
        self._build_inline = False
        self._take_snapshot(attempts=20)
        self._pseudonymize = self._snapshot_pseudonymize
        if self._pseudonymize and keys is None:
            raise DataError("this store pseudonymizes customer IDs: the server needs its keys")
        self._validator = EventValidator(
            IngestConfig(privacy=PrivacyConfig(pseudonymize=self._pseudonymize)), keys
        )
        self._tail()
        self.retrainer = Retrainer(self, retrain_interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._loop, name="tailorcast-engine", daemon=True
            )
            self._thread.start()
            self.retrainer.start()

    # -- model --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model_info(self) -> dict[str, Any]:
        state = self._model
        info: dict[str, Any] = {"ready": state is not None, "retrain": self.retrainer.last()}
        if state is not None:
            info.update(state.info)
            info["online_updates"] = state.mode
        return info

    def _current(self) -> OnlineModel:
        state = self._model
        if state is None:
            raise NoModelError(_NO_MODEL)
        return state

    def _load_latest(self) -> bool:
        """Swap in the store's LATEST version when it differs from the one served."""
        version = latest_version(self.store_dir)
        current = self._model
        if version is None or (current is not None and current.version == version):
            return False
        self.swap(version)
        return True

    def swap(self, version: str) -> None:
        """Load ``version`` and make it the one served (one reference assignment)."""
        art = load_artifact(self.store_dir, version)
        meta = art.metadata
        trained_at = meta.created_at.timestamp() - float(meta.training.get("seconds") or 0.0)
        weights = (meta.training.get("interactions") or {}).get("event_weights")
        info = {
            "version": art.version,
            "model": meta.model,
            "params": meta.params,
            "trained_at": meta.created_at.isoformat(),
            "metrics": meta.metrics,
            "n_users": meta.n_users,
            "n_items": meta.n_items,
            "n_events": meta.n_events,
            "interactions": meta.training.get("interactions"),
        }
        state = OnlineModel(
            art.model,
            version=art.version,
            info=info,
            event_weights=weights or DEFAULT_EVENT_WEIGHTS,
            loaded_at=time.time(),
            trained_at=trained_at,
        )
        with self._lock:
            self._model = state
            # Events that reached the store before the training read are in the model now.
            for user in list(self._overlay):
                kept = [e for e in self._overlay[user] if e[3] >= trained_at]
                if kept:
                    self._overlay[user] = kept
                else:
                    del self._overlay[user]
            self.counters["swaps"] += 1
        self.catalog.attach(state)
        logger.info("serving model version %s (%s)", art.version, meta.model)
        if self.candidate_depth > 0:
            if self._build_inline:
                self._build_candidates(state)
            else:
                threading.Thread(
                    target=self._build_candidates,
                    args=(state,),
                    name="tailorcast-candidates",
                    daemon=True,
                ).start()

    def _build_candidates(self, state: OnlineModel) -> None:
        """Rank every customer of ``state`` in batch (see :mod:`.candidates`); given up when
        another version replaces it or the engine closes."""
        try:
            table = build_candidates(
                state.model,
                state.version,
                self.catalog.compiled(state, None),
                depth=self.candidate_depth,
                alive=lambda: self._model is state and not self._closed,
            )
        except Exception:  # full scoring still answers; a bug here must not stop serving
            logger.exception("building the candidates of model %s failed", state.version)
            return
        state.candidates = table

    # -- reading the store ----------------------------------------------------------------------
    def _take_snapshot(self, attempts: int = 1) -> bool:
        with self._db_lock:
            store = try_open(self.store_dir, read_only=True, attempts=attempts)
            if store is None:
                return False
            try:
                since = self._model.trained_at if self._model is not None else None
                snap = read_snapshot(store, self.keys, since)
            finally:
                store.close()
        self._apply_snapshot(snap)
        return True

    def _apply_snapshot(self, snap: StoreSnapshot) -> None:
        self._snapshot_pseudonymize = snap.pseudonymize
        with self._lock:
            self._known = np.union1d(self._known, snap.known_keys)
            self._erased.update(snap.erased)
            self._customers |= snap.customers
            if len(snap.recent):
                arrival = self._model.trained_at if self._model is not None else 0.0
                for user, item, etype, ts in snap.recent.itertuples(index=False):
                    self._overlay.setdefault(str(user), []).append(
                        (str(item), str(etype), int(ts), arrival)
                    )
        self.catalog.replace(snap.catalog)
        self._snapshot_due = False

    # -- identities ----------------------------------------------------------------------------
    def _pseudonym(self, user_id: str) -> str:
        uid = str(user_id).strip()
        if not self._pseudonymize:
            return uid
        assert self.keys is not None
        return self.keys.pseudonymizer().one(uid)

    def _target(self, user_id: str, state: OnlineModel) -> tuple[str, Overlay | None]:
        """The ID to score (erased customers lose their trained history) and their overlay."""
        p = self._pseudonym(user_id)
        with self._lock:
            erased = self._erased.get(p)
            events = list(self._overlay.get(p, ()))
        if erased is not None and erased >= state.trained_at:
            target = _ERASED
            events = [e for e in events if e[3] >= erased]
        else:
            target = p
        if not events:
            return target, None
        events.sort(key=lambda e: e[2])
        return target, Overlay(
            tuple(e[0] for e in events), tuple(e[1] for e in events), tuple(e[2] for e in events)
        )

    # -- recommending ---------------------------------------------------------------------------
    def recommend(
        self, user_id: str, k: int = 10, *, rules: Rules | None = None, explain: bool = True
    ) -> list[dict[str, Any]]:
        """Top ``k`` for a customer: ``[{"item_id", "rank", "score", "reason"}]``; an unknown
        customer gets the cold-start list; the customer's newest events are folded in."""
        return self.recommend_versioned(user_id, k, rules=rules, explain=explain)[1]

    def recommend_versioned(
        self, user_id: str, k: int = 10, *, rules: Rules | None = None, explain: bool = True
    ) -> tuple[str, list[dict[str, Any]]]:
        """:meth:`recommend` and the model version that answered (a swap may come between
        two separate calls)."""
        state = self._current()
        target, overlay = self._target(user_id, state)
        filters = self.catalog.compiled(state, rules)
        # Customers with new events are scored in full (their events folded in), the others
        # from the precomputed candidates when those can answer exactly.
        rows = None if overlay is not None else state.cached(target, k, filters, explain)
        if rows is None:
            rows = state.recommend(target, k, overlay, filters=filters, explain=explain)
        return state.version, self.catalog.with_new_items(state, rows, target, overlay, k, rules)

    def rank(
        self, user_id: str, item_ids: list[str], *, explain: bool = True
    ) -> list[dict[str, Any]]:
        """The candidates, best first for this customer; ones the model does not know last."""
        state = self._current()
        target, overlay = self._target(user_id, state)
        wanted = list(dict.fromkeys(str(i) for i in item_ids))
        idx = state.model._item_lookup.get_indexer(pd.Index(wanted, dtype=object))
        known = [w for w, i in zip(wanted, idx, strict=True) if i >= 0]
        rows: list[dict[str, Any]] = []
        if known:
            rows = state.recommend(
                target, len(known), overlay, exclude_seen=False, items=known, explain=explain
            )
        for item, i in zip(wanted, idx, strict=True):
            if i < 0:
                rows.append(
                    {
                        "item_id": item,
                        "rank": len(rows) + 1,
                        "score": None,
                        "reason": "not in the model yet" if explain else None,
                    }
                )
        return rows

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        """Items like ``item_id``; products posted after training are placed by content."""
        state = self._current()
        return self.catalog.similar(state, str(item_id).strip(), k)

    # -- writing --------------------------------------------------------------------------------
    def add_events(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate like ingest, spool durably, fold into the customers' overlays."""
        check = self._validator.check(rows)
        rejects: list[dict[str, Any]] = []
        by_reason: dict[str, int] = {}
        accepted: list[int] = []
        duplicates = 0
        seen: set[Any] = set()
        with self._lock:
            for i, reason in enumerate(check.reasons):
                if reason is not None:
                    rejects.append({"index": i, "reason": reason, "column": check.columns[i]})
                    by_reason[reason] = by_reason.get(reason, 0) + 1
                    continue
                key = check.keys[i]
                mark = check.fingerprints[i]
                if mark in seen or (
                    key is not None and (key in self._recent_keys or self._is_known(key))
                ):
                    duplicates += 1
                    continue
                seen.add(mark)
                accepted.append(i)
        canon = [
            [
                check.pseudonyms[i],
                check.item_ids[i],
                check.event_types[i],
                int(check.timestamps_ns[i]),
                check.keys[i],
            ]
            for i in accepted
        ]
        if accepted:
            self._writer.append("events", [rows[i] for i in accepted], canon)
            self._apply_events(canon, time.time())
        self.counters["events_accepted"] += len(accepted)
        self.counters["events_rejected"] += len(rejects)
        self.counters["events_duplicates"] += duplicates
        return {
            "rows_read": len(rows),
            "accepted": len(accepted),
            "rejected": len(rejects),
            "duplicates": duplicates,
            "rejected_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "rejects": rejects,
        }

    def _is_known(self, key: int) -> bool:
        pos = int(np.searchsorted(self._known, np.uint64(key)))
        return pos < len(self._known) and int(self._known[pos]) == key

    def _apply_events(self, canon: list[list[Any]], arrival: float) -> None:
        with self._lock:
            for user, item, etype, ts, key in canon:
                events = self._overlay.setdefault(str(user), [])
                events.append((str(item), str(etype), int(ts), arrival))
                self._customers.add(str(user))
                if len(events) > _MAX_OVERLAY:
                    del events[: len(events) - _MAX_OVERLAY]
                if key is not None:
                    self._recent_keys.add(int(key))

    def upsert_items(self, rows: list[dict[str, Any]]) -> int:
        """Add or update products (``available: false`` hides one); recommendable at once."""
        clean = self.catalog.validate(rows)
        self._writer.append("items", clean)
        self.catalog.upsert(clean)
        return len(clean)

    def delete_item(self, item_id: str) -> bool:
        """Mark a product unavailable (kept for history and measurement); False if unknown."""
        item = str(item_id).strip()
        known = self.catalog.knows(item, self._model)
        if known:
            self.upsert_items([{"item_id": item, "available": False}])
        return known

    def upsert_customers(self, rows: list[dict[str, Any]]) -> int:
        """Add or update customers (personal columns are encrypted when merged)."""
        clean = []
        for i, row in enumerate(rows):
            uid = row.get("user_id")
            if not isinstance(uid, str | int) or not str(uid).strip():
                raise DataError("missing user_id", source="request", row=i, column="user_id")
            fields = {k: v for k, v in row.items() if v is not None}  # null: unchanged
            clean.append({**fields, "user_id": str(uid).strip()})
        if clean:
            self._writer.append("users", clean)
            with self._lock:
                self._customers.update(self._pseudonym(r["user_id"]) for r in clean)
        return len(clean)

    def delete_customer(self, user_id: str) -> bool:
        """Erase a customer: at once from serving, from the store at the next merge."""
        uid = str(user_id).strip()
        p = self._pseudonym(uid)
        state = self._model
        with self._lock:
            known = (
                p in self._customers
                or p in self._overlay
                or (state is not None and p in state.model._user_lookup)
            )
            self._customers.discard(p)
        self._writer.append("forget", [{"user_id": uid}], [[p]])
        self._forget(p, time.time())
        return bool(known)

    def _forget(self, pseudonym: str, at: float) -> None:
        with self._lock:
            self._erased[pseudonym] = at
            self._overlay.pop(pseudonym, None)

    # -- retraining -----------------------------------------------------------------------------
    def retrain(self, *, model: str = "auto", budget_s: float = 60) -> str:
        """Start a retrain in the background; returns its job id (see ``model_info``)."""
        return self.retrainer.submit(model, budget_s)

    def close(self) -> None:
        """Stop background work, try a last merge; what stays spooled merges later."""
        self._stop.set()
        self._closed = True
        self.retrainer.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._writer.close()
        self._guard(lambda: self.merge())
