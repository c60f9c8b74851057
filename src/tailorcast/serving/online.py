"""Online updates: a customer's newest events count in their next recommendations, no retrain.

Three ways, best first, chosen per model:

- **fold-in** (ALS, item-kNN, EASE, content): a one-customer view of the model whose history
  row is the trained row plus the new events (weighted as in training), and, for ALS, whose
  customer factor is solved again by least squares against the fixed item factors
  (implicit's ``recalculate_user``). The view is the model itself (a shallow copy sharing
  every item-side array), so scoring, seen-item exclusion, filters and reasons are exactly the
  model's own; it costs one small solve and a few array copies per request.
- **session re-ranking** (every other model): the model's longer list for the customer,
  re-scored by similarity to the items they just touched (the model's own item similarity),
  so what they look at now pulls similar items up; new interactions leave the list when
  seen items are excluded.
- **new items** (any model): products posted after training are not in the model; a content
  index over the whole catalog (:func:`tailorcast.models.content.item_vectors`) places them,
  in ``similar`` and in a customer's list when they closely resemble the customer's history.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import implicit.cpu.als
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from tailorcast.models.base import _PREFIX, _SUFFIX, Recommendations, Recommender
from tailorcast.models.content import ContentConfig, ContentRecommender, item_vectors
from tailorcast.models.ease import EASERecommender
from tailorcast.models.factorization import ALSRecommender
from tailorcast.models.itemknn import ItemKNNRecommender
from tailorcast.rules import CompiledRules
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS, EVENT_TYPES
from tailorcast.serving.candidates import CandidateTable

__all__ = ["ContentIndex", "OnlineModel", "Overlay", "Row"]

#: One recommended item: ``item_id``, ``rank`` (1-based), ``score``, ``reason``.
Row = dict[str, Any]

#: Models whose only customer-side state is the history row (plus ALS's factor, re-solved).
_FOLD_IN: Final = (ALSRecommender, ItemKNNRecommender, EASERecommender, ContentRecommender)
#: Customer-side attributes the one-customer view replaces.
_USER_ATTRS: Final = frozenset(
    {
        "user_ids_",
        "user_items_",
        "history_stage_",
        "user_factors_",
        "_user_lookup",
        "_history_len",
        "_seen_ranked",
    }
)
#: Weight of the similarity to recent items against the model's own (standardised) score.
SESSION_WEIGHT: Final = 1.0
#: The most recent new events that steer session re-ranking.
SESSION_ITEMS: Final = 10
#: Content cosine a new product needs with a customer's history to enter their list.
NEW_ITEM_MIN_SIMILARITY: Final = 0.3
_STAGE = {name: i for i, name in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class Overlay:
    """A customer's events not yet in the model: item IDs, canonical types, epoch ns."""

    items: tuple[str, ...]
    types: tuple[str, ...]
    times_ns: tuple[int, ...]


class OnlineModel:
    """A loaded model version and what serving derives from it. Immutable once built, so a
    request keeps using the one it started with while a newer one is swapped in."""

    def __init__(
        self,
        model: Recommender[Any],
        *,
        version: str,
        info: dict[str, Any],
        event_weights: dict[str, float] | None = None,
        loaded_at: float = 0.0,
        trained_at: float = 0.0,
    ) -> None:
        self.model = model
        self.version = version
        self.info = info
        self.loaded_at = loaded_at
        self.trained_at = trained_at
        """Wall-clock time the training data was read; later events are not in the model."""
        weights = event_weights or DEFAULT_EVENT_WEIGHTS
        self._weights = np.asarray([float(weights.get(t, 0.0)) for t in EVENT_TYPES])
        self.mode = "fold-in" if self._can_fold_in() else "session re-ranking"
        self.candidates: CandidateTable | None = None
        """Precomputed candidates (:mod:`tailorcast.serving.candidates`), set once built."""
        self._solver: Any = None
        if isinstance(model, ALSRecommender):
            cfg = model.config_
            solver = implicit.cpu.als.AlternatingLeastSquares(
                factors=model.item_factors_.shape[1],
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                dtype=np.float32,
                num_threads=1,
            )
            solver.item_factors = model.item_factors_
            _ = solver.YtY  # computed once here, read-only afterwards (threads share it)
            self._solver = solver

    def _can_fold_in(self) -> bool:
        model = self.model
        if type(model) not in _FOLD_IN:
            return False
        # A family that grew other per-customer state must not get a half-replaced view.
        n_users = model.n_users
        for name, value in vars(model).items():
            shape = getattr(value, "shape", None)
            if name not in _USER_ATTRS and shape and shape[0] == n_users != model.n_items:
                return False
        return True

    # -- recommending -----------------------------------------------------------------------
    def cached(self, user: str, k: int, filters: CompiledRules, explain: bool) -> list[Row] | None:
        """The answer from the precomputed candidates, for a customer without new events;
        None when only full scoring (:meth:`recommend`) can answer exactly."""
        table = self.candidates
        if table is None:
            return None
        return table.answer(user, user in self.model._user_lookup, k, filters, explain)

    def recommend(
        self,
        user: str,
        k: int,
        overlay: Overlay | None,
        *,
        filters: CompiledRules | None = None,
        exclude_seen: bool | None = None,
        items: Sequence[str] | None = None,
        explain: bool = True,
    ) -> list[Row]:
        """``{item_id, rank, score, reason}`` rows for one customer (a pseudonym), with the
        customer's new events in.

        ``exclude_seen`` None leaves it to ``filters`` and the model's data-driven default.
        """
        model = self.model
        new_idx, new_stage = self._known(overlay)
        kwargs: dict[str, Any] = {
            "exclude_seen": exclude_seen,
            "items": items,
            "filters": filters,
            "explain": explain,
        }
        if new_idx.size == 0 and not (self.mode == "fold-in" and self._warm(user)):
            return _rows(model.recommend([user], k, **kwargs))
        if self.mode == "fold-in":
            # Also without new events: a one-customer view keeps the per-call work (the
            # seen-items matrix) at one row instead of every customer's.
            view = self.user_view(user, new_idx, new_stage)
            return _rows(view.recommend([user], k, **kwargs))
        if not self._warm(user):
            # The model's own cold-start path knows what to do with a visit's items.
            assert overlay is not None
            seen = list(overlay.items) if self._excludes_seen(kwargs) else None
            return _rows(
                model.recommend(
                    [user], k, session_items=list(overlay.items), exclude_items=seen, **kwargs
                )
            )
        return self._rerank(user, k, new_idx, new_stage, kwargs)

    def _excludes_seen(self, kwargs: dict[str, Any]) -> bool:
        """What ``exclude_seen=None`` resolves to in the model: the rules, else its default."""
        value = kwargs.get("exclude_seen")
        if value is None:
            value = getattr(kwargs.get("filters"), "exclude_seen", None)
        if value is None:
            value = not getattr(self.model, "allows_repurchase_", False)
        return bool(value)

    def _warm(self, user: str) -> bool:
        u = int(self.model._user_lookup.get_indexer(pd.Index([user], dtype=object))[0])
        return u >= 0 and bool(self.model._history_len[u] > 0)

    def _known(self, overlay: Overlay | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
        if overlay is None or not overlay.items:
            return np.zeros(0, np.int64), np.zeros(0, np.int8)
        idx = np.asarray(
            self.model._item_lookup.get_indexer(pd.Index(list(overlay.items), dtype=object)),
            dtype=np.int64,
        )
        stage = np.asarray([_STAGE.get(t, 0) for t in overlay.types], dtype=np.int8)
        known = idx >= 0
        return idx[known], stage[known]

    def user_view(
        self, user: str, new_idx: npt.NDArray[np.int64], new_stage: npt.NDArray[np.int8]
    ) -> Recommender[Any]:
        """The model seen by one customer whose history has the new events added."""
        m = self.model
        n_items = m.n_items
        u = int(m._user_lookup.get_indexer(pd.Index([user], dtype=object))[0])
        hist = m.user_items_
        lo, hi = (int(hist.indptr[u]), int(hist.indptr[u + 1])) if u >= 0 else (0, 0)
        idx = np.concatenate([hist.indices[lo:hi].astype(np.int64), new_idx])
        weight = np.concatenate(
            [hist.data[lo:hi].astype(np.float64), self._weights[new_stage.astype(np.int64)]]
        )
        stage = np.concatenate([m.history_stage_[lo:hi], new_stage]).astype(np.int8)
        cells, inverse = np.unique(idx, return_inverse=True)
        summed = np.bincount(inverse, weights=weight, minlength=len(cells)).astype(np.float32)
        strongest = np.zeros(len(cells), dtype=np.int8)
        np.maximum.at(strongest, inverse, stage)
        indptr = np.asarray([0, len(cells)], dtype=np.int64)
        row = sp.csr_matrix((summed, cells.astype(np.int32), indptr), shape=(1, n_items))
        ranked = sp.csr_matrix(
            (summed.copy(), m._tie_rank[cells].astype(np.int32), indptr.copy()),
            shape=(1, n_items),
        )
        ranked.sort_indices()
        view = copy.copy(m)
        view.user_ids_ = np.asarray([user], dtype=object)
        view.user_items_ = row
        view.history_stage_ = strongest
        view._user_lookup = pd.Index([user], dtype=object)
        view._history_len = np.asarray([len(cells)])
        view._seen_ranked = ranked
        if hasattr(m, "_seen_cache"):
            view._seen_cache = {}
        cold = getattr(m, "cold_start_", None)
        if cold is not None:
            # Which event types touched each cell (bit per type), as the model keeps it.
            types = np.concatenate(
                [cold.history_types[lo:hi], (1 << new_stage.astype(np.int64)).astype(np.uint8)]
            )
            merged = np.zeros(len(cells), dtype=np.uint8)
            np.bitwise_or.at(merged, inverse, types.astype(np.uint8))
            segments = (
                cold.user_segments[[u]]
                if u >= 0
                else np.full((1, cold.user_segments.shape[1]), -1, np.int32)
            )
            view.cold_start_ = dataclasses.replace(
                cold, history_types=merged, user_segments=segments
            )
        if isinstance(view, ALSRecommender) and isinstance(m, ALSRecommender):
            if new_idx.size and self._solver is not None:
                factors = self._solver.recalculate_user(0, row)
                view.user_factors_ = np.asarray(factors, dtype=np.float32).reshape(1, -1)
            else:  # nothing new: the trained factor, exactly
                view.user_factors_ = m.user_factors_[[u]]
        return view

    def _rerank(
        self,
        user: str,
        k: int,
        new_idx: npt.NDArray[np.int64],
        new_stage: npt.NDArray[np.int8],
        kwargs: dict[str, Any],
    ) -> list[Row]:
        model = self.model
        wide = min(model.n_items, max(4 * k, k + 50) + len(new_idx))
        recs = model.recommend([user], wide, **{**kwargs, "explain": True})
        exclude_seen = self._excludes_seen(kwargs)
        valid = ~np.isnan(recs.scores[0])
        cand_ids = recs.item_ids[0][valid]
        if cand_ids.size == 0:
            return _rows(recs)
        cand = np.asarray(model._item_lookup.get_indexer(pd.Index(cand_ids, dtype=object)))
        recent = new_idx[-SESSION_ITEMS:]
        recent_stage = new_stage[-SESSION_ITEMS:]
        # Later events weigh more: the last one 1, the one before 1/2, ...
        decay = 1.0 / np.arange(len(recent), 0, -1, dtype=np.float64)
        sim = np.asarray(model._item_scores(recent.astype(np.int64)), dtype=np.float64)[:, cand]
        session = (decay[:, None] * sim).sum(axis=0) / decay.sum()
        base = _standardise(recs.scores[0][valid].astype(np.float64))
        pull = SESSION_WEIGHT * _standardise(session)
        score = base + pull
        keep = np.ones(len(cand), dtype=bool)
        if exclude_seen:
            keep &= ~np.isin(cand, new_idx)
        order = np.flatnonzero(keep)[np.argsort(-score[keep], kind="stable")][:k]
        reasons = recs.reasons[0][valid].astype(object)
        by = np.argmax(decay[:, None] * sim, axis=0)
        labels = model._item_labels
        if not kwargs.get("explain", True):
            reasons[:] = None
        for j in order if kwargs.get("explain", True) else ():
            if pull[j] > base[j] and sim[by[j], j] > 0:
                s = int(recent_stage[by[j]])
                reasons[j] = f"because you {_PREFIX[s]}{labels[recent[by[j]]]}{_SUFFIX[s]}"
        return [
            {
                "item_id": str(cand_ids[j]),
                "rank": r + 1,
                "score": float(score[j]),
                "reason": None if reasons[j] is None else str(reasons[j]),
            }
            for r, j in enumerate(order)
        ]


class ContentIndex:
    """Unit content vectors of the whole current catalog (trained and newly posted items)."""

    def __init__(self, catalog: pd.DataFrame, config: ContentConfig | None = None) -> None:
        self.ids = np.asarray(catalog.index.astype(str), dtype=object)
        self.lookup = pd.Index(self.ids, dtype=object)
        vectors, _ = item_vectors(catalog, config)
        self.vectors = sp.csr_matrix(vectors, dtype=np.float32)

    def positions(self, ids: Sequence[str]) -> npt.NDArray[np.int64]:
        return np.asarray(self.lookup.get_indexer(pd.Index(list(ids), dtype=object)), np.int64)

    def similar(
        self, item_id: str, k: int, allowed: npt.NDArray[np.bool_]
    ) -> list[tuple[str, float]]:
        """``(item_id, score)`` of the ``k`` catalog items closest to ``item_id`` (not
        itself), ``allowed`` over ``ids``."""
        pos = int(self.positions([item_id])[0])
        scores = np.asarray((self.vectors[pos] @ self.vectors.T).toarray()[0], np.float64)
        scores[pos] = -np.inf
        scores[~allowed] = -np.inf
        return _top(self.ids, scores, k)

    def affinity(
        self,
        history: Sequence[str],
        weights: npt.NDArray[np.float64],
        candidates: Sequence[str],
        minimum: float,
    ) -> list[tuple[int, float, int]]:
        """Candidates whose cosine to the weighted history profile reaches ``minimum``, best
        first: ``(candidate position, cosine, position in history of the item it resembles
        most)`` (the last for the reason)."""
        h = self.positions(history)
        c = self.positions(candidates)
        ok = np.flatnonzero(h >= 0)
        if ok.size == 0 or len(c) == 0:
            return []
        # The profile first (one sparse-dense product), pairwise similarities only for the
        # few candidates that pass: a long history times many new products stays cheap.
        hv = self.vectors[h[ok]]
        profile = np.asarray(hv.T @ weights[ok], np.float64).ravel()
        norm = float(np.linalg.norm(profile))
        if norm == 0.0:
            return []
        valid = np.flatnonzero(c >= 0)
        aff = np.asarray(self.vectors[c[valid]] @ profile, np.float64).ravel() / norm
        passing = valid[aff >= minimum]
        if passing.size == 0:
            return []
        score = aff[aff >= minimum]
        order = np.argsort(-score, kind="stable")
        passing, score = passing[order], score[order]
        sims = np.asarray((hv @ self.vectors[c[passing]].T).toarray(), np.float64)
        best = ok[np.argmax(sims, axis=0)]
        return [(int(j), float(a), int(b)) for j, a, b in zip(passing, score, best, strict=True)]


def _top(
    ids: npt.NDArray[np.object_], scores: npt.NDArray[np.float64], k: int
) -> list[tuple[str, float]]:
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(-scores[finite], kind="stable")][:k]
    return [(str(ids[j]), float(scores[j])) for j in order]


def _standardise(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    sd = float(x.std())
    return (x - float(x.mean())) / sd if sd > 0 else np.zeros_like(x)


def _rows(recs: Recommendations) -> list[Row]:
    """The first row of ``recs`` as plain dicts (padding left out); cheaper than a frame."""
    ids, scores, reasons = recs.item_ids[0], recs.scores[0], recs.reasons[0]
    out: list[Row] = []
    for j in np.flatnonzero(~np.isnan(scores)).tolist():
        reason = reasons[j]
        out.append(
            {
                "item_id": str(ids[j]),
                "rank": len(out) + 1,
                "score": float(scores[j]),
                "reason": None if reason is None else str(reason),
            }
        )
    return out
