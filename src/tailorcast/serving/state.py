"""What a server process reads from the store, in short read-only visits.

The server keeps everything a request needs in memory (the model, the catalog, the keys of
known events, erased customers, events newer than the model), so no request ever waits for
the store file, which a CLI job may be holding. This module does those visits: each opens the
store read-only, reads, and closes at once; when the file is busy it says so and the caller
retries later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.errors import KeyMaterialError, UserError
from tailorcast.privacy import Keys
from tailorcast.store import Store

__all__ = ["StoreSnapshot", "read_snapshot", "try_open"]

#: 64 bits of the 128-bit ``event_key`` (see :func:`~tailorcast.serving.validate.event_id_key`):
#: enough to tell events apart, and a numpy-friendly type for the index of known keys.
key_hash_sql: Final = "CAST(event_key & 18446744073709551615 AS UBIGINT)"
#: Events newer than the model that a (re)starting server folds in, at most.
MAX_RECENT_EVENTS: Final = 1_000_000
_FALSE = {"false", "0", "no", "f", "n"}


@dataclass
class StoreSnapshot:
    pseudonymize: bool = True
    catalog: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Products indexed by ``item_id``: category, price, title, ..., ``available``."""
    known_keys: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))
    """Sorted 64-bit keys of stored events that carry a shop ``event_id``."""
    erased: dict[str, float] = field(default_factory=dict)
    """Pseudonym -> when it was erased (epoch seconds)."""
    customers: set[str] = field(default_factory=set)
    """Every customer (pseudonym) with events or a customer row."""
    recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``user_id, item_id, event_type, ts_ns`` of events stored after ``since``."""


def try_open(
    folder: Path, *, read_only: bool, attempts: int = 1, wait_s: float = 0.05
) -> Store | None:
    """The store, or None while another process holds it (after ``attempts`` tries)."""
    for attempt in range(attempts):
        try:
            return Store.open(folder, read_only=read_only)
        except UserError as exc:
            if "in use" not in str(exc):
                raise
            if attempt + 1 < attempts:
                time.sleep(min(wait_s * (2**attempt), 0.5))
    return None


def read_snapshot(store: Store, keys: Keys | None, since: float | None) -> StoreSnapshot:
    """Everything the server keeps from the store (``since``: when the model's data was read)."""
    con = store.con
    stored = store.meta("key_fingerprint")
    if keys is not None and stored is not None and stored != keys.fingerprint():
        raise KeyMaterialError(
            f"the keys given do not belong to the store at {store.folder} "
            "(it was created with other keys)"
        )
    snap = StoreSnapshot(pseudonymize=store.meta("pseudonymize") != "false")
    cols = [c for c in store.columns("items") if c not in ("batch_id", "updated_at")]
    blob = {c for c, t in store.columns("items").items() if t == "BLOB"}
    select = ", ".join(f'"{c}"' for c in cols if c not in blob)
    catalog = con.sql(f"SELECT {select} FROM items").df()
    catalog["item_id"] = catalog["item_id"].astype(str)
    snap.catalog = normalise_catalog(catalog.drop_duplicates("item_id", keep="last"))
    keys_table = con.sql(
        f"SELECT DISTINCT {key_hash_sql} AS k FROM events WHERE event_id IS NOT NULL"
    ).to_arrow_table()
    snap.known_keys = np.sort(np.asarray(keys_table.column("k").to_numpy(), dtype=np.uint64))
    ids = con.sql(
        "SELECT user_id FROM events UNION SELECT user_id FROM users WHERE user_id IS NOT NULL"
    ).to_arrow_table()
    snap.customers = {str(u) for u in ids.column("user_id").to_pylist() if u is not None}
    if store.columns("erasures"):
        rows = con.execute(
            "SELECT user_id, epoch(max(erased_at)) FROM erasures GROUP BY 1"
        ).fetchall()
        snap.erased = {str(u): float(t) for u, t in rows}
    if since is not None:
        snap.recent = con.sql(
            'SELECT e.user_id, e.item_id, e.event_type, epoch_ns(e."timestamp") AS ts_ns '
            "FROM events e JOIN batches b USING (batch_id) "
            'WHERE epoch(b.finished_at) >= $since ORDER BY e."timestamp" '
            f"LIMIT {MAX_RECENT_EVENTS}",
            params={"since": since},
        ).df()
    return snap


def normalise_catalog(frame: pd.DataFrame) -> pd.DataFrame:
    """Index by ``item_id``; ``available`` as a boolean column (missing means available)."""
    out = frame.copy()
    out["item_id"] = out["item_id"].astype(str).str.strip()
    out = out.set_index("item_id")
    if "available" in out.columns:
        out["available"] = [_available(v) for v in out["available"].tolist()]
    else:
        out["available"] = True
    return out


def _available(value: Any) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return str(value).strip().lower() not in _FALSE
