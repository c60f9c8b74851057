"""The weeks after a campaign's send date in a demo shop, with a known effect.

:func:`simulate_campaign_response` continues a :class:`~tailorcast.datasets.DemoShop` past
the send date: every customer keeps buying at their own pace (from the planted activity and
tastes), and treated campaign members also respond to their offers, more often the more the
offers match what they like. Because the simulation draws both potential outcomes of every
member (what they would do if treated, and if not), it knows the campaign's true average
effect on these very members, which a measurement's interval should contain.

Model, per member ``i`` over ``weeks`` after the send date:

- *baseline*: purchases ~ Poisson(``lambda_i x days``), with ``lambda_i`` the customer's
  planted visit rate times the shop's purchases per visit; each purchase picks a category
  by the customer's tastes and an item by its popularity in that category;
- *response*: with probability ``p_i = min(1, response_rate x relevance_i)``, where
  ``relevance_i`` is the customer's taste share of the best-matching offered item's
  category, the member views, carts and buys that item within a week of the send date.
  Only treated members' responses become events.

Example::

    shop = demo_shop(seed=1)
    sim = simulate_campaign_response(shop, members, offers, send_date="2026-05-05")
    sim.write("after-send.csv")     # ingest it, then measure the campaign
    sim.true_conversion_lift        # what the measurement should find
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from tailorcast.datasets._events import DAY
from tailorcast.datasets.demo_shop import DemoShop
from tailorcast.errors import ConfigError

__all__ = ["CampaignResponse", "simulate_campaign_response"]

_PURCHASE_NAMES: Final = ("purchase", "buy", "order", "checkout", "transaction", "sale")


@dataclass(frozen=True, eq=False)
class CampaignResponse:
    """Events of the weeks after the send date, and the truth behind them.

    Attributes:
        events: raw events as the shop exports them (``user_id, item_id, event_type,
            timestamp, amount, quantity``), ready for ``tailorcast ingest``.
        members: per member: ``user_id``, ``treated``, ``p_respond``, ``responds`` (the
            potential outcome, drawn for control members too), ``baseline_converted``,
            ``baseline_revenue``, ``response_item``, ``response_amount``.
        true_conversion_lift: mean over members of (converted if treated - converted if not).
        true_revenue_lift: mean over members of the extra revenue treatment brings.
        true_offer_conversion_lift: mean over members of the change in "bought an offered
            item" that treatment brings.
    """

    events: pd.DataFrame
    members: pd.DataFrame
    true_conversion_lift: float
    true_revenue_lift: float
    true_offer_conversion_lift: float

    def write(self, path: str | Path) -> Path:
        """Write ``events`` as CSV (the folder must exist) and return the path."""
        target = Path(path)
        self.events.to_csv(target, index=False)
        return target


def simulate_campaign_response(
    shop: DemoShop,
    members: pd.DataFrame,
    offers: pd.DataFrame,
    *,
    send_date: str | pd.Timestamp,
    weeks: int = 4,
    response_rate: float = 0.6,
    seed: int = 0,
) -> CampaignResponse:
    """Simulate purchases after ``send_date``; see the module docstring.

    Args:
        shop: the demo shop the campaign was built on.
        members: ``user_id`` (the shop's IDs) and ``treated`` (bool) of every member.
        offers: ``user_id``, ``item_id`` of every member's offers (control members' offers
            are the ones they would have got; they set the potential outcome).
        send_date: the campaign's send date; events fall in ``(send_date, + weeks]``.
        weeks: length of the simulated period.
        response_rate: how strongly members respond to a perfectly relevant offer.
        seed: random seed.

    Raises:
        ConfigError: bad arguments or members unknown to the shop.
    """
    if weeks < 1:
        raise ConfigError(f"weeks must be at least 1, got {weeks}")
    if not 0.0 <= response_rate <= 1.0:
        raise ConfigError(f"response_rate must be in [0, 1], got {response_rate}")
    for frame, cols in ((members, ("user_id", "treated")), (offers, ("user_id", "item_id"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ConfigError(f"missing columns {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(send_date)
    if start.tzinfo is not None:
        start = start.tz_convert("UTC").tz_localize(None)
    start_s = int(start.value // 1_000_000_000)
    span = weeks * 7 * DAY
    truth = shop.truth
    catalogue = truth.items.set_index("item_id")
    tastes = truth.tastes
    users = tastes.index.to_numpy(dtype=object)
    bots = set(truth.bot_user_ids)
    unknown = ~members["user_id"].isin(tastes.index)
    if unknown.any():
        raise ConfigError(f"{int(unknown.sum())} members are not customers of this shop")

    # Baseline: every (non-bot) customer keeps buying at their historical pace.
    rate = _purchases_per_day(shop) * ~pd.Index(users).isin(bots)
    count = rng.poisson(rate * span / DAY)
    buyer = np.repeat(np.arange(len(users)), count)
    cum = np.cumsum(tastes.to_numpy(dtype=float), axis=1)
    category = (cum[buyer] < rng.random(len(buyer))[:, None] * cum[buyer, -1:]).sum(axis=1)
    category = np.minimum(category, cum.shape[1] - 1)
    names = np.asarray(tastes.columns, dtype=object)
    item = _pick_items(rng, catalogue, names[category])
    t_base = start_s + 1 + rng.integers(0, span - 120, len(buyer))
    base = _funnel(users[buyer], item, t_base, catalogue, ("view", "purchase"))

    # Response: potential outcome of every member; only the treated act on it.
    best = _best_offer(members, offers, tastes, catalogue)
    p = np.minimum(1.0, response_rate * best["relevance"].to_numpy(dtype=float))
    responds = rng.random(len(best)) < p
    price = catalogue["price"].reindex(best["item_id"]).to_numpy(dtype=float)
    amount = np.where(responds, np.nan_to_num(price), 0.0)
    treated = best["treated"].to_numpy(dtype=bool)
    act = responds & treated
    t_resp = start_s + 1 + rng.integers(0, 7 * DAY - 600, int(act.sum()))
    response = _funnel(
        best["user_id"].to_numpy(dtype=object)[act],
        best["item_id"].to_numpy(dtype=object)[act],
        t_resp,
        catalogue,
        ("view", "cart", "purchase"),
    )
    events = pd.concat([base, response], ignore_index=True)
    events = events.sort_values(["timestamp", "user_id"], kind="stable", ignore_index=True)

    # Baseline outcomes of members, to turn potential outcomes into true effects.
    bought = base[base["event_type"] == "purchase"]
    n_base = bought.groupby("user_id").size()
    rev_base = bought.groupby("user_id")["amount"].sum()
    offered = offers[["user_id", "item_id"]].drop_duplicates()
    base_hit = set(bought.merge(offered, on=["user_id", "item_id"])["user_id"])
    uid = best["user_id"]
    converted0 = uid.map(n_base).fillna(0).to_numpy() > 0
    hit0 = uid.isin(base_hit).to_numpy()
    out = best.assign(
        p_respond=p,
        responds=responds,
        baseline_converted=converted0,
        baseline_revenue=uid.map(rev_base).fillna(0.0).to_numpy(dtype=float),
        response_amount=amount,
    ).rename(columns={"item_id": "response_item"})
    return CampaignResponse(
        events=events,
        members=out.drop(columns="relevance"),
        true_conversion_lift=float(np.mean(responds & ~converted0)),
        true_revenue_lift=float(np.mean(amount)),
        true_offer_conversion_lift=float(np.mean(responds & ~hit0)),
    )


def _purchases_per_day(shop: DemoShop) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """Each customer's planted visit rate times the shop-wide purchases per visit-day."""
    activity = shop.truth.activity.reindex(shop.truth.tastes.index).fillna(0.0)
    # The planted dirt (far-future timestamps, bot traffic...) would distort both counts.
    clean = shop.events.drop(index=shop.events.index[shop.truth.dirt["row"].to_numpy()])
    kind = clean["event_type"].astype(str).str.strip().str.lower()
    purchases = int(kind.isin(_PURCHASE_NAMES).sum())
    stamps = pd.to_datetime(clean["timestamp"], errors="coerce", utc=True)
    days = max(1.0, float((stamps.max() - stamps.min()) / pd.Timedelta(days=1)))
    per_visit = purchases / max(1e-9, float(activity.sum()) * days)
    return np.asarray(activity.to_numpy(dtype=float) * per_visit, dtype=np.float64)


def _pick_items(
    rng: np.random.Generator,
    catalogue: pd.DataFrame,
    categories: np.ndarray[tuple[int], np.dtype[np.object_]],
) -> np.ndarray[tuple[int], np.dtype[np.object_]]:
    """An item per row from the row's category, by popularity (one draw per category)."""
    out = np.empty(len(categories), dtype=object)
    for name, rows in pd.Series(np.arange(len(categories))).groupby(categories):
        pool = catalogue[catalogue["category"] == name]
        weight = pool["popularity"].to_numpy(dtype=float) + 1e-9
        out[rows.to_numpy()] = rng.choice(
            pool.index.to_numpy(dtype=object), len(rows), p=weight / weight.sum()
        )
    return out


def _best_offer(
    members: pd.DataFrame, offers: pd.DataFrame, tastes: pd.DataFrame, catalogue: pd.DataFrame
) -> pd.DataFrame:
    """Per member the offered item whose category they like most, and that taste share."""
    pairs = offers[["user_id", "item_id"]].merge(members[["user_id", "treated"]], on="user_id")
    cat = pairs["item_id"].map(catalogue["category"])
    rows = tastes.index.get_indexer(pd.Index(pairs["user_id"]))
    cols = tastes.columns.get_indexer(pd.Index(cat))
    taste = np.where(cols >= 0, tastes.to_numpy(dtype=float)[rows, np.maximum(cols, 0)], 0.0)
    pairs = pairs.assign(relevance=taste)
    best = pairs.sort_values("relevance", ascending=False, kind="stable").drop_duplicates("user_id")
    full = members[["user_id", "treated"]].merge(
        best[["user_id", "item_id", "relevance"]], on="user_id", how="left"
    )
    full["relevance"] = full["relevance"].fillna(0.0)
    return full.reset_index(drop=True)


def _funnel(
    users: np.ndarray[tuple[int], np.dtype[np.object_]],
    items: np.ndarray[tuple[int], np.dtype[np.object_]],
    t: np.ndarray[tuple[int], np.dtype[np.int64]],
    catalogue: pd.DataFrame,
    steps: tuple[str, ...],
) -> pd.DataFrame:
    """One row per step per (user, item, time), steps a minute or two apart."""
    n = len(users)
    price = catalogue["price"].reindex(items).to_numpy(dtype=float)
    parts = []
    for s, step in enumerate(steps):
        stamp = pd.to_datetime(np.asarray(t, dtype=np.int64) + 75 * s, unit="s")
        parts.append(
            pd.DataFrame(
                {
                    "user_id": users,
                    "item_id": items,
                    "event_type": step,
                    "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "amount": price if step == "purchase" else np.full(n, np.nan),
                    "quantity": np.ones(n, dtype=np.int64),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
