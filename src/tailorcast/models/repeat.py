"""Repeat purchases: how likely a customer is to buy again what they bought, and when.

Purchases of one item by one customer within the same ``occasion_days`` period (a calendar
day by default) are one purchase occasion; the gap between two occasions is measured in
whole periods. From the occasions:

- per item, the **rebuy rate** ``f_i`` (share of its buyers who bought it again) and the
  **typical gap** ``g_i`` (median gap between occasions); items with fewer than
  ``min_item_gaps`` gaps use their category's median gap, else the shop's. Rates are
  smoothed towards the category's, and those towards the shop's, with ``prior_strength``
  pseudo-customers;
- per customer and item with ``n`` occasions, the chance to rebuy at all
  ``q = (n - 1 + s f_i) / (n - 1 + s)`` (``s = prior_strength``), and their own typical gap
  (the geometric mean of their gaps, pulled towards ``g_i`` with weight ``s``);
- the next gap follows a gamma distribution with shape ``gap_shape`` and that median, and
  the score is the probability of a purchase in the next ``horizon_days`` given none since
  the last one ``t`` days ago: ``q (S(t) - S(t + h)) / ((1 - q) + q S(t))``, ``S`` the
  gamma survival function. An item due now scores high; a long-overdue one fades, because
  the customer has probably stopped buying it.

Items of a category the customer buys but never bought themselves get the same kind of
probability for the category (restocking coffee), times the share of the category's
repeat occasions that bring a new item, times the item's share of the category's buyers:
the chance that the next restock is this item. Everything else scores 0 and follows
popularity (the tie-break) with the reason "popular right now".

:func:`repeat_share` measures how much of a shop's buying is rebuying, and
:func:`allows_repurchase` turns it into the default of whether bought items may be
recommended again (groceries: yes; fashion: no); ``recommend(exclude_seen="auto")`` applies
it, ``True`` / ``False`` override it per call.

Example::

    model = RepeatRecommender(horizon_days=7).fit(inter)
    model.recommend(["u1"], k=5, exclude_seen="auto")
    model.next_purchases(["u1"])      # item, typical gap, expected next date, probability
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field
from scipy.optimize import brentq
from scipy.special import gammaincc, gammaincinv, polygamma

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError
from tailorcast.models.base import (
    COLD_START_REASON,
    Ids,
    Ints,
    Recommendations,
    Recommender,
    RecommenderConfig,
    _id_array,
    _join,
)

__all__ = ["RepeatConfig", "RepeatRecommender", "allows_repurchase", "repeat_share"]

_DAY_NS: Final = 86_400 * 10**9
#: Upper bound on the rebuy chance, so a long-overdue item of a "always rebought" item fades.
_MAX_RATE: Final = 0.999
#: Gap shape without repeated gaps to estimate it from, and the range an estimate is held to.
_DEFAULT_SHAPE: Final = 2.0
_SHAPE_RANGE: Final = (0.5, 50.0)

EventType = Literal["view", "favorite", "cart", "purchase"]
Floats64 = npt.NDArray[np.float64]


class RepeatConfig(RecommenderConfig):
    """Hyperparameters of :class:`RepeatRecommender`."""

    event_type: EventType = "purchase"
    """The event that counts as buying."""
    horizon_days: float = Field(default=14.0, gt=0, allow_inf_nan=False)
    """Score = probability of a purchase within this many days after the training view's
    ``as_of``."""
    occasion_days: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Purchases of an item in the same period of this many days are one occasion."""
    gap_shape: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Gamma shape of the gaps between occasions: 1 = memoryless, larger = more regular.
    None: estimated from customers' repeated gaps (the pooled within-customer variance of
    log gaps is the gamma's ``trigamma(shape)``), 2 when there are none."""
    prior_strength: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    """Pseudo-observations pulling a customer's rate and gap towards the item's (and an
    item's rate towards its category's)."""
    min_item_gaps: int = Field(default=3, ge=1)
    """Gaps an item needs for its own typical gap; else its category's, else the shop's."""
    repurchase_threshold: float = Field(default=0.2, ge=0, le=1)
    """``exclude_seen="auto"`` keeps seen items when the shop's repeat share reaches this."""


def repeat_share(
    interactions: Interactions,
    *,
    event_type: EventType = "purchase",
    occasion_days: float = 1.0,
) -> float:
    """Share of purchase occasions that rebuy an item the customer had bought before
    (0.0 without purchases). Groceries run around 0.5 and higher, fashion near 0.

    >>> repeat_share(inter)  # doctest: +SKIP
    0.63
    """
    if not occasion_days > 0:
        raise ConfigError(f"occasion_days must be > 0, got {occasion_days}")
    keys, ts, _ = _purchases(interactions, event_type)
    occ = _occasions(keys, ts, round(occasion_days * _DAY_NS))
    if len(occ.key) == 0:
        return 0.0
    return float(np.count_nonzero(~occ.first)) / len(occ.key)


def allows_repurchase(
    interactions: Interactions,
    threshold: float = 0.2,
    *,
    event_type: EventType = "purchase",
    occasion_days: float = 1.0,
) -> bool:
    """Whether bought items should stay recommendable: ``repeat_share >= threshold``.

    This is the data-driven default of ``exclude_seen`` (exclude when False)."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1], got {threshold}")
    share = repeat_share(interactions, event_type=event_type, occasion_days=occasion_days)
    return share >= threshold


class RepeatRecommender(Recommender[RepeatConfig]):
    """Rebuy propensity from each customer's purchase history (see the module docstring)."""

    name: ClassVar[str] = "repeat"
    config_class: ClassVar[type[RecommenderConfig]] = RepeatConfig
    similar_reason: ClassVar[str] = "bought in the same category as "
    places_new_items: ClassVar[bool] = False  # rebuy scores: a never-bought item has none

    repeat_share_: float
    allows_repurchase_: bool
    as_of_: np.datetime64
    gap_shape_: float
    """Gamma shape of item gaps used (``gap_shape`` or the estimate)."""
    item_gap_: Floats64
    """Typical gap in days between purchases of each item (after the fallbacks)."""
    item_rebuy_rate_: Floats64
    """Smoothed share of each item's buyers who bought it again."""

    def __init__(
        self,
        *,
        event_type: EventType = "purchase",
        horizon_days: float = 14.0,
        occasion_days: float = 1.0,
        gap_shape: float | None = None,
        prior_strength: float = 2.0,
        min_item_gaps: int = 3,
        repurchase_threshold: float = 0.2,
    ) -> None:
        self.event_type = event_type
        self.horizon_days = horizon_days
        self.occasion_days = occasion_days
        self.gap_shape = gap_shape
        self.prior_strength = prior_strength
        self.min_item_gaps = min_item_gaps
        self.repurchase_threshold = repurchase_threshold

    # -- fitting ------------------------------------------------------------------------------
    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: RepeatConfig
    ) -> dict[str, npt.NDArray[Any]]:
        n_items = interactions.n_items
        as_of = _as_of_ns(interactions)
        bucket_ns = max(1, round(config.occasion_days * _DAY_NS))
        keys, ts, users = _purchases(interactions, config.event_type)
        items = keys % max(n_items, 1)
        cat_names, item_cat = _categories(interactions)
        n_cats = len(cat_names)

        item_level = _pair_model(keys, ts, n_items, item_cat, as_of, bucket_ns, config)
        in_cat = item_cat[items] >= 0
        cat_keys = users[in_cat] * n_cats + item_cat[items[in_cat]]
        no_parent = np.full(n_cats, -1, dtype=np.int64)
        cat_level = _pair_model(cat_keys, ts[in_cat], n_cats, no_parent, as_of, bucket_ns, config)
        novelty = _novelty(item_level, cat_level, item_cat, n_items, n_cats, config)
        cat_pair = cat_level.keys
        cat_score = cat_level.prob * novelty[cat_pair % n_cats] if n_cats else cat_level.prob

        # The item each customer bought last in each category (ties to the higher index).
        order = np.lexsort((items[in_cat], ts[in_cat], cat_keys))
        sorted_keys = cat_keys[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        cat_last_item = items[in_cat][order][last]

        buyers = np.bincount(item_level.keys % max(n_items, 1), minlength=n_items)
        cat_buyers = np.bincount(
            item_cat[item_cat >= 0], weights=buyers[item_cat >= 0], minlength=n_cats
        )
        share = np.zeros(n_items)
        has_cat = item_cat >= 0
        totals = cat_buyers[item_cat[has_cat]]
        share[has_cat] = np.divide(
            buyers[has_cat], totals, out=np.zeros(int(has_cat.sum())), where=totals > 0
        )
        occ_total = len(item_level.occ_first)
        rebuys = int(np.count_nonzero(~item_level.occ_first))
        shop_share = rebuys / occ_total if occ_total else 0.0
        return {
            "as_of_ns": np.asarray([as_of], dtype=np.int64),
            "repeat_share": np.asarray([shop_share], dtype=np.float64),
            "pair_keys": item_level.keys,
            "pair_occasions": item_level.occasions,
            "pair_last_ns": item_level.last_ns,
            "pair_own_gap": item_level.own_gap,
            "pair_gap": item_level.gap,
            "pair_score": item_level.prob.astype(np.float32),
            "gap_shape": np.asarray([item_level.shape, cat_level.shape], dtype=np.float64),
            "item_gap": item_level.group_gap,
            "item_rebuy": item_level.group_rate,
            "item_category": item_cat.astype(np.int32),
            "item_share": share,
            "category_names": _unicode(cat_names),
            "category_novelty": novelty,
            "cat_keys": cat_level.keys,
            "cat_occasions": cat_level.occasions,
            "cat_last_ns": cat_level.last_ns,
            "cat_gap": cat_level.gap,
            "cat_own_gap": cat_level.own_gap,
            "cat_last_item": cat_last_item.astype(np.int32),
            "cat_score": np.asarray(cat_score, dtype=np.float32),
        }

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        n_users, n_items = len(self.user_ids_), len(self.item_ids_)
        self._state = {key: np.asarray(state[key]) for key in _STATE_KEYS}
        s = self._state
        self.repeat_share_ = float(s["repeat_share"][0])
        self.allows_repurchase_ = self.repeat_share_ >= self.config_.repurchase_threshold
        self.as_of_ = np.datetime64(int(s["as_of_ns"][0]), "ns")
        self.gap_shape_ = float(s["gap_shape"][0])
        self.item_gap_ = s["item_gap"].astype(np.float64)
        self.item_rebuy_rate_ = s["item_rebuy"].astype(np.float64)
        self._item_cat = s["item_category"].astype(np.int64)
        self._cat_names = np.asarray(s["category_names"].tolist(), dtype=object)
        n_cats = len(self._cat_names)
        if self._item_cat.shape != (n_items,) or s["item_share"].shape != (n_items,):
            raise ValueError("item arrays do not match the catalogue")
        keys = s["pair_keys"].astype(np.int64)
        # Explicit entries even where the score is 0: a bought item never takes a category
        # score.
        self._bought = sp.csr_matrix(
            (s["pair_score"].astype(np.float32), (keys // max(n_items, 1), keys % max(n_items, 1))),
            shape=(n_users, n_items),
        )
        cat_keys = s["cat_keys"].astype(np.int64)
        width = max(n_cats, 1)
        self._cat_matrix = sp.csr_matrix(
            (s["cat_score"].astype(np.float32), (cat_keys // width, cat_keys % width)),
            shape=(n_users, n_cats + 1),  # the extra, empty column serves items without one
        )
        self._item_col = np.where(self._item_cat >= 0, self._item_cat, n_cats)
        self._share = s["item_share"].astype(np.float32)

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        return dict(self._state)

    # -- scoring ------------------------------------------------------------------------------
    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        categories = self._cat_matrix[user_idx].toarray()
        scores = categories[:, self._item_col] * self._share[None, :]
        bought = self._bought[user_idx]
        rows = np.repeat(np.arange(len(user_idx)), np.diff(bought.indptr))
        scores[rows, bought.indices] = bought.data
        return np.asarray(scores, dtype=np.float32)

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        query = self._item_cat[item_idx]
        same = (self._item_cat[None, :] == query[:, None]) & (query[:, None] >= 0)
        return np.where(same, self._share[None, :], np.float32(0.0)).astype(np.float32)

    def recommend(
        self,
        user_ids: Sequence[str] | npt.ArrayLike,
        k: int = 10,
        *,
        exclude_seen: bool | Literal["auto"] | None = None,
        **options: Any,
    ) -> Recommendations:
        """As :meth:`Recommender.recommend`; ``exclude_seen="auto"`` (the same as None) keeps
        seen items when the shop's repeat share reaches ``repurchase_threshold``
        (``allows_repurchase_``)."""
        if isinstance(exclude_seen, str):
            if exclude_seen != "auto":
                raise ConfigError(
                    f"exclude_seen must be True, False or 'auto', got {exclude_seen!r}"
                )
            self._check_fitted()
            exclude_seen = not self.allows_repurchase_
        return super().recommend(user_ids, k, exclude_seen=exclude_seen, **options)

    def next_purchases(self, user_ids: Sequence[str] | npt.ArrayLike | None = None) -> pd.DataFrame:
        """One row per (customer, item) bought, most likely first within each customer:
        ``user_id``, ``item_id``, ``purchases`` (occasions), ``last_purchase``,
        ``typical_gap_days``, ``expected_next`` (last purchase + typical gap; before
        ``as_of_`` when overdue) and ``probability`` (of a purchase within ``horizon_days``).
        ``user_ids`` limits the rows to those customers (unknown ones have none)."""
        self._check_fitted()
        s, n_items = self._state, max(len(self.item_ids_), 1)
        keys = s["pair_keys"].astype(np.int64)
        users, items = keys // n_items, keys % n_items
        keep = np.ones(len(keys), dtype=bool)
        if user_ids is not None:
            wanted = self._user_lookup.get_indexer(pd.Index(_id_array(user_ids, "user_ids")))
            keep = np.isin(users, wanted[wanted >= 0])
        last = s["pair_last_ns"][keep].astype(np.int64).astype("datetime64[ns]")
        gap = s["pair_gap"][keep].astype(np.float64)
        frame = pd.DataFrame(
            {
                "user_id": self.user_ids_[users[keep]],
                "item_id": self.item_ids_[items[keep]],
                "purchases": s["pair_occasions"][keep].astype(np.int64),
                "last_purchase": last,
                "typical_gap_days": gap,
                "expected_next": last + np.round(gap * _DAY_NS).astype("timedelta64[ns]"),
                "probability": s["pair_score"][keep].astype(np.float64),
            }
        )
        frame["_user"] = users[keep]
        frame = frame.sort_values(
            ["_user", "probability", "item_id"], ascending=[True, False, True]
        )
        return frame.drop(columns="_user").reset_index(drop=True)

    # -- explaining ---------------------------------------------------------------------------
    def _reasons(self, users: Ints, items: Ints) -> Ids:
        """ "you usually rebuy X every ~N days" for bought items; "because you restock C ..."
        for new items of a category the customer buys; "popular right now" otherwise."""
        s = self._state
        n, k = items.shape
        out = np.full(n * k, None, dtype=object)
        flat = items.ravel()
        cells = np.flatnonzero(flat >= 0)
        if cells.size == 0:
            return out.reshape(n, k)
        user = users[cells // k].astype(np.int64)
        item = flat[cells].astype(np.int64)
        out[cells] = COLD_START_REASON
        labels = self._item_labels
        days_since = (int(s["as_of_ns"][0]) - s["pair_last_ns"].astype(np.int64)) / _DAY_NS
        bought, pos = _find(s["pair_keys"], user * len(self.item_ids_) + item)
        if bought.any():
            p = pos[bought]
            name = labels[item[bought]]
            own = s["pair_own_gap"][p]
            regular = np.isfinite(own)
            usual = _join("you usually rebuy ", name, " every ~", _days(own), " days")
            once = _join(
                "you bought ",
                name,
                " ",
                _days(days_since[p], floor=True),
                " days ago; customers usually rebuy it after ~",
                _days(s["item_gap"][item[bought]]),
                " days",
            )
            out[cells[bought]] = np.where(regular, usual, once).astype(object)
        cat = self._item_cat[item]
        candidate = ~bought & (cat >= 0) & (self._share[item] > 0)
        n_cats = max(len(self._cat_names), 1)
        found, cpos = _find(s["cat_keys"], user * n_cats + np.maximum(cat, 0))
        restock = candidate & found
        restock[restock] = s["cat_score"][cpos[restock]] > 0
        if restock.any():
            c = cpos[restock]
            category = self._cat_names[cat[restock]].astype(str)
            last_item = labels[s["cat_last_item"][c]]
            since = (int(s["as_of_ns"][0]) - s["cat_last_ns"][c].astype(np.int64)) / _DAY_NS
            regular = s["cat_occasions"][c] >= 2
            usual = _join(
                "because you restock ",
                category,
                " about every ",
                _days(s["cat_own_gap"][c]),
                " days (last: ",
                last_item,
                ")",
            )
            once = _join(
                "because you bought ",
                last_item,
                " (",
                category,
                ") ",
                _days(since, floor=True),
                " days ago",
            )
            out[cells[restock]] = np.where(regular, usual, once).astype(object)
        return out.reshape(n, k)


# -- model pieces -------------------------------------------------------------------------------
_STATE_KEYS: Final = (
    "as_of_ns",
    "repeat_share",
    "pair_keys",
    "pair_occasions",
    "pair_last_ns",
    "pair_own_gap",
    "pair_gap",
    "pair_score",
    "gap_shape",
    "item_gap",
    "item_rebuy",
    "item_category",
    "item_share",
    "category_names",
    "category_novelty",
    "cat_keys",
    "cat_occasions",
    "cat_last_ns",
    "cat_gap",
    "cat_own_gap",
    "cat_last_item",
    "cat_score",
)


@dataclass(frozen=True)
class _Occasions:
    """Purchase occasions sorted by key then time: ``key`` (pair), ``bucket`` (period
    number), ``ts`` (first event, ns), ``first`` (the pair's first occasion)."""

    key: Ints
    bucket: Ints
    ts: Ints
    first: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _PairModel:
    """Per (customer, group) pair and per group (item or category) results."""

    keys: Ints
    occasions: npt.NDArray[np.int32]
    last_ns: Ints
    own_gap: Floats64
    gap: Floats64
    prob: Floats64
    group_gap: Floats64
    group_rate: Floats64
    shape: float
    occ_key: Ints
    occ_bucket: Ints
    occ_first: npt.NDArray[np.bool_]


def _purchases(inter: Interactions, event_type: str) -> tuple[Ints, Ints, Ints]:
    """(customer * n_items + item, time in ns, customer) of every purchase event."""
    events = inter.events
    hit = (events["event_type"].astype(str) == event_type).to_numpy()
    users = events["user_idx"].to_numpy()[hit].astype(np.int64)
    items = events["item_idx"].to_numpy()[hit].astype(np.int64)
    ts = events["timestamp"].to_numpy()[hit].astype("datetime64[ns]").view(np.int64)
    return users * inter.n_items + items, ts, users


def _occasions(keys: Ints, ts: Ints, bucket_ns: int) -> _Occasions:
    bucket = ts // bucket_ns
    order = np.lexsort((ts, bucket, keys))
    k, b, t = keys[order], bucket[order], ts[order]
    new = np.ones(len(k), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (b[1:] != b[:-1])
    k, b, t = k[new], b[new], t[new]
    first = np.ones(len(k), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    return _Occasions(k, b, t, first)


def _pair_model(
    keys: Ints,
    ts: Ints,
    n_groups: int,
    parent: Ints,
    as_of_ns: int,
    bucket_ns: int,
    cfg: RepeatConfig,
) -> _PairModel:
    """Rebuy chance, typical gap and due probability of every (customer, group) pair, where
    ``group = key % n_groups``; group rates shrink towards ``parent`` groups, then the shop."""
    occ = _occasions(keys, ts, bucket_ns)
    width = max(n_groups, 1)
    s = cfg.prior_strength
    pair_of = np.cumsum(occ.first) - 1
    pair_keys = occ.key[occ.first]
    n_pairs = len(pair_keys)
    occasions = np.bincount(pair_of, minlength=n_pairs).astype(np.int32)
    ends = np.r_[np.flatnonzero(occ.first)[1:], len(occ.key)].astype(np.int64)[:n_pairs] - 1
    last_ns = occ.ts[ends]
    repeat = ~occ.first
    steps = occ.bucket[repeat] - occ.bucket[np.flatnonzero(repeat) - 1]
    gap_days: Floats64 = steps.astype(np.float64) * (bucket_ns / _DAY_NS)
    gap_pair = pair_of[repeat]
    n_own = np.bincount(gap_pair, minlength=n_pairs)
    log_own = np.bincount(gap_pair, weights=np.log(gap_days), minlength=n_pairs)

    group = pair_keys % width
    gap_group = group[gap_pair]
    rebuyer = occasions >= 2
    buyers = np.bincount(group, minlength=n_groups).astype(np.float64)
    rebuyers = np.bincount(group[rebuyer], minlength=n_groups).astype(np.float64)
    shop_rate = float(rebuyers.sum() / buyers.sum()) if buyers.sum() else 0.0
    shop_gap = float(np.median(gap_days)) if gap_days.size else cfg.horizon_days
    prior_rate = np.full(n_groups, shop_rate)
    prior_gap = np.full(n_groups, shop_gap)
    has_parent = parent >= 0
    if has_parent.any():
        n_parents = int(parent.max()) + 1
        p_buyers = np.bincount(parent[has_parent], weights=buyers[has_parent], minlength=n_parents)
        p_rebuyers = np.bincount(
            parent[has_parent], weights=rebuyers[has_parent], minlength=n_parents
        )
        p_rate = (p_rebuyers + s * shop_rate) / (p_buyers + s)
        p_gap, p_count = _medians(gap_days, parent[gap_group], n_parents)
        p_gap = np.where(p_count >= cfg.min_item_gaps, p_gap, shop_gap)
        prior_rate[has_parent] = p_rate[parent[has_parent]]
        prior_gap[has_parent] = p_gap[parent[has_parent]]
    group_rate = (rebuyers + s * prior_rate) / (buyers + s)
    own_median, own_count = _medians(gap_days, gap_group, n_groups)
    group_gap = np.where(own_count >= cfg.min_item_gaps, own_median, prior_gap)

    rate = np.minimum((occasions - 1 + s * group_rate[group]) / (occasions - 1 + s), _MAX_RATE)
    gap = np.exp((log_own + s * np.log(group_gap[group])) / (n_own + s))
    own_gap = np.full(n_pairs, np.nan)
    np.divide(log_own, n_own, out=own_gap, where=n_own > 0)
    own_gap = np.exp(own_gap)
    shape = cfg.gap_shape or _estimate_shape(np.log(gap_days), gap_pair, n_own)
    since = (as_of_ns - last_ns) / _DAY_NS
    prob = _due_probability(since, gap, rate, shape, cfg.horizon_days)
    return _PairModel(
        keys=pair_keys,
        occasions=occasions,
        last_ns=last_ns,
        own_gap=own_gap,
        gap=gap,
        prob=prob,
        group_gap=group_gap,
        group_rate=group_rate,
        shape=shape,
        occ_key=occ.key,
        occ_bucket=occ.bucket,
        occ_first=occ.first,
    )


def _estimate_shape(log_gaps: Floats64, pair: Ints, n_own: Ints) -> float:
    """Gamma shape ``k`` with ``trigamma(k)`` = the pooled within-pair variance of log gaps
    (pairs with at least 2 gaps; a gamma's log has variance ``trigamma(k)`` whatever its
    scale, so customers' and items' different rhythms do not inflate it)."""
    counted = n_own[pair] >= 2
    dof = int((n_own[n_own >= 2] - 1).sum())
    if dof == 0:
        return _DEFAULT_SHAPE
    size = len(n_own)
    sums = np.bincount(pair[counted], weights=log_gaps[counted], minlength=size)
    means = np.divide(sums, n_own, out=np.zeros(size), where=n_own > 0)
    variance = float(((log_gaps[counted] - means[pair[counted]]) ** 2).sum() / dof)
    low, high = _SHAPE_RANGE
    if variance >= _trigamma(low):
        return low
    if variance <= _trigamma(high):
        return high
    return float(brentq(lambda k: _trigamma(k) - variance, low, high))


def _trigamma(k: float) -> float:
    return float(polygamma(1, k))


def _due_probability(
    since: Floats64, gap: Floats64, rate: Floats64, shape: float, horizon: float
) -> Floats64:
    """P(next purchase within ``horizon`` days | none in the ``since`` days after the last):
    a customer rebuys with chance ``rate`` after a gamma gap of median ``gap``."""
    scale = gap / float(gammaincinv(shape, 0.5))
    alive = np.asarray(gammaincc(shape, since / scale), dtype=np.float64)
    later = np.asarray(gammaincc(shape, (since + horizon) / scale), dtype=np.float64)
    waiting = (1.0 - rate) + rate * alive
    out: Floats64 = rate * (alive - later) / np.maximum(waiting, 1e-300)
    return np.clip(out, 0.0, 1.0)


def _novelty(
    item_level: _PairModel,
    cat_level: _PairModel,
    item_cat: Ints,
    n_items: int,
    n_cats: int,
    cfg: RepeatConfig,
) -> Floats64:
    """Per category: smoothed share of repeat occasions (a customer buying in the category
    again) that brought an item the customer had not bought before."""
    if n_cats == 0:
        return np.zeros(0)
    width = max(n_items, 1)
    first_items = item_level.occ_key[item_level.occ_first]
    first_cat = item_cat[first_items % width]
    inside = first_cat >= 0
    new_keys = pd.MultiIndex.from_arrays(
        [
            (first_items[inside] // width) * n_cats + first_cat[inside],
            item_level.occ_bucket[item_level.occ_first][inside],
        ]
    )
    repeat = ~cat_level.occ_first
    occ_keys = pd.MultiIndex.from_arrays([cat_level.occ_key[repeat], cat_level.occ_bucket[repeat]])
    brought_new = np.asarray(occ_keys.isin(new_keys), dtype=bool)
    cat_of = cat_level.occ_key[repeat] % n_cats
    total = np.bincount(cat_of, minlength=n_cats).astype(np.float64)
    new = np.bincount(cat_of[brought_new], minlength=n_cats).astype(np.float64)
    shop = float(new.sum() / total.sum()) if total.sum() else 1.0
    s = cfg.prior_strength
    out: Floats64 = (new + s * shop) / (total + s)
    return out


def _medians(values: Floats64, groups: Ints, n_groups: int) -> tuple[Floats64, Ints]:
    """Median and count of ``values`` per group (NaN median where a group has none)."""
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    medians = np.full(n_groups, np.nan)
    if values.size:
        series = pd.Series(values).groupby(groups).median()
        medians[series.index.to_numpy(dtype=np.int64)] = series.to_numpy(dtype=np.float64)
    return medians, counts


def _categories(inter: Interactions) -> tuple[npt.NDArray[np.object_], Ints]:
    """Category names (sorted) and each item's code (-1: none)."""
    if "category" not in inter.items.columns:
        return np.zeros(0, dtype=object), np.full(inter.n_items, -1, dtype=np.int64)
    column = inter.items["category"]
    present = column.notna().to_numpy().copy()
    text = column.astype(object).where(present, "").astype(str).str.strip()
    present &= (text != "").to_numpy()
    codes, uniques = pd.factorize(text.where(present, None), sort=True)
    names = np.asarray([str(u) for u in uniques], dtype=object)
    return names, np.asarray(codes, dtype=np.int64)


def _as_of_ns(inter: Interactions) -> int:
    as_of = inter.config.as_of
    if as_of is not None:
        return int(np.datetime64(as_of, "ns").astype(np.int64))
    ts = inter.events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)
    return int(ts.max()) if len(ts) else 0


def _find(sorted_keys: npt.NDArray[Any], wanted: Ints) -> tuple[npt.NDArray[np.bool_], Ints]:
    """Which ``wanted`` keys occur in ``sorted_keys``, and where."""
    keys = np.asarray(sorted_keys, dtype=np.int64)
    pos = np.searchsorted(keys, wanted)
    found = pos < len(keys)
    found[found] = keys[pos[found]] == wanted[found]
    return found, np.where(found, pos, 0).astype(np.int64)


def _days(values: Floats64, *, floor: bool = False) -> npt.NDArray[np.str_]:
    """Whole days as text (at least 1 for a gap, at least 0 for an age)."""
    v = np.asarray(values, dtype=np.float64)
    v = np.floor(v) if floor else np.maximum(np.round(v), 1.0)
    return np.where(np.isfinite(v), v, 0).astype(np.int64).astype(str)


def _unicode(values: npt.NDArray[np.object_]) -> npt.NDArray[np.str_]:
    items = values.tolist()
    return np.asarray(items, dtype=str) if items else np.zeros(0, dtype="<U1")
