"""Popularity: the most chosen items, overall, trending, or within a customer segment.

The baseline every other model must beat, and the cold-start answer of all of them.

Example::

    PopularityRecommender(half_life_days=7).fit(inter)          # trending this week
    PopularityRecommender(by="city").fit(inter)                 # popular in the customer's city
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError
from tailorcast.models.base import Floats, Ids, Ints, Recommender, RecommenderConfig

__all__ = ["PopularityConfig", "PopularityRecommender"]

_DAY_NS: Final = 86_400 * 10**9
GLOBAL_REASON: Final = "popular with all customers"

Measure = Literal["customers", "events", "weight"]


class PopularityConfig(RecommenderConfig):
    """Hyperparameters of :class:`PopularityRecommender`."""

    measure: Measure = "customers"
    """What counts: ``customers`` (distinct customers per item), ``events`` (every event) or
    ``weight`` (summed event weights of the training view)."""
    half_life_days: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Trending: an event this many days older than the view's ``as_of`` counts half."""
    by: str | None = None
    """A customer attribute (``users`` column, e.g. age band or city): popularity per segment.
    Customers without a value, and unknown customers, get the global ranking. Bin numeric
    attributes first: every distinct value is a segment."""


class PopularityRecommender(Recommender[PopularityConfig]):
    """Recommends what most customers chose (per segment with ``by``)."""

    name: ClassVar[str] = "popularity"
    config_class: ClassVar[type[RecommenderConfig]] = PopularityConfig
    similar_reason: ClassVar[str] = GLOBAL_REASON
    places_new_items: ClassVar[bool] = False  # an item without events is not popular yet
    session_aware: ClassVar[bool] = False  # item "similarity" is popularity: ignores visits

    popularity_: Floats
    segment_names_: Ids
    user_segment_: npt.NDArray[np.int32]
    segment_popularity_: Floats

    def __init__(
        self,
        *,
        measure: Measure = "customers",
        half_life_days: float | None = None,
        by: str | None = None,
    ) -> None:
        self.measure = measure
        self.half_life_days = half_life_days
        self.by = by

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: PopularityConfig
    ) -> dict[str, npt.NDArray[Any]]:
        n_users, n_items = matrix.shape
        users, items, values = _event_values(interactions, config)
        popularity = np.bincount(items, weights=values, minlength=n_items).astype(np.float32)
        if config.by is None:
            names = np.zeros(0, dtype="<U1")
            user_segment = np.full(n_users, -1, dtype=np.int32)
            per_segment = np.zeros((0, n_items), dtype=np.float32)
        else:
            if config.by not in interactions.users.columns:
                known = ", ".join(map(str, interactions.users.columns)) or "none"
                raise ConfigError(
                    f"by={config.by!r} is not a customer attribute (attributes: {known})"
                )
            column = interactions.users[config.by]
            present = column.notna().to_numpy()
            text = column.astype(object).where(present, "").astype(str)
            codes, uniques = pd.factorize(text.where(present, None), sort=True)
            user_segment = np.asarray(codes, dtype=np.int32)
            names = np.asarray([str(u) for u in uniques], dtype=str)
            if names.size == 0:
                names = np.zeros(0, dtype="<U1")
            seg = user_segment[users]
            inside = seg >= 0
            per_segment = sp.csr_matrix(
                (values[inside], (seg[inside], items[inside])), shape=(len(names), n_items)
            ).toarray()
            per_segment = per_segment.astype(np.float32)
        return {
            "popularity": popularity,
            "segment_names": names,
            "user_segment": user_segment,
            "segment_popularity": per_segment,
        }

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)
        self.segment_names_ = np.asarray(state["segment_names"].tolist(), dtype=object)
        self.user_segment_ = np.asarray(state["user_segment"], dtype=np.int32)
        self.segment_popularity_ = np.asarray(state["segment_popularity"], dtype=np.float32)
        n_seg = len(self.segment_names_)
        # One table: the segments' rows, then the global row (segment code -1).
        self._table = np.vstack([self.segment_popularity_, self.popularity_[None, :]])
        self._segment_reason = np.asarray(
            [
                f"popular with customers like you ({self.config_.by}: {name})"
                for name in self.segment_names_.tolist()
            ]
            + [GLOBAL_REASON],
            dtype=object,
        )
        self._user_row = np.where(self.user_segment_ >= 0, self.user_segment_, n_seg)

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        names = self.segment_names_.tolist()
        return {
            "popularity": self.popularity_,
            "segment_names": np.asarray(names, dtype=str) if names else np.zeros(0, "<U1"),
            "user_segment": self.user_segment_,
            "segment_popularity": self.segment_popularity_,
        }

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        return self._table[self._user_row[user_idx]]

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        return np.repeat(self.popularity_[None, :], len(item_idx), axis=0)

    def _cold_scores(self) -> Floats:
        return self.popularity_

    def _reasons(self, users: Ints, items: Ints) -> Ids:
        text = self._segment_reason[self._user_row[users]]
        out = np.broadcast_to(text[:, None], items.shape).copy()
        out[items < 0] = None
        return out

    def _similar_reasons(self, query: Ints, items: Ints) -> Ids:
        out = np.full(items.shape, GLOBAL_REASON, dtype=object)
        out[items < 0] = None
        return out


def _event_values(
    interactions: Interactions, config: PopularityConfig
) -> tuple[Ints, Ints, npt.NDArray[np.float64]]:
    """(customer, item, value) triples to sum: one per event, or per (customer, item) pair
    with ``measure="customers"`` (the pair's most recent, least decayed event)."""
    events = interactions.events
    users = events["user_idx"].to_numpy(np.int64)
    items = events["item_idx"].to_numpy(np.int64)
    if config.measure == "weight":
        values = events["weight"].to_numpy(np.float64)
    else:
        values = np.ones(len(events), dtype=np.float64)
    if config.half_life_days is not None:
        ts = events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)
        as_of = interactions.config.as_of
        ref = int(np.datetime64(as_of, "ns").view(np.int64)) if as_of else int(ts.max())
        age_days = np.maximum(ref - ts, 0) / _DAY_NS
        values = values * np.exp2(-age_days / config.half_life_days)
    if config.measure == "customers" and len(users):
        keys = users * interactions.n_items + items
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]
        keys, values = keys[last], values[last]
        users, items = keys // interactions.n_items, keys % interactions.n_items
    return users, items, values
