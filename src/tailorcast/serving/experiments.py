"""A/B tests on the live server: ``tailorcast serve --experiment NAME``.

With an experiment set, every recommendation request (``GET`` or ``POST
/v1/customers/{id}/recommendations``):

1. assigns the customer's variant by the experiment's hash of their store ID (the keyed
   pseudonym), exactly as ``tailorcast experiment serve`` and
   :func:`~tailorcast.marketing.experiments.assign_variants` do, so a customer sees the same
   variant on every worker, after every restart and in every batch;
2. answers from that variant's model: a variant pinned to a ``model_version`` keeps that
   version (loaded once at start), a variant without one follows the server's current model
   (retrains and swaps included);
3. returns the variant (and the version that answered) with the list;
4. records the served list with its variant: appended to an in-memory buffer (a list append
   under a lock, no I/O on the request path), which a background thread writes every
   ``flush_interval_s`` as one AES-GCM encrypted, fsync'd record into this process's own
   spool segment (:mod:`tailorcast.serving.spool`). Whoever next merges the spool (the
   server's merger about every second, or any CLI command that opens the store for writing)
   adds the lists to ``experiment_served`` (:func:`~tailorcast.marketing.experiments.
   merge_served`), once, so ``tailorcast experiment measure`` counts them.

Why a buffer rather than an fsync per request: a served list is not a write the client waits
for, and an fsync costs about a millisecond, more than the rest of the request. What a hard
crash can lose is the last ``flush_interval_s`` of exposures (each customer's first list is
what the measurement uses, and customers come back); an orderly shutdown loses nothing.

A pinned variant's model lacks the events between its training and the current model's
(the server folds in only events newer than the current model); that is what pinning an
older version means.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from tailorcast.artifacts import load_artifact
from tailorcast.marketing.experiments import Assigner, Experiment, get_experiment
from tailorcast.rules import Rules
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS
from tailorcast.serving.catalog import CatalogState
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.online import OnlineModel
from tailorcast.serving.spool import SpoolWriter

__all__ = ["ExperimentDep", "ExperimentServer", "close_experiment", "experiment_server"]

logger = logging.getLogger(__name__)

#: Buffered served lists are written to the spool this often (seconds).
FLUSH_INTERVAL_S: Final = 0.5
#: A segment with served lists is sealed (handed to the merger) once it is this old.
_SEAL_AFTER_S: Final = 1.0
#: Served lists kept in memory at most while the spool cannot be written (then dropped, logged).
_MAX_BUFFER: Final = 1_000_000


@dataclass
class _Pinned:
    """A variant fixed to a model version, with its own view of the live catalog (the
    catalog's caches are per model version, so sharing one would make variants evict each
    other's on every request)."""

    state: OnlineModel
    catalog: CatalogState
    frame: Any = None
    """The engine's catalog frame the view was last synced to (frames are replaced on update)."""


class ExperimentServer:
    """Assigns, answers and records for one experiment in one server process; thread-safe."""

    def __init__(
        self,
        engine: ServingEngine,
        experiment: Experiment,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.experiment = experiment
        self.flush_interval_s = flush_interval_s
        self._variant_of = Assigner(experiment)
        self._pinned: dict[str, _Pinned] = {}
        for variant in experiment.variants:
            if variant.model_version is not None:
                self._pinned[variant.name] = _pin(engine, variant.model_version)
        self._sync_lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._buffer_lock = threading.Lock()
        self._writer = SpoolWriter(engine.store_dir, engine.keys)
        self.served: dict[str, int] = {v.name: 0 for v in experiment.variants}
        """Lists served per variant by this process (for logs and tests)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="tailorcast-experiment", daemon=True
        )
        self._thread.start()
        logger.info(
            "experiment %s: %s",
            experiment.name,
            ", ".join(f"{v.name}={v.model_version or 'current'}" for v in experiment.variants),
        )

    # -- requests -------------------------------------------------------------------------------
    def recommend(
        self, customer_id: str, k: int, *, rules: Rules | None = None, explain: bool = True
    ) -> tuple[str, str | None, list[dict[str, Any]]]:
        """``(variant, model version, rows)`` for the customer; the list is recorded."""
        engine = self.engine
        pseudonym = engine._pseudonym(customer_id)
        variant = self._variant_of(pseudonym)
        pinned = self._pinned.get(variant)
        if pinned is None:
            rows = engine.recommend(customer_id, k, rules=rules, explain=explain)
            version = engine.model_info.get("version")
        else:
            rows = self._recommend_pinned(pinned, customer_id, k, rules, explain)
            version = pinned.state.version
        record = {
            "experiment": self.experiment.name,
            "variant": variant,
            "user_id": pseudonym,
            "served_at": time.time(),
            "items": [str(r["item_id"]) for r in rows],
        }
        with self._buffer_lock:
            if len(self._buffer) < _MAX_BUFFER:
                self._buffer.append(record)
            self.served[variant] += 1
        return variant, version, rows

    def _recommend_pinned(
        self,
        pinned: _Pinned,
        customer_id: str,
        k: int,
        rules: Rules | None,
        explain: bool,
    ) -> list[dict[str, Any]]:
        """:meth:`ServingEngine.recommend` with the pinned version in place of the current."""
        engine = self.engine
        live = engine.catalog.frame
        if pinned.frame is not live:
            with self._sync_lock:
                if pinned.frame is not live:
                    pinned.catalog.replace(live)
                    pinned.frame = live
        state = pinned.state
        target, overlay = engine._target(customer_id, state)
        filters = pinned.catalog.compiled(state, rules)
        rows = state.recommend(target, k, overlay, filters=filters, explain=explain)
        return pinned.catalog.with_new_items(state, rows, target, overlay, k, rules)

    # -- recording ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush(seal_after_s=_SEAL_AFTER_S)
            except Exception:  # the thread must outlive a full disk; the buffer is kept
                logger.exception("served lists not written yet (will retry)")

    def flush(self, *, seal_after_s: float = 0.0) -> int:
        """Write the buffered lists durably to the spool and seal the segment once it is
        ``seal_after_s`` old; returns how many lists were written."""
        with self._buffer_lock:
            rows, self._buffer = self._buffer, []
        if rows:
            try:
                self._writer.append("served", rows)
            except BaseException:
                with self._buffer_lock:
                    self._buffer[:0] = rows  # first in line for the next try
                raise
        self._writer.seal(min_age_s=seal_after_s)
        return len(rows)

    def close(self) -> None:
        """Stop the thread, write what is buffered and seal, so the engine's last merge (or
        the next one) takes it. Call before closing the engine."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        finally:
            self._writer.close()


def _pin(engine: ServingEngine, version: str) -> _Pinned:
    """Load a model version for a pinned variant, as the engine loads the current one."""
    art = load_artifact(engine.store_dir, version)
    meta = art.metadata
    trained_at = meta.created_at.timestamp() - float(meta.training.get("seconds") or 0.0)
    weights = (meta.training.get("interactions") or {}).get("event_weights")
    state = OnlineModel(
        art.model,
        version=art.version,
        info={"version": art.version, "model": meta.model},
        event_weights=weights or DEFAULT_EVENT_WEIGHTS,
        loaded_at=time.time(),
        trained_at=trained_at,
    )
    catalog = CatalogState()
    catalog.attach(state)
    return _Pinned(state=state, catalog=catalog)


def experiment_server(engine: ServingEngine, name: str | None) -> ExperimentServer | None:
    """The server side of experiment ``name`` (None: no experiment). Reads its definition in
    one short read-only visit to the store.

    Raises:
        NotFoundError: no experiment of that name, or a pinned model version is gone.
    """
    if not name:
        return None
    with engine.open_store() as store:
        experiment = get_experiment(store, name)
    return ExperimentServer(engine, experiment)


def close_experiment(app: Any) -> None:
    """Flush and stop the app's experiment recorder, if it has one."""
    server: ExperimentServer | None = getattr(app.state, "experiment", None)
    if server is not None:
        server.close()


async def _experiment(request: Request) -> ExperimentServer | None:
    # async: a plain function dependency would cost a hop to the thread pool per request.
    server: ExperimentServer | None = getattr(request.app.state, "experiment", None)
    return server


#: The app's experiment (None when the server runs none), for the recommendation routes.
ExperimentDep = Annotated[ExperimentServer | None, Depends(_experiment)]
