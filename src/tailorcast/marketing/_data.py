"""What the marketing models read from the store, and how their customer IDs leave it.

Every marketing model reads through these few queries, so they agree on what counts:

- customers flagged as bots (``user_flags.is_bot``) are left out everywhere;
- only events with ``timestamp <= as_of`` are read (a cutoff without a time of day is
  midnight UTC at the start of that day);
- a purchase's money is its ``amount``; where the amount is missing or was flagged as an
  outlier at ingest (``amount_outlier``), the item's ``price x quantity`` stands in, so one
  mistyped amount cannot make a customer a "Champion";
- an *order* is the purchases of one session (one day where a purchase has no session).

Customer IDs: the store knows customers by keyed pseudonyms, and so do the frames these
models return (``user_id`` = the pseudonym, the same ID the recommender and the HTTP API use
inside). :func:`with_shop_ids` swaps them for the shop's own IDs with the store's keys, as
:func:`tailorcast.recommend.recommend_for` does for recommendations; the CLI does that when
asked with ``--shop-ids``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

import numpy as np
import pandas as pd

from tailorcast.errors import ConfigError, DataError
from tailorcast.privacy import Keys
from tailorcast.store import Store

__all__ = [
    "AsOf",
    "read_events",
    "read_items",
    "read_orders",
    "resolve_as_of",
    "with_shop_ids",
]

AsOf = datetime | date | str | pd.Timestamp
DAY: Final = pd.Timedelta(days=1)

# Bots are left out of every marketing figure: their thousands of views say nothing about a
# customer's value or intent.
_NOT_BOT: Final = "NOT EXISTS (SELECT 1 FROM user_flags f WHERE f.is_bot AND f.user_id = e.user_id)"
_USABLE: Final = f'e.user_id IS NOT NULL AND e."timestamp" IS NOT NULL AND {_NOT_BOT}'
# Latest catalogue row per item (a later ingest of the items file wins).
_ITEMS: Final = (
    "SELECT item_id, category, price FROM items "
    "QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY batch_id DESC, "
    "updated_at DESC NULLS LAST) = 1"
)


def to_timestamp(value: AsOf, *, what: str = "as_of") -> pd.Timestamp:
    """A naive-UTC timestamp from a date, datetime or ISO string (a bare date is midnight)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} must be an ISO date or time, got {value!r}") from exc
    if pd.isna(stamp):
        raise ConfigError(f"{what} must be an ISO date or time, got {value!r}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def resolve_as_of(store: Store, as_of: AsOf | None) -> pd.Timestamp:
    """``as_of`` as a timestamp; None means the latest usable event in the store.

    Raises:
        DataError: the store holds no usable events.
    """
    if as_of is not None:
        return to_timestamp(as_of)
    rows = store.con.execute(f'SELECT max(e."timestamp") FROM events e WHERE {_USABLE}').fetchall()
    latest = rows[0][0] if rows else None
    if latest is None:
        raise DataError("the store holds no customer events", source=str(store.folder))
    return pd.Timestamp(latest)


def read_items(store: Store) -> pd.DataFrame:
    """The catalogue: ``item_id, category, price`` (one row per item)."""
    frame: pd.DataFrame = store.con.sql(_ITEMS).to_arrow_table().to_pandas()
    return frame


def read_events(
    store: Store,
    as_of: pd.Timestamp,
    *,
    since: pd.Timestamp | None = None,
    purchases_only: bool = False,
) -> pd.DataFrame:
    """Events with ``since < timestamp <= as_of`` (``since`` None: from the start).

    Columns ``user_id, item_id, event_type, timestamp, amount, quantity, session_id`` as
    :func:`tailorcast.features.user_features` reads them; ``amount`` is the trusted money of
    a purchase (price x quantity where it was missing or an outlier), null for other events.
    """
    where = [_USABLE, 'e."timestamp" <= $as_of']
    params: dict[str, object] = {"as_of": as_of.to_pydatetime()}
    if since is not None:
        where.append('e."timestamp" > $since')
        params["since"] = since.to_pydatetime()
    if purchases_only:
        where.append("e.event_type = 'purchase'")
    sql = f"""
        SELECT e.user_id, e.item_id, e.event_type, e."timestamp",
            CASE WHEN e.event_type <> 'purchase' THEN NULL
                 WHEN e.amount IS NULL OR coalesce(e.amount_outlier, false)
                     THEN i.price * coalesce(e.quantity, 1)
                 ELSE e.amount END AS amount,
            coalesce(e.quantity, 1) AS quantity, e.session_id
        FROM events e LEFT JOIN ({_ITEMS}) i USING (item_id)
        WHERE {" AND ".join(where)}
        ORDER BY e.user_id, e."timestamp"
    """
    frame: pd.DataFrame = store.con.sql(sql, params=params).to_arrow_table().to_pandas()
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


def read_orders(
    store: Store, as_of: pd.Timestamp, *, since: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per order up to ``as_of``: ``user_id, timestamp`` (of its last line), ``value``.

    An order is the purchases of one session, or of one day where the session is unknown.
    Lines whose money is unknown (no amount, no price) count as orders with value 0.
    """
    where = [_USABLE, "e.event_type = 'purchase'", 'e."timestamp" <= $as_of']
    params: dict[str, object] = {"as_of": as_of.to_pydatetime()}
    if since is not None:
        where.append('e."timestamp" > $since')
        params["since"] = since.to_pydatetime()
    sql = f"""
        SELECT e.user_id, max(e."timestamp") AS "timestamp",
            sum(coalesce(CASE WHEN e.amount IS NULL OR coalesce(e.amount_outlier, false)
                              THEN i.price * coalesce(e.quantity, 1)
                              ELSE e.amount END, 0)) AS value
        FROM events e LEFT JOIN ({_ITEMS}) i USING (item_id)
        WHERE {" AND ".join(where)}
        GROUP BY e.user_id,
            coalesce(e.session_id, CAST(CAST(e."timestamp" AS DATE) AS VARCHAR))
        ORDER BY e.user_id, "timestamp"
    """
    frame: pd.DataFrame = store.con.sql(sql, params=params).to_arrow_table().to_pandas()
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    frame["value"] = frame["value"].astype(float)
    return frame


def with_shop_ids(store: Store, frame: pd.DataFrame, keys: Keys | None) -> pd.DataFrame:
    """A copy of ``frame`` whose ``user_id`` column holds the shop's customer IDs.

    Pseudonyms are decrypted from the store's identity table with ``keys``; a store kept
    without pseudonyms already holds the shop's IDs and needs no keys.

    Raises:
        ConfigError: a pseudonymized store and no keys, or customers without an identity
            (erased since the model was fitted).
    """
    out = frame.copy()
    if not store.pseudonymized or out.empty:
        return out
    if keys is None:
        raise ConfigError(
            "keys are needed to write shop customer IDs: this store keeps pseudonyms; set "
            "TAILORCAST_PSEUDONYM_KEY and TAILORCAST_ENCRYPTION_KEY (or use the development "
            "store's keys with --insecure-dev)"
        )
    unique = pd.unique(out["user_id"].astype(str))
    names = np.asarray(store.reidentify(list(unique), keys), dtype=object)
    missing = pd.isna(names)
    if missing.any():
        raise ConfigError(
            f"{int(missing.sum())} customers are not in the store's identity table "
            "(erased since?); rebuild the table from the store"
        )
    mapping = dict(zip(unique, names, strict=True))
    out["user_id"] = out["user_id"].astype(str).map(mapping)
    return out
