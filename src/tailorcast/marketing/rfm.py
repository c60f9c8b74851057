"""RFM segmentation: recency, frequency and monetary scores in quintiles, and named segments.

Scores run from 1 (worst) to 5 (best) among the customers with at least one order up to
``as_of``: a recent last order, many orders and much money score high. A score is the
quintile of the customer's rank, and tied customers share the lowest rank of their tie, so
the many one-order customers all get ``f = 1`` instead of being spread over scores by chance.

Segments come from the recency score ``r`` and ``fm`` = the rounded mean of ``f`` and ``m``,
checked in this order (the first match wins; every (r, fm) pair has exactly one):

======================  =====================================================
Champions               r >= 4 and fm >= 4
New                     r >= 4 and exactly one order (however large)
Loyal                   r >= 3 and fm >= 3
Potential loyalists     r >= 3 (the rest: recent, low value so far)
Cannot lose             r <= 2 and fm >= 4 (were the best, gone quiet)
At risk                 r <= 2 and fm == 3
Hibernating             r == 2 (low value, a while ago)
Lost                    r == 1 (low value, long ago)
======================  =====================================================
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from tailorcast.marketing._data import AsOf, read_orders, resolve_as_of
from tailorcast.store import Store

__all__ = ["RFM_COLUMNS", "SEGMENTS", "rfm_scores", "rfm_segments"]

#: The segment names, best first.
SEGMENTS: Final[tuple[str, ...]] = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New",
    "At risk",
    "Cannot lose",
    "Hibernating",
    "Lost",
)
RFM_COLUMNS: Final[tuple[str, ...]] = (
    "user_id",
    "recency_days",
    "frequency",
    "monetary",
    "r",
    "f",
    "m",
    "segment",
)


def _quintile(
    values: pd.Series, *, higher_is_better: bool
) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """1..5 by rank; ties share the lowest rank of the tie."""
    ranked = (values if higher_is_better else -values).rank(method="min", pct=True)
    scores = np.ceil(ranked.to_numpy(dtype=float) * 5.0)
    out: np.ndarray[tuple[int], np.dtype[np.int64]] = np.clip(scores, 1, 5).astype(np.int64)
    return out


def rfm_scores(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM table from orders (``user_id, timestamp, value``), one row per customer.

    Columns as :data:`RFM_COLUMNS`, sorted by ``user_id``. ``recency_days`` is the time from
    the last order to ``as_of`` in (fractional) days, ``frequency`` the number of orders,
    ``monetary`` their total value.
    """
    if orders.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RFM_COLUMNS})
    per = orders.groupby("user_id", sort=True, observed=True).agg(
        last=("timestamp", "max"), frequency=("value", "size"), monetary=("value", "sum")
    )
    out = pd.DataFrame(
        {
            "user_id": per.index.astype(str),
            "recency_days": (as_of - per["last"]).dt.total_seconds().to_numpy(dtype=float)
            / 86_400.0,
            "frequency": per["frequency"].to_numpy(dtype=np.int64),
            "monetary": per["monetary"].to_numpy(dtype=float).round(2),
        }
    )
    r = _quintile(out["recency_days"], higher_is_better=False)
    f = _quintile(out["frequency"], higher_is_better=True)
    m = _quintile(out["monetary"], higher_is_better=True)
    fm = np.floor((f + m) / 2.0 + 0.5).astype(np.int64)
    single = out["frequency"].to_numpy() == 1
    conditions = [
        (r >= 4) & (fm >= 4),
        (r >= 4) & single,
        (r >= 3) & (fm >= 3),
        r >= 3,
        fm >= 4,
        fm == 3,
        r == 2,
    ]
    names = ["Champions", "New", "Loyal", "Potential loyalists", "Cannot lose", "At risk"]
    segment = np.select(conditions, [*names, "Hibernating"], default="Lost")
    out["r"], out["f"], out["m"] = r, f, m
    out["segment"] = segment.astype(object)
    return out.loc[:, list(RFM_COLUMNS)]


def rfm_segments(store: Store, as_of: AsOf | None = None) -> pd.DataFrame:
    """RFM scores and segment of every customer with an order up to ``as_of``.

    Args:
        store: an open store.
        as_of: the reference time (default: the latest event); only orders up to it count.

    Returns:
        ``user_id`` (pseudonym, see :mod:`tailorcast.marketing._data`), ``recency_days``,
        ``frequency``, ``monetary``, ``r``, ``f``, ``m`` (1..5), ``segment``
        (one of :data:`SEGMENTS`).

    Example::

        with Store.open("tailorcast-store", read_only=True) as store:
            table = rfm_segments(store, as_of="2026-05-01")
            table["segment"].value_counts()
    """
    cutoff = resolve_as_of(store, as_of)
    return rfm_scores(read_orders(store, cutoff), cutoff)
