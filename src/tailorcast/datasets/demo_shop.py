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
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from tailorcast.datasets._catalogue import (
    CATEGORY_NAMES,
    Ints,
    blank,
    check_sizes,
    items_frame,
    make_catalogue,
    make_customers,
)
from tailorcast.datasets._events import (
    DAY,
    DIRT_KINDS,
    Events,
    bot_events,
    browsing_events,
    churn_days,
    export_with_dirt,
    replenishment_events,
    visit_times,
)
from tailorcast.datasets._large import write_events_csv
from tailorcast.errors import ConfigError

__all__ = [
    "DEFAULT_LIFETIME_DAYS",
    "DIRT_KINDS",
    "DemoFiles",
    "DemoShop",
    "DemoTruth",
    "demo_shop",
    "write_events_csv",
]

#: Mean active life of a customer (days) before they lapse; see :func:`demo_shop`.
DEFAULT_LIFETIME_DAYS: Final = 180.0
_VISITS_PER_DAY: Final = 0.07  # of an average customer, before the weekly rhythm and the sale
#: Visits per weekday (Monday first), relative: weekends are busier.
_WEEKDAYS: Final = np.array([0.9, 0.85, 0.9, 0.95, 1.05, 1.25, 1.2])


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
        churn_day: with ``mean_lifetime_days``, the ISO date from which each customer no
            longer comes back (None for a customer still active at the end); else None.
    """

    bot_user_ids: tuple[str, ...]
    tastes: pd.DataFrame
    activity: pd.Series
    replenishment: pd.DataFrame
    dirt: pd.DataFrame
    customers: pd.DataFrame
    items: pd.DataFrame
    sale_days: tuple[str, ...]
    churn_day: pd.Series | None = None

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


def _churn_dates(
    until: Ints, first_day: np.datetime64, days: int, user_ids: np.ndarray[Any, Any]
) -> pd.Series:
    """ISO date each customer stopped coming back; None for customers active to the end."""
    dates = np.datetime_as_string(first_day + until).astype(object)
    dates[until >= days] = None
    return pd.Series(dates, index=pd.Index(user_ids, name="user_id"), name="churn_day")


def demo_shop(
    n_customers: int = 2000,
    n_items: int = 400,
    days: int = 120,
    start: str = "2026-01-05",
    seed: int = 42,
    dirt: bool = True,
    mean_lifetime_days: float | None = DEFAULT_LIFETIME_DAYS,
) -> DemoShop:
    """Generate a realistic online shop, identical for the same arguments.

    Customers visit on a weekly rhythm with a sale bump, browse mostly the 1-3 categories they
    like (tastes depend on age and gender), favorite and cart some items and buy most carts at
    the end of the visit; consumables (groceries, beauty, pets) are re-bought on a cycle. About
    5% of events name their type by a synonym the ingest maps (``add_to_cart``, ``BUY``...).
    With ``dirt`` the data also holds what real exports hold: duplicate and double-click rows,
    one or two scraper bots, outlier and negative amounts, empty user ids, bad and far-future
    timestamps, unknown event types, and missing customer and item attributes, all recorded in
    ``truth``. The default size gives about 85,000 events in under a second.

    Customers churn, as in real shops: each stops visiting and re-buying after an
    exponential active life with mean ``mean_lifetime_days`` (``truth.churn_day``; default
    :data:`DEFAULT_LIFETIME_DAYS`, so after a year about one customer in seven still buys).
    Lapsed customers are what lifetime-value models (BG/NBD's dropout) and the RFM segments
    "At risk", "Hibernating" and "Lost" are about. ``mean_lifetime_days=None`` gives a
    stationary shop where everyone buys at a constant rate forever (the generator as it was
    before churn existed).

    Raises:
        ConfigError: sizes too small, or ``start`` not an ISO date.
    """
    first_day = check_sizes(n_customers, n_items, days, start)
    start_second = int(first_day.astype("datetime64[s]").astype(np.int64))
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(rng, n_items)
    items = items_frame(rng, catalogue)
    people = make_customers(rng, n_customers, first_day, days)
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
    until: Ints | None = None
    if mean_lifetime_days is not None:
        if not mean_lifetime_days > 0:
            raise ConfigError(f"mean_lifetime_days must be > 0, got {mean_lifetime_days}")
        churn_rng = np.random.default_rng([seed, 1])
        until = churn_days(churn_rng, people.signup_day, mean_lifetime_days, days)
        signed_up &= np.arange(days)[None, :] < until[:, None]
    visits = rng.poisson(rate[:, None] * season[None, :] * signed_up)
    customer, day = np.nonzero(visits)
    counts = visits[customer, day]
    customer, day = np.repeat(customer, counts), np.repeat(day, counts)
    t0 = visit_times(rng, start_second + day * DAY)

    browse = browsing_events(
        rng, catalogue, np.cumsum(people.tastes, axis=1), customer, t0, sale[day]
    )
    regular, staples = replenishment_events(
        rng, catalogue, people.tastes, people.signup_day, is_bot, days, start_second, until
    )
    clean = Events.concat([browse, regular, bot_events(rng, bots, n_items, days, start_second)])
    columns = pd.DataFrame({"u": clean.user, "i": clean.item, "c": clean.code, "t": clean.t})
    clean = clean.take(np.flatnonzero(~columns.duplicated().to_numpy()))
    user_ids, item_ids = (
        people.frame["user_id"].to_numpy(dtype=object),
        items["item_id"].to_numpy(dtype=object),
    )
    events, planted = export_with_dirt(
        rng, clean, is_bot, catalogue.price, user_ids, item_ids, dirt
    )

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
        churn_day=None if until is None else _churn_dates(until, first_day, days, user_ids),
    )
    if dirt:
        customers = blank(rng, people.frame, {"age": 0.08, "city": 0.05})
        public_items = blank(rng, public_items, {"price": 0.05, "brand": 0.05})
    else:
        customers = people.frame.copy()
    return DemoShop(events=events, customers=customers, items=public_items, truth=truth)
