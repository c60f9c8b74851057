"""The Recommender contract every model family follows.

A model is two things: a frozen pydantic config of hyperparameters (``EASEConfig``...) and an
estimator class (``EASERecommender``...) in scikit-learn style:

- ``__init__`` only stores keyword arguments (``get_params`` / ``set_params``); they are
  validated in ``fit``, which raises ``ConfigError`` for bad values;
- ``fit(interactions)`` returns ``self``; all learned state has a trailing underscore and is
  replaced as a whole by the next ``fit``;
- ``recommend(user_ids, k)`` is batch-first and returns :class:`Recommendations` with a
  reason on every row; customers without training history take the cold-start path (global
  popularity, reason ``"popular right now"``), never an exception;
- ``similar_items(item_ids, k)``: rows are the query items, never recommending themselves;
- ``save(folder)`` writes ``config.json`` + ``state.npz`` (arrays only, no pickle) and
  ``Recommender.load(folder)`` restores an identical model through the registry.

Ties between equal scores go to the item more customers interacted with, then to the lower
item index, so sparse scores (an item-kNN with few neighbours) fall back to popularity.

Example::

    model = EASERecommender(regularization=500.0).fit(train)
    recs = model.recommend(["u1", "u2"], k=10)
    recs.to_frame()            # user_id, item_id, rank, score, reason
    model.save("models/ease")
    same = Recommender.load("models/ease")
"""

from __future__ import annotations

import importlib.metadata
import json
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError, DataError, NotFittedError, NotFoundError
from tailorcast.evaluation.ranking import blocked_top_k
from tailorcast.models.coldstart import PREFIX as COLD_PREFIX
from tailorcast.models.coldstart import ColdStart, cold_state
from tailorcast.models.pipeline import SessionItems, recommend_lists, session_rows
from tailorcast.rules import CompiledRules
from tailorcast.schema import EVENT_TYPES

__all__ = [
    "COLD_START_REASON",
    "Recommendations",
    "Recommender",
    "RecommenderConfig",
]

Ids = npt.NDArray[np.object_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]
ScoreFn = Callable[[Ints], npt.NDArray[Any]]

#: Reason given to customers without training history (unknown or new).
COLD_START_REASON: Final = "popular right now"
#: Version of the saved folder layout; bumped when ``state.npz`` keys change meaning.
FORMAT_VERSION: Final = 1
CONFIG_FILE: Final = "config.json"
STATE_FILE: Final = "state.npz"
#: Upper bound on (history item x recommended item) pairs times ``_pair_cost`` evaluated at
#: once when explaining recommendations; bounds memory at a few tens of MB.
_PAIR_BUDGET: Final = 4_000_000
#: "because you <prefix><item><suffix>", per event type index in EVENT_TYPES.
_PREFIX: Final = np.array(["viewed ", "saved ", "added ", "bought "])
_SUFFIX: Final = np.array(["", "", " to your cart", ""])
_COMMON_KEYS: Final = (
    "user_ids",
    "item_ids",
    "history_indptr",
    "history_indices",
    "history_weight",
    "history_stage",
    "item_popularity",
    "item_categories",
)
if len(_PREFIX) != len(EVENT_TYPES):  # pragma: no cover - guards a schema change
    raise AssertionError("reason phrases must cover every event type")


class RecommenderConfig(BaseModel):
    """Base of every model's hyperparameter config: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


C = TypeVar("C", bound=RecommenderConfig)


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-k lists for a batch of customers (or, from ``similar_items``, of query items).

    Attributes:
        user_ids: ``(n,)`` the row keys as asked for (customer IDs, or query item IDs).
        item_ids: ``(n, k)`` object array of item IDs, best first; ``None`` pads rows with
            fewer than ``k`` eligible items.
        scores: ``(n, k)`` float32 model scores; NaN where padded.
        reasons: ``(n, k)`` object array of one short explanation per item; ``None`` where
            padded.
        row_column: name of the row key column in :meth:`to_frame`.
    """

    user_ids: Ids
    item_ids: Ids
    scores: Floats
    reasons: Ids
    row_column: str = "user_id"

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        shape = self.item_ids.shape
        if len(shape) != 2 or shape[0] != n:
            raise ValueError(f"item_ids must have shape ({n}, k), got {shape}")
        if self.scores.shape != shape or self.reasons.shape != shape:
            raise ValueError("item_ids, scores and reasons must have the same shape")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def k(self) -> int:
        return int(self.item_ids.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """Long table, one row per recommended item (padding left out): the row key column
        (``user_id``), ``item_id``, ``rank`` (1-based), ``score``, ``reason``."""
        rows, cols = np.nonzero(~np.isnan(self.scores))
        return pd.DataFrame(
            {
                self.row_column: self.user_ids[rows],
                "item_id": self.item_ids[rows, cols],
                "rank": (cols + 1).astype(np.int64),
                "score": self.scores[rows, cols],
                "reason": self.reasons[rows, cols],
            }
        )


class Recommender(ABC, Generic[C]):
    """Base class of every recommender; see the module docstring for the contract.

    Subclasses set ``name`` (the registry key) and ``config_class``, define ``__init__`` with
    one keyword argument per config field (same defaults), and implement ``_learn``,
    ``_load_state``, ``_dump_state``, ``_score`` and ``_item_scores``; models that explain
    with the customer's history implement ``_contributions``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[RecommenderConfig]]
    #: Reason prefix of ``similar_items`` rows, followed by the query item.
    similar_reason: ClassVar[str] = "often chosen together with "
    #: Score items without training events from their content neighbours (collaborative
    #: models, whose scores know nothing of such items).
    places_new_items: ClassVar[bool] = True
    #: Item similarities say something about a visit (cold customers' session items).
    session_aware: ClassVar[bool] = True

    # Learned state common to all models (set by fit / load only).
    config_: C
    fingerprint_: str
    user_ids_: Ids
    item_ids_: Ids
    user_items_: sp.csr_matrix
    history_stage_: npt.NDArray[np.int8]
    item_popularity_: Floats
    item_categories_: Ids
    cold_start_: ColdStart
    repeat_share_: float
    """Share of purchase occasions that rebuy an item (training data)."""
    allows_repurchase_: bool
    """Whether the shop as a whole rebuys (repeat share >= 0.2). The data-driven default
    (``exclude_seen=None``) decides per category: seen items of rebought categories stay."""

    # -- parameters ---------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's keyword arguments, as currently set (scikit-learn style)."""
        return {name: getattr(self, name) for name in self.config_class.model_fields}

    def set_params(self, **params: Any) -> Self:
        """Change hyperparameters; they take effect (and are validated) at the next fit."""
        valid = list(self.config_class.model_fields)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(valid)}"
            )
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validated_config(self) -> C:
        try:
            return cast(C, self.config_class(**self.get_params()))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'params'}={err.get('input')!r}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid {type(self).__name__} parameters: {problems}") from None

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, interactions: Interactions) -> Self:
        """Learn from the training view; returns ``self``. Replaces any earlier state.

        Raises:
            ConfigError: a hyperparameter is out of range or does not fit the data.
            DataError: the view has no interactions.
        """
        config = self._validated_config()
        if not isinstance(interactions, Interactions):
            raise TypeError(f"fit expects an Interactions view, got {type(interactions).__name__}")
        if interactions.matrix.nnz == 0:
            raise DataError("no interactions to learn from", source="interactions")
        common = _common_state(interactions)
        matrix = sp.csr_matrix(
            (common["history_weight"], common["history_indices"], common["history_indptr"]),
            shape=(interactions.n_users, interactions.n_items),
        )
        common.update(cold_state(interactions, matrix, place_new_items=self.places_new_items))
        state = self._learn(interactions, matrix, config)
        clash = sorted(set(state) & set(common))
        if clash:  # pragma: no cover - a bug in a subclass
            raise AssertionError(f"model state keys clash with common keys: {clash}")
        self._install(config, interactions.fingerprint(), {**common, **state})
        return self

    @abstractmethod
    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: C
    ) -> dict[str, npt.NDArray[Any]]:
        """Fit on ``matrix`` (canonical float32 CSR of ``interactions``); return the
        model's arrays (no object dtype), exactly what ``_load_state`` accepts."""

    @abstractmethod
    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Set the model's learned attributes from its arrays (fit and load both use it)."""

    @abstractmethod
    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        """The model's arrays, inverse of ``_load_state``."""

    def _install(self, config: C, fingerprint: str, state: Mapping[str, npt.NDArray[Any]]) -> None:
        missing = [key for key in _COMMON_KEYS if key not in state]
        if missing:
            raise DataError(f"saved state lacks {', '.join(missing)}", source=STATE_FILE)
        user_ids = np.asarray(state["user_ids"].tolist(), dtype=object)
        item_ids = np.asarray(state["item_ids"].tolist(), dtype=object)
        n_users, n_items = len(user_ids), len(item_ids)
        weights = sp.csr_matrix(
            (
                np.asarray(state["history_weight"], dtype=np.float32),
                np.asarray(state["history_indices"], dtype=np.int32),
                np.asarray(state["history_indptr"], dtype=np.int64),
            ),
            shape=(n_users, n_items),
        )
        stage = np.asarray(state["history_stage"], dtype=np.int8)
        popularity = np.asarray(state["item_popularity"], dtype=np.float32)
        if stage.shape != (weights.nnz,) or popularity.shape != (n_items,):
            raise DataError("inconsistent array shapes in the saved state", source=STATE_FILE)
        self.config_ = config
        self.fingerprint_ = fingerprint
        self.user_ids_ = user_ids
        self.item_ids_ = item_ids
        self.user_items_ = weights
        self.history_stage_ = stage
        self.item_popularity_ = popularity
        self.item_categories_ = np.asarray(state["item_categories"].tolist(), dtype=object)
        # Derived lookups, rebuilt identically after load.
        self._user_lookup = pd.Index(user_ids, dtype=object)
        self._item_lookup = pd.Index(item_ids, dtype=object)
        self._history_len = np.diff(weights.indptr)
        # Column permutation that makes blocked_top_k's lower-index tie-break a
        # popularity tie-break: position p holds item _tie_order[p].
        self._tie_order = np.argsort(-popularity, kind="stable").astype(np.int64)
        self._tie_rank = np.empty(n_items, dtype=np.int64)
        self._tie_rank[self._tie_order] = np.arange(n_items)
        self._seen_ranked = _permute_columns(weights, self._tie_rank)
        self._seen_ranked.sort_indices()
        cold = ColdStart.from_state(state, item_ids, stage, n_users)
        self.cold_start_ = cold
        self._cold_arrays = {
            k: np.asarray(v) for k, v in state.items() if k.startswith(COLD_PREFIX)
        }
        self._item_labels = cold.titles
        self.repeat_share_ = cold.repeat_share
        self.allows_repurchase_ = cold.allows_repurchase
        self._new_items = cold.new_items
        self._placement_t = sp.csr_matrix(cold.placement[self._new_items].T)
        self._seen_cache: dict[tuple[int, bool], tuple[sp.csr_matrix, sp.csr_matrix]] = {}
        # Compiled catalogue views of tailorcast.rules, per catalogue (held weakly).
        self._rules_views: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._load_state(state)

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "config_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(interactions) first"
            )

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return len(self.user_ids_)

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_ids_)

    # -- scoring hooks ------------------------------------------------------------------------
    @abstractmethod
    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        """Dense ``(len(user_idx), n_items)`` float32 scores of customers with history; a new
        array (the caller may overwrite it). Called from worker threads."""

    @abstractmethod
    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        """Dense ``(len(item_idx), n_items)`` float32 similarity of items to the query items."""

    def _cold_scores(self) -> Floats:
        """Scores for customers without history: how many customers chose each item."""
        return self.item_popularity_

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        """How much history item ``history[p]`` (weight ``weights[p]`` in the customer's row)
        contributed to recommending ``items[p]``; higher is stronger, <= 0 means not at all."""
        raise NotImplementedError(f"{type(self).__name__} explains without history")

    def _pair_cost(self) -> int:
        """Work per pair in ``_contributions`` (e.g. the factor count), to size chunks."""
        return 1

    # -- recommending -------------------------------------------------------------------------
    def recommend(
        self,
        user_ids: Sequence[str] | npt.ArrayLike,
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        items: Sequence[str] | npt.ArrayLike | None = None,
        exclude_items: Sequence[str] | npt.ArrayLike | None = None,
        filters: CompiledRules | None = None,
        user_attributes: pd.DataFrame | None = None,
        session_items: SessionItems | None = None,
        explain: bool = True,
    ) -> Recommendations:
        """The ``k`` best items for each customer, with a score and a reason per item.

        Args:
            user_ids: customer IDs; ones without training history (unknown, or new) take
                the cold-start path: their session, else their attributes, else the most
                popular items ("popular right now"); never an error.
            k: list length; rows with fewer eligible items are padded (``None`` / NaN).
            exclude_seen: leave out items the customer interacted with in training; None:
                ``filters.exclude_seen``, else the data-driven default (seen items of
                categories customers rebuy stay, the others are left out; see
                ``cold_start_.rebuyable``). Evaluation passes True.
            items: only recommend from these item IDs (IDs not in the model are ignored).
            exclude_items: never recommend these item IDs.
            filters: business rules compiled for this model (:meth:`tailorcast.rules.Rules.
                compile`).
            user_attributes: users-table rows (index ``user_id``) of customers the model
                has no history of: popularity among customers with the same attributes.
            session_items: items viewed in the current visit, one list for every customer of
                the call or a mapping per customer; used for customers without history.
            explain: fill the reasons (otherwise None).
        """
        self._check_fitted()
        k = _check_k(k)
        uids = _id_array(user_ids, "user_ids")
        rules = filters or CompiledRules()
        if rules.category_codes is not None and len(rules.category_codes) != len(self.item_ids_):
            raise ConfigError("filters were compiled for another model: compile them again")
        allowed = self._candidate_mask(items, exclude_items)
        if rules.allowed is not None:
            allowed = rules.allowed if allowed is None else allowed & rules.allowed
        if exclude_seen is None:
            exclude_seen = rules.exclude_seen
        return recommend_lists(
            self,
            uids,
            k,
            rules=rules,
            allowed=allowed,
            exclude_seen=exclude_seen,
            user_attributes=user_attributes,
            session_items=session_items,
            explain=explain,
            package=lambda rows, idx, scores, reasons: self._package(
                rows, idx, scores, reasons, "user_id"
            ),
        )

    def _seen_matrices(
        self, types: int, data_driven: bool = False
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Items each customer interacted with through one of the event types in the
        bitmask ``types`` (with ``data_driven``, only items of categories not rebought):
        (item order, popularity-ranked column order), cached."""
        key = (types, data_driven)
        cached = self._seen_cache.get(key)
        if cached is None:
            hit = (self.cold_start_.history_types & np.uint8(types)) != 0
            base = self.user_items_
            if data_driven:
                hit &= ~self.cold_start_.rebuyable[base.indices]
            seen = sp.csr_matrix(
                (hit.astype(np.float32), base.indices.copy(), base.indptr.copy()), shape=base.shape
            )
            seen.eliminate_zeros()
            ranked = _permute_columns(seen, self._tie_rank)
            ranked.sort_indices()
            cached = (seen, ranked)
            self._seen_cache[key] = cached
        return cached

    def similar_items(
        self, item_ids: Sequence[str] | npt.ArrayLike, k: int = 10
    ) -> Recommendations:
        """The ``k`` items most similar to each query item (never the item itself).

        Raises:
            NotFoundError: a query item is not in the model's catalog (the message names it).
        """
        self._check_fitted()
        k = _check_k(k)
        qids = _id_array(item_ids, "item_ids")
        qidx = np.asarray(self._item_lookup.get_indexer(pd.Index(qids, dtype=object)))
        qidx = qidx.astype(np.int64)
        unknown = qids[qidx < 0]
        if unknown.size:
            shown = ", ".join(repr(x) for x in unknown[:5].tolist())
            more = f" and {unknown.size - 5} more" if unknown.size > 5 else ""
            raise NotFoundError(f"unknown item {shown}{more}: not in the training catalog")
        n_items = len(self.item_ids_)
        itself = sp.csr_matrix(
            (np.ones(n_items, np.float32), (np.arange(n_items), self._tie_rank)),
            shape=(n_items, n_items),
        )
        idx, scores = self._rank(
            lambda block: session_rows(self, block), qidx, k, exclude=itself, allowed=None
        )
        reasons = self._similar_reasons(qidx, idx)
        return self._package(qids, idx, scores, reasons, "source_item_id")

    def _similar_reasons(self, query: Ints, items: Ints) -> Ids:
        text = np.char.add(self.similar_reason, self._item_labels[query])
        out = np.broadcast_to(text.astype(object)[:, None], items.shape).copy()
        out[items < 0] = None
        return out

    def _candidate_mask(
        self,
        items: Sequence[str] | npt.ArrayLike | None,
        exclude_items: Sequence[str] | npt.ArrayLike | None,
    ) -> npt.NDArray[np.bool_] | None:
        if items is None and exclude_items is None:
            return None
        n_items = len(self.item_ids_)
        allowed = np.ones(n_items, dtype=bool)
        if items is not None:
            found = self._item_lookup.get_indexer(pd.Index(_id_array(items, "items"), dtype=object))
            allowed[:] = False
            allowed[found[found >= 0]] = True
        if exclude_items is not None:
            found = self._item_lookup.get_indexer(
                pd.Index(_id_array(exclude_items, "exclude_items"), dtype=object)
            )
            allowed[found[found >= 0]] = False
        return allowed

    def _rank(
        self,
        score_fn: ScoreFn,
        rows: Ints,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        allowed: npt.NDArray[np.bool_] | None,
    ) -> tuple[Ints, Floats]:
        """blocked_top_k in popularity-ranked column order (``exclude`` already permuted),
        mapped back to item indices."""
        order = self._tie_order

        def ranked(block: Ints) -> npt.NDArray[np.float32]:
            return np.take(np.asarray(score_fn(block), dtype=np.float32), order, axis=1)

        idx, scores = blocked_top_k(
            ranked,
            rows,
            k,
            exclude=exclude,
            allowed=None if allowed is None else allowed[order],
        )
        idx = np.where(idx >= 0, order[np.maximum(idx, 0)], -1)
        return idx.astype(np.int64), scores.astype(np.float32, copy=False)

    def _package(
        self, rows: Ids, idx: Ints, scores: Floats, reasons: Ids, row_column: str
    ) -> Recommendations:
        padded = idx < 0
        item_ids = self.item_ids_[np.maximum(idx, 0)]
        item_ids[padded] = None
        out_scores = scores.astype(np.float32)
        out_scores[padded] = np.nan
        reasons[padded] = None
        return Recommendations(rows, item_ids, out_scores, reasons, row_column)

    # -- explaining ---------------------------------------------------------------------------
    def _reasons(self, users: Ints, items: Ints) -> Ids:
        """Reasons for customers with history: the two history items that contributed most,
        e.g. "because you bought A and viewed B"; "popular right now" without any."""
        n, k = items.shape
        out = np.full(n * k, None, dtype=object)
        flat = items.ravel()
        rows = np.flatnonzero(flat >= 0)
        if rows.size == 0:
            return out.reshape(n, k)
        row_users = users[rows // k]
        pairs = self._history_len[row_users].astype(np.int64)
        budget = max(1, _PAIR_BUDGET // max(1, self._pair_cost()))
        ends = np.cumsum(pairs)
        start = 0
        while start < rows.size:  # chunks of rows, bounded work each
            done = int(ends[start - 1]) if start else 0
            stop = int(np.searchsorted(ends, done + budget, side="right"))
            stop = max(stop, start + 1)
            chunk = slice(start, stop)
            out[rows[chunk]] = self._explain_rows(row_users[chunk], flat[rows[chunk]])
            start = stop
        return out.reshape(n, k)

    def _explain_rows(self, users: Ints, items: Ints) -> Ids:
        matrix = self.user_items_
        lens = self._history_len[users].astype(np.int64)
        total = int(lens.sum())
        pair_row = np.repeat(np.arange(len(users)), lens)
        offsets = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.repeat(matrix.indptr[users].astype(np.int64), lens) + offsets
        history = matrix.indices[pos].astype(np.int64)
        strength = np.asarray(
            self._contributions(matrix.data[pos], history, items[pair_row]), dtype=np.float64
        )
        keep = np.isfinite(strength) & (strength > 0)
        pair_row, history, strength = pair_row[keep], history[keep], strength[keep]
        stage = self.history_stage_[pos[keep]].astype(np.int64)
        # Strongest first within each row, ties to the lower item index.
        order = np.lexsort((history, -strength, pair_row))
        pair_row, history, stage = pair_row[order], history[order], stage[order]
        first = np.ones(len(pair_row), dtype=bool)
        first[1:] = pair_row[1:] != pair_row[:-1]
        second = np.zeros(len(pair_row), dtype=bool)
        second[1:] = ~first[1:] & first[:-1]

        out = np.full(len(users), COLD_START_REASON, dtype=object)
        if not first.any():
            return out
        has_one = pair_row[first]
        j1, s1 = history[first], stage[first]
        j2, s2 = j1.copy(), s1.copy()
        has_two = np.zeros(len(has_one), dtype=bool)
        slot = np.searchsorted(has_one, pair_row[second])
        j2[slot], s2[slot], has_two[slot] = history[second], stage[second], True
        labels = self._item_labels
        one = _join("because you ", _PREFIX[s1], labels[j1], _SUFFIX[s1])
        same = _join("because you ", _PREFIX[s1], labels[j1], " and ", labels[j2], _SUFFIX[s1])
        different = _join(one, " and ", _PREFIX[s2], labels[j2], _SUFFIX[s2])
        text = np.where(has_two, np.where(s1 == s2, same, different), one)
        out[has_one] = text.astype(object)
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to the folder ``path`` (created if needed):
        ``config.json`` (model name, params, versions, training fingerprint) and
        ``state.npz`` (plain arrays). Returns the folder."""
        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {**self._common_dump(), **self._dump_state()}
        for key, value in state.items():
            if value.dtype == object:  # pragma: no cover - a bug in a subclass
                raise TypeError(f"state array {key!r} has object dtype and would need pickle")
        with open(folder / STATE_FILE, "wb") as handle:
            np.savez(handle, allow_pickle=False, **state)
        meta = {
            "format": FORMAT_VERSION,
            "model": self.name,
            "class": type(self).__name__,
            "params": self.config_.model_dump(mode="json"),
            "tailorcast_version": _version("tailorcast"),
            "fingerprint": self.fingerprint_,
            "n_users": len(self.user_ids_),
            "n_items": len(self.item_ids_),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Restore a model saved with :meth:`save`; the registry picks the class by name.

        Raises:
            NotFoundError: no saved model in the folder, or an unknown model name.
            ConfigError: the folder holds another kind of model than the class asked for.
            DataError: the files are damaged.
        """
        from tailorcast.models.registry import MODELS  # here: the registry imports us

        folder = Path(path)
        config_file, state_file = folder / CONFIG_FILE, folder / STATE_FILE
        if not config_file.is_file() or not state_file.is_file():
            raise NotFoundError(f"no saved model in {folder} (needs {CONFIG_FILE}, {STATE_FILE})")
        try:
            meta = json.loads(config_file.read_text(encoding="utf-8"))
            name, params, fingerprint = meta["model"], meta["params"], meta["fingerprint"]
            version = meta["format"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"unreadable model config ({exc})", source=str(config_file)) from None
        if version != FORMAT_VERSION:
            raise DataError(
                f"saved with format {version}, this version reads {FORMAT_VERSION}",
                source=str(config_file),
            )
        target = MODELS.get(name)
        if target is None:
            raise NotFoundError(
                f"unknown model {name!r} in {config_file}; known: {', '.join(MODELS)}"
            )
        if not issubclass(target, cls):
            raise ConfigError(f"{folder} holds a {name!r} model, not a {cls.__name__}")
        if not isinstance(params, dict):
            raise DataError("params must be an object", source=str(config_file))
        model = target()
        model.set_params(**params)
        config = model._validated_config()
        try:
            with np.load(state_file, allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable model state ({exc})", source=str(state_file)) from None
        try:
            model._install(config, str(fingerprint), state)
        except (KeyError, ValueError, IndexError) as exc:
            raise DataError(f"damaged model state ({exc})", source=str(state_file)) from None
        return model

    def _common_dump(self) -> dict[str, npt.NDArray[Any]]:
        m = self.user_items_
        return {
            "user_ids": _unicode(self.user_ids_),
            "item_ids": _unicode(self.item_ids_),
            "history_indptr": m.indptr.astype(np.int64),
            "history_indices": m.indices.astype(np.int32),
            "history_weight": m.data.astype(np.float32),
            "history_stage": self.history_stage_,
            "item_popularity": self.item_popularity_,
            "item_categories": _unicode(self.item_categories_),
            **self._cold_arrays,
        }


# -- helpers ------------------------------------------------------------------------------------
def _common_state(inter: Interactions) -> dict[str, npt.NDArray[Any]]:
    """What every model keeps from the training view: vocabularies, the weighted history
    (canonical CSR) with the strongest event type per cell, popularity and categories."""
    matrix = sp.csr_matrix(inter.matrix, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.sort_indices()
    n_users, n_items = matrix.shape
    events = inter.events
    stage_of = pd.Index(EVENT_TYPES).get_indexer(pd.Index(events["event_type"].astype(str)))
    keys = events["user_idx"].to_numpy(np.int64) * n_items + events["item_idx"].to_numpy(np.int64)
    stage = np.zeros(matrix.nnz, dtype=np.int8)
    types = np.zeros(matrix.nnz, dtype=np.uint8)
    if len(keys):
        order = np.lexsort((stage_of, keys))
        keys, stage_of = keys[order], stage_of[order]
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]
        cell_keys, cell_stage = keys[last], stage_of[last]  # the max type per cell
        # Every type seen in the cell, as a bitmask (the same sort, so no second pass).
        bits = np.left_shift(1, np.maximum(stage_of, 0)).astype(np.uint8)
        bits[stage_of < 0] = 0
        starts = np.flatnonzero(np.r_[True, last[:-1]])
        cell_types = np.bitwise_or.reduceat(bits, starts)
        rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
        matrix_keys = rows * n_items + matrix.indices
        pos = np.searchsorted(matrix_keys, cell_keys)
        hit = pos < len(matrix_keys)
        hit[hit] = matrix_keys[pos[hit]] == cell_keys[hit]
        stage[pos[hit]] = np.maximum(cell_stage[hit], 0)
        types[pos[hit]] = cell_types[hit]
    popularity = np.bincount(matrix.indices, minlength=n_items).astype(np.float32)
    if "category" in inter.items.columns:
        column = inter.items["category"]
        categories = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
    else:
        categories = np.full(n_items, "", dtype=object)
    return {
        "user_ids": _unicode(inter.user_ids),
        "item_ids": _unicode(inter.item_ids),
        "history_indptr": matrix.indptr.astype(np.int64),
        "history_indices": matrix.indices.astype(np.int32),
        "history_weight": matrix.data.astype(np.float32),
        "history_stage": stage,
        "item_popularity": popularity,
        "item_categories": _unicode(np.asarray(categories, dtype=object)),
        COLD_PREFIX + "history_types": types,
    }


def _unicode(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    """Object array of str -> fixed-width unicode array (savable without pickle)."""
    items = values.tolist()
    return np.asarray(items, dtype=str) if items else np.zeros(0, dtype="<U1")


def _permute_columns(matrix: sp.csr_matrix, new_index: Ints) -> sp.csr_matrix:
    """The same matrix with column ``j`` moved to ``new_index[j]`` (a copy)."""
    return sp.csr_matrix(
        (matrix.data.copy(), new_index[matrix.indices], matrix.indptr.copy()),
        shape=matrix.shape,
    )


def _join(*parts: Any) -> npt.NDArray[np.str_]:
    """Element-wise concatenation of unicode arrays and str (vectorised)."""
    out = np.asarray(parts[0], dtype=str)
    for part in parts[1:]:
        out = np.char.add(out, np.asarray(part, dtype=str))
    return out


def _id_array(ids: Sequence[str] | npt.ArrayLike, name: str) -> Ids:
    if isinstance(ids, str):
        raise TypeError(f"{name} must be a list of IDs, not a single string")
    values = np.asarray(ids, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
    return values


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"
