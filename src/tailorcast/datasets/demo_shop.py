"""A generated online shop: customers, items and raw events, dirt included, reproducible by seed.

The shop is built from latent truth (each customer's taste over categories, activity level,
re-purchase cycles for consumables) so tests and demos can check what a model learned against
what was planted. :func:`demo_shop` makes a small, realistic shop in memory;
:func:`write_events_csv` streams a large events file for benchmarks.

Example::

    shop = demo_shop(n_customers=500, seed=1)
    files = shop.write("demo-data")        # events.csv, customers.csv, items.csv
    shop.truth.bot_user_ids                 # the scrapers the cleaning step should drop
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tailorcast.errors import ConfigError
from tailorcast.schema import DEFAULT_EVENT_SYNONYMS, EVENT_TYPES

__all__ = ["DIRT_KINDS", "DemoFiles", "DemoShop", "DemoTruth", "demo_shop", "write_events_csv"]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]

_DAY: Final = 86_400
_VISITS_PER_DAY: Final = 0.07  # of an average customer, before the weekly rhythm and the sale
VIEW, FAVORITE, CART, PURCHASE = range(4)
EVENT_COLUMNS: Final = ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity")


@dataclass(frozen=True)
class _Category:
    name: str
    low: float  # price range of the category
    high: float
    share: float  # share of the catalogue and of customers' first interest
    cycle_days: float  # consumables: mean days between re-purchases; 0 for durable goods
    nouns: tuple[str, ...]
    brands: tuple[str, ...]


def _table(text: str) -> tuple[_Category, ...]:
    lines = text.strip().splitlines()
    categories = []
    for head, nouns in zip(lines[::2], lines[1::2], strict=True):
        numbers, brands = head.split("|")
        name, low, high, share, cycle = numbers.split()
        categories.append(
            _Category(
                name,
                float(low),
                float(high),
                float(share),
                float(cycle),
                tuple(nouns.split()),
                tuple(b.strip() for b in brands.split(",")),
            )
        )
    return tuple(categories)


# name, price range, share, re-purchase cycle in days (0: durable goods) | brands
#     nouns for titles
_CATEGORIES: Final = _table("""
groceries    1.5   25 0.14 14 | Green Valley, Farmhouse, Sunfield, Mill & Co
    Coffee Tea Pasta Granola Honey Chocolate Rice Muesli
beauty         4   90 0.10 40 | Lumina, Pure Bloom, Velvet Lab, Aqua Nova
    Shampoo Serum Lotion Lipstick Perfume Mascara Cleanser Sunscreen
fashion       12  250 0.16  0 | Urban Thread, Northwind, Maison Vert, Kite & Kin
    Jacket Sneakers Dress Jeans Sweater Scarf Shirt Boots
electronics   20 1800 0.10  0 | Voltix, Nexa, Orbitron, Pixelcraft
    Headphones Laptop Smartwatch Speaker Camera Tablet Charger Monitor
books          6   45 0.12  0 | Lantern Press, Blue Owl Books, Quill House
    Novel Cookbook Biography Atlas Thriller Guide Anthology Comic
home           8  600 0.12  0 | Hearth, Casa Linea, Oak & Ember
    Lamp Blanket Vase Mug Pillow Rug Kettle Shelf
toys           5  150 0.08  0 | Tiny Giants, Playfield, Wonderbox
    Puzzle Robot Doll Blocks Kite Train Plush Boardgame
sports        10  400 0.10  0 | Peakline, Stride, Summit Co
    Dumbbells Racket Helmet Backpack Bottle Ball Mat Tent
pets           3   80 0.08 30 | Happy Paws, Whisker & Tail, Barkley
    Kibble Treats Litter Leash Collar Bowl Shampoo Bed
""")
CATEGORY_NAMES: Final = tuple(c.name for c in _CATEGORIES)
_CYCLE_DAYS: Final = np.array([c.cycle_days for c in _CATEGORIES])
_ADJECTIVES: Final = tuple(
    [
        "Classic",
        "Cozy",
        "Organic",
        "Smart",
        "Compact",
        "Premium",
        "Everyday",
        "Vintage",
        "Bold",
        "Gentle",
        "Ultra",
        "Natural",
        "Deluxe",
        "Sleek",
        "Fresh",
        "Rustic",
    ]
)
_FIRST_NAMES_F: Final = tuple(
    [
        "Anna",
        "Emma",
        "Mia",
        "Sofia",
        "Lea",
        "Clara",
        "Julia",
        "Laura",
        "Sara",
        "Nina",
        "Eva",
        "Lina",
        "Marie",
        "Hannah",
        "Olivia",
        "Zoe",
        "Ida",
        "Alice",
    ]
)
_FIRST_NAMES_M: Final = tuple(
    [
        "Lukas",
        "Noah",
        "Elias",
        "Paul",
        "Jonas",
        "Leon",
        "Felix",
        "Max",
        "David",
        "Tom",
        "Ben",
        "Oscar",
        "Jan",
        "Hugo",
        "Liam",
        "Adam",
        "Emil",
        "Theo",
    ]
)
_CITIES: Final = tuple(
    [
        "Berlin",
        "Paris",
        "Madrid",
        "Milan",
        "Amsterdam",
        "Vienna",
        "Warsaw",
        "Prague",
        "Lisbon",
        "Copenhagen",
        "Stockholm",
        "Dublin",
        "Brussels",
        "Zurich",
        "Budapest",
    ]
)
#: Sessions per hour of the day (UTC), relative: quiet nights, lunch and evening peaks.
_HOURS: Final = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4.5, 4.5, 5, 6, 7, 7.5, 7, 5, 3]
)
#: Visits per weekday (Monday first), relative: weekends are busier.
_WEEKDAYS: Final = np.array([0.9, 0.85, 0.9, 0.95, 1.05, 1.25, 1.2])
_BAD_TIMESTAMPS: Final = ("yesterday", "2026-13-45")
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
_MALFORMED: Final = DIRT_KINDS[4:]


@dataclass(frozen=True, eq=False)
class DemoTruth:
    """What was planted in a :class:`DemoShop`, for tests and demos to check against.

    Attributes:
        bot_user_ids: customers whose events are scraper traffic (thousands of views in hours).
        tastes: customer x category share of interest (index ``user_id``; rows sum to 1).
        activity: expected visits per day of each customer, before the weekly rhythm and the
            sale bump (bots browse on top of theirs).
        replenishment: consumables each customer re-buys on a cycle
            (``user_id, item_id, category, cycle_days``).
        dirt: position (``row``, 0-based in ``events``) and ``kind`` of every planted dirty row,
            kinds from ``DIRT_KINDS``; the first copy of a duplicated row is not listed.
        customers: the customers table before attributes were blanked out.
        items: the items table before attributes were blanked out, plus ``popularity``
            (an item's share of its category's views).
        sale_days: ISO dates of the sale when visits and conversion peak.
    """

    bot_user_ids: tuple[str, ...]
    tastes: pd.DataFrame
    activity: pd.Series
    replenishment: pd.DataFrame
    dirt: pd.DataFrame
    customers: pd.DataFrame
    items: pd.DataFrame
    sale_days: tuple[str, ...]

    def __repr__(self) -> str:
        kinds = self.dirt["kind"].value_counts().to_dict()
        return f"DemoTruth(bots={list(self.bot_user_ids)}, dirt={kinds})"

    def rows(self, kind: str) -> Ints:
        """Positions in ``events`` of the planted dirty rows of one kind, ascending."""
        if kind not in DIRT_KINDS:
            raise ConfigError(f"unknown dirt kind {kind!r}; known: {', '.join(DIRT_KINDS)}")
        rows = self.dirt.loc[self.dirt["kind"] == kind, "row"]
        return np.asarray(rows, dtype=np.int64)


@dataclass(frozen=True)
class DemoFiles:
    """Paths of the CSV files written by :meth:`DemoShop.write`."""

    events: Path
    customers: Path
    items: Path


@dataclass(frozen=True, eq=False)
class DemoShop:
    """A generated shop: raw ``events`` as a shop exports them, ``customers``, ``items``, and
    the planted ``truth``."""

    events: pd.DataFrame
    customers: pd.DataFrame
    items: pd.DataFrame
    truth: DemoTruth

    def __repr__(self) -> str:
        return (
            f"DemoShop(events={len(self.events)} rows, customers={len(self.customers)}, "
            f"items={len(self.items)}, bots={len(self.truth.bot_user_ids)}, "
            f"dirty rows={len(self.truth.dirt)})"
        )

    def write(self, folder: str | Path) -> DemoFiles:
        """Write ``events.csv``, ``customers.csv`` and ``items.csv`` into ``folder`` (created
        if missing) and return their paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        files = DemoFiles(out / "events.csv", out / "customers.csv", out / "items.csv")
        self.events.to_csv(files.events, index=False)
        self.customers.to_csv(files.customers, index=False)
        self.items.to_csv(files.items, index=False)
        return files


# --------------------------------------------------------------------------- shared building blocks


def _check(n_customers: int, n_items: int, days: int, start: str) -> np.datetime64:
    """Validate the generator's arguments; return the first day."""
    if n_customers < 10:
        raise ConfigError(f"n_customers must be at least 10, got {n_customers}")
    if n_items < len(_CATEGORIES):
        raise ConfigError(f"n_items must be at least {len(_CATEGORIES)}, got {n_items}")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    try:
        return np.datetime64(start, "D")
    except ValueError:
        raise ConfigError(f"start must be an ISO date like 2026-01-05, got {start!r}") from None


class _ItemSampler:
    """Draws items of given categories with Zipf-like popularity, vectorised."""

    def __init__(self, category: Ints, popularity: Floats) -> None:
        self.order = np.argsort(category, kind="stable")
        cats = category[self.order]
        cum = np.zeros(len(cats))
        for k in range(len(_CATEGORIES)):
            in_k = cats == k
            cum[in_k] = k + np.cumsum(popularity[self.order][in_k])
            cum[np.flatnonzero(in_k)[-1]] = k + 1  # exact edge so draws never spill over
        self.cum = cum

    def sample(self, rng: np.random.Generator, categories: Ints) -> Ints:
        """One item per entry of ``categories``, drawn by popularity within the category."""
        pos = np.searchsorted(self.cum, categories + rng.random(len(categories)), side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


@dataclass(frozen=True)
class _Catalogue:
    category: Ints
    price: Floats
    popularity: Floats  # share within the category
    available: Bools
    sampler: _ItemSampler


def _make_catalogue(rng: np.random.Generator, n_items: int) -> _Catalogue:
    shares = np.array([c.share for c in _CATEGORIES])
    k = len(_CATEGORIES)
    # Every category gets at least one item, the rest follow the category shares.
    category = np.concatenate([np.arange(k), rng.choice(k, n_items - k, p=shares / shares.sum())])
    category = rng.permutation(category).astype(np.int64)
    low = np.log([c.low for c in _CATEGORIES])[category]
    high = np.log([c.high for c in _CATEGORIES])[category]
    log_price = rng.normal((low + high) / 2, (high - low) / 5)
    price = np.round(np.exp(np.clip(log_price, low, high)), 2) - 0.01 * (rng.random(n_items) < 0.5)
    popularity = np.zeros(n_items)
    for c in range(k):
        in_c = np.flatnonzero(category == c)
        rank = rng.permutation(len(in_c)) + 1
        weight = rank**-1.1
        popularity[in_c] = weight / weight.sum()
    available = rng.random(n_items) < 0.95
    return _Catalogue(
        category, np.round(price, 2), popularity, available, _ItemSampler(category, popularity)
    )


def _make_tastes(rng: np.random.Generator, prior: Floats) -> Floats:
    """Dirichlet tastes concentrated on 1-3 favourite categories drawn from ``prior`` (rows)."""
    n, k = prior.shape
    n_favourites = rng.choice([1, 2, 3], n, p=[0.4, 0.4, 0.2])
    # Gumbel top-k: favourites drawn without replacement, weighted by the prior.
    keys = np.log(prior) + rng.gumbel(size=(n, k))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    alpha = np.where(rank < n_favourites[:, None], 4.0, 0.15)
    gamma = rng.gamma(alpha)
    tastes: Floats = gamma / gamma.sum(axis=1, keepdims=True)
    return tastes


def _sample_rows(rng: np.random.Generator, cum: Floats, rows: Ints) -> Ints:
    """One category per row index, drawn from the row's cumulative distribution ``cum``."""
    picks = (rng.random(len(rows))[:, None] > cum[rows]).sum(axis=1)
    out: Ints = np.minimum(picks, cum.shape[1] - 1).astype(np.int64)
    return out


@lru_cache(maxsize=1)
def _event_type_vocabulary() -> tuple[Objects, Ints, Ints]:
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


def _event_type_index(rng: np.random.Generator, codes: Ints, synonym_share: float) -> Ints:
    """Index into the event type vocabulary: canonical, or a synonym for ``synonym_share``."""
    _, offsets, counts = _event_type_vocabulary()
    variant = offsets[codes] + (rng.random(len(codes)) * counts[codes]).astype(np.int64)
    return np.where(rng.random(len(codes)) < synonym_share, variant, codes)


@lru_cache(maxsize=1)
def _time_of_day_vocabulary() -> pa.Array:
    """``T00:00:00Z`` ... ``T23:59:59Z``: one string per second of a day."""
    seconds = np.datetime64("2000-01-01T00:00:00") + np.arange(_DAY).astype("timedelta64[s]")
    return pa.array([f"T{s[11:]}Z" for s in np.datetime_as_string(seconds)])


def _iso_utc(seconds: Ints) -> pa.Array:
    """ISO-8601 UTC strings (``2026-01-05T10:23:11Z``) for Unix seconds, fast for millions."""
    day = seconds // _DAY
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, (int(day.max()) if len(day) else 0) + 1).astype("datetime64[D]")
    return pc.binary_join_element_wise(
        pa.array(np.datetime_as_string(days)).take(pa.array(day - first)),
        _time_of_day_vocabulary().take(pa.array(seconds - day * _DAY)),
        "",
    )


def _ids(prefix: str, n: int, width: int) -> Objects:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


@dataclass(frozen=True)
class _Events:
    """Clean events as integer columns (customer and item positions, event code, Unix seconds)."""

    user: Ints
    item: Ints
    code: Ints
    t: Ints
    qty: Ints

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        fields = ("user", "item", "code", "t", "qty")
        return _Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def take(self, idx: Ints) -> _Events:
        return _Events(self.user[idx], self.item[idx], self.code[idx], self.t[idx], self.qty[idx])

    def __len__(self) -> int:
        return len(self.user)


def _events(
    user: Ints, item: Ints, code: int, t: Floats | Ints, qty: Ints | None = None
) -> _Events:
    n = len(user)
    quantity = np.ones(n, dtype=np.int64) if qty is None else qty.astype(np.int64)
    return _Events(
        user, item, np.full(n, code, dtype=np.int64), np.asarray(t).astype(np.int64), quantity
    )


def _quantity(rng: np.random.Generator, categories: Ints) -> Ints:
    """Units per order line: consumables come in several, durable goods mostly in one."""
    consumable = _CYCLE_DAYS[categories] > 0
    several = rng.choice([1, 2, 3, 4], len(categories), p=[0.6, 0.25, 0.1, 0.05])
    single = rng.choice([1, 2], len(categories), p=[0.93, 0.07])
    return np.where(consumable, several, single).astype(np.int64)


def _visit_times(rng: np.random.Generator, day_start: Ints | Floats) -> Ints:
    """A start second within each given day (Unix seconds at midnight), by hour of day."""
    hour = rng.choice(24, len(day_start), p=_HOURS / _HOURS.sum())
    return (day_start + hour * 3600 + rng.integers(0, 3600, len(day_start))).astype(np.int64)


def _first_per_key(key: Ints, mask: Bools) -> Ints:
    """Positions where ``mask`` holds, keeping the first of each ``key``."""
    idx = np.flatnonzero(mask)
    _, first = np.unique(key[idx], return_index=True)
    return np.sort(idx[first])


def _browse(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    taste_cum: Floats,
    customer: Ints,
    t0: Ints,
    in_sale: Bools,
) -> _Events:
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
    main = _sample_rows(rng, taste_cum, customer)[session]
    category = np.where(rng.random(len(session)) < 0.7, main, _sample_rows(rng, taste_cum, user))
    item = catalogue.sampler.sample(rng, category)
    fav = _first_per_key(session * len(catalogue.price) + item, rng.random(len(session)) < 0.07)
    cart = _first_per_key(
        session * len(catalogue.price) + item,
        (rng.random(len(session)) < 0.11) & catalogue.available[item],
    )
    key = user * len(catalogue.price) + item
    t_cart = t[cart] + 5 + rng.exponential(30, len(cart)).astype(np.int64)
    qty = _quantity(rng, catalogue.category[item[cart]])
    session_end = t[first + n_views - 1]
    np.maximum.at(session_end, session[cart], t_cart)
    checkout = session_end + 30 + rng.exponential(120, len(customer)).astype(np.int64)
    buy = rng.random(len(cart)) < np.where(in_sale[session[cart]], 0.7, 0.55)
    # Durable goods are bought once: a customer who owns the laptop carts it, but does not
    # buy it again. Consumables are re-bought freely.
    by_time = np.flatnonzero(buy)[np.argsort(checkout[session[cart[buy]]], kind="stable")]
    _, first_time = np.unique(key[cart[by_time]], return_index=True)
    durable = _CYCLE_DAYS[catalogue.category[item[cart]]] == 0
    repeat = np.ones(len(cart), dtype=bool)
    repeat[by_time[first_time]] = False
    buy &= ~(repeat & durable)
    bought = cart[buy]
    return _Events.concat(
        [
            _events(user, item, VIEW, t),
            _events(user[fav], item[fav], FAVORITE, t[fav] + 3 + rng.exponential(15, len(fav))),
            _events(user[cart], item[cart], CART, t_cart, qty),
            _events(user[bought], item[bought], PURCHASE, checkout[session[bought]], qty[buy]),
        ]
    )


def _replenish(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    tastes: Floats,
    signup_day: Ints,
    excluded: Bools,
    days: int,
    start: int,
) -> tuple[_Events, list[tuple[Ints, Ints, int, Floats]]]:
    """Consumables re-bought on a per-customer cycle: short view -> cart -> purchase visits."""
    parts: list[_Events] = []
    staples: list[tuple[Ints, Ints, int, Floats]] = []
    n_items = len(catalogue.price)
    for k, cat in enumerate(_CATEGORIES):
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
        pair, step = np.nonzero((when >= joined[:, None]) & (when < days))
        day = np.floor(when[pair, step]).astype(np.int64)
        t = _visit_times(rng, start + day * _DAY)
        u, i = user[pair], item[pair]
        viewed = rng.random(len(pair)) < 0.5
        t_cart = t + 20 + rng.exponential(60, len(t)).astype(np.int64)
        qty = _quantity(rng, np.full(len(t), k, dtype=np.int64))
        parts += [
            _events(u[viewed], i[viewed], VIEW, t[viewed]),
            _events(u, i, CART, t_cart, qty),
            _events(u, i, PURCHASE, t_cart + 60 + rng.exponential(200, len(t)), qty),
        ]
        staples.append((user, item, k, cycle))
    return _Events.concat(parts), staples


def _bot_views(
    rng: np.random.Generator, bots: Ints, n_items: int, days: int, start: int
) -> _Events:
    """Scrapers: thousands of views of random items, a few seconds apart, within hours."""
    parts = []
    for bot in bots:
        n = int(rng.integers(2500, 5000))
        t0 = start + int(rng.integers(0, days)) * _DAY + int(rng.integers(0, 18)) * 3600
        t = t0 + np.cumsum(1 + rng.exponential(2.0, n))
        parts.append(_events(np.full(n, bot), rng.integers(0, n_items, n), VIEW, t))
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return _events(none, none, VIEW, none)
    return _Events.concat(parts)


def _items_frame(rng: np.random.Generator, catalogue: _Catalogue) -> pd.DataFrame:
    n = len(catalogue.price)
    ids = _ids("P", n, 5)
    rows = []
    for i in range(n):
        cat = _CATEGORIES[catalogue.category[i]]
        brand = cat.brands[rng.integers(len(cat.brands))]
        adjective = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
        noun = cat.nouns[rng.integers(len(cat.nouns))]
        tags = [cat.name, adjective.lower(), noun.lower()]
        tags += ["sale"] if rng.random() < 0.1 else []
        rows.append((f"{brand} {adjective} {noun}", cat.name, brand, " ".join(tags)))
    title, category, brand, tags = (list(col) for col in zip(*rows, strict=True))
    in_category_rank = pd.Series(-catalogue.popularity).groupby(catalogue.category).rank("first")
    tags = [t + " bestseller" if r <= 3 else t for t, r in zip(tags, in_category_rank, strict=True)]
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": title,
            "category": category,
            "brand": brand,
            "price": catalogue.price,
            "tags": tags,
            "image_url": [f"https://shop.example/img/{i}.jpg" for i in ids],
            "available": catalogue.available,
            "popularity": np.round(catalogue.popularity, 6),
        }
    )


@dataclass(frozen=True)
class _Customers:
    frame: pd.DataFrame
    tastes: Floats
    activity: Floats
    signup_day: Ints


def _make_customers(
    rng: np.random.Generator, n: int, first_day: np.datetime64, days: int
) -> _Customers:
    gender = rng.choice(3, n, p=[0.52, 0.45, 0.03])  # F, M, X
    age = np.clip(np.round(rng.normal(40, 13, n)), 18, 85).astype(np.int64)
    # Attributes carry signal: the categories a customer cares about depend on age and gender.
    boost = np.ones((n, len(_CATEGORIES)))
    col = {name: k for k, name in enumerate(CATEGORY_NAMES)}
    for mask, category, factor in (
        (gender == 0, "beauty", 2.5),
        (gender == 0, "fashion", 1.6),
        (gender == 1, "electronics", 2.2),
        (gender == 1, "sports", 1.6),
        (age < 30, "electronics", 1.5),
        (age < 30, "fashion", 1.4),
        ((age >= 30) & (age < 46), "toys", 2.5),
        ((age >= 30) & (age < 46), "groceries", 1.3),
        (age >= 55, "books", 2.0),
        (age >= 55, "home", 1.5),
        (age >= 55, "electronics", 0.6),
    ):
        boost[mask, col[category]] *= factor
    shares = np.array([c.share for c in _CATEGORIES])
    tastes = _make_tastes(rng, shares[None, :] * boost)
    activity = rng.lognormal(-0.4, 0.9, n)
    signup_day = np.where(
        rng.random(n) < 0.85, -rng.integers(1, 3 * 365, n), rng.integers(0, days, n)
    ).astype(np.int64)
    female = np.array(_FIRST_NAMES_F, dtype=object)[rng.integers(len(_FIRST_NAMES_F), size=n)]
    male = np.array(_FIRST_NAMES_M, dtype=object)[rng.integers(len(_FIRST_NAMES_M), size=n)]
    first_name = np.where((gender == 0) | ((gender == 2) & (rng.random(n) < 0.5)), female, male)
    city_weight = 1 / np.arange(1, len(_CITIES) + 1) ** 0.8
    ids = _ids("C", n, 6)
    frame = pd.DataFrame(
        {
            "user_id": ids,
            "email": [
                f"{f.lower()}.{int(i[1:])}@example.com"
                for f, i in zip(first_name, ids, strict=True)
            ],
            "first_name": first_name,
            "age": pd.array(age, dtype="Int64"),
            "gender": np.array(["F", "M", "X"], dtype=object)[gender],
            "city": np.array(_CITIES, dtype=object)[
                rng.choice(len(_CITIES), n, p=city_weight / city_weight.sum())
            ],
            "signup_date": np.datetime_as_string(first_day + signup_day).astype(object),
            "marketing_consent": rng.random(n) < 0.8,
        }
    )
    return _Customers(frame, tastes, activity, signup_day)


def _blank(rng: np.random.Generator, frame: pd.DataFrame, share: dict[str, float]) -> pd.DataFrame:
    """A copy of ``frame`` with a share of each named column set missing."""
    out = frame.copy()
    for column, p in share.items():
        out.loc[rng.random(len(out)) < p, column] = pd.NA if column == "age" else np.nan
    return out


def _assemble(
    rng: np.random.Generator,
    clean: _Events,
    is_bot: Bools,
    price: Floats,
    user_ids: Objects,
    item_ids: Objects,
    dirt: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events as a shop exports them (strings, mostly chronological) plus planted dirt."""
    n = len(clean)
    amount = np.where(clean.code == PURCHASE, np.round(price[clean.item] * clean.qty, 2), np.nan)
    type_idx = _event_type_index(rng, clean.code, 0.05)
    # A few late-arriving rows: the export is mostly, not strictly, chronological.
    key = clean.t + (rng.random(n) < 0.01) * rng.integers(0, 3 * _DAY, n)
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
        malformed = [k for k in _MALFORMED if k != "negative_amount"]
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
    event_type = _event_type_vocabulary()[0][type_idx[idx]]
    event_type[kind == "unknown_event_type"] = "teleport"
    timestamp = _iso_utc(clean.t[idx] + shift).to_numpy(zero_copy_only=False).astype(object)
    bad = kind == "bad_timestamp"
    timestamp[bad] = rng.choice(np.array(_BAD_TIMESTAMPS, dtype=object), int(bad.sum()))
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


def demo_shop(
    n_customers: int = 2000,
    n_items: int = 400,
    days: int = 120,
    start: str = "2026-01-05",
    seed: int = 42,
    dirt: bool = True,
) -> DemoShop:
    """Generate a realistic online shop, identical for the same arguments.

    Customers visit on a weekly rhythm with a sale bump, browse mostly the 1-3 categories they
    like (tastes depend on age and gender), favorite and cart some items and buy most carts at
    the end of the visit; consumables (groceries, beauty, pets) are re-bought on a cycle. About
    5% of events name their type by a synonym the ingest maps (``add_to_cart``, ``BUY``...).
    With ``dirt`` the data also holds what real exports hold: duplicate and double-click rows,
    one or two scraper bots, outlier and negative amounts, empty user ids, bad and far-future
    timestamps, unknown event types, and missing customer and item attributes, all recorded in
    ``truth``. The default size gives about 110,000 events in under a second.

    Raises:
        ConfigError: sizes too small, or ``start`` not an ISO date.
    """
    first_day = _check(n_customers, n_items, days, start)
    start_second = int(first_day.astype("datetime64[s]").astype(np.int64))
    rng = np.random.default_rng(seed)
    catalogue = _make_catalogue(rng, n_items)
    items = _items_frame(rng, catalogue)
    people = _make_customers(rng, n_customers, first_day, days)
    bots = (
        np.sort(rng.choice(n_customers, int(rng.integers(1, 3)), replace=False))
        if dirt
        else np.zeros(0, np.int64)
    )
    is_bot = np.isin(np.arange(n_customers), bots)

    sale = np.zeros(days, dtype=bool)
    sale[int(days * 0.55) : int(days * 0.55) + 4] = True
    weekday = (first_day.astype(np.int64) + 3 + np.arange(days)) % 7  # 1970-01-01 was a Thursday
    season = _WEEKDAYS[weekday] * np.where(sale, 2.2, 1.0)
    rate = _VISITS_PER_DAY * people.activity * ~is_bot
    signed_up = np.arange(days)[None, :] >= people.signup_day[:, None]
    visits = rng.poisson(rate[:, None] * season[None, :] * signed_up)
    customer, day = np.nonzero(visits)
    counts = visits[customer, day]
    customer, day = np.repeat(customer, counts), np.repeat(day, counts)
    t0 = _visit_times(rng, start_second + day * _DAY)

    browse = _browse(rng, catalogue, np.cumsum(people.tastes, axis=1), customer, t0, sale[day])
    regular, staples = _replenish(
        rng, catalogue, people.tastes, people.signup_day, is_bot, days, start_second
    )
    clean = _Events.concat([browse, regular, _bot_views(rng, bots, n_items, days, start_second)])
    columns = pd.DataFrame({"u": clean.user, "i": clean.item, "c": clean.code, "t": clean.t})
    clean = clean.take(np.flatnonzero(~columns.duplicated().to_numpy()))
    user_ids, item_ids = (
        people.frame["user_id"].to_numpy(dtype=object),
        items["item_id"].to_numpy(dtype=object),
    )
    events, planted = _assemble(rng, clean, is_bot, catalogue.price, user_ids, item_ids, dirt)

    public_items = items.drop(columns="popularity")
    replenishment = pd.DataFrame(
        {
            "user_id": np.concatenate([user_ids[u] for u, _, _, _ in staples]),
            "item_id": np.concatenate([item_ids[i] for _, i, _, _ in staples]),
            "category": np.concatenate(
                [np.full(len(u), CATEGORY_NAMES[k], dtype=object) for u, _, k, _ in staples]
            ),
            "cycle_days": np.round(np.concatenate([c for _, _, _, c in staples]), 1),
        }
    )
    truth = DemoTruth(
        bot_user_ids=tuple(str(u) for u in user_ids[bots]),
        tastes=pd.DataFrame(
            people.tastes, index=pd.Index(user_ids, name="user_id"), columns=list(CATEGORY_NAMES)
        ),
        activity=pd.Series(
            _VISITS_PER_DAY * people.activity,
            index=pd.Index(user_ids, name="user_id"),
            name="activity",
        ),
        replenishment=replenishment,
        dirt=planted,
        customers=people.frame,
        items=items,
        sale_days=tuple(str(d) for d in np.datetime_as_string(first_day + np.flatnonzero(sale))),
    )
    if dirt:
        customers = _blank(rng, people.frame, {"age": 0.08, "city": 0.05})
        public_items = _blank(rng, public_items, {"price": 0.05, "brand": 0.05})
    else:
        customers = people.frame.copy()
    return DemoShop(events=events, customers=customers, items=public_items, truth=truth)


# ----------------------------------------------------------------------- large files for benchmarks

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
    first_day = _check(n_customers, n_items, days, start)
    if n_events < 0:
        raise ConfigError(f"n_events must not be negative, got {n_events}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
    rng = np.random.default_rng(seed)
    catalogue = _make_catalogue(rng, n_items)
    shares = np.array([c.share for c in _CATEGORIES])
    tastes = _make_tastes(rng, np.broadcast_to(shares, (n_customers, len(shares))))
    activity = np.cumsum(rng.lognormal(0, 1, n_customers))
    shop = _BigShop(
        catalogue=catalogue,
        taste_cum=np.cumsum(tastes, axis=1),
        activity_cum=activity / activity[-1],
        users=pa.array(_ids("C", n_customers, 6)),
        items=pa.array(_ids("P", n_items, 5)),
        event_types=pa.array([*_event_type_vocabulary()[0].tolist(), "teleport"]),
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    begin = int(first_day.astype("datetime64[s]").astype(np.int64))
    span = days * _DAY
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with pa.OSFile(str(out), "wb") as sink:
        sink.write((",".join(EVENT_COLUMNS) + "\n").encode())
        done = 0
        while done < n_events:
            rows = min(chunk_size, n_events - done)
            window = (begin + span * done // n_events, begin + span * (done + rows) // n_events)
            pacsv.write_csv(_big_chunk(rng, shop, rows, window), sink, options)
            done += rows
    return out


@dataclass(frozen=True)
class _BigShop:
    catalogue: _Catalogue
    taste_cum: Floats
    activity_cum: Floats
    users: pa.Array
    items: pa.Array
    event_types: pa.Array  # the vocabulary, then "teleport" for unknown types


def _big_chunk(
    rng: np.random.Generator, shop: _BigShop, rows: int, window: tuple[int, int]
) -> pa.Table:
    """``rows`` events from visits within ``window`` (Unix seconds), sorted by time."""
    n_copies = round(rows * 0.005)
    base = rows - n_copies
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
    day_start = (rng.integers(window[0], max(window[1], window[0] + 1), n_visits) // _DAY) * _DAY
    t0 = _visit_times(rng, day_start)
    visit = np.repeat(np.arange(n_visits), n_views)
    first = np.cumsum(n_views) - n_views
    gaps = 5 + rng.exponential(40, len(visit))
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    t = t0[visit] + (elapsed - elapsed[first][visit]).astype(np.int64)
    user = customer[visit]
    main = _sample_rows(rng, shop.taste_cum, customer)[visit]
    category = np.where(rng.random(len(visit)) < 0.7, main, _sample_rows(rng, shop.taste_cum, user))
    item = shop.catalogue.sampler.sample(rng, category)
    t_cart = t[cart] + 5 + rng.exponential(30, int(cart.sum())).astype(np.int64)
    qty = _quantity(rng, shop.catalogue.category[item[cart]])
    bought = buy[cart]
    t_buy = t_cart[bought] + 30 + rng.exponential(180, int(bought.sum())).astype(np.int64)
    events = _Events.concat(
        [
            _events(user, item, VIEW, t),
            _events(user[fav], item[fav], FAVORITE, t[fav] + 3 + rng.exponential(15, fav.sum())),
            _events(user[cart], item[cart], CART, t_cart, qty),
            _events(user[buy], item[buy], PURCHASE, t_buy, qty[bought]),
        ]
    )
    order = np.argsort(events.t, kind="stable")
    all_types = _event_type_index(rng, events.code, 0.05)  # before copying: copies match
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
    timestamps = _iso_utc(events.t)
    # Malformed rows, ~0.1%: a fifth of them of each kind.
    n_each = rng.binomial(rows, 0.001 / len(_MALFORMED), len(_MALFORMED))
    no_user = np.zeros(rows, dtype=bool)
    purchases = np.flatnonzero(events.code == PURCHASE)
    for name, n in zip(_MALFORMED, n_each, strict=True):
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
                "2099" + s[4:] if name == "future_timestamp" else _BAD_TIMESTAMPS[rng.integers(2)]
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
