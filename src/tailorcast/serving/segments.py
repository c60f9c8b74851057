"""A customer's RFM segment and predicted lifetime value, for ``GET .../segments``.

Both are shop-wide models (quintiles, a fitted BG/NBD + Gamma-Gamma), so they are computed
for every customer at once on a short read-only visit to the store and kept in memory for
``ttl_s`` seconds; a request then is a dictionary lookup. The first request after start or
expiry pays for the computation (seconds on a 100k-customer shop), in the thread pool.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from tailorcast.errors import DataError, NotFoundError, TailorcastError, UserError
from tailorcast.marketing.clv import fit_clv
from tailorcast.marketing.rfm import rfm_segments
from tailorcast.serving.engine import ServingEngine
from tailorcast.store import Store

__all__ = ["CLV_HORIZON_DAYS", "SegmentTable", "StoreBusyError", "store_visit"]

#: Lifetime value is predicted over this many days.
CLV_HORIZON_DAYS: Final = 365


class StoreBusyError(TailorcastError):
    """The store is held by another process (a CLI job) for longer than a request waits."""


@contextlib.contextmanager
def store_visit(engine: ServingEngine, *, write: bool = False) -> Iterator[Store]:
    """A short visit to the store through the engine, which takes turns with its own visits
    (DuckDB lets one process hold a file one way at a time); 503 while another holds it."""
    with contextlib.ExitStack() as stack:
        try:
            store = stack.enter_context(engine.open_store(write=write))
        except NotFoundError:
            raise
        except UserError as exc:  # held by another process past the engine's wait
            raise StoreBusyError(str(exc)) from None
        yield store


@dataclass(frozen=True)
class _Table:
    at: float
    as_of: str | None
    pseudonymize: bool
    rfm: pd.DataFrame
    """RFM columns, indexed by customer (pseudonym)."""
    clv: pd.DataFrame
    """expected_purchases, expected_spend, p_alive, indexed by customer."""
    clv_note: str | None


class SegmentTable:
    """RFM and CLV of every customer, refreshed at most every ``ttl_s`` seconds."""

    def __init__(self, engine: ServingEngine, *, ttl_s: float = 600.0) -> None:
        self.engine = engine
        self.keys = engine.keys
        self.ttl_s = ttl_s
        self._table: _Table | None = None
        self._lock = threading.Lock()

    def lookup(self, customer_id: str) -> dict[str, Any]:
        """``as_of``, ``rfm`` (scores and segment; None without orders), ``clv`` (None when
        the customer has no orders or the shop too few repeat buyers to fit it)."""
        table = self._current()
        uid = customer_id.strip()
        if table.pseudonymize:
            if self.keys is None:
                raise DataError("this store pseudonymizes customer IDs: the server needs its keys")
            uid = self.keys.pseudonymizer().one(uid)
        clv = _row(table.clv, uid)
        if clv is not None:
            clv["horizon_days"] = CLV_HORIZON_DAYS
        return {
            "as_of": table.as_of,
            "rfm": _row(table.rfm, uid),
            "clv": clv,
            "clv_note": table.clv_note,
        }

    def _current(self) -> _Table:
        table = self._table
        if table is not None and time.monotonic() - table.at < self.ttl_s:
            return table
        with self._lock:  # one computation at a time; the others wait and reuse it
            table = self._table
            if table is None or time.monotonic() - table.at >= self.ttl_s:
                table = self._table = self._compute()
        return table

    def _compute(self) -> _Table:
        with store_visit(self.engine) as store:
            pseudonymize = store.pseudonymized
            rfm = rfm_segments(store).set_index("user_id")
            clv_note = None
            try:
                model = fit_clv(store, None)
                clv = model.predict(CLV_HORIZON_DAYS).set_index("user_id")
                as_of: str | None = model.as_of.isoformat()
            except DataError as exc:  # too few repeat buyers to fit: RFM still answers
                clv_note = f"lifetime value not available: {exc}"
                clv = pd.DataFrame(index=pd.Index([], dtype=object))
                as_of = None
        return _Table(time.monotonic(), as_of, pseudonymize, rfm, clv, clv_note)


def _row(frame: pd.DataFrame, uid: str) -> dict[str, Any] | None:
    pos = int(frame.index.get_indexer(pd.Index([uid], dtype=object))[0])
    if pos < 0:
        return None
    return {str(k): _plain(v) for k, v in frame.iloc[pos].items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars -> Python, for JSON
        value = value.item()
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value
