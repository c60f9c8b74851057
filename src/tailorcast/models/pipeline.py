"""How ``Recommender.recommend`` turns scores into explained lists under business rules.

Each asked customer takes one path:

- **warm** (training history): the model's scores, blocked and threaded
  (``Recommender._rank``), seen items excluded per the rules or the data-driven default;
- **session** (no history, items viewed in the current visit): the sum of the model's item
  similarities to those items, reason "because you viewed <title>";
- **segment** (no history, known attributes): naive-Bayes popularity among similar
  customers (:class:`~tailorcast.models.coldstart.ColdStart`);
- **global** (nothing known): the model's cold-start popularity, "popular right now" or
  "trending in <category>".

Items without events are placed by content similarity for collaborative models (the
weighted mean of their neighbours' scores). Boost factors multiply scores before the top-k;
pinned items go first; the per-category cap runs on over-fetched candidates and re-fetches,
with a doubled depth, only the rows it left short.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from tailorcast.evaluation.ranking import top_k
from tailorcast.models.coldstart import (
    PROMOTED_REASON,
    SEGMENT_REASON,
    SESSION_PREFIX,
    TRENDING_PREFIX,
)
from tailorcast.rules import ALL_TYPES, CompiledRules, boost_scores, cap_per_category, place_pins

if TYPE_CHECKING:
    from tailorcast.models.base import Recommendations, Recommender

__all__ = ["SessionItems", "placed_scores", "recommend_lists"]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]
Ids = npt.NDArray[np.object_]
SessionItems = Sequence[str] | Mapping[str, Sequence[str]]

WARM, SESSION, SEGMENT, GLOBAL = 0, 1, 2, 3
#: Rows of session customers scored at once (each needs similarity rows of its items).
_SESSION_BLOCK: Final = 256
#: Session similarity rows (floats) kept between ranking and explaining, about 128 MB.
_SIMILARITY_CACHE: Final = 32_000_000
#: Candidates fetched per list slot when a category cap will thin them out.
_OVERFETCH: Final = 3


def placed_scores(model: Recommender[Any], scores: Floats) -> Floats:
    """Scores with items that had no training events placed by content: the higher of their
    own score and the similarity-weighted mean of their neighbours' (in place)."""
    cold = model.cold_start_
    if not type(model).places_new_items or cold.placement.nnz == 0:
        return scores
    new = model._new_items
    placed = np.asarray(scores @ model._placement_t, dtype=np.float32)
    scores[:, new] = np.maximum(scores[:, new], placed)
    return scores


def session_rows(model: Recommender[Any], item_idx: Ints) -> Floats:
    """Similarity rows ``(len(item_idx), n_items)`` of session items; an item without events
    borrows its content neighbours' rows (collaborative models know nothing of it)."""
    rows = np.asarray(model._item_scores(item_idx), dtype=np.float32)
    if rows.base is not None or not rows.flags.writeable:  # a view: ours to change only as a copy
        rows = rows.copy()
    if type(model).places_new_items and model.cold_start_.placement.nnz:
        weights = model.cold_start_.placement[item_idx]
        has = np.flatnonzero(np.diff(weights.indptr) > 0)
        if has.size:
            sub = sp.csr_matrix(weights[has])
            cols = np.unique(sub.indices).astype(np.int64)
            borrowed = sub[:, cols] @ np.asarray(model._item_scores(cols), dtype=np.float32)
            rows[has] = np.maximum(rows[has], np.asarray(borrowed, dtype=np.float32))
    return placed_scores(model, rows)


class _Call:
    """One recommend call: the resolved rules and the customers' paths."""

    def __init__(
        self,
        model: Recommender[Any],
        uids: Ids,
        rules: CompiledRules,
        allowed: npt.NDArray[np.bool_] | None,
        exclude_seen: bool | None,
        user_attributes: pd.DataFrame | None,
        session: SessionItems | None,
    ) -> None:
        self.model = model
        self.n_items = len(model.item_ids_)
        self.rules = rules
        self.factor = rules.factor
        self.pins = rules.pinned
        if allowed is not None:
            self.pins = self.pins[allowed[self.pins]]
        rank_allowed = None if allowed is None else allowed.copy()
        if self.pins.size:  # pinned items are placed, not ranked
            rank_allowed = np.ones(self.n_items, bool) if rank_allowed is None else rank_allowed
            rank_allowed[self.pins] = False
        self.allowed = rank_allowed
        self.eligible = self.n_items if rank_allowed is None else int(rank_allowed.sum())
        uidx = np.asarray(model._user_lookup.get_indexer(pd.Index(uids, dtype=object)))
        self.uidx = uidx.astype(np.int64)
        warm = self.uidx >= 0
        warm[warm] = model._history_len[self.uidx[warm]] > 0
        self.group = np.where(warm, WARM, GLOBAL).astype(np.int8)
        self.seen, self.seen_ranked = (None, None)
        if exclude_seen is not False:  # None: the data decides per category
            self.seen, self.seen_ranked = model._seen_matrices(
                rules.seen_types or ALL_TYPES, data_driven=exclude_seen is None
            )
        self._sim_rows: dict[int, Floats] = {}
        self.session = self._sessions(uids, session)
        self.codes = self._segments(uids, user_attributes)

    # -- paths ------------------------------------------------------------------------------
    def _sessions(self, uids: Ids, session: SessionItems | None) -> sp.csr_matrix:
        """Binary ``(n_rows, n_items)`` session items of cold rows (empty for the others)."""
        n = len(uids)
        empty = sp.csr_matrix((n, self.n_items), dtype=np.float32)
        if session is None or not type(self.model).session_aware:
            return empty
        cold = np.flatnonzero(self.group != WARM)
        lookup = self.model._item_lookup
        if isinstance(session, Mapping):
            lists = [list(session.get(str(uids[r]), ())) for r in cold.tolist()]
        else:
            if isinstance(session, str):
                raise TypeError("session_items must be a list of item IDs, not a single string")
            shared = list(session)
            lists = [shared] * len(cold)
        lengths = np.asarray([len(x) for x in lists], dtype=np.int64)
        flat = [str(item).strip() for one in lists for item in one]
        found = np.asarray(lookup.get_indexer(pd.Index(flat, dtype=object)), dtype=np.int64)
        rows = np.repeat(cold, lengths)
        known = found >= 0
        matrix = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float32), (rows[known], found[known])),
            shape=(n, self.n_items),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        has = np.diff(matrix.indptr) > 0
        self.group[has & (self.group != WARM)] = SESSION
        return matrix

    def _segments(self, uids: Ids, attributes: pd.DataFrame | None) -> npt.NDArray[np.int32]:
        cold = self.model.cold_start_
        n_attr = len(cold.attr_names)
        codes = np.full((len(uids), n_attr), -1, dtype=np.int32)
        if n_attr == 0:
            return codes
        rows = np.flatnonzero(self.group == GLOBAL)
        known = rows[self.uidx[rows] >= 0]
        codes[known] = cold.user_segments[self.uidx[known]]
        if attributes is not None and len(attributes) and rows.size:
            frame = attributes[~attributes.index.duplicated()]
            pos = frame.index.get_indexer(pd.Index(uids[rows], dtype=object))
            given = rows[pos >= 0]
            if given.size:
                codes[given] = cold.segment_codes(frame.iloc[pos[pos >= 0]])
        self.group[rows[(codes[rows] >= 0).any(axis=1)]] = SEGMENT
        return codes

    # -- candidates -------------------------------------------------------------------------
    def fetch(self, rows: Ints, depth: int) -> tuple[Ints, Floats]:
        """The ``depth`` best eligible items (and scores) of each row in ``rows``."""
        idx = np.full((len(rows), depth), -1, dtype=np.int64)
        scores = np.full((len(rows), depth), -np.inf, dtype=np.float32)
        model = self.model
        group = self.group[rows]
        for path in (WARM, SESSION, SEGMENT, GLOBAL):
            mine = np.flatnonzero(group == path)
            if mine.size == 0:
                continue
            sub = rows[mine]
            if path == WARM:

                def score(block: Ints) -> Floats:
                    return self._adjust(
                        placed_scores(model, np.asarray(model._score(block), dtype=np.float32))
                    )

                got = model._rank(
                    score, self.uidx[sub], depth, exclude=self.seen_ranked, allowed=self.allowed
                )
            elif path == SESSION:
                got = self._session_top(sub, depth)
            elif path == SEGMENT:
                combos, inverse = np.unique(self.codes[sub], axis=0, return_inverse=True)
                seg, _ = model.cold_start_.segment_scores(combos, model._cold_scores())
                top = self._top(self._adjust(seg), depth, None)
                got = (top[0][inverse.ravel()], top[1][inverse.ravel()])
            else:
                one = self._adjust(
                    np.asarray(model._cold_scores(), dtype=np.float32)[None, :].copy()
                )
                top = self._top(one, depth, None)
                got = (np.repeat(top[0], len(sub), axis=0), np.repeat(top[1], len(sub), axis=0))
            idx[mine], scores[mine] = got
        return idx, scores

    def _adjust(self, scores: Floats) -> Floats:
        if self.factor is not None:
            boost_scores(scores, self.factor)
        return scores

    def _top(
        self, scores: Floats, depth: int, exclude: sp.csr_matrix | None
    ) -> tuple[Ints, Floats]:
        """top_k in popularity-ranked column order, as ``Recommender._rank`` breaks ties."""
        order = self.model._tie_order
        excl = None
        if exclude is not None:
            excl = sp.csr_matrix(exclude[:, order])
        idx, top = top_k(
            np.ascontiguousarray(scores[:, order]),
            depth,
            exclude=excl,
            allowed=None if self.allowed is None else self.allowed[order],
        )
        idx = np.where(idx >= 0, order[np.maximum(idx, 0)], -1)
        return idx.astype(np.int64), top.astype(np.float32, copy=False)

    def _session_top(self, rows: Ints, depth: int) -> tuple[Ints, Floats]:
        idx = np.empty((len(rows), depth), dtype=np.int64)
        scores = np.empty((len(rows), depth), dtype=np.float32)
        for start in range(0, len(rows), _SESSION_BLOCK):
            part = rows[start : start + _SESSION_BLOCK]
            mine = self.session[part]
            items, sims = self._similarities(mine)
            block = np.asarray(mine[:, items] @ sims, dtype=np.float32)
            got = self._top(self._adjust(block), depth, mine)
            idx[start : start + len(part)], scores[start : start + len(part)] = got
        return idx, scores

    def _similarities(self, mine: sp.csr_matrix) -> tuple[Ints, Floats]:
        """Similarity rows of the session items of some rows; kept for the explanations
        (which need the same rows again) while they fit in ``_SIMILARITY_CACHE`` floats."""
        items = np.unique(mine.indices).astype(np.int64)
        known = np.asarray([int(i) in self._sim_rows for i in items.tolist()], dtype=bool)
        rows = np.empty((len(items), self.n_items), dtype=np.float32)
        if (~known).any():
            fresh = session_rows(self.model, items[~known])
            rows[~known] = fresh
            if (len(self._sim_rows) + len(fresh)) * self.n_items <= _SIMILARITY_CACHE:
                self._sim_rows.update(zip(items[~known].tolist(), fresh, strict=True))
        for pos in np.flatnonzero(known).tolist():  # loop over a block's session items
            rows[pos] = self._sim_rows[int(items[pos])]
        return items, rows

    # -- explanations -----------------------------------------------------------------------
    def reasons(self, idx: Ints, pinned: npt.NDArray[np.bool_]) -> Ids:
        model = self.model
        out = np.full(idx.shape, None, dtype=object)
        plain = np.where(pinned, -1, idx)
        for path in (WARM, SESSION, SEGMENT, GLOBAL):
            rows = np.flatnonzero(self.group == path)
            if rows.size == 0:
                continue
            items = plain[rows]
            if path == WARM:
                out[rows] = model._reasons(self.uidx[rows], self._as_neighbours(items))
            elif path == SESSION:
                out[rows] = self._session_reasons(rows, items)
            elif path == SEGMENT:
                combos, inverse = np.unique(self.codes[rows], axis=0, return_inverse=True)
                _, favoured = model.cold_start_.segment_scores(combos, model._cold_scores())
                hit = favoured[inverse.ravel()[:, None], np.maximum(items, 0)]
                out[rows] = np.where(hit, SEGMENT_REASON, self._global_reasons(items))
            else:
                out[rows] = self._global_reasons(items)
        out[pinned] = PROMOTED_REASON
        out[idx < 0] = None
        return out

    def _as_neighbours(self, items: Ints) -> Ints:
        """Placed new items are explained as their closest neighbour with events."""
        best = self.model.cold_start_.place_best
        if not type(self.model).places_new_items or (best < 0).all():
            return items
        swap = (items >= 0) & (best[np.maximum(items, 0)] >= 0)
        return np.where(swap, best[np.maximum(items, 0)], items)

    def _global_reasons(self, items: Ints) -> Ids:
        model = self.model
        safe = np.maximum(items, 0)
        category = model.item_categories_[safe]
        trending = model.cold_start_.trending[safe] & (category != "")
        text = np.char.add(TRENDING_PREFIX, category.astype(str)).astype(object)
        from tailorcast.models.base import COLD_START_REASON

        return np.where(trending, text, COLD_START_REASON).astype(object)

    def _session_reasons(self, rows: Ints, items: Ints) -> Ids:
        """ "because you viewed X": the session item most similar to each recommendation."""
        out = self._global_reasons(items)
        titles = self.model._item_labels
        for start in range(0, len(rows), _SESSION_BLOCK):
            part = slice(start, start + _SESSION_BLOCK)
            mine = self.session[rows[part]]
            cols, sims = self._similarities(mine)
            local = mine[:, cols]  # rows x session items (positions into cols)
            chosen = items[part]
            n, k = chosen.shape
            lens = np.diff(local.indptr)
            pair_row = np.repeat(np.arange(n), lens)
            pair_item = local.indices.astype(np.int64)
            # Every (row, slot, session item) triple: small, sessions are short.
            slot_rows = np.repeat(pair_row, k)
            slot = np.tile(np.arange(k), len(pair_row))
            sess = np.repeat(pair_item, k)
            target = chosen[slot_rows, slot]
            value = np.where(target >= 0, sims[sess, np.maximum(target, 0)], -np.inf)
            key = slot_rows * k + slot
            order = np.lexsort((cols[sess], -value, key))
            first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
            good = value[first] > 0
            cells = key[first][good]
            text = np.char.add(SESSION_PREFIX, titles[cols[sess[first][good]]]).astype(object)
            block = out[part].copy().ravel()
            block[cells] = text
            out[part] = block.reshape(n, k)
        return out


def recommend_lists(
    model: Recommender[Any],
    uids: Ids,
    k: int,
    *,
    rules: CompiledRules,
    allowed: npt.NDArray[np.bool_] | None,
    exclude_seen: bool | None,
    user_attributes: pd.DataFrame | None,
    session_items: SessionItems | None,
    explain: bool,
    package: Callable[[Ids, Ints, Floats, Ids], Recommendations],
) -> Recommendations:
    """See the module docstring; ``allowed`` merges the rules' mask and the call's."""
    call = _Call(model, uids, rules, allowed, exclude_seen, user_attributes, session_items)
    n = len(uids)
    p = len(call.pins)
    cap = rules.max_per_category
    codes = rules.category_codes
    width = k + p
    out_idx = np.full((n, width), -1, dtype=np.int64)
    out_scores = np.full((n, width), -np.inf, dtype=np.float32)
    out_pinned = np.zeros((n, width), dtype=bool)
    depth = max(1, min(call.eligible, k * _OVERFETCH if cap else k))
    # The most items a capped list can hold (no category: uncapped), so rows that cannot
    # fill up stop re-fetching at once.
    attainable = k
    if cap is not None and codes is not None:
        pool = np.ones(len(codes), bool) if call.allowed is None else call.allowed
        counts = np.bincount(codes[pool].astype(np.int64) + 1, minlength=1)
        attainable = min(k, int(counts[0]) + int(np.minimum(counts[1:], cap).sum()))
    todo = np.arange(n, dtype=np.int64)
    while todo.size:
        idx, scores = call.fetch(todo, depth)
        eligible = _pin_eligibility(call, todo)
        idx, scores, pinned = place_pins(idx, scores, call.pins, eligible)
        if cap is not None and codes is not None:
            keep = cap_per_category(idx, codes, cap, keep=pinned)
            order = np.argsort(~keep, axis=1, kind="stable")
            idx = np.where(keep, idx, -1)
            idx = np.take_along_axis(idx, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            pinned = np.take_along_axis(pinned, order, axis=1)
        got = min(width, idx.shape[1])
        filled = (idx[:, :got] >= 0).sum(axis=1) - pinned[:, :got].sum(axis=1)
        short = (filled < attainable) & (depth < call.eligible)
        done = ~short
        out_idx[todo[done], :got] = idx[done, :got]
        out_scores[todo[done], :got] = scores[done, :got]
        out_pinned[todo[done], :got] = pinned[done, :got]
        todo = todo[short]
        depth = min(call.eligible, depth * 2)
    # Pinned items sit in front; the list is k long in all (promotions take slots).
    idx, scores, pinned = out_idx[:, :k], out_scores[:, :k], out_pinned[:, :k]
    reasons = call.reasons(idx, pinned) if explain else np.full(idx.shape, None, dtype=object)
    return package(uids, idx, scores, reasons)


def _pin_eligibility(call: _Call, rows: Ints) -> npt.NDArray[np.bool_]:
    """``(len(rows), n_pins)``: the pinned item is not excluded for that customer."""
    pins = call.pins
    eligible = np.ones((len(rows), len(pins)), dtype=bool)
    if pins.size == 0:
        return eligible
    warm = np.flatnonzero(call.group[rows] == WARM)
    if warm.size and call.seen is not None:
        eligible[warm] = call.seen[call.uidx[rows[warm]]][:, pins].toarray() == 0
    session = np.flatnonzero(call.group[rows] == SESSION)
    if session.size:
        eligible[session] = call.session[rows[session]][:, pins].toarray() == 0
    return eligible
