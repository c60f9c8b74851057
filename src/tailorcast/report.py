"""Data health of a store: what came in, what was refused and why, what cleaning did.

One function, :func:`data_health`, returns plain JSON-ready data; the CLI renders it as
tables and the HTTP API will serve it as is.
"""

from __future__ import annotations

import json
from typing import Any

from tailorcast.schema import EVENT_TYPES
from tailorcast.store import Store, scalar

__all__ = ["data_health"]


def _rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.con.execute(sql).fetchall()]


def data_health(store: Store, *, top: int = 10) -> dict[str, Any]:
    """Counts, date range, funnel, rejects by reason, duplicates, bots, imputations, categories.

    Example::

        with Store.open("tailorcast-store", read_only=True) as store:
            print(data_health(store)["funnel"])
    """
    con = store.con
    counts = store.counts()
    first, last, customers, items_seen, sessions = con.execute(
        'SELECT min("timestamp"), max("timestamp"), count(DISTINCT user_id), '
        "count(DISTINCT item_id), count(DISTINCT session_id) FROM events"
    ).fetchall()[0]
    by_type = dict(_rows(store, "SELECT event_type, count(*) FROM events GROUP BY 1"))
    buyers = dict(_rows(store, "SELECT event_type, count(DISTINCT user_id) FROM events GROUP BY 1"))
    funnel = []
    views = by_type.get("view", 0)
    for t in EVENT_TYPES:
        n = int(by_type.get(t, 0))
        funnel.append(
            {
                "event_type": t,
                "events": n,
                "customers": int(buyers.get(t, 0)),
                "per_100_views": round(100.0 * n / views, 2) if views else None,
            }
        )
    revenue = scalar(
        con,
        # capped outliers count at their capped amount; flagged ones as they came
        "SELECT coalesce(sum(amount), 0) FROM events WHERE event_type = 'purchase'",
    )
    rejects = [
        {"kind": k, "reason": r, "rows": int(n)}
        for k, r, n in _rows(
            store,
            "SELECT kind, reason, count(*) FROM rejects GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        )
    ]
    batches = []
    for row in _rows(
        store,
        "SELECT batch_id, kind, source, finished_at, summary FROM batches ORDER BY batch_id",
    ):
        summary = json.loads(row[4]) if row[4] else {}
        batches.append(
            {
                "batch_id": int(row[0]),
                "kind": row[1],
                "source": row[2],
                "finished_at": str(row[3]),
                **{
                    k: summary.get(k, 0)
                    for k in (
                        "rows_read",
                        "accepted",
                        "rejected",
                        "duplicates",
                        "near_duplicates",
                        "outliers",
                        "sessions_derived",
                    )
                },
            }
        )
    dupes = sum(b["duplicates"] for b in batches if b["kind"] == "events")
    near = sum(b["near_duplicates"] for b in batches if b["kind"] == "events")
    bots = [
        {"user_id": u, "events": int(n), "events_per_hour": round(float(r), 1), "reason": why}
        for u, n, r, why in _rows(
            store,
            "SELECT user_id, events, events_per_hour, reason FROM user_flags WHERE is_bot "
            "ORDER BY events DESC",
        )
    ]
    imputations = [
        {
            "table": t,
            "column": c,
            "strategy": s,
            "n_imputed": int(n),
            "fill_value": v,
        }
        for t, c, s, n, v in _rows(
            store,
            "SELECT table_name, column_name, arg_max(strategy, batch_id), "
            "arg_max(n_imputed, batch_id), arg_max(fill_value, batch_id) "
            "FROM imputations GROUP BY 1, 2 ORDER BY 1, 2",
        )
    ]
    categories = [
        {"category": c, "events": int(n), "purchases": int(p), "customers": int(u)}
        for c, n, p, u in _rows(
            store,
            "SELECT coalesce(i.category, '(unknown)'), count(*), "
            "count(*) FILTER (e.event_type = 'purchase'), count(DISTINCT e.user_id) "
            "FROM events e LEFT JOIN (SELECT item_id, any_value(category) AS category "
            "FROM items GROUP BY 1) i USING (item_id) "
            f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(top)}",
        )
    ]
    outliers = int(scalar(con, "SELECT count(*) FROM events WHERE amount_outlier"))
    return {
        "store": str(store.folder),
        "counts": counts,
        "customers": int(customers),
        "items_with_events": int(items_seen),
        "sessions": int(sessions),
        "first_event": None if first is None else first.isoformat(),
        "last_event": None if last is None else last.isoformat(),
        "funnel": funnel,
        "revenue": round(float(revenue), 2),
        "rejects_by_reason": rejects,
        "duplicates": {"exact": dupes - near, "near": near},
        "outlier_amounts": outliers,
        "bots": bots,
        "imputations": imputations,
        "top_categories": categories,
        "batches": batches,
    }
