"""Audiences: the customers most likely to want an item, a category, or who form a segment.

An audience is built in the store's pseudonym space and only leaves it on export:

1. *Candidates*: customers with marketing consent (``users.marketing_consent`` true; a
   customer without a users row, or with an empty value, has not consented), not flagged as
   bots, and, for an item or category, not buyers of it in the last ``recent_days`` before
   ``as_of`` (they have just bought it; mailing them again wastes the contact).
2. *Affinity*: how prominently the item (or the category's items) features in each
   candidate's own top-50 recommendations (DCG weight; see :func:`_affinity`), from one
   batched ``recommend`` call for all candidates, turned into a percentile among them.
   Candidates the model has no history for are left out (their list would be the same
   popularity list for everyone, not an affinity).
3. *Value weighting* (optional): ``affinity percentile x expected-value percentile``,
   where the expected value is the customer's CLV (expected spend over ``horizon_days``)
   times the propensity to buy in the target category within the propensity window.
   Percentiles, because expected values span orders of magnitude and would otherwise
   decide the ranking alone. A segment
   audience is ranked by CLV expected spend (times the probability of buying in any
   category when value-weighted), since it has no target item to score.
4. *Minimum size*: an audience smaller than ``min_size`` (default 50) is refused, so that a
   campaign can never single out a handful of people.

Example::

    store, keys = open_store("tailorcast-store", read_only=True, need_keys=False)
    audience = build_audience(store, AudienceTarget(category="toys"), model=load_model(...))
    export_audience(store, audience, "toys.csv")              # pseudonyms only
    export_audience(store, audience, "toys.csv", keys=keys, reveal=True)   # IDs + contacts
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from tailorcast.errors import ConfigError, DataError, NotFoundError, UserError
from tailorcast.marketing._data import AsOf, resolve_as_of
from tailorcast.models.base import Recommender
from tailorcast.privacy import Keys
from tailorcast.store import Store, quote_ident

__all__ = [
    "CONSENT_COLUMN",
    "CONTACT_COLUMNS",
    "DEFAULT_MIN_SIZE",
    "Audience",
    "AudienceTarget",
    "build_audience",
    "contact_frame",
    "export_audience",
]

CONSENT_COLUMN: Final = "marketing_consent"
#: Contact fields an export carries when they exist in the users table.
CONTACT_COLUMNS: Final = ("email", "first_name")
DEFAULT_MIN_SIZE: Final = 50
#: Length of each candidate's own ranking in which the target's prominence is measured.
_TOP_K: Final = 50
_TRUE: Final = ("true", "t", "1", "yes", "y")


class AudienceTarget(BaseModel):
    """What an audience is for: exactly one of an item ID, a category, or an RFM segment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item: str | None = None
    category: str | None = None
    segment: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AudienceTarget:
        given = [v for v in (self.item, self.category, self.segment) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of item, category or segment")
        if not str(given[0]).strip():
            raise ValueError("the audience target must not be empty")
        return self

    @classmethod
    def of(
        cls, *, item: str | None = None, category: str | None = None, segment: str | None = None
    ) -> AudienceTarget:
        """Like the constructor, but a wrong combination is a ``ConfigError`` (CLI exit 2)."""
        given = sum(v is not None for v in (item, category, segment))
        if given != 1:
            raise ConfigError("give exactly one of --item, --category or --segment")
        if any(v is not None and not v.strip() for v in (item, category, segment)):
            raise ConfigError("the audience target must not be empty")
        return cls(item=item, category=category, segment=segment)

    @property
    def kind(self) -> str:
        return "item" if self.item is not None else "category" if self.category else "segment"

    @property
    def value(self) -> str:
        return str(self.item or self.category or self.segment)

    def describe(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass
class Audience:
    """A ranked audience (``members``: ``user_id`` pseudonym, ``rank`` 1 = best, ``score``,
    ``affinity`` percentile, ``expected_value`` where value-weighted, ``segment``)."""

    target: AudienceTarget
    members: pd.DataFrame
    as_of: pd.Timestamp
    value_weighted: bool
    excluded: dict[str, int] = field(default_factory=dict)
    target_items: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.members)

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target.model_dump(exclude_none=True),
            "as_of": self.as_of.isoformat(),
            "size": len(self.members),
            "value_weighted": self.value_weighted,
            "excluded": dict(self.excluded),
        }


def build_audience(
    store: Store,
    target: AudienceTarget,
    *,
    model: Recommender[Any] | None = None,
    size: int | None = None,
    value_weighted: bool = False,
    min_size: int = DEFAULT_MIN_SIZE,
    recent_days: float = 30.0,
    as_of: AsOf | None = None,
    horizon_days: int = 90,
) -> Audience:
    """Rank the eligible customers for ``target``; see the module docstring.

    Args:
        store: the store (read-only is enough).
        target: item, category or RFM segment.
        model: the fitted recommender (needed for item and category audiences).
        size: keep the best ``size`` customers (None: every eligible customer).
        value_weighted: weight affinity by expected value (CLV x propensity).
        min_size: refuse audiences smaller than this.
        recent_days: leave out customers who bought the item (or in the category) within
            this many days before ``as_of``; 0 keeps them.
        as_of: the audience's "now" (default: the latest event in the store).
        horizon_days: CLV horizon for the expected value.

    Raises:
        ConfigError: bad sizes, no consent column, or a missing model.
        NotFoundError: an unknown item, category or segment.
        UserError: the audience is smaller than ``min_size``.
    """
    if min_size < 1:
        raise ConfigError(f"--min-size must be at least 1, got {min_size}")
    if size is not None and size < min_size:
        raise ConfigError(
            f"--size {size} is below the minimum audience size {min_size}: an audience that "
            "small could single customers out"
        )
    if recent_days < 0:
        raise ConfigError(f"recent_days must be >= 0, got {recent_days}")
    when = resolve_as_of(store, as_of)
    excluded: dict[str, int] = {}
    consenting = _consenting(store)
    candidates = consenting[~consenting.isin(_bots(store))]
    excluded["bots"] = int(len(consenting) - len(candidates))
    items: tuple[str, ...] = ()
    segments = _segments(store, when)
    if target.segment is not None:
        known = _segment_names()
        if target.segment not in known:
            raise NotFoundError(f"unknown segment {target.segment!r}; segments: {', '.join(known)}")
        in_segment = segments.index[segments == target.segment]
        before = len(candidates)
        candidates = candidates[candidates.isin(in_segment)]
        excluded["outside_segment"] = int(before - len(candidates))
        scored = _segment_scores(store, candidates, when, horizon_days, value_weighted)
    else:
        if model is None:
            raise ConfigError("an item or category audience needs a trained model (run train)")
        items, category = _target_items(store, target)
        recent = _recent_buyers(store, items, when, recent_days)
        before = len(candidates)
        candidates = candidates[~candidates.isin(recent)]
        excluded["recent_buyers"] = int(before - len(candidates))
        affinity, unknown = _affinity(model, candidates, items)
        excluded["no_history"] = unknown
        scored = affinity.to_frame("raw_affinity")
        scored["affinity"] = affinity.rank(pct=True, method="average")
        if value_weighted:
            value = _expected_value(store, scored.index, when, horizon_days, category)
            scored["expected_value"] = value
            # Expected values span orders of magnitude; multiplied raw they would swamp the
            # affinity, so both enter as percentiles among the candidates.
            scored["score"] = scored["affinity"] * value.rank(pct=True, method="average")
        else:
            scored["score"] = scored["affinity"]
    ranked = _rank(scored)
    ranked["segment"] = ranked["user_id"].map(segments).fillna("no purchases").astype(object)
    eligible = len(ranked)
    if eligible < min_size:
        raise UserError(
            f"the audience for {target.describe()} has {eligible} eligible customers, fewer "
            f"than the minimum of {min_size} (so that no one is singled out); widen the "
            f"target or lower --min-size (excluded: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in excluded.items())
            + ")"
        )
    if size is not None:
        ranked = ranked.head(size).reset_index(drop=True)
    return Audience(target, ranked, when, value_weighted, excluded, items)


def export_audience(
    store: Store,
    audience: Audience,
    path: str | Path,
    *,
    keys: Keys | None = None,
    reveal: bool = False,
) -> Path:
    """Write the audience to CSV/Parquet/JSON by extension.

    By default the customers appear only by their keyed pseudonym (``customer_pseudonym``);
    with ``reveal`` (needs the store's keys) the shop's ``customer_id`` and the decrypted
    contact fields (email, first name) are written instead.
    """
    from tailorcast.recommend import write_table

    frame = audience.members.drop(columns=["raw_affinity"], errors="ignore")
    if reveal:
        contacts = contact_frame(store, frame["user_id"].tolist(), keys)
        out = contacts.merge(frame, on="user_id", how="right").drop(columns="user_id")
        out = out[[*contacts.columns.drop("user_id"), *frame.columns.drop("user_id")]]
    else:
        pseudonyms = _pseudonyms(store, frame["user_id"], keys)
        out = frame.drop(columns="user_id")
        out.insert(0, "customer_pseudonym", pseudonyms)
    return write_table(out, path)


def contact_frame(store: Store, user_ids: list[str], keys: Keys | None) -> pd.DataFrame:
    """``user_id`` (as asked), ``customer_id`` (the shop's ID) and the contact fields the
    users table holds, decrypted with ``keys``.

    Raises:
        ConfigError: no keys (raw IDs and contacts never leave the store without them).
    """
    if keys is None:
        raise ConfigError(
            "raw customer IDs and contact fields need the store's keys: set "
            "TAILORCAST_PSEUDONYM_KEY and TAILORCAST_ENCRYPTION_KEY"
        )
    columns = {c.lower(): (c, kind) for c, kind in store.columns("users").items()}
    present = [c for c in CONTACT_COLUMNS if c in columns]
    out = pd.DataFrame({"user_id": pd.Series(user_ids, dtype=object)})
    shop_ids = store.reidentify(user_ids, keys) if user_ids else []
    out["customer_id"] = pd.Series(shop_ids, dtype=object)
    if not present or not user_ids:
        for c in present:
            out[c] = pd.Series([None] * len(out), dtype=object)
        return out
    select = ", ".join(f"any_value({quote_ident(columns[c][0])}) AS {c}" for c in present)
    store.con.register("_audience_ids", pd.DataFrame({"user_id": user_ids}))
    try:
        found = store.con.execute(
            f"SELECT user_id, {select} FROM users WHERE user_id IN "
            "(SELECT user_id FROM _audience_ids) GROUP BY user_id"
        ).fetchall()
    finally:
        store.con.unregister("_audience_ids")
    cipher = keys.cipher()
    table = pd.DataFrame(found, columns=["user_id", *present]).set_index("user_id")
    for c in present:
        values = table[c].tolist()
        if columns[c][1] == "BLOB":
            # AES-GCM has no batch form; one C call per contact value.
            values = cipher.decrypt_many(
                [None if v is None else bytes(v) for v in values], f"users.{c}"
            )
        out[c] = out["user_id"].map(dict(zip(table.index, values, strict=True))).astype(object)
    return out


# -- candidates -------------------------------------------------------------------------------
def _consenting(store: Store) -> pd.Series:
    """Pseudonyms of customers whose ``marketing_consent`` is true."""
    columns = {c.lower(): c for c in store.columns("users")}
    if CONSENT_COLUMN not in columns:
        raise ConfigError(
            f"the users table has no {CONSENT_COLUMN!r} column, so no customer has consented "
            "to marketing; ingest a customers file with that column (true/false)"
        )
    col = quote_ident(columns[CONSENT_COLUMN])
    rows = store.con.execute(
        "SELECT user_id FROM users GROUP BY user_id "
        f"HAVING bool_and(lower(trim(CAST({col} AS VARCHAR))) IN {_TRUE})"
    ).fetchall()
    return pd.Series(sorted(str(r[0]) for r in rows), dtype=object)


def _bots(store: Store) -> set[str]:
    rows = store.con.execute("SELECT DISTINCT user_id FROM user_flags WHERE is_bot").fetchall()
    return {str(r[0]) for r in rows}


def _segment_names() -> tuple[str, ...]:
    from tailorcast.marketing.rfm import SEGMENTS

    return tuple(SEGMENTS)


def _segments(store: Store, when: pd.Timestamp) -> pd.Series:
    """RFM segment per customer with purchases up to ``when`` (index ``user_id``)."""
    from tailorcast.marketing.rfm import rfm_segments

    rfm = rfm_segments(store, when)
    return pd.Series(rfm["segment"].to_numpy(dtype=object), index=rfm["user_id"].astype(str))


def _target_items(store: Store, target: AudienceTarget) -> tuple[tuple[str, ...], str | None]:
    """The items an item or category audience is scored on, and the category they are in."""
    if target.item is not None:
        rows = store.con.execute(
            "SELECT any_value(category) FROM items WHERE item_id = ? HAVING count(*) > 0",
            [target.item],
        ).fetchall()
        if not rows:
            raise NotFoundError(f"unknown item {target.item!r}: not in the store's items")
        category = None if not rows or rows[0][0] is None else str(rows[0][0])
        return (target.item,), category
    rows = store.con.execute(
        "SELECT DISTINCT item_id FROM items WHERE category = ? ORDER BY item_id",
        [target.category],
    ).fetchall()
    if not rows:
        known = [
            str(r[0])
            for r in store.con.execute(
                "SELECT DISTINCT category FROM items WHERE category IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        raise NotFoundError(
            f"unknown category {target.category!r}; categories: {', '.join(known[:20])}"
        )
    return tuple(str(r[0]) for r in rows), target.category


def _recent_buyers(
    store: Store, items: tuple[str, ...], when: pd.Timestamp, days: float
) -> set[str]:
    if days <= 0:
        return set()
    since = when - pd.Timedelta(days=days)
    rows = store.con.execute(
        "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' "
        'AND "timestamp" > ? AND "timestamp" <= ? AND list_contains(?, item_id)',
        [since.to_pydatetime(), when.to_pydatetime(), list(items)],
    ).fetchall()
    return {str(r[0]) for r in rows}


def _affinity(
    model: Recommender[Any], candidates: pd.Series, items: tuple[str, ...]
) -> tuple[pd.Series, int]:
    """How prominently the target items feature in each candidate's own ranking, for the
    candidates with history; and how many candidates had none.

    The raw score of an item means different things for different customers (a customer
    with a long history scores every item higher), so a percentile of raw scores mostly
    ranks customers by activity. Instead each candidate's top ``_TOP_K`` list (seen items
    included) is ranked once, batched, and the affinity is the DCG weight of the target
    items in it, ``sum 1/log2(position + 1)``; the best raw target score, as a percentile,
    breaks ties (e.g. among customers without a target item in their list).
    """
    history = np.diff(model.user_items_.indptr) > 0
    warm_ids = set(np.asarray(model.user_ids_, dtype=object)[history].tolist())
    warm = candidates[candidates.isin(warm_ids)].to_numpy(dtype=object)
    catalog = set(model.item_ids_.tolist())
    if not any(i in catalog for i in items):
        raise NotFoundError(
            f"none of the target items ({', '.join(items[:5])}) is in the trained model; "
            "retrain with `tailorcast train`"
        )
    if len(warm) == 0:
        return pd.Series(dtype=float), len(candidates)
    k = min(_TOP_K, len(catalog))
    top = model.recommend(warm, k, exclude_seen=False, explain=False)
    hit = np.isin(top.item_ids.astype(str), np.asarray(items, dtype=str))
    dcg = (hit / np.log2(np.arange(2, k + 2))[None, :]).sum(axis=1)
    best = model.recommend(warm, 1, exclude_seen=False, items=list(items), explain=False)
    tie = pd.Series(best.scores[:, 0].astype(float)).rank(pct=True).fillna(0.0).to_numpy()
    # The tie-breaker stays below the smallest DCG step (1/log2(k + 1) >= 0.15 for k <= 50).
    scores = pd.Series(dcg + 0.01 * tie, index=pd.Index(top.user_ids, dtype=object))
    return scores, int(len(candidates) - len(scores))


def _expected_value(
    store: Store,
    users: pd.Index,
    when: pd.Timestamp,
    horizon_days: int,
    category: str | None,
) -> pd.Series:
    """CLV expected spend x propensity to buy in ``category`` (0 for customers without
    purchases, whom CLV cannot value)."""
    spend = _clv_spend(store, when, horizon_days)
    prob = _propensity(store, when, category)
    if category is not None:
        mine = prob[prob["category"] == category]
        if mine.empty:
            raise DataError(
                f"cannot weight by value: no purchase-propensity model for category "
                f"{category!r} (too few buyers to train one)"
            )
        p = mine.set_index("user_id")["probability"]
    else:
        p = _any_category(prob)
    value = users.to_series().map(spend).fillna(0.0) * users.to_series().map(p).fillna(0.0)
    return value.astype(float)


def _segment_scores(
    store: Store, candidates: pd.Series, when: pd.Timestamp, horizon: int, weighted: bool
) -> pd.DataFrame:
    spend = _clv_spend(store, when, horizon)
    index = pd.Index(candidates.to_numpy(dtype=object))
    value = index.to_series().map(spend).fillna(0.0).astype(float)
    frame = pd.DataFrame({"expected_spend": value.to_numpy()}, index=index)
    if weighted:
        p_any = index.to_series().map(_any_category(_propensity(store, when))).fillna(0.0)
        frame["expected_value"] = value.to_numpy() * p_any.to_numpy()
        frame["score"] = frame["expected_value"]
    else:
        frame["score"] = frame["expected_spend"]
    return frame


def _clv_spend(store: Store, when: pd.Timestamp, horizon_days: int) -> pd.Series:
    from tailorcast.marketing.clv import fit_clv

    clv = fit_clv(store, when).predict(horizon_days)
    return pd.Series(clv["expected_spend"].to_numpy(dtype=float), index=clv["user_id"].astype(str))


def _propensity(store: Store, when: pd.Timestamp, category: str | None = None) -> pd.DataFrame:
    """``user_id, category, probability`` of buying within the propensity window after
    ``when``. Models saved with ``tailorcast propensity train`` are used when they cover
    ``category`` (or any category when None); otherwise models are trained on the data up
    to ``when`` (for ``category`` only, when given)."""
    from tailorcast.marketing.propensity import (
        load_propensity,
        propensity_folder,
        train_propensity,
    )

    try:
        models = load_propensity(propensity_folder(store.folder))
    except NotFoundError:
        models = None
    if models is None or (category is not None and category not in models.categories):
        models = train_propensity(store, [category] if category else None, as_of=when)
    frame: pd.DataFrame = models.score(store, when)
    return frame


def _any_category(prob: pd.DataFrame) -> pd.Series:
    """P(buys in at least one category), treating categories as independent."""
    if prob.empty:
        return pd.Series(dtype=float)
    log_none = np.log1p(-prob["probability"].clip(0.0, 1.0 - 1e-9))
    p_none = np.exp(log_none.groupby(prob["user_id"]).sum())
    return pd.Series(1.0 - p_none, index=p_none.index, dtype=float)


def _rank(scored: pd.DataFrame) -> pd.DataFrame:
    """Best first; ties broken by affinity, then by pseudonym (which carries no meaning)."""
    out = scored.rename_axis("user_id").reset_index()
    keys = ["score", "affinity"] if "affinity" in out else ["score"]
    out = out.sort_values([*keys, "user_id"], ascending=[False] * len(keys) + [True], kind="stable")
    out.insert(1, "rank", np.arange(1, len(out) + 1, dtype=np.int64))
    return out.reset_index(drop=True)


def _pseudonyms(store: Store, user_ids: pd.Series, keys: Keys | None) -> list[str]:
    """The keyed pseudonym of each customer (the store's ID where it keeps pseudonyms)."""
    if store.pseudonymized:
        return user_ids.astype(str).tolist()
    if keys is None:
        raise ConfigError("this store keeps raw customer IDs: pseudonymizing them needs its keys")
    return keys.pseudonymizer().many(user_ids.astype(str).tolist())
