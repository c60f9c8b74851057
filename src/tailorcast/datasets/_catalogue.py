"""The demo shop's catalogue and customers: categories, items with prices and popularity,
customers with tastes over categories, and the argument checks shared by both generators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.errors import ConfigError

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]


@dataclass(frozen=True)
class Category:
    name: str
    low: float  # price range of the category
    high: float
    share: float  # share of the catalogue and of customers' first interest
    cycle_days: float  # consumables: mean days between re-purchases; 0 for durable goods
    nouns: tuple[str, ...]
    brands: tuple[str, ...]


def _table(text: str) -> tuple[Category, ...]:
    lines = text.strip().splitlines()
    categories = []
    for head, nouns in zip(lines[::2], lines[1::2], strict=True):
        numbers, brands = head.split("|")
        name, low, high, share, cycle = numbers.split()
        categories.append(
            Category(
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
CATEGORIES: Final = _table("""
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
CATEGORY_NAMES: Final = tuple(c.name for c in CATEGORIES)
CYCLE_DAYS: Final = np.array([c.cycle_days for c in CATEGORIES])
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


def check_sizes(n_customers: int, n_items: int, days: int, start: str) -> np.datetime64:
    """Validate the generator's arguments; return the first day."""
    if n_customers < 10:
        raise ConfigError(f"n_customers must be at least 10, got {n_customers}")
    if n_items < len(CATEGORIES):
        raise ConfigError(f"n_items must be at least {len(CATEGORIES)}, got {n_items}")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    try:
        return np.datetime64(start, "D")
    except ValueError:
        raise ConfigError(f"start must be an ISO date like 2026-01-05, got {start!r}") from None


def make_ids(prefix: str, n: int, width: int) -> Objects:
    """``C000001``-style ids, numbered from 1."""
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


class _ItemSampler:
    """Draws items of given categories with Zipf-like popularity, vectorised."""

    def __init__(self, category: Ints, popularity: Floats) -> None:
        self.order = np.argsort(category, kind="stable")
        cats = category[self.order]
        cum = np.zeros(len(cats))
        for k in range(len(CATEGORIES)):
            in_k = cats == k
            cum[in_k] = k + np.cumsum(popularity[self.order][in_k])
            cum[np.flatnonzero(in_k)[-1]] = k + 1  # exact edge so draws never spill over
        self.cum = cum

    def sample(self, rng: np.random.Generator, categories: Ints) -> Ints:
        """One item per entry of ``categories``, drawn by popularity within the category."""
        pos = np.searchsorted(self.cum, categories + rng.random(len(categories)), side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


@dataclass(frozen=True)
class Catalogue:
    """The items as arrays indexed by item position."""

    category: Ints
    price: Floats
    popularity: Floats  # share within the category
    available: Bools
    sampler: _ItemSampler


def make_catalogue(rng: np.random.Generator, n_items: int) -> Catalogue:
    shares = np.array([c.share for c in CATEGORIES])
    k = len(CATEGORIES)
    # Every category gets at least one item, the rest follow the category shares.
    category = np.concatenate([np.arange(k), rng.choice(k, n_items - k, p=shares / shares.sum())])
    category = rng.permutation(category).astype(np.int64)
    low = np.log([c.low for c in CATEGORIES])[category]
    high = np.log([c.high for c in CATEGORIES])[category]
    log_price = rng.normal((low + high) / 2, (high - low) / 5)
    price = np.round(np.exp(np.clip(log_price, low, high)), 2) - 0.01 * (rng.random(n_items) < 0.5)
    popularity = np.zeros(n_items)
    for c in range(k):
        in_c = np.flatnonzero(category == c)
        rank = rng.permutation(len(in_c)) + 1
        weight = rank**-1.1
        popularity[in_c] = weight / weight.sum()
    available = rng.random(n_items) < 0.95
    return Catalogue(
        category, np.round(price, 2), popularity, available, _ItemSampler(category, popularity)
    )


def make_tastes(rng: np.random.Generator, prior: Floats) -> Floats:
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


def items_frame(rng: np.random.Generator, catalogue: Catalogue) -> pd.DataFrame:
    """The items table: titles, brands and tags made up from the category, plus
    ``popularity``."""
    n = len(catalogue.price)
    ids = make_ids("P", n, 5)
    rows = []
    for i in range(n):
        cat = CATEGORIES[catalogue.category[i]]
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
class Customers:
    """The customers table and the latent truth behind it, by customer position."""

    frame: pd.DataFrame
    tastes: Floats
    activity: Floats
    signup_day: Ints


def make_customers(
    rng: np.random.Generator, n: int, first_day: np.datetime64, days: int
) -> Customers:
    gender = rng.choice(3, n, p=[0.52, 0.45, 0.03])  # F, M, X
    age = np.clip(np.round(rng.normal(40, 13, n)), 18, 85).astype(np.int64)
    # Attributes carry signal: the categories a customer cares about depend on age and gender.
    boost = np.ones((n, len(CATEGORIES)))
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
    shares = np.array([c.share for c in CATEGORIES])
    tastes = make_tastes(rng, shares[None, :] * boost)
    activity = rng.lognormal(-0.4, 0.9, n)
    signup_day = np.where(
        rng.random(n) < 0.85, -rng.integers(1, 3 * 365, n), rng.integers(0, days, n)
    ).astype(np.int64)
    female = np.array(_FIRST_NAMES_F, dtype=object)[rng.integers(len(_FIRST_NAMES_F), size=n)]
    male = np.array(_FIRST_NAMES_M, dtype=object)[rng.integers(len(_FIRST_NAMES_M), size=n)]
    first_name = np.where((gender == 0) | ((gender == 2) & (rng.random(n) < 0.5)), female, male)
    city_weight = 1 / np.arange(1, len(_CITIES) + 1) ** 0.8
    ids = make_ids("C", n, 6)
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
    return Customers(frame, tastes, activity, signup_day)


def blank(rng: np.random.Generator, frame: pd.DataFrame, share: dict[str, float]) -> pd.DataFrame:
    """A copy of ``frame`` with a share of each named column set missing."""
    out = frame.copy()
    for column, p in share.items():
        out.loc[rng.random(len(out)) < p, column] = pd.NA if column == "age" else np.nan
    return out
