"""Precomputed candidates: every customer's best items, built in batch for one model version.

Scoring one customer through the model's general ``recommend`` (built for many customers at
once, with rules, pins, caps and cold-start paths) costs milliseconds of fixed overhead per
call, while the same work in batch costs a fraction of a millisecond per customer. So when a
model version is loaded the server ranks every customer once in batch (the model's own
``recommend``, seen items excluded as usual, reasons included) and keeps each customer's
``depth`` best items (Gorse keeps a similar per-user cache of candidates). A request is then
answered by filtering that list with the call's rules:

- the candidates are ranked *without* the catalog's availability or the call's filters, so any
  rule that only forbids items (availability, categories, prices, excluded items, a
  whitelist) is applied per request by the compiled ``allowed`` mask, and the first ``k``
  survivors are exactly the model's top ``k`` under that rule (same scores, same tie order);
- a request the table cannot answer exactly goes to full scoring: rules that change scores or
  order (boosts, pins, category caps, another seen-item rule), filters that leave fewer than
  ``k`` of the candidates, and reasons beyond the explained depth;
- customers with events newer than the model never use it (the engine folds their events in
  by full scoring), so a posted event changes the very next answer; a new model version
  starts without a table (full scoring) until its own is built.

The table is small: item positions (int32) and scores (float32) per customer, and reasons as
codes into one list of distinct texts (customers share most of their reason texts).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.models.base import Recommender
from tailorcast.rules import CompiledRules

__all__ = ["COLD_ID", "DEPTH", "CandidateTable", "build_candidates"]

logger = logging.getLogger(__name__)

#: Candidates kept per customer: the default list (10) plus room for filters to drop some.
DEPTH: Final = 20
#: Customers ranked per batch call (bounded memory; a stop check between chunks).
_CHUNK: Final = 4096
#: An ID no model knows: the candidates of every customer without trained history.
COLD_ID: Final = "\x00tailorcast-cold-start"

Row = dict[str, Any]


@dataclass(frozen=True)
class CandidateTable:
    """One model version's precomputed candidates (see the module docstring)."""

    version: str
    rules: CompiledRules
    """The rules the candidates were ranked under (``allowed`` left out)."""
    rows: dict[str, int]
    """Customer ID (as the model knows it) -> row; customers without history are absent."""
    items: npt.NDArray[np.int32]
    """``(n_rows + 1, depth)`` item positions best first, -1 padding; the last row is the
    cold-start list of customers the model does not know."""
    scores: npt.NDArray[np.float32]
    reason_codes: npt.NDArray[np.int32]
    """Codes into ``reasons`` (-1: no reason)."""
    reasons: tuple[str, ...]
    item_ids: tuple[str, ...]

    def answer(
        self, user: str, known: bool, k: int, rules: CompiledRules, explain: bool
    ) -> list[Row] | None:
        """The top ``k`` rows for ``user`` under ``rules``, or None when only full scoring
        can answer exactly. ``known``: the model has the customer (with or without
        history)."""
        if not self.compatible(rules):
            return None
        row = self.rows.get(user)
        if row is None:
            if known:  # in the model without history: another cold-start path
                return None
            row = len(self.items) - 1
        cand = self.items[row]
        keep = cand >= 0
        if rules.allowed is not None:
            keep &= rules.allowed[np.maximum(cand, 0)]
        pos = np.flatnonzero(keep)[:k]
        # A short list is exact only when the candidates hold every eligible item.
        if len(pos) < k and cand[-1] >= 0:
            return None
        scores = self.scores[row, pos].tolist()
        items = cand[pos].tolist()
        ids = self.item_ids
        if not explain:
            return [
                {"item_id": ids[i], "rank": r + 1, "score": s, "reason": None}
                for r, (i, s) in enumerate(zip(items, scores, strict=True))
            ]
        codes = self.reason_codes[row, pos].tolist()
        texts = self.reasons
        return [
            {
                "item_id": ids[i],
                "rank": r + 1,
                "score": s,
                "reason": texts[c] if c >= 0 else None,
            }
            for r, (i, s, c) in enumerate(zip(items, scores, codes, strict=True))
        ]

    def compatible(self, rules: CompiledRules) -> bool:
        """``rules`` only forbid items on top of the ones the table was ranked under."""
        base = self.rules
        return (
            rules.factor is None
            and rules.pinned.size == 0
            and rules.max_per_category is None
            and rules.exclude_seen == base.exclude_seen
            and rules.seen_types == base.seen_types
        )


def build_candidates(
    model: Recommender[Any],
    version: str,
    rules: CompiledRules,
    *,
    depth: int = DEPTH,
    alive: Callable[[], bool] = lambda: True,
) -> CandidateTable | None:
    """Rank every customer with history (and one unknown customer) under ``rules`` without
    their ``allowed`` mask. None when ``alive()`` turns False (the version was replaced)."""
    start = time.perf_counter()
    base = dataclasses.replace(rules, allowed=None)
    warm = np.flatnonzero(np.asarray(model._history_len) > 0)
    ids = np.asarray(model.user_ids_, dtype=object)[warm]
    n_items = len(model.item_ids_)
    depth = max(1, min(depth, n_items))
    users = np.concatenate([ids, np.asarray([COLD_ID], dtype=object)])
    items = np.full((len(users), depth), -1, dtype=np.int32)
    scores = np.full((len(users), depth), np.nan, dtype=np.float32)
    codes = np.full((len(users), depth), -1, dtype=np.int32)
    texts: dict[str, int] = {}
    lookup = model._item_lookup
    for lo in range(0, len(users), _CHUNK):
        if not alive():
            return None
        part = users[lo : lo + _CHUNK]
        recs = model.recommend(part, depth, filters=base, explain=True)
        flat = recs.item_ids.ravel()
        pos = np.asarray(lookup.get_indexer(pd.Index(flat, dtype=object)), dtype=np.int64)
        pos[pd.isna(flat)] = -1
        items[lo : lo + len(part)] = pos.reshape(len(part), depth)
        scores[lo : lo + len(part)] = recs.scores
        # Reason texts repeat a lot within and across customers: keep each once.
        local, uniques = pd.factorize(recs.reasons.ravel(), use_na_sentinel=True)
        glob = np.asarray([texts.setdefault(str(t), len(texts)) for t in uniques], np.int32)
        mapped = np.where(local >= 0, glob[np.maximum(local, 0)], -1)
        codes[lo : lo + len(part)] = mapped.reshape(len(part), depth)
    logger.info(
        "candidates for %d customers of model %s in %.1f s",
        len(ids),
        version,
        time.perf_counter() - start,
    )
    return CandidateTable(
        version=version,
        rules=base,
        rows={str(u): i for i, u in enumerate(ids.tolist())},
        items=items,
        scores=scores,
        reason_codes=codes,
        reasons=tuple(texts),
        item_ids=tuple(str(x) for x in np.asarray(model.item_ids_).tolist()),
    )
