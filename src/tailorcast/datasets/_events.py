"""The demo shop's events: browsing sessions, replenishment, scraper bots, and the export
with its dirt, plus the value formats (event type synonyms, ISO timestamps) that the large
benchmark file shares."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tailorcast.datasets._catalogue import (
    CATEGORIES,
    CYCLE_DAYS,
    Bools,
    Catalogue,
    Floats,
    Ints,
    Objects,
)
from tailorcast.schema import DEFAULT_EVENT_SYNONYMS, EVENT_TYPES

DAY: Final = 86_400
VIEW, FAVORITE, CART, PURCHASE = range(4)
#: Sessions per hour of the day (UTC), relative: quiet nights, lunch and evening peaks.
_HOURS: Final = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4.5, 4.5, 5, 6, 7, 7.5, 7, 5, 3]
)
BAD_TIMESTAMPS: Final = ("yesterday", "2026-13-45")
DIRT_KINDS: Final = (
    "duplicate",
    "near_duplicate",
    "bot",
    "outlier_amount",
    "empty_user_id",
    "bad_timestamp",
    "negative_amount",
    "unknown_event_type",
    "future_timestamp",
)
MALFORMED: Final = DIRT_KINDS[4:]


@dataclass(frozen=True)
class Events:
    """Clean events as integer columns (customer and item positions, event code, Unix seconds)."""

    user: Ints
    item: Ints
    code: Ints
    t: Ints
    qty: Ints

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        fields = ("user", "item", "code", "t", "qty")
        return Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def take(self, idx: Ints) -> Events:
        return Events(self.user[idx], self.item[idx], self.code[idx], self.t[idx], self.qty[idx])

    def __len__(self) -> int:
        return len(self.user)


def make_events(
    user: Ints, item: Ints, code: int, t: Floats | Ints, qty: Ints | None = None
) -> Events:
    n = len(user)
    quantity = np.ones(n, dtype=np.int64) if qty is None else qty.astype(np.int64)
    return Events(
        user, item, np.full(n, code, dtype=np.int64), np.asarray(t).astype(np.int64), quantity
    )


def draw_quantity(rng: np.random.Generator, categories: Ints) -> Ints:
    """Units per order line: consumables come in several, durable goods mostly in one."""
    consumable = CYCLE_DAYS[categories] > 0
    several = rng.choice([1, 2, 3, 4], len(categories), p=[0.6, 0.25, 0.1, 0.05])
    single = rng.choice([1, 2], len(categories), p=[0.93, 0.07])
    return np.where(consumable, several, single).astype(np.int64)


def visit_times(rng: np.random.Generator, day_start: Ints | Floats) -> Ints:
    """A start second within each given day (Unix seconds at midnight), by hour of day."""
    hour = rng.choice(24, len(day_start), p=_HOURS / _HOURS.sum())
    return (day_start + hour * 3600 + rng.integers(0, 3600, len(day_start))).astype(np.int64)


def sample_rows(rng: np.random.Generator, cum: Floats, rows: Ints) -> Ints:
    """One category per row index, drawn from the row's cumulative distribution ``cum``."""
    picks = (rng.random(len(rows))[:, None] > cum[rows]).sum(axis=1)
    out: Ints = np.minimum(picks, cum.shape[1] - 1).astype(np.int64)
    return out


# ------------------------------------------------------------------------------------ value formats


@lru_cache(maxsize=1)
def event_type_vocabulary() -> tuple[Objects, Ints, Ints]:
    """Canonical names first, then synonyms in mixed case; offsets/counts of each type's
    synonyms in the vocabulary."""
    words: list[str] = list(EVENT_TYPES)
    offsets, counts = [], []
    for canonical in EVENT_TYPES:
        synonyms = [s for s, c in DEFAULT_EVENT_SYNONYMS.items() if c == canonical and s != c]
        variants = [v for s in synonyms for v in (s, s.upper(), s.title())]
        offsets.append(len(words))
        counts.append(len(variants))
        words.extend(variants)
    return np.array(words, dtype=object), np.array(offsets), np.array(counts)


def event_type_index(rng: np.random.Generator, codes: Ints, synonym_share: float) -> Ints:
    """Index into the event type vocabulary: canonical, or a synonym for ``synonym_share``."""
    _, offsets, counts = event_type_vocabulary()
    variant = offsets[codes] + (rng.random(len(codes)) * counts[codes]).astype(np.int64)
    return np.where(rng.random(len(codes)) < synonym_share, variant, codes)


@lru_cache(maxsize=1)
def _time_of_day_vocabulary() -> pa.Array:
    """``T00:00:00Z`` ... ``T23:59:59Z``: one string per second of a day."""
    seconds = np.datetime64("2000-01-01T00:00:00") + np.arange(DAY).astype("timedelta64[s]")
    return pa.array([f"T{s[11:]}Z" for s in np.datetime_as_string(seconds)])


def iso_utc(seconds: Ints) -> pa.Array:
    """ISO-8601 UTC strings (``2026-01-05T10:23:11Z``) for Unix seconds, fast for millions."""
    day = seconds // DAY
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, (int(day.max()) if len(day) else 0) + 1).astype("datetime64[D]")
    return pc.binary_join_element_wise(
        pa.array(np.datetime_as_string(days)).take(pa.array(day - first)),
        _time_of_day_vocabulary().take(pa.array(seconds - day * DAY)),
        "",
    )


# ------------------------------------------------------------------------------ the demo shop's day


def _first_per_key(key: Ints, mask: Bools) -> Ints:
    """Positions where ``mask`` holds, keeping the first of each ``key``."""
    idx = np.flatnonzero(mask)
    _, first = np.unique(key[idx], return_index=True)
    return np.sort(idx[first])


def browsing_events(
    rng: np.random.Generator,
    catalogue: Catalogue,
    taste_cum: Floats,
    customer: Ints,
    t0: Ints,
    in_sale: Bools,
) -> Events:
    """Browsing sessions: views mostly in one category, some favorites and carts, and a
    checkout at the end of the session for most carts."""
    n_views = 1 + rng.poisson(3.5, len(customer))
    session = np.repeat(np.arange(len(customer)), n_views)
    first = np.cumsum(n_views) - n_views
    gaps = 5 + rng.exponential(45, len(session))
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    t = t0[session] + (elapsed - elapsed[first][session]).astype(np.int64)
    user = customer[session]
    main = sample_rows(rng, taste_cum, customer)[session]
    category = np.where(rng.random(len(session)) < 0.7, main, sample_rows(rng, taste_cum, user))
    item = catalogue.sampler.sample(rng, category)
    fav = _first_per_key(session * len(catalogue.price) + item, rng.random(len(session)) < 0.07)
    cart = _first_per_key(
        session * len(catalogue.price) + item,
        (rng.random(len(session)) < 0.11) & catalogue.available[item],
    )
    key = user * len(catalogue.price) + item
    t_cart = t[cart] + 5 + rng.exponential(30, len(cart)).astype(np.int64)
    qty = draw_quantity(rng, catalogue.category[item[cart]])
    session_end = t[first + n_views - 1]
    np.maximum.at(session_end, session[cart], t_cart)
    checkout = session_end + 30 + rng.exponential(120, len(customer)).astype(np.int64)
    buy = rng.random(len(cart)) < np.where(in_sale[session[cart]], 0.7, 0.55)
    # Durable goods are bought once: a customer who owns the laptop carts it, but does not
    # buy it again. Consumables are re-bought freely.
    by_time = np.flatnonzero(buy)[np.argsort(checkout[session[cart[buy]]], kind="stable")]
    _, first_time = np.unique(key[cart[by_time]], return_index=True)
    durable = CYCLE_DAYS[catalogue.category[item[cart]]] == 0
    repeat = np.ones(len(cart), dtype=bool)
    repeat[by_time[first_time]] = False
    buy &= ~(repeat & durable)
    bought = cart[buy]
    return Events.concat(
        [
            make_events(user, item, VIEW, t),
            make_events(user[fav], item[fav], FAVORITE, t[fav] + 3 + rng.exponential(15, len(fav))),
            make_events(user[cart], item[cart], CART, t_cart, qty),
            make_events(user[bought], item[bought], PURCHASE, checkout[session[bought]], qty[buy]),
        ]
    )


def churn_days(rng: np.random.Generator, signup_day: Ints, mean_days: float, days: int) -> Ints:
    """The day each customer stops coming back: an exponential active life (mean
    ``mean_days``) from signup, or from the first day for customers who joined before it.
    ``days`` (never) where the life outlasts the data."""
    joined = np.maximum(signup_day, 0)
    life = rng.exponential(mean_days, len(signup_day))
    out: Ints = np.minimum(joined + np.ceil(life), days).astype(np.int64)
    return out


def replenishment_events(
    rng: np.random.Generator,
    catalogue: Catalogue,
    tastes: Floats,
    signup_day: Ints,
    excluded: Bools,
    days: int,
    start: int,
    until: Ints | None = None,
) -> tuple[Events, list[tuple[Ints, Ints, int, Floats]]]:
    """Consumables re-bought on a per-customer cycle: short view -> cart -> purchase visits.

    With ``until`` (a day per customer, from :func:`churn_days`) a customer re-buys nothing
    from that day on."""
    parts: list[Events] = []
    staples: list[tuple[Ints, Ints, int, Floats]] = []
    n_items = len(catalogue.price)
    for k, cat in enumerate(CATEGORIES):
        if not cat.cycle_days:
            continue
        regular = np.flatnonzero(
            (tastes[:, k] >= 0.25) & (rng.random(len(tastes)) < 0.7) & ~excluded
        )
        user = np.concatenate([regular, regular[rng.random(len(regular)) < 0.4]])
        item = catalogue.sampler.sample(rng, np.full(len(user), k, dtype=np.int64))
        _, unique = np.unique(user * n_items + item, return_index=True)
        user, item = user[unique], item[unique]
        cycle = np.maximum(cat.cycle_days * rng.lognormal(0, 0.3, len(user)), 3.0)
        joined = np.maximum(signup_day[user], 0)
        first = joined + rng.random(len(user)) * cycle
        steps = np.arange(int(np.ceil(days / 3.0)) + 1)
        jitter = rng.normal(0, 0.1, (len(user), len(steps)))
        when = first[:, None] + (steps[None, :] + jitter) * cycle[:, None]
        end = np.full(len(user), days) if until is None else np.minimum(until[user], days)
        pair, step = np.nonzero((when >= joined[:, None]) & (when < end[:, None]))
        day = np.floor(when[pair, step]).astype(np.int64)
        t = visit_times(rng, start + day * DAY)
        u, i = user[pair], item[pair]
        viewed = rng.random(len(pair)) < 0.5
        t_cart = t + 20 + rng.exponential(60, len(t)).astype(np.int64)
        qty = draw_quantity(rng, np.full(len(t), k, dtype=np.int64))
        parts += [
            make_events(u[viewed], i[viewed], VIEW, t[viewed]),
            make_events(u, i, CART, t_cart, qty),
            make_events(u, i, PURCHASE, t_cart + 60 + rng.exponential(200, len(t)), qty),
        ]
        staples.append((user, item, k, cycle))
    return Events.concat(parts), staples


def bot_events(rng: np.random.Generator, bots: Ints, n_items: int, days: int, start: int) -> Events:
    """Scrapers: thousands of views of random items, a few seconds apart, within hours."""
    parts = []
    for bot in bots:
        n = int(rng.integers(2500, 5000))
        t0 = start + int(rng.integers(0, days)) * DAY + int(rng.integers(0, 18)) * 3600
        t = t0 + np.cumsum(1 + rng.exponential(2.0, n))
        parts.append(make_events(np.full(n, bot), rng.integers(0, n_items, n), VIEW, t))
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return make_events(none, none, VIEW, none)
    return Events.concat(parts)


def export_with_dirt(
    rng: np.random.Generator,
    clean: Events,
    is_bot: Bools,
    price: Floats,
    user_ids: Objects,
    item_ids: Objects,
    dirt: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events as a shop exports them (strings, mostly chronological) plus planted dirt."""
    n = len(clean)
    amount = np.where(clean.code == PURCHASE, np.round(price[clean.item] * clean.qty, 2), np.nan)
    type_idx = event_type_index(rng, clean.code, 0.05)
    # A few late-arriving rows: the export is mostly, not strictly, chronological.
    key = clean.t + (rng.random(n) < 0.01) * rng.integers(0, 3 * DAY, n)
    kind = np.where(is_bot[clean.user], "bot", "").astype(object)
    idx = np.arange(n)
    shift = np.zeros(n, dtype=np.int64)
    if dirt:
        n_each = max(1, round(0.0006 * n))  # five malformed kinds: ~0.3% of rows in all
        purchases = rng.permutation(np.flatnonzero((kind == "") & (clean.code == PURCHASE)))
        n_outliers = int(rng.integers(5, 11))
        outliers, negative = purchases[:n_outliers], purchases[n_outliers : n_outliers + n_each]
        amount[outliers] = np.round(amount[outliers] * rng.uniform(50, 200, len(outliers)), 2)
        amount[negative] = -amount[negative]
        kind[outliers], kind[negative] = "outlier_amount", "negative_amount"
        malformed = [k for k in MALFORMED if k != "negative_amount"]
        broken = rng.choice(np.flatnonzero(kind == ""), len(malformed) * n_each, replace=False)
        for name, part in zip(malformed, np.split(broken, len(malformed)), strict=True):
            kind[part] = name
        n_copies = round(0.01 * n)
        sources = rng.choice(np.flatnonzero(kind == ""), 2 * n_copies, replace=False)
        idx = np.concatenate([idx, sources])
        # Near-duplicates are double clicks: the same event again one second later.
        shift = np.concatenate([shift, np.zeros(n_copies, np.int64), np.ones(n_copies, np.int64)])
        copies = np.array(["duplicate", "near_duplicate"], dtype=object)
        kind = np.concatenate([kind, np.repeat(copies, n_copies)])
    user = user_ids[clean.user[idx]]
    user[kind == "empty_user_id"] = None
    event_type = event_type_vocabulary()[0][type_idx[idx]]
    event_type[kind == "unknown_event_type"] = "teleport"
    timestamp = iso_utc(clean.t[idx] + shift).to_numpy(zero_copy_only=False).astype(object)
    bad = kind == "bad_timestamp"
    timestamp[bad] = rng.choice(np.array(BAD_TIMESTAMPS, dtype=object), int(bad.sum()))
    future = np.flatnonzero(kind == "future_timestamp")
    timestamp[future] = ["2099" + str(s)[4:] for s in timestamp[future]]
    order = np.argsort(key[idx], kind="stable")
    events = pd.DataFrame(
        {
            "user_id": user[order],
            "item_id": item_ids[clean.item[idx]][order],
            "event_type": event_type[order],
            "timestamp": timestamp[order],
            "amount": amount[idx][order],
            "quantity": clean.qty[idx][order],
        }
    )
    rows = np.flatnonzero(kind[order] != "")
    planted = pd.DataFrame({"row": rows.astype(np.int64), "kind": kind[order][rows]})
    return events, planted
