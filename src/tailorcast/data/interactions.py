"""The training view: one read-only :class:`Interactions` object that every model reads.

It holds the customer and item vocabularies (row / column index <-> ID), the weighted sparse
customer x item matrix, one row per kept event, and the item and customer attributes. Models
never reach back into the store or raw files; they get an ``Interactions`` (or a split of one).

How an event becomes a weight (:class:`InteractionsConfig`):

1. events of types without a weight (or, with ``rating_column``, without a rating) are dropped;
   with ``exclude_bots`` so are customers flagged in the store's ``user_flags``;
2. ``as_of`` (default: the latest remaining event) drops later events, ``window_days`` earlier
   ones; ``as_of`` is also the reference time for the decay;
3. weight = event-type weight (or the rating), times ``0.5 ** (age_days / half_life_days)``;
4. customers with fewer than ``min_user_events`` and items with fewer than ``min_item_events``
   events are dropped, repeatedly until both hold (a k-core);
5. the matrix cell of a (customer, item) pair is the sum of the weights of its events.

Example::

    with Store.open("tailorcast-store", read_only=True) as store:
        inter = Interactions.from_store(store, config=InteractionsConfig(half_life_days=30))
    inter.matrix                   # float32 CSR, n_users x n_items
    inter.user_index(["u1", "nobody"])   # array([  0, -1])
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tailorcast.errors import ConfigError, DataError
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS, DEFAULT_PII_COLUMNS, EVENT_TYPES
from tailorcast.store import Store, quote_ident, scalar

__all__ = ["Interactions", "InteractionsConfig"]

Ids = npt.NDArray[np.object_]
IdArray = npt.NDArray[np.int64]

_DAY_NS: Final = 86_400 * 10**9
_EPOCH: Final = datetime(1970, 1, 1)
#: Columns of ``Interactions.events`` built here; an extra source column of the same name is
#: kept with a ``_src`` suffix.
_CORE: Final = ("user_idx", "item_idx", "event_type", "timestamp", "weight")
_CANONICAL: Final = ("user_id", "item_id", "event_type", "timestamp", "amount", "session_id")
#: Store columns that are bookkeeping, not data.
_EVENT_INTERNAL: Final = frozenset({"event_key", "event_id", "batch_id"})
_TABLE_INTERNAL: Final = frozenset({"batch_id", "updated_at"})
#: Temp tables of from_store: customer and item vocabularies, and their latest events.
_TMP: Final = ("_tc_inter_u", "_tc_inter_i", "_tc_inter_last")


class InteractionsConfig(BaseModel):
    """Which events make up the training view and how much each one weighs.

    >>> InteractionsConfig(half_life_days=30).event_weights["purchase"]
    5.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    """Weight per event type; types left out are dropped. Ignored with ``rating_column``."""
    half_life_days: float | None = Field(default=None, gt=0)
    """Time decay: an event this many days older than ``as_of`` weighs half."""
    rating_column: str | None = None
    """A numeric event column used as the weight instead of ``event_weights`` (MovieLens:
    ``"rating"``); events without a value in it are dropped."""
    as_of: datetime | None = None
    """Only events at or before this (naive UTC) time; the decay's reference time. Default: the
    latest event. The built view's ``config.as_of`` always holds the time actually used."""
    window_days: float | None = Field(default=None, gt=0)
    """Only events at most this many days before ``as_of``."""
    exclude_bots: bool = True
    """Drop customers the store flagged as bots (``user_flags.is_bot``); store only."""
    min_user_events: int = Field(default=1, ge=1)
    """Drop customers with fewer kept events (applied together with ``min_item_events``)."""
    min_item_events: int = Field(default=1, ge=1)
    """Drop the events of items with fewer kept events (catalogue items stay, cold)."""

    @field_validator("event_weights")
    @classmethod
    def _known_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("event_weights is empty: give a weight to at least one event type")
        for name, weight in value.items():
            if name not in EVENT_TYPES:
                raise ValueError(
                    f"unknown event type {name!r} in event_weights; known: {', '.join(EVENT_TYPES)}"
                )
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(
                    f"event weight of {name!r} must be a finite number > 0 (got {weight}); "
                    "leave the type out to drop its events"
                )
        return value

    @field_validator("as_of")
    @classmethod
    def _naive_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    @field_validator("rating_column")
    @classmethod
    def _not_canonical(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value in _CANONICAL + _CORE):
            raise ValueError(f"rating_column must name an extra numeric column, not {value!r}")
        return value


@dataclass(frozen=True, eq=False, repr=False)
class Interactions:
    """The read-only training view. Build with :meth:`from_store` or :meth:`from_events`.

    Attributes:
        user_ids: row index -> customer ID as stored (a pseudonym), sorted; object array.
        item_ids: column index -> item ID, sorted; catalogue items without events included.
        matrix: float32 CSR ``(n_users, n_items)``: summed weights of the kept events.
        events: one row per kept event, sorted by customer, time, item: ``user_idx``,
            ``item_idx`` (int32), ``event_type`` (category), ``timestamp`` (datetime64[ns],
            naive UTC), ``weight`` (float32), ``amount`` (float), ``session_id`` (str), then
            the extra columns (``quantity``, ``amount_outlier``, ``rating``...).
        items: item attributes indexed by ``item_id`` in ``item_ids`` order (NaN where missing).
        users: customer attributes indexed by ``user_id`` in ``user_ids`` order, no personal
            data.
        config: the configuration applied, with ``as_of`` set to the reference time used.
    """

    user_ids: Ids
    item_ids: Ids
    matrix: sp.csr_matrix
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    config: InteractionsConfig
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        shape = (len(self.user_ids), len(self.item_ids))
        if self.matrix.shape != shape:
            raise ValueError(f"matrix has shape {self.matrix.shape}, vocabularies give {shape}")
        if len(self.items) != shape[1] or len(self.users) != shape[0]:
            raise ValueError("items and users must have one row per vocabulary entry")

    def __repr__(self) -> str:
        return (
            f"Interactions(users={self.n_users}, items={self.n_items}, "
            f"events={len(self.events)}, nnz={self.matrix.nnz})"
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def user_index(self, ids: Sequence[str] | npt.ArrayLike) -> IdArray:
        """Row index of each customer ID, -1 where unknown.

        >>> inter.user_index(["u1", "nobody"])  # doctest: +SKIP
        array([ 0, -1])
        """
        return _lookup(self._user_lookup, ids)

    def item_index(self, ids: Sequence[str] | npt.ArrayLike) -> IdArray:
        """Column index of each item ID, -1 where unknown."""
        return _lookup(self._item_lookup, ids)

    def seen(
        self, user_idx: npt.ArrayLike, event_types: Sequence[str] | None = None
    ) -> sp.csr_matrix:
        """0/1 rows (float32 CSR, ``len(user_idx) x n_items``) of the items those customers
        interacted with, optionally only through the given event types (e.g. ``["purchase"]``).
        An index of -1 (unknown customer) gives an empty row."""
        idx = np.asarray(user_idx, dtype=np.int64).ravel()
        if idx.size and (idx.min() < -1 or idx.max() >= self.n_users):
            raise IndexError(
                f"user_idx must lie in [-1, {self.n_users - 1}] (got {idx.min()}..{idx.max()})"
            )
        binary = self._binary(event_types)
        known = idx >= 0
        rows = binary[np.where(known, idx, 0)]
        if not known.all():
            rows = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)
            rows.eliminate_zeros()
        return sp.csr_matrix(rows)

    def _binary(self, event_types: Sequence[str] | None) -> sp.csr_matrix:
        if isinstance(event_types, str):
            raise TypeError("event_types must be a list of event types, not a single string")
        key = None if event_types is None else tuple(sorted(set(event_types)))
        cache_key = ("seen", key)
        if cache_key not in self._cache:
            unknown = sorted(set(key or ()) - set(EVENT_TYPES))
            if unknown:
                raise ConfigError(
                    f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
                )
            ev = self.events
            users = ev["user_idx"].to_numpy()
            items = ev["item_idx"].to_numpy()
            if key is not None:
                mask = ev["event_type"].isin(key).to_numpy()
                users, items = users[mask], items[mask]
            m = sp.csr_matrix(
                (np.ones(len(users), np.float32), (users, items)), shape=self.matrix.shape
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._cache[cache_key] = m
        result: sp.csr_matrix = self._cache[cache_key]
        return result

    def with_events(self, mask: npt.ArrayLike) -> Interactions:
        """The same vocabularies, items and users with a subset of the events (``mask``: one
        bool per event) and the matrix rebuilt from them. This is what splits are made of."""
        keep = np.asarray(mask)
        if keep.dtype != np.bool_ or keep.shape != (len(self.events),):
            raise ValueError(
                f"mask must be a boolean array with one entry per event ({len(self.events)}), "
                f"got dtype {keep.dtype} and shape {keep.shape}"
            )
        events = self.events.loc[keep].reset_index(drop=True)
        return Interactions(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            matrix=_matrix(events, self.n_users, self.n_items),
            events=events,
            items=self.items,
            users=self.users,
            config=self.config,
        )

    def fingerprint(self) -> str:
        """SHA-256 (hex) over the vocabularies, the events (customer, item, time, weight) and
        the configuration: identifies the training data a model artifact was fitted on."""
        if "fingerprint" not in self._cache:
            h = hashlib.sha256()
            for name, ids in (("users", self.user_ids), ("items", self.item_ids)):
                h.update(f"{name}:{len(ids)}\n".encode())
                h.update("\x1f".join(ids.tolist()).encode("utf-8", "surrogatepass"))
            ev = self.events
            h.update(f"events:{len(ev)}\n".encode())
            for column, dtype in (
                ("user_idx", np.int32),
                ("item_idx", np.int32),
                ("timestamp", np.int64),
                ("weight", np.float32),
            ):
                values = ev[column].to_numpy()
                if column == "timestamp":
                    values = values.astype("datetime64[ns]").view(np.int64)
                h.update(np.ascontiguousarray(values, dtype=dtype).data)
            h.update(
                json.dumps(self.config.model_dump(mode="json"), sort_keys=True).encode("utf-8")
            )
            self._cache["fingerprint"] = h.hexdigest()
        digest: str = self._cache["fingerprint"]
        return digest

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        config: InteractionsConfig | None = None,
    ) -> Interactions:
        """Build the view from a canonical events frame.

        ``events`` has ``user_id``, ``item_id``, ``event_type`` (view, favorite, cart,
        purchase), ``timestamp`` (datetime64, ISO-8601 text or Unix seconds; naive means UTC)
        and optionally ``amount``, ``session_id`` and extra columns, which are kept.
        ``items`` / ``users`` hold attributes with an ``item_id`` / ``user_id`` column (or
        index); personal columns (email, phone, name...) of ``users`` are dropped.
        ``exclude_bots`` does not apply here: a frame carries no bot flags.

        Raises:
            DataError: a required column is missing, or a row has no ID, an unknown event
                type, an unreadable timestamp or a non-numeric rating (positions are 0-based);
                or no event is left after filtering.
        """
        cfg = config or InteractionsConfig()
        source = "events frame"
        required = ("user_id", "item_id", "event_type", "timestamp")
        missing = [c for c in required if c not in events.columns]
        if missing:
            found = ", ".join(map(str, events.columns))
            raise DataError(
                f"missing column(s) {', '.join(missing)} (found: {found})", source=source
            )
        if len(events) == 0:
            raise DataError("no events", source=source)
        user = _ids(events["user_id"], "user_id")
        item = _ids(events["item_id"], "item_id")
        codes = _event_codes(events["event_type"])
        ts = _timestamps(events["timestamp"])
        if cfg.rating_column is not None:
            base = _ratings(events, cfg.rating_column)
        else:
            base = _type_weights(cfg)[codes]
        keep = np.isfinite(base)
        if not keep.any():
            raise DataError("no events with a weight (check event_weights / rating_column)")
        ref_ns = _ref_ns(cfg, ts[keep])
        keep &= ts <= ref_ns
        if cfg.window_days is not None:
            keep &= ts >= ref_ns - round(cfg.window_days * _DAY_NS)
        if not keep.any():
            raise DataError(_nothing_left(cfg))

        user_codes, user_uniques = pd.factorize(user[keep], sort=True)
        item_attrs = _attributes(items, "item_id", "items frame")
        users_attrs = _attributes(users, "user_id", "users frame")
        event_items = np.asarray(pd.unique(item[keep]), dtype=object)
        catalogue = (
            np.asarray(item_attrs.index, dtype=object)
            if item_attrs is not None
            else np.empty(0, dtype=object)
        )
        item_vocab = np.unique(np.concatenate([event_items, catalogue]))
        item_lookup = pd.Index(item_vocab)
        others = _other_columns(events.reset_index(drop=True))
        if cfg.rating_column is not None:
            others[cfg.rating_column] = base
        parts = _Parts(
            user_vocab=np.asarray(user_uniques, dtype=object),
            item_vocab=item_vocab,
            in_catalogue=item_lookup.isin(catalogue),
            user_idx=user_codes.astype(np.int64),
            item_idx=item_lookup.get_indexer(item[keep]).astype(np.int64),
            type_codes=codes[keep],
            ts_ns=ts[keep],
            base=base[keep],
            others=others.loc[keep].reset_index(drop=True),
        )
        return _assemble(parts, cfg, ref_ns, item_attrs, users_attrs, presorted=False)

    @classmethod
    def from_store(cls, store: Store, *, config: InteractionsConfig | None = None) -> Interactions:
        """Build the view from the store's events, items and users tables.

        DuckDB does the filtering (types, bots, ``as_of``, window) and the ID -> index mapping,
        so only integer indices, times and the event columns travel to Python; personal
        (BLOB) columns are never read. Flagged amount outliers keep their (capped) amount.

        Raises:
            DataError: the store has no events, or none is left after filtering.
            ConfigError: ``rating_column`` is not a column of the events table.
        """
        cfg = config or InteractionsConfig()
        con = store.con
        if not con.execute("SELECT 1 FROM events LIMIT 1").fetchall():
            raise DataError("no events in the store: run `tailorcast ingest` first")
        query = _StoreQuery(store, cfg)
        try:
            as_of = query.vocabularies()
            table = query.events()
            user_vocab = _column_ids(con.sql(f"SELECT user_id FROM {_TMP[0]} ORDER BY idx"))
            item_table = con.sql(
                f"SELECT item_id, in_catalogue FROM {_TMP[1]} ORDER BY idx"
            ).to_arrow_table()
            users_attrs = _store_attributes(store, "users", _TMP[0])
            item_attrs = _store_attributes(store, "items", None)
        finally:
            for name in _TMP:
                con.execute(f"DROP TABLE IF EXISTS {name}")

        codes = table.column("type_code").to_numpy().astype(np.int8)
        others = table.select(query.other_columns).to_pandas()
        if cfg.rating_column is not None:
            base = others[cfg.rating_column].to_numpy(np.float64)
        else:
            base = _type_weights(cfg)[codes]
        parts = _Parts(
            user_vocab=user_vocab,
            item_vocab=_column_ids(item_table.select(["item_id"])),
            in_catalogue=np.asarray(item_table.column("in_catalogue").to_numpy(), dtype=bool),
            user_idx=table.column("user_idx").to_numpy(),
            item_idx=table.column("item_idx").to_numpy(),
            type_codes=codes,
            ts_ns=table.column("ts").to_numpy().astype("datetime64[ns]").view(np.int64),
            base=base,
            others=others,
        )
        return _assemble(parts, cfg, _to_ns(as_of), item_attrs, users_attrs, presorted=True)


class _StoreQuery:
    """The SQL of :meth:`Interactions.from_store`: two scans of the events table (customer
    and item vocabularies, then the events), neither materialising the event rows."""

    def __init__(self, store: Store, cfg: InteractionsConfig) -> None:
        self.con = store.con
        self.cfg = cfg
        columns = store.columns("events")
        types = cfg.event_weights if cfg.rating_column is None else EVENT_TYPES
        self.where = [
            "e.user_id IS NOT NULL",
            "e.item_id IS NOT NULL",
            'e."timestamp" IS NOT NULL',
            # validated names (InteractionsConfig), safe to inline
            "e.event_type IN (" + ", ".join(f"'{t}'" for t in types) + ")",
        ]
        self.rating_sql = ""
        if cfg.rating_column is not None:
            if cfg.rating_column not in columns:
                raise ConfigError(
                    f"rating_column {cfg.rating_column!r} is not a column of the events "
                    f"(columns: {', '.join(columns)})"
                )
            self.rating_sql = f"TRY_CAST(e.{quote_ident(cfg.rating_column)} AS DOUBLE)"
            self.where.append(f"isfinite({self.rating_sql})")
        if cfg.exclude_bots and store.columns("user_flags"):
            self.where.append(
                "NOT EXISTS (SELECT 1 FROM user_flags f WHERE f.is_bot AND f.user_id = e.user_id)"
            )
        self.params: dict[str, Any] = {}
        skip = {"user_id", "item_id", "event_type", "timestamp", "amount", "session_id"}
        self.extras = [
            c for c, kind in columns.items() if c not in skip | _EVENT_INTERNAL and kind != "BLOB"
        ]
        self.other_columns = ["amount", "session_id"] + [
            f"{c}_src" if c in _CORE else c for c in self.extras
        ]

    def vocabularies(self) -> datetime:
        """Fill the customer and item vocabulary tables; return the reference time."""
        con, where = self.con, " AND ".join(self.where)
        if self.cfg.as_of is not None:
            self.params["as_of"] = self.cfg.as_of
            where += ' AND e."timestamp" <= $as_of'
        # Each customer's and item's latest event (one scan for both) gives the default as_of
        # and, against the window start, whether it has any event in the window.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_TMP[2]} AS SELECT user_id, item_id, "
            f'max(e."timestamp") AS last FROM events e WHERE {where} '
            "GROUP BY GROUPING SETS ((user_id), (item_id))",
            self.params or None,
        )
        as_of: datetime | None = self.cfg.as_of
        if as_of is None:
            as_of = scalar(con, f"SELECT max(last) FROM {_TMP[2]} WHERE user_id IS NOT NULL")
        if as_of is None:
            raise DataError(_nothing_left(self.cfg))
        self.params["as_of"] = as_of
        if self.cfg.window_days is not None:
            self.params["start"] = as_of - timedelta(days=self.cfg.window_days)
        in_window = "last >= $start" if "start" in self.params else "true"
        window_params = {"start": self.params["start"]} if "start" in self.params else None
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_TMP[0]} AS SELECT user_id, "
            "CAST(row_number() OVER (ORDER BY user_id) - 1 AS INTEGER) AS idx "
            f"FROM {_TMP[2]} WHERE user_id IS NOT NULL AND {in_window}",
            window_params,
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_TMP[1]} AS SELECT item_id, "
            "CAST(row_number() OVER (ORDER BY item_id) - 1 AS INTEGER) AS idx, "
            "bool_or(cat) AS in_catalogue FROM ("
            f"  SELECT item_id, false AS cat FROM {_TMP[2]}"
            f"  WHERE item_id IS NOT NULL AND {in_window}"
            "  UNION ALL SELECT item_id, true FROM items WHERE item_id IS NOT NULL"
            ") GROUP BY item_id",
            window_params,
        )
        if not con.execute(f"SELECT 1 FROM {_TMP[0]} LIMIT 1").fetchall():
            raise DataError(_nothing_left(self.cfg.model_copy(update={"as_of": as_of})))
        return as_of

    def events(self) -> pa.Table:
        """The kept events as indices, sorted by customer, time, item, type and event key."""
        where = [*self.where, 'e."timestamp" <= $as_of']
        if "start" in self.params:
            where.append('e."timestamp" >= $start')
        select = [
            "u.idx AS user_idx",
            "i.idx AS item_idx",
            f"CAST({_type_code_sql('e.event_type')} AS TINYINT) AS type_code",
            'e."timestamp" AS ts',
            "e.amount",
            "e.session_id",
        ]
        for c, name in zip(self.extras, self.other_columns[2:], strict=True):
            expr = self.rating_sql if c == self.cfg.rating_column else f"e.{quote_ident(c)}"
            select.append(f"{expr} AS {quote_ident(name)}")
        sql = (
            f"SELECT {', '.join(select)} FROM events e "
            f"JOIN {_TMP[0]} u ON u.user_id = e.user_id "
            f"JOIN {_TMP[1]} i ON i.item_id = e.item_id "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY user_idx, ts, item_idx, type_code, e.event_key"
        )
        table: pa.Table = self.con.sql(sql, params=self.params).to_arrow_table()
        return table


# -- assembling ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Parts:
    """Filtered events as integer codes against provisional (sorted) vocabularies."""

    user_vocab: Ids
    item_vocab: Ids
    in_catalogue: npt.NDArray[np.bool_]
    user_idx: npt.NDArray[np.integer[Any]]
    item_idx: npt.NDArray[np.integer[Any]]
    type_codes: npt.NDArray[np.int8]
    ts_ns: npt.NDArray[np.int64]
    base: npt.NDArray[np.float64]
    others: pd.DataFrame


def _assemble(
    parts: _Parts,
    cfg: InteractionsConfig,
    ref_ns: int,
    item_attrs: pd.DataFrame | None,
    users_attrs: pd.DataFrame | None,
    *,
    presorted: bool,
) -> Interactions:
    users = parts.user_idx.astype(np.int32, copy=False)
    items = parts.item_idx.astype(np.int32, copy=False)
    weight = parts.base
    if cfg.half_life_days is not None:
        age_days = (ref_ns - parts.ts_ns) / _DAY_NS
        weight = weight * np.exp2(-age_days / cfg.half_life_days)

    keep = _k_core(users, items, len(parts.user_vocab), len(parts.item_vocab), cfg)
    codes, ts, others = parts.type_codes, parts.ts_ns, parts.others
    if keep is not None:
        if not keep.any():
            raise DataError(_nothing_left(cfg))
        users, items, codes, ts, weight = (
            users[keep],
            items[keep],
            codes[keep],
            ts[keep],
            weight[keep],
        )
        others = others.loc[keep].reset_index(drop=True)

    # Compact the vocabularies to customers with events and items with events or in the
    # catalogue; a monotone remap keeps them sorted (and a presorted event order intact).
    user_vocab, item_vocab = parts.user_vocab, parts.item_vocab
    user_used = np.bincount(users, minlength=len(user_vocab)) > 0
    if not user_used.all():
        users = (np.cumsum(user_used, dtype=np.int32) - 1)[users]
        user_vocab = user_vocab[user_used]
    item_used = (np.bincount(items, minlength=len(item_vocab)) > 0) | parts.in_catalogue
    if not item_used.all():
        items = (np.cumsum(item_used, dtype=np.int32) - 1)[items]
        item_vocab = item_vocab[item_used]

    if not presorted:
        order = np.lexsort((codes, items, ts, users))
        users, items, codes, ts, weight = (
            users[order],
            items[order],
            codes[order],
            ts[order],
            weight[order],
        )
        others = others.take(order).reset_index(drop=True)

    core = pd.DataFrame(
        {
            "user_idx": users.astype(np.int32),
            "item_idx": items.astype(np.int32),
            "event_type": _event_type_column(codes),
            "timestamp": ts.view("datetime64[ns]"),
            "weight": weight.astype(np.float32),
        }
    )
    events = pd.concat([core, others.reset_index(drop=True)], axis=1)
    user_vocab.flags.writeable = False
    item_vocab.flags.writeable = False
    applied = cfg.model_copy(update={"as_of": _from_ns(ref_ns)})
    return Interactions(
        user_ids=user_vocab,
        item_ids=item_vocab,
        matrix=_matrix(events, len(user_vocab), len(item_vocab)),
        events=events,
        items=_aligned(item_attrs, item_vocab, "item_id"),
        users=_aligned(users_attrs, user_vocab, "user_id"),
        config=applied,
    )


def _event_type_column(codes: npt.NDArray[np.int8]) -> pd.Categorical[str]:
    """Codes into EVENT_TYPES as a categorical of the types present, in funnel order."""
    present = np.bincount(codes, minlength=len(EVENT_TYPES)) > 0
    remap = (np.cumsum(present) - 1).astype(np.int8)
    categories = pd.Index([t for t, on in zip(EVENT_TYPES, present, strict=True) if on])
    return pd.Categorical.from_codes(remap[codes], categories=categories)


def _k_core(
    users: npt.NDArray[np.int32],
    items: npt.NDArray[np.int32],
    n_users: int,
    n_items: int,
    cfg: InteractionsConfig,
) -> npt.NDArray[np.bool_] | None:
    """Events to keep so every customer and item has the minimum number of events (None: all)."""
    if cfg.min_user_events <= 1 and cfg.min_item_events <= 1:
        return None
    keep = np.ones(len(users), dtype=bool)
    while True:  # each pass is vectorised; dropping items can push customers under the bar
        user_n = np.bincount(users[keep], minlength=n_users)
        item_n = np.bincount(items[keep], minlength=n_items)
        drop = keep & (
            (user_n[users] < cfg.min_user_events) | (item_n[items] < cfg.min_item_events)
        )
        if not drop.any():
            return keep
        keep &= ~drop


def _matrix(events: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    # Sum in float64 so many small decayed weights do not lose precision, store float32.
    m = sp.csr_matrix(
        (
            events["weight"].to_numpy(np.float64),
            (events["user_idx"].to_numpy(), events["item_idx"].to_numpy()),
        ),
        shape=(n_users, n_items),
    )
    m.sum_duplicates()
    return sp.csr_matrix(m, dtype=np.float32)


def _aligned(attrs: pd.DataFrame | None, vocab: Ids, name: str) -> pd.DataFrame:
    index = pd.Index(vocab, name=name, dtype=object)
    if attrs is None:
        return pd.DataFrame(index=index)
    out = attrs.reindex(index)
    out.index.name = name
    return out


# -- helpers ------------------------------------------------------------------------------------
def _lookup(index: pd.Index, ids: Sequence[str] | npt.ArrayLike) -> IdArray:
    if isinstance(ids, str):
        raise TypeError("pass a list of IDs, not a single string")
    values = np.asarray(ids, dtype=object).ravel()
    return np.asarray(index.get_indexer(pd.Index(values, dtype=object)), dtype=np.int64)


def _nothing_left(cfg: InteractionsConfig) -> str:
    parts = [f"as_of={cfg.as_of.isoformat()}" if cfg.as_of else "as_of=latest event"]
    if cfg.window_days is not None:
        parts.append(f"window_days={cfg.window_days:g}")
    if cfg.min_user_events > 1 or cfg.min_item_events > 1:
        parts.append(f"min_user_events={cfg.min_user_events}")
        parts.append(f"min_item_events={cfg.min_item_events}")
    return f"no events left after filtering ({', '.join(parts)})"


def _type_weights(cfg: InteractionsConfig) -> npt.NDArray[np.float64]:
    """Weight per event-type code (index into EVENT_TYPES); NaN = not weighted."""
    return np.array([cfg.event_weights.get(t, np.nan) for t in EVENT_TYPES], dtype=np.float64)


def _type_code_sql(column: str) -> str:
    return (
        f"CASE {column} "
        + " ".join(f"WHEN '{t}' THEN {k}" for k, t in enumerate(EVENT_TYPES))
        + " END"
    )


def _to_ns(value: datetime) -> int:
    delta = value.replace(tzinfo=None) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=-(-ns // 1000))  # up to the microsecond


def _ref_ns(cfg: InteractionsConfig, ts: npt.NDArray[np.int64]) -> int:
    if cfg.as_of is not None:
        return _to_ns(cfg.as_of)
    latest = int(ts.max())
    return -(-latest // 1000) * 1000  # round up to the microsecond a datetime can hold


def _bad_row(mask: npt.NDArray[np.bool_], column: str, why: str, values: pd.Series) -> DataError:
    row = int(np.flatnonzero(mask)[0])
    return DataError(f"{why}: {values.iloc[row]!r}", source="events frame", row=row, column=column)


def _ids(values: pd.Series, column: str) -> Ids:
    missing = values.isna().to_numpy()
    text = values.astype(object).where(~missing, "").astype(str).str.strip()
    missing = missing | (text == "").to_numpy()
    if missing.any():
        raise _bad_row(missing, column, f"missing {column}", values)
    return np.asarray(text.to_numpy(), dtype=object)


def _event_codes(values: pd.Series) -> npt.NDArray[np.int8]:
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip().str.lower()
    codes = pd.Index(list(EVENT_TYPES)).get_indexer(pd.Index(text))
    bad = codes < 0
    if bad.any():
        raise _bad_row(
            bad, "event_type", f"unknown event type (known: {', '.join(EVENT_TYPES)})", values
        )
    return np.asarray(codes, dtype=np.int8)


def _timestamps(values: pd.Series) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC) of datetimes, ISO-8601 text or Unix seconds."""
    try:
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
        elif pd.api.types.is_datetime64_dtype(values.dtype):
            parsed = values
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            parsed = _from_seconds(values.astype(np.float64))
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().all():
                parsed = _from_seconds(numbers.astype(np.float64))
            else:
                parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
                parsed = parsed.dt.tz_localize(None)
    except (OverflowError, pd.errors.OutOfBoundsDatetime, ValueError):
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise _bad_row(bad, "timestamp", "unreadable timestamp", values)
    return np.asarray(parsed.to_numpy().astype("datetime64[ns]").view(np.int64))


def _from_seconds(seconds: pd.Series) -> pd.Series:
    finite = np.isfinite(seconds.to_numpy())
    # Beyond +-9e9 s (year ~2255) a value is not a Unix time in seconds.
    plausible = finite & (np.abs(np.where(finite, seconds.to_numpy(), 0.0)) < 9e9)
    ns = np.where(plausible, np.round(seconds.to_numpy() * 1e6), 0).astype(np.int64) * 1000
    out = pd.Series(ns.view("datetime64[ns]"), index=seconds.index)
    return out.where(plausible)


def _other_columns(events: pd.DataFrame) -> pd.DataFrame:
    """``amount`` (float), ``session_id`` (str) and the extra columns of an events frame."""
    n = len(events)
    if "amount" in events.columns:
        amount = pd.to_numeric(events["amount"], errors="coerce").to_numpy(np.float64)
    else:
        amount = np.full(n, np.nan)
    # Through Arrow, so the dtype is the one from_store gets (pandas' default string type).
    if "session_id" in events.columns:
        raw = events["session_id"]
        text = raw.astype(str).to_numpy(dtype=object, copy=True)
        text[raw.isna().to_numpy()] = None
        session = pa.array(text, type=pa.string()).to_pandas()
    else:
        session = pa.nulls(n, pa.string()).to_pandas()
    others = pd.DataFrame({"amount": amount, "session_id": session})
    for column in events.columns:
        if column not in _CANONICAL:
            others[f"{column}_src" if column in _CORE else str(column)] = events[column]
    return others


def _ratings(events: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    if column not in events.columns:
        raise ConfigError(
            f"rating_column {column!r} is not a column of the events "
            f"(columns: {', '.join(map(str, events.columns))})"
        )
    raw = events[column]
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = (numbers.isna() & raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
    if bad.any():
        raise _bad_row(bad, column, "rating is not a number", raw)
    values = numbers.to_numpy(np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _attributes(frame: pd.DataFrame | None, id_col: str, source: str) -> pd.DataFrame | None:
    """Attributes indexed by ID (str), the last row winning for a repeated ID."""
    if frame is None:
        return None
    if id_col in frame.columns:
        ids = frame[id_col]
        out = frame.drop(columns=[id_col])
    elif frame.index.name == id_col:
        ids = frame.index.to_series()
        out = frame.reset_index(drop=True)
    else:
        raise DataError(f"no {id_col} column", source=source)
    present = ids.notna().to_numpy()
    out = out.loc[present].set_axis(
        pd.Index(ids[present].astype(str).str.strip().to_numpy(), dtype=object, name=id_col)
    )
    out = out.loc[~out.index.duplicated(keep="last")]
    if id_col == "user_id":
        pii = {c.lower() for c in DEFAULT_PII_COLUMNS}
        out = out.drop(columns=[c for c in out.columns if str(c).lower() in pii])
    return out


def _store_attributes(store: Store, table: str, only: str | None) -> pd.DataFrame | None:
    """A store table's attribute columns (never BLOB: encrypted personal data stays put)."""
    id_col = "user_id" if table == "users" else "item_id"
    cols = [
        c
        for c, kind in store.columns(table).items()
        if kind != "BLOB" and c not in _TABLE_INTERNAL and c != id_col
    ]
    select = ", ".join([id_col, *(quote_ident(c) for c in cols)])
    where = f"WHERE {id_col} IN (SELECT {id_col} FROM {only})" if only else ""
    frame = store.con.sql(f"SELECT {select} FROM {table} {where}").df()
    return _attributes(frame, id_col, table)


def _column_ids(data: Any) -> Ids:
    """The first column of a DuckDB relation or Arrow table as an object array of str."""
    table: pa.Table = data if isinstance(data, pa.Table) else data.to_arrow_table()
    return np.asarray(table.column(0).to_pylist(), dtype=object)
