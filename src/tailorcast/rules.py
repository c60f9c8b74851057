"""Business rules per call: which items may be recommended, which are pushed, how lists are
diversified.

:class:`Rules` is what a caller writes (the CLI flags, an HTTP request body, a campaign
config); :meth:`Rules.compile` turns it into :class:`CompiledRules`, per-item arrays aligned
to one model's items, so a batch of a million customers applies the rules with array
operations: a mask of allowed items and a score factor go into the blocked top-k, pinned
items and the per-category cap are applied to over-fetched candidate lists
(:func:`place_pins`, :func:`cap_per_category`), looping only over list positions.

Example::

    rules = Rules(include_categories=("books",), max_price=30, max_per_category=2,
                  pin=("P00042",), boost={"P00007": 1.5})
    recommend_for(store, model, ["C000123"], k=10, rules=rules)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tailorcast.catalog import Catalog
from tailorcast.errors import ConfigError
from tailorcast.schema import EVENT_TYPES

if TYPE_CHECKING:
    from tailorcast.models.base import Recommender

__all__ = ["CompiledRules", "Rules", "build_rules", "cap_per_category", "parse_boost", "place_pins"]

Ints = npt.NDArray[np.int64]
#: Bitmask of every event type (what "seen" means without ``seen_event_types``).
ALL_TYPES: Final = (1 << len(EVENT_TYPES)) - 1


class Rules(BaseModel):
    """Filters and business rules for one recommendation call (all optional).

    Item IDs and categories that the model or catalogue does not know are ignored, never an
    error; categories match without regard to case.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude_seen: bool | None = None
    """Leave out items the customer already interacted with. None: the model decides from
    the training data (shops where customers rebuy, such as groceries, keep them)."""
    seen_event_types: tuple[str, ...] | None = None
    """Only these event types make an item "seen" (``("purchase",)``: exclude what was
    bought, keep what was only viewed). Given with ``exclude_seen=None``, it means exclude."""
    include_categories: tuple[str, ...] | None = None
    exclude_categories: tuple[str, ...] = ()
    min_price: float | None = Field(default=None, allow_inf_nan=False)
    """Items without a known price fail a price range."""
    max_price: float | None = Field(default=None, allow_inf_nan=False)
    available_only: bool = True
    """Items whose ``available`` is false are never recommended."""
    items: tuple[str, ...] | None = None
    """Candidate whitelist: recommend only from these item IDs."""
    exclude_items: tuple[str, ...] = ()
    boost: dict[str, float] = Field(default_factory=dict)
    """Item ID -> score factor > 0. Sign-aware (a factor above 1 always raises the item)."""
    pin: tuple[str, ...] = ()
    """Promoted items placed first, in this order, reason "promoted"; they still obey the
    filters and the seen exclusion."""
    max_per_category: int | None = Field(default=None, ge=1)
    """At most this many items of one category per list (diversity)."""

    @field_validator("seen_event_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown or not value:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(EVENT_TYPES)}"
            )
        return value

    @field_validator("boost")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for item, factor in value.items():
            if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
                raise ValueError(f"boost factor of {item!r} must be a number > 0, got {factor!r}")
        return value

    @model_validator(mode="after")
    def _price_range(self) -> Rules:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")
        return self

    def compile(self, model: Recommender[Any], catalog: Catalog | None = None) -> CompiledRules:
        """Per-item arrays aligned to ``model.item_ids_``. ``catalog`` (fresh categories,
        prices, availability) is laid over the model's training snapshot."""
        model._check_fitted()
        view = item_view(model, catalog)
        lookup = model._item_lookup
        n = len(view.codes)

        def positions(wanted: tuple[str, ...]) -> Ints:
            found = np.asarray(
                lookup.get_indexer(pd.Index([str(x).strip() for x in wanted], dtype=object)),
                dtype=np.int64,
            )
            return found[found >= 0]

        allowed = np.ones(n, dtype=bool)
        if self.include_categories is not None:
            allowed &= np.isin(view.codes, view.category_codes(self.include_categories))
        if self.exclude_categories:
            allowed &= ~np.isin(view.codes, view.category_codes(self.exclude_categories))
        if self.min_price is not None:
            allowed &= np.nan_to_num(view.price, nan=-np.inf) >= self.min_price
        if self.max_price is not None:
            allowed &= np.nan_to_num(view.price, nan=np.inf) <= self.max_price
        if self.available_only:
            allowed &= view.available
        if self.items is not None:
            whitelist = np.zeros(n, dtype=bool)
            whitelist[positions(self.items)] = True
            allowed &= whitelist
        allowed[positions(self.exclude_items)] = False

        factor = None
        if self.boost:
            factor = np.ones(n, dtype=np.float32)
            keys = tuple(self.boost)
            found = lookup.get_indexer(pd.Index([k.strip() for k in keys], dtype=object))
            values = np.asarray([self.boost[k] for k in keys], dtype=np.float32)
            factor[found[found >= 0]] = values[found >= 0]

        pinned = positions(self.pin)
        _, first = np.unique(pinned, return_index=True)
        pinned = pinned[np.sort(first)]  # each once, in the order given
        pinned = pinned[allowed[pinned]]

        seen_types = None
        if self.seen_event_types is not None:
            seen_types = sum(1 << EVENT_TYPES.index(t) for t in set(self.seen_event_types))
        exclude_seen = self.exclude_seen
        if exclude_seen is None and self.seen_event_types is not None:
            exclude_seen = True
        return CompiledRules(
            allowed=None if allowed.all() else allowed,
            factor=factor,
            pinned=pinned,
            category_codes=view.codes,
            max_per_category=self.max_per_category,
            exclude_seen=exclude_seen,
            seen_types=seen_types,
        )


@dataclass(frozen=True, eq=False)
class ItemView:
    """A catalogue laid over one model's items, prepared once for many compiles: category
    codes (case-folded names, -1 = none), prices and availability in the model's order."""

    codes: npt.NDArray[np.int32]
    names: dict[str, int]
    price: npt.NDArray[np.float64]
    available: npt.NDArray[np.bool_]

    def category_codes(self, categories: tuple[str, ...]) -> npt.NDArray[np.int32]:
        wanted = (self.names.get(c.strip().casefold(), -2) for c in categories)
        return np.asarray([c for c in wanted if c >= 0], dtype=np.int32)


def item_view(model: Recommender[Any], catalog: Catalog | None) -> ItemView:
    """The (cached) :class:`ItemView` of ``catalog`` (None: the model's training snapshot)
    for ``model``: a per-request compile then costs array operations, not hashing 100k IDs.
    The cache lives on the fitted model (a refit starts a new one) and holds catalogues
    weakly."""
    cache = model._rules_views
    key: Any = catalog if catalog is not None else _SNAPSHOT
    found: ItemView | None = cache.get(key)
    if found is not None:
        return found
    snapshot = Catalog.from_model(model)
    items = snapshot if catalog is None else catalog.aligned(model.item_ids_, fallback=snapshot)
    raw, uniques = pd.factorize(
        pd.Series(items.category, dtype=object).where(items.category != "", None)
    )
    folded = [str(u).strip().casefold() for u in uniques.tolist()]
    names: dict[str, int] = {}
    remap = np.asarray([names.setdefault(f, len(names)) for f in folded] + [-1], dtype=np.int32)
    view = ItemView(
        codes=remap[np.asarray(raw, dtype=np.int64)],  # -1 indexes the trailing -1
        names=names,
        price=np.asarray(items.price, dtype=np.float64),
        available=np.asarray(items.available, dtype=bool),
    )
    cache[key] = view
    return view


class _Snapshot:
    """Cache key of the model's own catalogue snapshot (weak-referenceable)."""


_SNAPSHOT: Final = _Snapshot()


def build_rules(**fields: Any) -> Rules:
    """:class:`Rules` from keyword values, a bad value raising ``ConfigError`` with one
    line naming the field (what the CLI turns into exit code 2).

    >>> build_rules(min_price=10, max_price=5)  # doctest: +SKIP
    ConfigError: invalid rules: min_price 10.0 is above max_price 5.0
    """
    try:
        return Rules(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(map(str, err['loc']))}: " if err["loc"] else "")
            + str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid rules: {problems}") from None


def parse_boost(pairs: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["P1=1.5", "P2=0.5"]`` -> ``{"P1": 1.5, "P2": 0.5}``.

    Raises:
        ConfigError: a pair without ``=``, an empty item, or a factor that is not a number.
    """
    out: dict[str, float] = {}
    for pair in pairs:
        item, sep, value = pair.partition("=")
        if not sep or not item.strip():
            raise ConfigError(f"boost {pair!r}: write ITEM=FACTOR, e.g. P00012=1.5")
        try:
            factor = float(value)
        except ValueError:
            raise ConfigError(f"boost {pair!r}: factor {value!r} is not a number") from None
        out[item.strip()] = factor
    return out


@dataclass(frozen=True, eq=False)
class CompiledRules:
    """:class:`Rules` compiled for one model: arrays over its items (see ``Rules.compile``).

    Attributes:
        allowed: ``(n_items,)`` bool, False = never recommend; None = everything allowed.
        factor: ``(n_items,)`` float32 score factors (boost); None = none.
        pinned: item indices placed first, in order (already filtered by ``allowed``).
        category_codes: ``(n_items,)`` int32 category per item, -1 = none (the cap skips it).
        max_per_category: the cap, or None.
        exclude_seen: True/False, or None for the model's data-driven default.
        seen_types: bitmask over ``EVENT_TYPES`` of the events that make an item seen;
            None = every type.
    """

    allowed: npt.NDArray[np.bool_] | None = None
    factor: npt.NDArray[np.float32] | None = None
    pinned: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    category_codes: npt.NDArray[np.int32] | None = None
    max_per_category: int | None = None
    exclude_seen: bool | None = None
    seen_types: int | None = None


def boost_scores(scores: npt.NDArray[np.float32], factor: npt.NDArray[np.float32]) -> None:
    """Multiply scores by ``factor`` in place, sign-aware: a negative score is divided, so a
    factor above 1 raises an item whatever the model's score scale."""
    cols = np.flatnonzero(factor != 1)  # usually a handful of items: touch only those
    part = scores[:, cols]
    f = factor[cols][None, :]
    scores[:, cols] = np.where(part >= 0, part * f, part / f)


def place_pins(
    idx: Ints, scores: npt.NDArray[np.float32], pins: Ints, eligible: npt.NDArray[np.bool_]
) -> tuple[Ints, npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Put each row's eligible pinned items (``eligible``: ``(n, len(pins))``) in front of
    its ranked candidates ``idx`` (``-1`` = padding). Pinned items take the row's best score
    so scores stay non-increasing. Returns (items, scores, is_pinned), ``len(pins)`` wider."""
    n, width = idx.shape
    p = len(pins)
    if p == 0:
        return idx, scores, np.zeros(idx.shape, dtype=bool)
    top = np.where(idx[:, :1] >= 0, scores[:, :1], np.float32(0.0)).astype(np.float32)
    cand = np.concatenate([np.where(eligible, pins[None, :], -1), idx], axis=1)
    cand_scores = np.concatenate([np.repeat(top, p, axis=1), scores], axis=1)
    pinned = np.concatenate([eligible, np.zeros((n, width), dtype=bool)], axis=1)
    # Stable sort moves padding to the end, order kept otherwise.
    order = np.argsort(cand < 0, axis=1, kind="stable")
    return (
        np.take_along_axis(cand, order, axis=1),
        np.take_along_axis(cand_scores, order, axis=1),
        np.take_along_axis(pinned, order, axis=1),
    )


def cap_per_category(
    idx: Ints, codes: npt.NDArray[np.int32], cap: int, keep: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.bool_]:
    """Which candidates survive a cap of ``cap`` items per category in each row (in list
    order; items without a category are never capped; ``keep`` marks candidates kept
    regardless, which still count towards their category)."""
    n, width = idx.shape
    valid = idx >= 0
    cat = np.where(valid, codes[np.maximum(idx, 0)], -1).astype(np.int64)
    # Occurrence number of each candidate's category so far in its row: a stable sort by
    # (row, category) keeps list order within a group, then position minus group start.
    n_cat = int(codes.max()) + 2 if codes.size else 1
    key = (np.arange(n, dtype=np.int64)[:, None] * n_cat + cat + 1).ravel()
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    start = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    group_start = np.maximum.accumulate(np.where(start, np.arange(key.size), 0))
    occurrence = np.empty(key.size, dtype=np.int64)
    occurrence[order] = np.arange(key.size) - group_start
    survive = valid & ((cat < 0) | (occurrence.reshape(n, width) < cap))
    if keep is not None:
        survive |= keep & valid
    return survive
