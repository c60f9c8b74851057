"""Campaigns: an audience, a seeded control group, each member's next-best offers, and the
lift measured afterwards from real purchases.

A campaign lives in the store in three tables (created on first use, written in one
transaction per campaign, so a crash never leaves half a campaign):

- ``campaign_info``: one row per campaign (target, holdout share, seed, send date, model);
- ``campaign_members``: every member with its RFM ``segment``, ``arm`` (``treated`` or
  ``control``) and audience rank;
- ``campaign_offers``: each member's next-best offers (item, title, price, reason) among
  the items the business rules (:class:`~tailorcast.rules.Rules`) allow. Control
  members get the offers they *would* have received too: they are never exported, but they
  let :func:`measure_campaign` compare "bought what we would offer" across both arms.

The control group is drawn at random within each RFM segment (the same share of every
segment, remainders given out so the total is ``round(holdout x members)``), so treated and
control are alike in value and recency and the difference in their purchases after the
send date is the campaign's effect. The same members and seed give the same split.

:func:`measure_campaign` compares the arms afterwards (see :mod:`tailorcast.marketing.lift`
for the intervals).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.marketing._data import AsOf, read_events, to_timestamp
from tailorcast.marketing.audiences import (
    DEFAULT_MIN_SIZE,
    Audience,
    AudienceTarget,
    build_audience,
    contact_frame,
)
from tailorcast.marketing.lift import CampaignMeasurement, Lift, mean_lift, proportion_lift
from tailorcast.models.base import Recommender
from tailorcast.privacy import Keys
from tailorcast.rules import Rules
from tailorcast.store import Store, quote_ident

__all__ = [
    "CAMPAIGN_SCHEMA",
    "CampaignMeasurement",
    "CampaignSummary",
    "Lift",
    "assign_control",
    "campaign_info",
    "campaign_members",
    "campaign_offers",
    "create_campaign",
    "export_campaign",
    "list_campaigns",
    "measure_campaign",
    "parse_holdout",
]

CAMPAIGN_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS campaign_info (
    name VARCHAR, created_at TIMESTAMP, send_date TIMESTAMP, as_of TIMESTAMP, target JSON,
    holdout DOUBLE, items_per_customer INTEGER, seed BIGINT, value_weighted BOOLEAN,
    model_version VARCHAR, members BIGINT, treated BIGINT, control BIGINT, rules JSON);
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign VARCHAR, user_id VARCHAR, segment VARCHAR, arm VARCHAR, audience_rank BIGINT,
    score DOUBLE);
CREATE TABLE IF NOT EXISTS campaign_offers (
    campaign VARCHAR, user_id VARCHAR, "rank" INTEGER, item_id VARCHAR, title VARCHAR,
    price DOUBLE, reason VARCHAR, score DOUBLE);
"""
TREATED: Final = "treated"
CONTROL: Final = "control"
#: Item columns an export carries when the items table has them (links for mail templates).
LINK_COLUMNS: Final = ("image_url", "image", "url", "product_url", "link")
_NAME: Final = re.compile(r"^[\w.\- ]{1,100}$")


@dataclass(frozen=True)
class CampaignSummary:
    """What :func:`create_campaign` stored."""

    name: str
    target: dict[str, Any]
    send_date: str
    members: int
    treated: int
    control: int
    holdout: float
    seed: int
    items_per_customer: int
    segments: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_holdout(text: str | float) -> float:
    """``"10%"``, ``"0.1"`` or ``0.1`` -> 0.1; must be strictly between 0 and 1."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"--holdout must be a share like 10% or 0.1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"--holdout must be between 0% and 100% (exclusive), got {text!r}")
    return value


def assign_control(
    user_ids: pd.Series, segments: pd.Series, holdout: float, seed: int
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True for the members drawn into the control group, stratified by segment.

    Each segment gives ``floor(holdout x size)`` members; the remaining control places go to
    the segments with the largest fractional parts, so the total is ``round(holdout x n)``.
    Members are ordered by ID before the draw, so the result depends only on the members
    and the seed, never on their order.
    """
    ids = pd.Series(user_ids.to_numpy(dtype=object))
    segs = pd.Series(segments.to_numpy(dtype=object)).fillna("no purchases").astype(str)
    order = np.argsort(ids.to_numpy(dtype=str), kind="stable")
    draw = np.empty(len(ids))
    draw[order] = np.random.default_rng(seed).random(len(ids))
    sizes = segs.value_counts().sort_index()
    exact = sizes * holdout
    quota = pd.Series(np.floor(exact.to_numpy(dtype=float)).astype(np.int64), index=exact.index)
    spare = round(holdout * len(ids)) - int(quota.sum())
    if spare > 0:
        by_fraction = (exact - quota).sort_values(ascending=False, kind="stable")
        quota[by_fraction.index[:spare]] += 1
    place = pd.Series(draw).groupby(segs).rank(method="first")
    limit = segs.map(quota.to_dict()).to_numpy(dtype=float)
    control: np.ndarray[Any, np.dtype[np.bool_]] = place.to_numpy(dtype=float) <= limit
    return control


def create_campaign(
    store: Store,
    name: str,
    target: AudienceTarget | Audience,
    *,
    model: Recommender[Any],
    model_version: str | None = None,
    holdout: float = 0.1,
    items_per_customer: int = 3,
    seed: int = 0,
    size: int | None = None,
    value_weighted: bool = False,
    min_size: int = DEFAULT_MIN_SIZE,
    recent_days: float = 30.0,
    send_date: AsOf | None = None,
    as_of: AsOf | None = None,
    rules: Rules | None = None,
) -> CampaignSummary:
    """Build the audience (or take one built by :func:`build_audience`, whose own size and
    weighting then apply), draw the control group, choose every member's offers and store
    the campaign (one transaction).

    Raises:
        ConfigError: bad name, holdout or sizes; NotFoundError: unknown target;
        UserError: the campaign exists already, or the audience is below ``min_size``.
    """
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(
            f"campaign name {name!r} must be 1-100 letters, digits, spaces, '.', '_' or '-'"
        )
    holdout = parse_holdout(holdout)
    if not 1 <= items_per_customer <= 50:
        raise ConfigError(f"--items-per-customer must be 1..50, got {items_per_customer}")
    if _exists(store, name):
        raise UserError(f"a campaign named {name!r} exists already; choose another --name")
    when = pd.Timestamp.now(tz="UTC").tz_localize(None)
    send = when if send_date is None else to_timestamp(send_date, what="send date")
    if isinstance(target, Audience):  # built by the caller (who showed it already)
        audience, target = target, target.target
        value_weighted = audience.value_weighted
    else:
        audience = build_audience(
            store,
            target,
            model=model,
            size=size,
            value_weighted=value_weighted,
            min_size=min_size,
            recent_days=recent_days,
            as_of=as_of,
        )
    members = audience.members
    control = assign_control(members["user_id"], members["segment"], holdout, seed)
    if control.all() or not control.any():
        raise ConfigError(
            f"--holdout {holdout:.0%} of {len(members)} members leaves an empty arm; "
            "choose a share that gives both arms members"
        )
    member_rows = pd.DataFrame(
        {
            "campaign": name,
            "user_id": members["user_id"].astype(str),
            "segment": members["segment"].astype(str),
            "arm": np.where(control, CONTROL, TREATED),
            "audience_rank": members["rank"].astype(np.int64),
            "score": members["score"].astype(float),
        }
    )
    offers = _offers(
        store, model, member_rows["user_id"], target, items_per_customer, rules or Rules()
    )
    offers.insert(0, "campaign", name)
    info = {
        "name": name,
        "created_at": when.to_pydatetime(),
        "send_date": send.to_pydatetime(),
        "as_of": audience.as_of.to_pydatetime(),
        "target": json.dumps(target.model_dump(exclude_none=True)),
        "holdout": holdout,
        "items_per_customer": items_per_customer,
        "seed": seed,
        "value_weighted": value_weighted,
        "model_version": model_version,
        "members": len(member_rows),
        "treated": int((~control).sum()),
        "control": int(control.sum()),
        "rules": (rules or Rules()).model_dump_json(exclude_defaults=True),
    }
    with store.transaction() as con:
        con.execute(CAMPAIGN_SCHEMA)
        if _exists(store, name):  # created by another process since the check above
            raise UserError(f"a campaign named {name!r} exists already; choose another --name")
        con.execute(
            f"INSERT INTO campaign_info ({', '.join(info)}) VALUES ({', '.join('?' * len(info))})",
            list(info.values()),
        )
        for table, frame in (("campaign_members", member_rows), ("campaign_offers", offers)):
            con.register("_campaign_rows", frame)
            try:
                cols = ", ".join(quote_ident(c) for c in frame.columns)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _campaign_rows")
            finally:
                con.unregister("_campaign_rows")
        store.audit(
            "campaign.create",
            {k: v for k, v in info.items() if k not in ("created_at",)},
        )
    by_segment = member_rows.groupby(["segment", "arm"]).size().unstack(fill_value=0).astype(int)
    return CampaignSummary(
        name=name,
        target=target.model_dump(exclude_none=True),
        send_date=send.isoformat(),
        members=len(member_rows),
        treated=int((~control).sum()),
        control=int(control.sum()),
        holdout=holdout,
        seed=seed,
        items_per_customer=items_per_customer,
        segments={
            str(s): {str(k): int(v) for k, v in row.items()} for s, row in by_segment.iterrows()
        },
        excluded=audience.excluded,
    )


def list_campaigns(store: Store) -> pd.DataFrame:
    """One row per campaign, newest first (empty when there are none)."""
    cols = ["name", "created_at", "send_date", "target", "members", "treated", "control"]
    if not store.columns("campaign_info"):
        return pd.DataFrame(columns=cols)
    rows = store.con.execute(
        f"SELECT {', '.join(cols)} FROM campaign_info ORDER BY created_at DESC, name"
    ).fetchall()
    return pd.DataFrame(rows, columns=cols)


def campaign_members(store: Store, name: str) -> pd.DataFrame:
    """``user_id, segment, arm, audience_rank, score`` of a campaign."""
    campaign_info(store, name)
    return store.con.execute(
        "SELECT user_id, segment, arm, audience_rank, score FROM campaign_members "
        "WHERE campaign = ? ORDER BY audience_rank",
        [name],
    ).df()


def campaign_offers(store: Store, name: str) -> pd.DataFrame:
    """``user_id, arm, rank, item_id, title, price, reason, score`` of a campaign."""
    campaign_info(store, name)
    return store.con.execute(
        'SELECT o.user_id, m.arm, o."rank", o.item_id, o.title, o.price, o.reason, o.score '
        "FROM campaign_offers o JOIN campaign_members m "
        "ON m.campaign = o.campaign AND m.user_id = o.user_id "
        'WHERE o.campaign = ? ORDER BY m.audience_rank, o."rank"',
        [name],
    ).df()


def export_campaign(
    store: Store, name: str, path: str | Path, *, keys: Keys | None, pseudonymized: bool = False
) -> tuple[Path, int]:
    """Write the treated members' mail/push file (CSV, Parquet or JSON by extension).

    One row per treated member: ``customer_id``, ``email``, ``first_name`` (decrypted with the
    keys) and, per offer ``n``, ``item_n_id``, ``item_n_title``, ``item_n_price``, the item's
    image/URL columns where the items table has them, and ``item_n_reason`` (members without
    any eligible offer are left out). With
    ``pseudonymized`` the customer appears only as ``customer_pseudonym`` and no contact field
    is written. The control group is never exported. Returns the path and the row count.
    """
    from tailorcast.recommend import write_table

    offers = campaign_offers(store, name)
    offers = offers[offers["arm"] == TREATED]
    links = _link_columns(store)
    if links:
        picks = ", ".join(f"any_value({quote_ident(c)}) AS {quote_ident(c)}" for c in links)
        extra = store.con.execute(f"SELECT item_id, {picks} FROM items GROUP BY item_id").df()
        offers = offers.merge(extra, on="item_id", how="left")
    fields = ["item_id", "title", "price", *links, "reason"]
    wide = offers.pivot(index="user_id", columns="rank", values=fields)
    wide.columns = [
        f"item_{pair[1]}_{'id' if pair[0] == 'item_id' else pair[0]}"
        for pair in wide.columns.to_list()
    ]
    ranks = sorted(offers["rank"].unique().tolist())
    ordered = [f"item_{r}_{'id' if f == 'item_id' else f}" for r in ranks for f in fields]
    members = campaign_members(store, name)
    treated = members.loc[members["arm"] == TREATED, ["user_id"]]
    # A member without any eligible offer gets no message; they stay in the treated arm, so
    # the measurement is intention-to-treat.
    body = treated.merge(wide[ordered].reset_index(), on="user_id", how="inner")
    if pseudonymized:
        body = body.rename(columns={"user_id": "customer_pseudonym"})
    else:
        contacts = contact_frame(store, body["user_id"].tolist(), keys)
        body = contacts.merge(body, on="user_id", how="right").drop(columns="user_id")
    written = write_table(body, path)
    store_audit = not store.read_only
    if store_audit:
        store.audit(
            "campaign.export",
            {"name": name, "rows": len(body), "contacts": not pseudonymized, "path": str(path)},
        )
    return written, len(body)


def measure_campaign(
    store: Store, name: str, *, window_days: float = 28.0, confidence: float = 0.95
) -> CampaignMeasurement:
    """Conversion, revenue per member and purchases of the offered items in the window
    ``(send date, send date + window_days]``, treated vs control, with normal-approximation
    confidence intervals (see the module docstring).

    Raises:
        NotFoundError: no such campaign; ConfigError: bad window or confidence.
    """
    if window_days <= 0:
        raise ConfigError(f"--window-days must be positive, got {window_days}")
    if not 0.5 <= confidence < 1.0:
        raise ConfigError(f"confidence must be in [0.5, 1), got {confidence}")
    info = campaign_info(store, name)
    send = pd.Timestamp(info["send_date"])
    end = send + pd.Timedelta(days=window_days)
    members = campaign_members(store, name)
    buys = read_events(store, end, since=send, purchases_only=True)
    buys = buys[buys["user_id"].isin(set(members["user_id"]))]
    per_user = buys.groupby("user_id")["amount"].agg(["size", "sum"])
    offered = campaign_offers(store, name)[["user_id", "item_id"]].drop_duplicates()
    hit_users = set(buys.merge(offered, on=["user_id", "item_id"])["user_id"])
    converted = members["user_id"].map(per_user["size"]).fillna(0).to_numpy() > 0
    revenue = members["user_id"].map(per_user["sum"]).fillna(0.0).to_numpy(dtype=float)
    hit = members["user_id"].isin(hit_users).to_numpy()
    treated = (members["arm"] == TREATED).to_numpy()
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    conv = proportion_lift(converted, treated, z)
    rev = mean_lift(revenue, treated, z)
    offer = proportion_lift(hit, treated, z)
    # Data covers the window when an event or an ingest run (which brings the events up to
    # its own time) lies at or after its end.
    latest, ingested = store.con.execute(
        'SELECT (SELECT max("timestamp") FROM events), (SELECT max(started_at) FROM batches)'
    ).fetchall()[0]
    complete = any(t is not None and pd.Timestamp(t) >= end for t in (latest, ingested))
    notes = []
    if not complete:
        notes.append(f"the window is not over yet: events only until {latest}; figures are partial")
    if min(converted[treated].sum(), converted[~treated].sum()) < 10:
        notes.append("fewer than 10 conversions in an arm: the normal interval is optimistic")
    return CampaignMeasurement(
        name=name,
        send_date=send.isoformat(),
        window_end=end.isoformat(),
        complete=bool(complete),
        n_treated=int(treated.sum()),
        n_control=int((~treated).sum()),
        conversion=conv,
        revenue_per_member=rev,
        offer_conversion=offer,
        incremental_revenue=float(rev.difference * treated.sum()),
        confidence=confidence,
        method="normal approximation (Wald interval for proportions, Welch for means)",
        notes=tuple(notes),
    )


# -- helpers ----------------------------------------------------------------------------------
def _exists(store: Store, name: str) -> bool:
    if not store.columns("campaign_info"):
        return False
    rows = store.con.execute("SELECT count(*) FROM campaign_info WHERE name = ?", [name])
    return bool(rows.fetchall()[0][0])


def campaign_info(store: Store, name: str) -> dict[str, Any]:
    """The stored row of a campaign (name, send date, target, holdout...).

    Raises:
        NotFoundError: no such campaign.
    """
    if not store.columns("campaign_info"):
        raise NotFoundError(f"no campaign {name!r}: this store has no campaigns yet")
    cur = store.con.execute("SELECT * FROM campaign_info WHERE name = ?", [name])
    cols = [d[0] for d in cur.description or []]
    rows = cur.fetchall()
    if not rows:
        known = list_campaigns(store)["name"].head(10).tolist()
        hint = f"; campaigns: {', '.join(known)}" if known else ""
        raise NotFoundError(f"no campaign {name!r}{hint}")
    return dict(zip(cols, rows[0], strict=True))


def _link_columns(store: Store) -> list[str]:
    have = {c.lower(): c for c in store.columns("items")}
    return [have[c] for c in LINK_COLUMNS if c in have]


def _catalog(store: Store) -> pd.DataFrame:
    """Latest row per item: ``item_id, category, title, price, available``."""
    cols = {c.lower(): c for c in store.columns("items")}
    title = f"any_value({quote_ident(cols['title'])})" if "title" in cols else "NULL"
    avail = (
        f"bool_and(coalesce(CAST({quote_ident(cols['available'])} AS BOOLEAN), true))"
        if "available" in cols
        else "true"
    )
    return store.con.execute(
        f"SELECT item_id, any_value(category) AS category, {title} AS title, "
        f"any_value(price) AS price, {avail} AS available FROM items GROUP BY item_id"
    ).df()


def _offers(
    store: Store,
    model: Recommender[Any],
    users: pd.Series,
    target: AudienceTarget,
    k: int,
    rules: Rules,
) -> pd.DataFrame:
    """Next-best offers per member among the items the business ``rules`` allow (by default
    available ones) that have a price; within the target's category for a category
    campaign, and with the target item first for an item campaign."""
    from tailorcast.catalog import Catalog

    compiled = rules.compile(model, Catalog.from_store(store))
    catalog = _catalog(store)
    eligible = catalog[catalog["price"].notna()]
    if target.category is not None:
        eligible = eligible[eligible["category"] == target.category]
    ids = users.to_numpy(dtype=object)
    parts = []
    rest_k = k
    if target.item is not None:
        where = np.flatnonzero(np.asarray(model.item_ids_, dtype=object) == target.item)
        if compiled.allowed is not None and where.size and not compiled.allowed[where[0]]:
            raise ConfigError(
                f"item {target.item!r} may not be offered: the business rules exclude it "
                "(unavailable, filtered by category or price, or excluded)"
            )
        first = model.recommend(ids, 1, exclude_seen=False, items=[target.item]).to_frame()
        parts.append(first)
        rest_k = k - 1
        eligible = eligible[eligible["item_id"] != target.item]
    if rest_k > 0:
        more = model.recommend(
            ids, rest_k, items=eligible["item_id"].tolist(), filters=compiled
        ).to_frame()
        if target.item is not None:
            more["rank"] += 1
        parts.append(more)
    offers = pd.concat(parts, ignore_index=True)
    offers = offers.merge(catalog[["item_id", "title", "price"]], on="item_id", how="left")
    offers = offers.sort_values(["user_id", "rank"], kind="stable", ignore_index=True)
    return offers[["user_id", "rank", "item_id", "title", "price", "reason", "score"]].astype(
        {"rank": np.int32, "score": float}
    )
