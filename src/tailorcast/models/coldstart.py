"""What every model learns beside its own scores: the cold-start answers and a catalogue
snapshot.

Learned in ``Recommender.fit`` from the training view and saved with the model (``cs.*``
arrays in ``state.npz``), so a loaded model answers exactly as the fitted one:

- **item display data**: titles (``title`` or ``name`` column, else the ID) for reasons,
  price and availability at training time (the fallback when no fresh catalogue is given);
- **event types per history cell** (a bitmask over ``EVENT_TYPES``, computed with the
  history in ``base._common_state``), so "exclude only what the customer bought" is exact;
- **the repurchase default**: the shop's repeat share (:func:`~tailorcast.models.repeat.
  repeat_share`: rebuying occasions over all purchase occasions) and, per category, the same
  share smoothed towards the shop's with ``_REBUY_PRIOR`` pseudo-occasions. Seen items of a
  category whose share reaches 0.2 stay recommendable by default (groceries), the rest are
  left out (fashion); a shop without categories decides as a whole;
- **segments**: customers' attributes (categorical columns as they are, numeric ones in
  quantile bins) and how many customers of each segment chose each item. A new customer
  with known attributes gets items scored by naive Bayes: ``log(pop_i + 1)`` plus, per
  attribute, the log lift ``P(segment | item) / P(segment)`` (item shares smoothed towards
  the segment's size with ``_PRIOR`` pseudo-customers), reason "popular with customers like
  you" where the lifts favour the item;
- **trending items**: significantly more events in the last ``_TREND_DAYS`` days than their
  long-run share predicts (one-sided binomial test), reason "trending in <category>";
- **placement of items without events**: their ``_NEIGHBOURS`` most content-similar items
  with events (:func:`~tailorcast.models.content.item_vectors`); a collaborative model
  scores a new item as the similarity-weighted mean of those neighbours' scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from tailorcast.catalog import available_flags
from tailorcast.data.interactions import Interactions

__all__ = [
    "PROMOTED_REASON",
    "SEGMENT_REASON",
    "SESSION_PREFIX",
    "TRENDING_PREFIX",
    "ColdStart",
    "cold_state",
]

SEGMENT_REASON: Final = "popular with customers like you"
TRENDING_PREFIX: Final = "trending in "
SESSION_PREFIX: Final = "because you viewed "
PROMOTED_REASON: Final = "promoted"
#: Shops whose repeat share reaches this keep bought items recommendable by default (the
#: same threshold as RepeatConfig.repurchase_threshold).
REPURCHASE_THRESHOLD: Final = 0.2
PREFIX: Final = "cs."
#: A categorical attribute with more distinct values than this is an identifier, not a
#: segment (signup dates, zip codes).
_MAX_SEGMENT_VALUES: Final = 50
_NUMERIC_BINS: Final = 5
_PRIOR: Final = 5.0
_TREND_DAYS: Final = 7.0
_TREND_ALPHA: Final = 1e-3
_NEIGHBOURS: Final = 10
_PLACE_BLOCK: Final = 512
_DAY_NS: Final = 86_400 * 10**9
_REBUY_PRIOR: Final = 20.0
_TITLE_COLUMNS: Final = ("title", "name")

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def cold_state(
    inter: Interactions, matrix: sp.csr_matrix, *, place_new_items: bool
) -> dict[str, npt.NDArray[Any]]:
    """The ``cs.*`` arrays learned from ``inter`` (``matrix``: its canonical CSR)."""
    n_items = inter.n_items
    items = inter.items
    titles = _titles(items, inter.item_ids)
    price = (
        pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        if "price" in items.columns
        else np.full(n_items, np.nan)
    )
    available = available_flags(items["available"]) if "available" in items.columns else None
    share, rebuyable = _rebuying(inter)
    state: dict[str, npt.NDArray[Any]] = {
        "item_titles": _unicode(titles),
        "item_price": price.astype(np.float64),
        "item_available": np.ones(n_items, bool) if available is None else available,
        "repeat_share": np.asarray([share], dtype=np.float64),
        "item_rebuyable": rebuyable,
        "item_trending": _trending(inter),
        **_segments(inter, matrix),
        **_placement(inter, matrix, place_new_items),
    }
    return {PREFIX + key: value for key, value in state.items()}


@dataclass(frozen=True, eq=False)
class ColdStart:
    """The ``cs.*`` state of a fitted model, with the lookups derived from it."""

    titles: npt.NDArray[np.str_]
    price: npt.NDArray[np.float64]
    available: npt.NDArray[np.bool_]
    history_types: npt.NDArray[np.uint8]
    repeat_share: float
    rebuyable: npt.NDArray[np.bool_]
    """Per item: seen, it stays recommendable by default (its category is rebought)."""
    trending: npt.NDArray[np.bool_]
    attr_names: list[str]
    attr_offsets: Ints
    seg_values: npt.NDArray[np.str_]
    seg_edges: npt.NDArray[np.float64]
    seg_sizes: npt.NDArray[np.float64]
    seg_counts: sp.csr_matrix
    user_segments: npt.NDArray[np.int32]
    placement: sp.csr_matrix
    place_best: Ints

    @property
    def allows_repurchase(self) -> bool:
        return self.repeat_share >= REPURCHASE_THRESHOLD

    @property
    def new_items(self) -> Ints:
        """Items placed by content (rows of ``placement`` with neighbours)."""
        return np.flatnonzero(np.diff(self.placement.indptr) > 0).astype(np.int64)

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, npt.NDArray[Any]],
        item_ids: npt.NDArray[np.object_],
        stage: npt.NDArray[np.int8],
        n_users: int,
    ) -> ColdStart:
        """Rebuild from saved arrays; a model saved without them (older versions) gets
        neutral defaults: IDs as titles, no segments, trends or placement."""
        n_items = len(item_ids)

        def get(key: str, default: npt.NDArray[Any]) -> npt.NDArray[Any]:
            value = state.get(PREFIX + key)
            return default if value is None else np.asarray(value)

        no_str = np.zeros(0, dtype="<U1")
        titles = get("item_titles", _unicode(np.asarray(item_ids, dtype=object)))
        types = get("history_types", (1 << stage.astype(np.int64)).astype(np.uint8))
        offsets = get("attr_offsets", np.zeros(1, np.int64)).astype(np.int64)
        n_seg = int(offsets[-1])
        counts = sp.csr_matrix(
            (
                get("seg_data", np.zeros(0, np.float32)).astype(np.float32),
                (
                    get("seg_rows", np.zeros(0, np.int32)).astype(np.int64),
                    get("seg_cols", np.zeros(0, np.int32)).astype(np.int64),
                ),
            ),
            shape=(n_seg, n_items),
        )
        n_attr = len(offsets) - 1
        placement = sp.csr_matrix(
            (
                get("place_weight", np.zeros(0, np.float32)).astype(np.float32),
                get("place_indices", np.zeros(0, np.int32)).astype(np.int32),
                get("place_indptr", np.zeros(n_items + 1, np.int64)).astype(np.int64),
            ),
            shape=(n_items, n_items),
        )
        out = cls(
            titles=titles.astype(str),
            price=get("item_price", np.full(n_items, np.nan)).astype(np.float64),
            available=get("item_available", np.ones(n_items, bool)).astype(bool),
            history_types=types.astype(np.uint8),
            repeat_share=float(get("repeat_share", np.zeros(1))[0]),
            rebuyable=get(
                "item_rebuyable",
                np.full(
                    n_items, float(get("repeat_share", np.zeros(1))[0]) >= REPURCHASE_THRESHOLD
                ),
            ).astype(bool),
            trending=get("item_trending", np.zeros(n_items, bool)).astype(bool),
            attr_names=[str(x) for x in get("attr_names", no_str).tolist()],
            attr_offsets=offsets,
            seg_values=get("seg_values", no_str).astype(str),
            seg_edges=get("seg_edges", np.zeros(0)).astype(np.float64),
            seg_sizes=get("seg_sizes", np.zeros(0)).astype(np.float64),
            seg_counts=counts,
            user_segments=get("user_segments", np.full((n_users, 0), -1, np.int32)).astype(
                np.int32
            ),
            placement=placement,
            place_best=get("place_best", np.full(n_items, -1, np.int64)).astype(np.int64),
        )
        shapes_ok = (
            out.titles.shape == (n_items,)
            and out.price.shape == (n_items,)
            and out.available.shape == (n_items,)
            and out.trending.shape == (n_items,)
            and out.rebuyable.shape == (n_items,)
            and out.history_types.shape == stage.shape
            and out.user_segments.shape == (n_users, n_attr)
            and out.seg_values.shape == (n_seg,) == out.seg_sizes.shape
            and out.place_best.shape == (n_items,)
        )
        if not shapes_ok:
            raise ValueError("inconsistent cold-start arrays in the saved state")
        return out

    # -- segments ---------------------------------------------------------------------------
    def segment_codes(self, attributes: pd.DataFrame) -> npt.NDArray[np.int32]:
        """``(len(attributes), n_attr)`` global segment codes of customers described by a
        users-table frame (-1 where the attribute is missing or its value unknown)."""
        n = len(attributes)
        out = np.full((n, len(self.attr_names)), -1, dtype=np.int32)
        for j, name in enumerate(self.attr_names):
            if name not in attributes.columns:
                continue
            lo, hi = int(self.attr_offsets[j]), int(self.attr_offsets[j + 1])
            column = attributes[name]
            edges = self.seg_edges[lo:hi]
            if np.isnan(edges).all():  # categorical: match the value's text
                text = _texts(column)
                found = pd.Index(self.seg_values[lo:hi]).get_indexer(pd.Index(text, dtype=object))
                out[:, j] = np.where((found >= 0) & column.notna().to_numpy(), found + lo, -1)
            else:
                values = pd.to_numeric(column, errors="coerce").to_numpy(
                    np.float64, na_value=np.nan
                )
                code = np.searchsorted(edges[:-1], values, side="right")
                out[:, j] = np.where(np.isfinite(values), code + lo, -1)
        return out

    def segment_scores(
        self, combos: npt.NDArray[np.int32], popularity: Floats
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Naive-Bayes scores ``(len(combos), n_items)`` of segment combinations (rows of
        :meth:`segment_codes`), and where the segments favour the item (the lift > 1)."""
        pop = np.asarray(popularity, dtype=np.float64)
        scores = np.repeat(np.log1p(pop)[None, :], len(combos), axis=0)
        lift = np.zeros_like(scores)
        for j in range(len(self.attr_names)):
            lo, hi = int(self.attr_offsets[j]), int(self.attr_offsets[j + 1])
            sizes = self.seg_sizes[lo:hi]
            total = sizes.sum()
            if total <= 0:
                continue
            codes = combos[:, j]
            rows = np.flatnonzero(codes >= 0)
            if rows.size == 0:
                continue
            known = np.asarray(self.seg_counts[lo:hi].sum(axis=0), dtype=np.float64).ravel()
            prior = sizes[codes[rows] - lo] / total
            counts = self.seg_counts[codes[rows]].toarray().astype(np.float64)
            share = (counts + _PRIOR * prior[:, None]) / (known[None, :] + _PRIOR)
            lift[rows] += np.log(share) - np.log(prior)[:, None]
        scores += lift
        return scores.astype(np.float32), lift > 1e-9


# -- learning -----------------------------------------------------------------------------------
def _titles(items: pd.DataFrame, item_ids: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    out = np.asarray([str(x) for x in item_ids.tolist()], dtype=object)
    for column in _TITLE_COLUMNS:
        if column in items.columns:
            values = items[column].astype(object).where(items[column].notna(), None).tolist()
            text = np.asarray(["" if v is None else str(v).strip() for v in values], dtype=object)
            has = text != ""
            out[has] = text[has]
            break
    return out


def _rebuying(inter: Interactions) -> tuple[float, npt.NDArray[np.bool_]]:
    """The shop's repeat share, and per item whether its category's (smoothed) share reaches
    the threshold."""
    # repeat.py's own occasion helpers (repeat imports base, base imports us): one pass gives
    # the shop's share exactly as repeat_share() computes it, and the per-category counts.
    from tailorcast.models.repeat import _occasions, _purchases

    n_items = inter.n_items
    keys, ts, _ = _purchases(inter, "purchase")
    occ = _occasions(keys, ts, _DAY_NS)  # one occasion per customer, item and day
    share = float(np.count_nonzero(~occ.first)) / len(occ.key) if len(occ.key) else 0.0
    allowed = share >= REPURCHASE_THRESHOLD
    if "category" not in inter.items.columns:
        return share, np.full(n_items, allowed)
    column = inter.items["category"]
    codes, uniques = pd.factorize(column.astype(object).where(column.notna(), None))
    codes = np.asarray(codes, dtype=np.int64)
    cat = codes[occ.key % max(n_items, 1)]
    known = cat >= 0
    n_cat = len(uniques)
    total = np.bincount(cat[known], minlength=n_cat).astype(np.float64)
    rebuys = np.bincount(
        cat[known], weights=(~occ.first[known]).astype(np.float64), minlength=n_cat
    )
    smoothed = (rebuys + _REBUY_PRIOR * share) / (total + _REBUY_PRIOR)
    per_item = np.full(n_items, allowed)
    has = codes >= 0
    per_item[has] = smoothed[codes[has]] >= REPURCHASE_THRESHOLD
    return share, per_item


def _trending(inter: Interactions) -> npt.NDArray[np.bool_]:
    from scipy.stats import binom

    n_items = inter.n_items
    events = inter.events
    out = np.zeros(n_items, dtype=bool)
    if len(events) == 0:
        return out
    ts = events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)
    as_of = inter.config.as_of
    ref = int(np.datetime64(as_of, "ns").view(np.int64)) if as_of else int(ts.max())
    recent = ts > ref - int(_TREND_DAYS * _DAY_NS)
    items = events["item_idx"].to_numpy(np.int64)
    total = np.bincount(items, minlength=n_items)
    now = np.bincount(items[recent], minlength=n_items)
    p = float(recent.mean())
    if not 0.0 < p < 1.0:
        return out
    candidate = (now >= 3) & (now >= 2.0 * p * total)
    if candidate.any():
        tail = binom.sf(now[candidate] - 1, total[candidate], p)
        out[np.flatnonzero(candidate)[tail < _TREND_ALPHA]] = True
    return out


def _segments(inter: Interactions, matrix: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    users = inter.users
    n_users = matrix.shape[0]
    names: list[str] = []
    values: list[str] = []
    edges: list[float] = []
    offsets = [0]
    codes: list[npt.NDArray[np.int32]] = []
    active = np.diff(matrix.indptr) > 0
    for name in users.columns:
        column = users[name]
        present = column.notna().to_numpy()
        if present.sum() < 2:
            continue
        numeric = pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
            column.dtype
        )
        distinct = column[present].nunique()
        lo = offsets[-1]
        if numeric and distinct > _NUMERIC_BINS:
            x = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            basis = x[np.isfinite(x) & active]
            if basis.size < _NUMERIC_BINS:
                continue
            cuts = np.unique(np.quantile(basis, np.linspace(0, 1, _NUMERIC_BINS + 1)[1:-1]))
            upper = np.r_[cuts, np.inf]
            code = np.searchsorted(cuts, x, side="right")
            codes.append(np.where(np.isfinite(x), code + lo, -1).astype(np.int32))
            values.extend([""] * len(upper))
            edges.extend(upper.tolist())
        elif 2 <= distinct <= _MAX_SEGMENT_VALUES:
            text = pd.Series(_texts(column), dtype=object).where(present, None)
            found, uniques = pd.factorize(text, sort=True)
            codes.append(np.where(found >= 0, found + lo, -1).astype(np.int32))
            values.extend(str(u) for u in uniques.tolist())
            edges.extend([np.nan] * len(uniques))
        else:
            continue
        names.append(str(name))
        offsets.append(len(values))
    user_segments = np.stack(codes, axis=1) if codes else np.full((n_users, 0), -1, dtype=np.int32)
    n_seg = len(values)
    member = user_segments >= 0
    rows = np.repeat(np.arange(n_users), member.sum(axis=1))
    onehot = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, user_segments[member])), shape=(n_users, n_seg)
    )
    binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    counts = sp.coo_matrix(onehot.T @ binary)
    sizes = np.asarray(onehot.T @ active.astype(np.float32), dtype=np.float64).ravel()
    return {
        "attr_names": np.asarray(names, dtype=str) if names else np.zeros(0, "<U1"),
        "attr_offsets": np.asarray(offsets, dtype=np.int64),
        "seg_values": np.asarray(values, dtype=str) if values else np.zeros(0, "<U1"),
        "seg_edges": np.asarray(edges, dtype=np.float64),
        "seg_sizes": sizes,
        "seg_rows": counts.row.astype(np.int32),
        "seg_cols": counts.col.astype(np.int32),
        "seg_data": counts.data.astype(np.float32),
        "user_segments": user_segments.astype(np.int32),
    }


def _placement(
    inter: Interactions, matrix: sp.csr_matrix, enabled: bool
) -> dict[str, npt.NDArray[Any]]:
    """Each item without events: its most content-similar items with events and the
    similarity weights (summing to 1)."""
    n_items = matrix.shape[1]
    empty = {
        "place_indptr": np.zeros(n_items + 1, np.int64),
        "place_indices": np.zeros(0, np.int32),
        "place_weight": np.zeros(0, np.float32),
        "place_best": np.full(n_items, -1, np.int64),
    }
    has_events = np.bincount(matrix.indices, minlength=n_items) > 0
    new = np.flatnonzero(~has_events)
    old = np.flatnonzero(has_events)
    if not enabled or new.size == 0 or old.size == 0:
        return empty
    from tailorcast.models.content import item_vectors  # content imports base

    vectors, names = item_vectors(inter.items)
    if names and names[0].startswith("item_id="):  # no attributes: nothing to place by
        return empty
    by_feature = sp.csr_matrix(vectors[old].T)
    m = min(_NEIGHBOURS, old.size)
    rows: list[Ints] = []
    cols: list[Ints] = []
    weights: list[npt.NDArray[np.float64]] = []
    for start in range(0, new.size, _PLACE_BLOCK):
        block = new[start : start + _PLACE_BLOCK]
        sims = np.asarray((vectors[block] @ by_feature).toarray(), dtype=np.float64)
        top = (
            np.argpartition(-sims, m - 1, axis=1)[:, :m]
            if m < old.size
            else np.tile(np.arange(old.size), (len(block), 1))
        )
        w = np.take_along_axis(sims, top, axis=1)
        # Strongest first (ties to the lower item index) so the first is the best neighbour.
        by_index = np.argsort(top, axis=1)
        top, w = np.take_along_axis(top, by_index, axis=1), np.take_along_axis(w, by_index, axis=1)
        order = np.argsort(-w, axis=1, kind="stable")
        top, w = np.take_along_axis(top, order, axis=1), np.take_along_axis(w, order, axis=1)
        keep = w > 1e-9
        rows.append(np.repeat(block, keep.sum(axis=1)))
        cols.append(old[top[keep]])
        weights.append(w[keep])
    row, col, weight = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    sums = np.bincount(row, weights=weight, minlength=n_items)
    weight = weight / sums[row]
    place = sp.csr_matrix((weight.astype(np.float32), (row, col)), shape=(n_items, n_items))
    best = np.full(n_items, -1, np.int64)
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    best[row[first]] = col[first]
    return {
        "place_indptr": place.indptr.astype(np.int64),
        "place_indices": place.indices.astype(np.int32),
        "place_weight": place.data.astype(np.float32),
        "place_best": best,
    }


def _texts(column: pd.Series) -> npt.NDArray[np.object_]:
    """Segment values as text, vectorised: booleans as true/false, whole floats without
    '.0' (an age of 30 read as 30.0 is the segment "30"), the rest stripped. Missing values
    come out as text too; callers mask them."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return np.where(column.fillna(False).to_numpy(bool), "true", "false").astype(object)
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        whole = np.isfinite(values) & (values == np.round(values))
        text = column.astype(str).to_numpy(dtype=object)
        text[whole] = values[whole].astype(np.int64).astype(str).astype(object)
        return text
    # Object columns may mix booleans into text: "True"/"False" read as true/false.
    stripped = column.astype(str).str.strip().replace({"True": "true", "False": "false"})
    return np.asarray(stripped.to_numpy(dtype=object), dtype=object)


def _unicode(values: npt.NDArray[np.object_]) -> npt.NDArray[np.str_]:
    items = values.tolist()
    return np.asarray(items, dtype=str) if items else np.zeros(0, dtype="<U1")
