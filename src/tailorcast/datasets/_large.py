"""A large events CSV for benchmarks, generated in chunks so memory stays flat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tailorcast.datasets._catalogue import (
    CATEGORIES,
    Catalogue,
    Floats,
    Ints,
    check_sizes,
    make_catalogue,
    make_ids,
    make_tastes,
)
from tailorcast.datasets._events import (
    BAD_TIMESTAMPS,
    CART,
    DAY,
    FAVORITE,
    MALFORMED,
    PURCHASE,
    VIEW,
    Events,
    draw_quantity,
    event_type_index,
    event_type_vocabulary,
    iso_utc,
    make_events,
    sample_rows,
    visit_times,
)
from tailorcast.errors import ConfigError
from tailorcast.schema import EVENT_TYPES

_COLUMNS: Final = ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity")

_EMPTY: Final = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", pa.timestamp("s", tz="UTC")),
        ("amount", pa.float64()),
        ("quantity", pa.int64()),
    ]
)

#: Per view: chance of a favorite, of a cart, and of a cart being bought. With ~4 views per visit
#: this gives the funnel of a typical shop: ~75% views, 7% favorites, 10% carts, 8% purchases.
_FUNNEL: Final = (0.0933, 0.1333, 0.8)


def write_events_csv(
    path: str | Path,
    n_events: int,
    *,
    n_customers: int = 200_000,
    n_items: int = 50_000,
    seed: int = 7,
    chunk_size: int = 1_000_000,
    start: str = "2026-01-05",
    days: int = 365,
) -> Path:
    """Write a large events CSV with exactly ``n_events`` rows (plus header), for benchmarks.

    Same columns and value formats as :attr:`DemoShop.events`: customers with tastes over
    categories, Zipf-like item popularity, visits with increasing timestamps, the funnel
    view 75% / favorite 7% / cart 10% / purchase 8%, ~5% event type synonyms, and a little
    dirt (~0.5% duplicate rows, ~0.1% malformed rows). Generated in chunks of ``chunk_size``
    rows, each chunk covering its share of the ``days`` and sorted by time, so memory stays
    flat however many rows are asked for. No ground truth is kept.

    Example::

        write_events_csv("bench/events.csv", 5_000_000)

    Raises:
        ConfigError: a negative ``n_events``, a ``chunk_size`` below 1, sizes too small, or
            ``start`` not an ISO date.
    """
    rng, shop = _make_shop(n_events, n_customers, n_items, seed, chunk_size, start, days)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with pa.OSFile(str(out), "wb") as sink:
        sink.write((",".join(_COLUMNS) + "\n").encode())
        for rows, window in _chunks(n_events, chunk_size, shop):
            pacsv.write_csv(_big_chunk(rng, shop, rows, window), sink, options)
    return out


def large_events_table(
    n_events: int,
    *,
    n_customers: int = 200_000,
    n_items: int = 50_000,
    seed: int = 7,
    chunk_size: int = 1_000_000,
    start: str = "2026-01-05",
    days: int = 365,
    every_customer: bool = True,
) -> pa.Table:
    """Exactly ``n_events`` clean canonical events in memory, for training benchmarks.

    The same shop and visits as :func:`write_events_csv` but without the dirt a training
    benchmark does not want to pay cleaning for: no duplicates, no malformed rows, canonical
    event type names, and ``timestamp`` as a UTC timestamp column. Columns: ``user_id``,
    ``item_id`` (str), ``event_type`` (view, favorite, cart, purchase), ``timestamp``,
    ``amount`` (purchases only), ``quantity``. About 30 bytes per event in memory.

    With ``every_customer`` each customer gets at least one visit (their first visits spread
    over the whole period), as long as there are at least as many visits (about
    ``n_events / 5``) as customers; otherwise visits go by activity alone, and with
    lognormal activity a third of the customers of a 10-events-per-customer log never show up.

    Example::

        events = large_events_table(10_000_000, n_customers=1_000_000, n_items=100_000)
        inter = Interactions.from_events(events.to_pandas())

    Raises:
        ConfigError: as :func:`write_events_csv`.
    """
    rng, shop = _make_shop(n_events, n_customers, n_items, seed, chunk_size, start, days)
    types = pa.array(list(EVENT_TYPES))  # indexed by the event codes VIEW..PURCHASE
    first_visit = rng.permutation(n_customers) if every_customer else None
    parts = []
    done = 0
    for rows, window in _chunks(n_events, chunk_size, shop):
        newcomers = None
        if first_visit is not None:
            share = slice(n_customers * done // n_events, n_customers * (done + rows) // n_events)
            newcomers = first_visit[share]
        events = _visit_events(rng, shop, rows, window, newcomers)
        done += rows
        events = events.take(np.argsort(events.t, kind="stable"))
        amount = np.where(
            events.code == PURCHASE,
            np.round(shop.catalogue.price[events.item] * events.qty, 2),
            np.nan,
        )
        parts.append(
            pa.table(
                {
                    "user_id": shop.users.take(pa.array(events.user)),
                    "item_id": shop.items.take(pa.array(events.item)),
                    "event_type": types.take(pa.array(events.code)),
                    "timestamp": pa.array(events.t, pa.timestamp("s", tz="UTC")),
                    "amount": pa.array(amount, mask=np.isnan(amount)),
                    "quantity": pa.array(events.qty),
                }
            )
        )
    if not parts:
        return _EMPTY.empty_table()
    return pa.concat_tables(parts).combine_chunks()


def _make_shop(
    n_events: int,
    n_customers: int,
    n_items: int,
    seed: int,
    chunk_size: int,
    start: str,
    days: int,
) -> tuple[np.random.Generator, _BigShop]:
    first_day = check_sizes(n_customers, n_items, days, start)
    if n_events < 0:
        raise ConfigError(f"n_events must not be negative, got {n_events}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(rng, n_items)
    shares = np.array([c.share for c in CATEGORIES])
    tastes = make_tastes(rng, np.broadcast_to(shares, (n_customers, len(shares))))
    activity = np.cumsum(rng.lognormal(0, 1, n_customers))
    shop = _BigShop(
        catalogue=catalogue,
        taste_cum=np.cumsum(tastes, axis=1),
        activity_cum=activity / activity[-1],
        users=pa.array(make_ids("C", n_customers, 6)),
        items=pa.array(make_ids("P", n_items, 5)),
        event_types=pa.array([*event_type_vocabulary()[0].tolist(), "teleport"]),
        begin=int(first_day.astype("datetime64[s]").astype(np.int64)),
        span=days * DAY,
    )
    return rng, shop


def _chunks(
    n_events: int, chunk_size: int, shop: _BigShop
) -> Iterator[tuple[int, tuple[int, int]]]:
    """Rows per chunk and the time window (Unix seconds) each chunk covers."""
    done = 0
    while done < n_events:
        rows = min(chunk_size, n_events - done)
        yield (
            rows,
            (
                shop.begin + shop.span * done // n_events,
                shop.begin + shop.span * (done + rows) // n_events,
            ),
        )
        done += rows


@dataclass(frozen=True)
class _BigShop:
    catalogue: Catalogue
    taste_cum: Floats
    activity_cum: Floats
    users: pa.Array
    items: pa.Array
    event_types: pa.Array  # the vocabulary, then "teleport" for unknown types
    begin: int  # Unix seconds of the first day
    span: int  # seconds covered by all chunks


def _big_chunk(
    rng: np.random.Generator, shop: _BigShop, rows: int, window: tuple[int, int]
) -> pa.Table:
    """``rows`` events from visits within ``window`` (Unix seconds), sorted by time, with
    dirt: ~0.5% exact duplicates, ~0.1% malformed rows and ~5% event type synonyms."""
    n_copies = round(rows * 0.005)
    base = rows - n_copies
    events = _visit_events(rng, shop, base, window)
    order = np.argsort(events.t, kind="stable")
    all_types = event_type_index(rng, events.code, 0.05)  # before copying: copies match
    # Exact duplicates sit right after their original, as a double export would put them.
    copies = rng.choice(base, n_copies, replace=False) if base else np.zeros(0, np.int64)
    keep = order[np.sort(np.concatenate([np.arange(base), copies]))]
    events = events.take(keep)
    type_idx = all_types[keep]

    amount = np.where(
        events.code == PURCHASE,
        np.round(shop.catalogue.price[events.item] * events.qty, 2),
        np.nan,
    )
    timestamps = iso_utc(events.t)
    # Malformed rows, ~0.1%: a fifth of them of each kind.
    n_each = rng.binomial(rows, 0.001 / len(MALFORMED), len(MALFORMED))
    no_user = np.zeros(rows, dtype=bool)
    purchases = np.flatnonzero(events.code == PURCHASE)
    for name, n in zip(MALFORMED, n_each, strict=True):
        pool = purchases if name == "negative_amount" else np.arange(rows)
        part = np.sort(rng.choice(pool, min(int(n), len(pool)), replace=False))
        if name == "empty_user_id":
            no_user[part] = True
        elif name == "negative_amount":
            amount[part] = -amount[part]
        elif name == "unknown_event_type":
            type_idx[part] = len(shop.event_types) - 1
        elif len(part):
            old = timestamps.take(pa.array(part)).to_pylist()
            new = [
                "2099" + s[4:] if name == "future_timestamp" else BAD_TIMESTAMPS[rng.integers(2)]
                for s in old
            ]
            mask = np.zeros(rows, dtype=bool)
            mask[part] = True
            timestamps = pc.replace_with_mask(timestamps, pa.array(mask), pa.array(new))
    return pa.table(
        {
            "user_id": shop.users.take(pa.array(events.user, mask=no_user)),
            "item_id": shop.items.take(pa.array(events.item)),
            "event_type": shop.event_types.take(pa.array(type_idx)),
            "timestamp": timestamps,
            "amount": pa.array(amount, mask=np.isnan(amount)),
            "quantity": pa.array(events.qty),
        }
    )


def _visit_events(
    rng: np.random.Generator,
    shop: _BigShop,
    base: int,
    window: tuple[int, int],
    newcomers: Ints | None = None,
) -> Events:
    """Exactly ``base`` clean events from visits within ``window`` (Unix seconds), unsorted.
    ``newcomers``: customers given one of the visits each (as many as there are visits)."""
    # Draw visits until they hold enough events, keep whole visits up to ``base`` events and
    # top up with one-view visits (bounces).
    visits = base // 5 + 16
    while True:
        n_views = 1 + rng.poisson(3, visits)
        draws = rng.random((3, int(n_views.sum())))
        fav, cart = draws[0] < _FUNNEL[0], draws[1] < _FUNNEL[1]
        buy = cart & (draws[2] < _FUNNEL[2])
        per_view = 1 + fav.astype(np.int64) + cart + buy
        first = np.cumsum(n_views) - n_views
        filled = np.cumsum(np.add.reduceat(per_view, first))
        kept = int(np.searchsorted(filled, base, side="right"))
        if kept < visits:
            break
        visits *= 2
    n_kept_views = int(n_views[:kept].sum())
    bounces = base - (int(filled[kept - 1]) if kept else 0)
    n_views = np.concatenate([n_views[:kept], np.ones(bounces, dtype=np.int64)])
    no = np.zeros(bounces, dtype=bool)
    fav = np.concatenate([fav[:n_kept_views], no])
    cart = np.concatenate([cart[:n_kept_views], no])
    buy = np.concatenate([buy[:n_kept_views], no])

    n_visits = len(n_views)
    customer = np.minimum(
        np.searchsorted(shop.activity_cum, rng.random(n_visits)), len(shop.activity_cum) - 1
    )
    if newcomers is not None:  # visits are in no particular order: the first ones will do
        taken = min(len(newcomers), n_visits)
        customer[:taken] = newcomers[:taken]
    day_start = (rng.integers(window[0], max(window[1], window[0] + 1), n_visits) // DAY) * DAY
    t0 = visit_times(rng, day_start)
    visit = np.repeat(np.arange(n_visits), n_views)
    first = np.cumsum(n_views) - n_views
    gaps = 5 + rng.exponential(40, len(visit))
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    t = t0[visit] + (elapsed - elapsed[first][visit]).astype(np.int64)
    user = customer[visit]
    main = sample_rows(rng, shop.taste_cum, customer)[visit]
    category = np.where(rng.random(len(visit)) < 0.7, main, sample_rows(rng, shop.taste_cum, user))
    item = shop.catalogue.sampler.sample(rng, category)
    t_cart = t[cart] + 5 + rng.exponential(30, int(cart.sum())).astype(np.int64)
    qty = draw_quantity(rng, shop.catalogue.category[item[cart]])
    bought = buy[cart]
    t_buy = t_cart[bought] + 30 + rng.exponential(180, int(bought.sum())).astype(np.int64)
    events = Events.concat(
        [
            make_events(user, item, VIEW, t),
            make_events(
                user[fav], item[fav], FAVORITE, t[fav] + 3 + rng.exponential(15, fav.sum())
            ),
            make_events(user[cart], item[cart], CART, t_cart, qty),
            make_events(user[buy], item[buy], PURCHASE, t_buy, qty[bought]),
        ]
    )
    return events
