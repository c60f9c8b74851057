"""The server's live catalog: availability, candidate filters and products newer than the model.

Products posted after the last training are not in the model's vocabulary. The catalog keeps
a content index (:class:`~tailorcast.serving.online.ContentIndex`) over every product it
knows, rebuilt when products change, so a new product can be found by ``similar`` and can
enter a customer's list when it closely resembles what they chose. Unavailable products are
never recommended.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.catalog import Catalog
from tailorcast.errors import DataError, NotFoundError
from tailorcast.rules import CompiledRules, Rules
from tailorcast.serving.online import (
    NEW_ITEM_MIN_SIMILARITY,
    ContentIndex,
    OnlineModel,
    Overlay,
    Row,
)
from tailorcast.serving.state import normalise_catalog

__all__ = ["Allowed", "CatalogState"]

_MAX_ID: Final = 256
_DEFAULT_RULES: Final = Rules()


@dataclass(frozen=True)
class Allowed:
    """Candidate restrictions for one request: a whitelist (None: all) and a blacklist."""

    items: list[str] | None
    exclude: list[str] | None
    new_ok: npt.NDArray[np.bool_] | None = None


class CatalogState:
    """Thread-safe; readers get consistent snapshots (frames are replaced, never mutated)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frame = pd.DataFrame(
            {"available": pd.Series(dtype=bool)}, index=pd.Index([], name="item_id")
        )
        self._index: ContentIndex | None = None
        self._index_for: int = -1
        self._version = 0
        self._model_items: pd.Index = pd.Index([], dtype=object)
        self._categories = pd.Series(dtype=object)
        self._compiled: CompiledRules | None = None
        self._compiled_for: tuple[str, int] = ("", -1)
        self._rules_catalog: Catalog | None = None
        self._rules_catalog_for = -1
        self._allowed: Allowed | None = None
        self._allowed_for = -1
        self._new_pos = np.zeros(0, np.int64)
        self._new_for: tuple[str, int] = ("", -1)
        self._new_ids: list[str] = []
        self._new_ids_for: tuple[str, int] = ("", -1)
        self._model_key = ""

    # -- updates ----------------------------------------------------------------------------
    def replace(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self.frame = self._with_model_items(frame)
            self._version += 1

    def attach(self, state: OnlineModel) -> None:
        """A new model version: every product it knows is in the catalog."""
        model = state.model
        with self._lock:
            self._model_items = pd.Index(model.item_ids_, dtype=object)
            self._categories = pd.Series(model.item_categories_, index=self._model_items)
            self._model_key = state.version
            self.frame = self._with_model_items(self.frame)
            self._version += 1

    def _with_model_items(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = self._model_items.difference(frame.index)
        if len(missing) == 0:
            return frame
        extra = pd.DataFrame(
            {"category": self._categories.loc[missing].to_numpy(), "available": True},
            index=pd.Index(missing, name="item_id"),
        )
        return pd.concat([frame, extra]) if len(frame) else extra

    def validate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Product rows as stored: ``item_id`` required; ``price`` a number >= 0;
        ``available`` a boolean; null fields left out (unchanged). Refuses the request at the
        first bad row (names it)."""
        clean = []
        for i, row in enumerate(rows):
            item = row.get("item_id")
            if not isinstance(item, str | int) or not str(item).strip():
                raise DataError("missing item_id", source="request", row=i, column="item_id")
            if len(str(item).strip()) > _MAX_ID:
                raise DataError("item_id too long", source="request", row=i, column="item_id")
            # A field sent as null is not being changed (an upsert touches what it names).
            out = {k: v for k, v in row.items() if v is not None}
            out["item_id"] = str(item).strip()
            price = row.get("price")
            if price is not None:
                if isinstance(price, bool) or not isinstance(price, int | float | str):
                    raise DataError(
                        "price is not a number", source="request", row=i, column="price"
                    )
                try:
                    value = float(price)
                except ValueError:
                    raise DataError(
                        "price is not a number", source="request", row=i, column="price"
                    ) from None
                if not math.isfinite(value) or value < 0:
                    raise DataError(
                        "price must be a finite number >= 0",
                        source="request",
                        row=i,
                        column="price",
                    )
                out["price"] = value
            if "available" in row and not isinstance(row["available"], bool):
                raise DataError(
                    "available must be true or false", source="request", row=i, column="available"
                )
            clean.append(out)
        return clean

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        update = normalise_catalog(pd.DataFrame(rows).drop_duplicates("item_id", keep="last"))
        given = {c for row in rows for c in row} - {"item_id"}
        if "available" not in given:
            update = update.drop(columns=["available"])
        with self._lock:
            frame = self.frame
            for col in update.columns:
                if col not in frame.columns:
                    frame = frame.assign(**{col: None})
            new_ids = update.index.difference(frame.index)
            if len(new_ids):
                fresh = pd.DataFrame(index=pd.Index(new_ids, name="item_id"), columns=frame.columns)
                fresh["available"] = True
                frame = pd.concat([frame, fresh])
            else:
                frame = frame.copy()
            frame.loc[update.index, list(update.columns)] = update.to_numpy()
            self.frame = frame
            self._version += 1

    # -- reading ------------------------------------------------------------------------------
    def label(self, item: str) -> str:
        """How reasons name a product: its title when the catalog has one, else its ID."""
        frame = self.frame
        if "title" in frame.columns and item in frame.index:
            title = frame.at[item, "title"]
            if isinstance(title, str) and title.strip():
                return title.strip()
        return item

    def knows(self, item: str, state: OnlineModel | None) -> bool:
        return item in self.frame.index or (state is not None and item in state.model._item_lookup)

    def _content(self) -> ContentIndex:
        with self._lock:
            if self._index is None or self._index_for != self._version:
                frame = self.frame.drop(columns=["available"])
                self._index = ContentIndex(frame)
                self._index_for = self._version
            return self._index

    def compiled(self, state: OnlineModel, rules: Rules | None) -> CompiledRules:
        """``rules`` (default: :class:`Rules()`, which hides unavailable products) compiled
        for the model over the live catalog; the default is cached per model and catalog."""
        default = rules is None or rules == _DEFAULT_RULES
        key = (state.version, self._version)
        with self._lock:
            if default and self._compiled_for == key and self._compiled is not None:
                return self._compiled
            version = self._version
            if self._rules_catalog is None or self._rules_catalog_for != version:
                self._rules_catalog = Catalog.from_frame(self.frame)
                self._rules_catalog_for = version
            live = self._rules_catalog
        out = (rules or _DEFAULT_RULES).compile(state.model, live)
        if default:
            with self._lock:
                self._compiled, self._compiled_for = out, (state.version, version)
        return out

    def candidates(self, rules: Rules | None) -> Allowed:
        """The same rules for products the model does not know (it cannot compile them)."""
        default = rules is None or rules == _DEFAULT_RULES
        rules = rules or _DEFAULT_RULES
        with self._lock:
            frame, version = self.frame, self._version
            if default and self._allowed_for == version and self._allowed is not None:
                return self._allowed
        keep = frame["available"].to_numpy(dtype=bool) if rules.available_only else None
        mask = _rule_mask(frame, rules)
        keep = mask if keep is None else keep & mask
        exclude = [str(x) for x in rules.exclude_items]
        items = None if rules.items is None else [str(x) for x in rules.items]
        out = Allowed(items, exclude or None, keep)
        if default:
            with self._lock:
                self._allowed, self._allowed_for = out, version
        return out

    def _new_positions(self, state: OnlineModel) -> npt.NDArray[np.int64]:
        """Rows of the catalog frame the model does not know (cached per version pair)."""
        key = (state.version, self._version)
        with self._lock:
            if self._new_for != key:
                known = state.model._item_lookup.get_indexer(self.frame.index)
                self._new_pos = np.flatnonzero(np.asarray(known) < 0).astype(np.int64)
                self._new_for = key
            return self._new_pos

    def _new_items(self, state: OnlineModel, rules: Rules | None) -> list[str]:
        positions = self._new_positions(state)
        if positions.size == 0:
            return []
        default = rules is None or rules == _DEFAULT_RULES
        key = (state.version, self._version)
        if default and self._new_ids_for == key:
            return self._new_ids
        ids = self._filter_new(positions, rules)
        if default:
            self._new_ids, self._new_ids_for = ids, key
        return ids

    def _filter_new(self, positions: npt.NDArray[np.int64], rules: Rules | None) -> list[str]:
        allowed = self.candidates(rules)
        frame = self.frame
        if allowed.new_ok is not None and len(allowed.new_ok) == len(frame):
            positions = positions[allowed.new_ok[positions]]
        ids = [str(x) for x in frame.index[positions]]
        if allowed.items is not None:
            ok = set(allowed.items)
            ids = [x for x in ids if x in ok]
        if allowed.exclude:
            banned = set(allowed.exclude)
            ids = [x for x in ids if x not in banned]
        return ids

    def with_new_items(
        self,
        state: OnlineModel,
        rows: list[Row],
        target: str,
        overlay: Overlay | None,
        k: int,
        rules: Rules | None,
    ) -> list[Row]:
        """Insert products newer than the model that resemble the customer's history."""
        new = self._new_items(state, rules)
        if not new:
            return rows
        history, weights = _history(state, target, overlay)
        if not history:
            return rows
        seen = set(history)
        new = [x for x in new if x not in seen]
        matches = self._content().affinity(history, weights, new, NEW_ITEM_MIN_SIMILARITY)
        extra = [
            {
                "item_id": new[j],
                "score": aff,
                "reason": f"new in the shop, like {self.label(history[b])}",
            }
            for j, aff, b in matches[: max(1, k // 5)]
        ]
        return _interleave(rows, extra, k)

    def similar(self, state: OnlineModel, item: str, k: int) -> list[Row]:
        model = state.model
        frame = self.frame
        available = frame["available"].to_numpy(dtype=bool)
        if item in model._item_lookup:
            unavailable = set(frame.index[~available])
            wide = min(model.n_items - 1, k + len(unavailable))
            if wide < 1:
                return []
            recs = model.similar_items([item], wide)
            rows = [r for r in _plain(recs) if r["item_id"] not in unavailable][:k]
            new = self._new_items(state, None)
            if new:
                matches = self._content().affinity([item], np.ones(1), new, NEW_ITEM_MIN_SIMILARITY)
                extra = [
                    {
                        "item_id": new[j],
                        "score": aff,
                        "reason": f"new in the shop, like {self.label(item)}",
                    }
                    for j, aff, _ in matches[: max(1, k // 5)]
                ]
                rows = _interleave(rows, extra, k)
            return _ranked(rows)
        if item not in frame.index:
            raise NotFoundError(f"unknown item {item!r}: not in the catalog")
        index = self._content()
        ok = (
            pd.Series(available, index=frame.index)
            .reindex(index.ids)
            .fillna(False)
            .to_numpy(dtype=bool)
        )
        reason = f"similar to {self.label(item)}"
        return _ranked(
            [{"item_id": i, "score": sc, "reason": reason} for i, sc in index.similar(item, k, ok)]
        )


def _plain(recs: Any) -> list[Row]:
    ids, scores, reasons = recs.item_ids[0], recs.scores[0], recs.reasons[0]
    return [
        {
            "item_id": str(ids[j]),
            "score": float(scores[j]),
            "reason": None if reasons[j] is None else str(reasons[j]),
        }
        for j in np.flatnonzero(~np.isnan(scores)).tolist()
    ]


def _ranked(rows: list[Row]) -> list[Row]:
    return [{**r, "rank": i + 1} for i, r in enumerate(rows)]


def _history(
    state: OnlineModel, target: str, overlay: Overlay | None
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """The customer's products (trained history and new events) with their weights."""
    model = state.model
    ids: list[str] = []
    weights: list[float] = []
    u = int(model._user_lookup.get_indexer(pd.Index([target], dtype=object))[0])
    if u >= 0:
        hist = model.user_items_
        lo, hi = int(hist.indptr[u]), int(hist.indptr[u + 1])
        ids += [str(x) for x in model.item_ids_[hist.indices[lo:hi]]]
        weights += hist.data[lo:hi].astype(float).tolist()
    if overlay is not None:
        ids += list(overlay.items)
        weights += [1.0] * len(overlay.items)
    return ids, np.asarray(weights, dtype=np.float64)


def _interleave(rows: list[Row], extra: list[Row], k: int) -> list[Row]:
    """``extra`` rows at ranks 3, 6, 9... of ``rows`` (new products get seen, without
    pushing the model's best few down); at most ``k`` rows, ranked 1..n."""
    if not extra:
        return rows
    taken = {r["item_id"] for r in extra}
    base = [r for r in rows if r["item_id"] not in taken]
    out: list[Row] = []
    for j, row in enumerate(extra):
        out.extend(base[2 * j : 2 * j + 2])
        out.append(row)
    out.extend(base[2 * len(extra) :])
    return _ranked(out[:k])


def _rule_mask(frame: pd.DataFrame, rules: Rules) -> npt.NDArray[np.bool_]:
    """Category and price rules over the catalog, as :meth:`Rules.compile` reads them
    (categories case-insensitive; products without a price pass price rules)."""
    keep = np.ones(len(frame), dtype=bool)
    category = (
        frame["category"].astype(str).str.strip().str.casefold()
        if "category" in frame.columns
        else None
    )
    include = rules.include_categories
    if include is not None and category is not None:
        keep &= category.isin([c.strip().casefold() for c in include]).to_numpy()
    exclude = rules.exclude_categories
    if exclude and category is not None:
        keep &= ~category.isin([c.strip().casefold() for c in exclude]).to_numpy()
    if "price" in frame.columns:
        price = pd.to_numeric(frame["price"], errors="coerce").to_numpy(dtype=float)
        low, high = rules.min_price, rules.max_price
        if low is not None:
            keep &= ~(price < float(low))
        if high is not None:
            keep &= ~(price > float(high))
    return keep
