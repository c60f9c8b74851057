"""The catalogue as business rules and explanations see it: category, price, availability
and a display title per item.

Rules are compiled against the *current* catalogue (out-of-stock items change daily), while
a model keeps the snapshot it was trained on; :meth:`Catalog.from_model` is that snapshot,
and :meth:`Catalog.aligned` lays any catalogue over a model's items.

Example::

    catalog = Catalog.from_store(store)
    catalog.titles(["P00012"])          # array(['Acme Cosy Mug'], dtype=object)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.errors import DataError
from tailorcast.store import Store, quote_ident

if TYPE_CHECKING:
    from tailorcast.models.base import Recommender

__all__ = ["Catalog"]

Ids = npt.NDArray[np.object_]
#: Columns a display title is taken from, first present wins.
TITLE_COLUMNS: Final = ("title", "name")
_NO: Final = frozenset({"false", "0", "no", "n", "f", "0.0"})


@dataclass(frozen=True, eq=False)
class Catalog:
    """Per-item arrays, all of one length and in ``item_ids`` order.

    Attributes:
        item_ids: object array of item IDs.
        category: object array of str, ``""`` where unknown.
        price: float64, NaN where unknown.
        available: bool; missing values count as available.
        title: object array of str, the item ID where no title is known.
    """

    item_ids: Ids
    category: Ids
    price: npt.NDArray[np.float64]
    available: npt.NDArray[np.bool_]
    title: Ids

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name in ("category", "price", "available", "title"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Catalog.{name} must have one entry per item ({n})")

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_frame(cls, items: pd.DataFrame) -> Catalog:
        """From an items table (``item_id`` column, or the index) with any of ``category``,
        ``price``, ``available``, ``title`` / ``name``.

        Raises:
            DataError: no item IDs, or an item ID twice.
        """
        frame = items.reset_index() if "item_id" not in items.columns else items
        if "item_id" not in frame.columns:
            raise DataError("an items table needs an item_id column", source="items")
        ids = np.asarray([str(x).strip() for x in frame["item_id"].tolist()], dtype=object)
        duplicated = pd.Index(ids).duplicated()
        if duplicated.any():
            raise DataError(f"item {ids[duplicated][0]!r} appears twice", source="items")
        n = len(ids)
        category = _texts(frame["category"]) if "category" in frame.columns else None
        title = None
        for column in TITLE_COLUMNS:
            if column in frame.columns:
                title = _texts(frame[column])
                break
        if title is not None:
            title = np.where(title == "", ids, title).astype(object)
        price = (
            pd.to_numeric(frame["price"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            if "price" in frame.columns
            else np.full(n, np.nan)
        )
        return cls(
            item_ids=ids,
            category=np.full(n, "", dtype=object) if category is None else category,
            price=price,
            available=(
                available_flags(frame["available"])
                if "available" in frame.columns
                else np.ones(n, dtype=bool)
            ),
            title=ids.copy() if title is None else title,
        )

    @classmethod
    def from_store(cls, store: Store) -> Catalog:
        """The store's items table (personal/encrypted BLOB columns are never read)."""
        columns = {c: t for c, t in store.columns("items").items() if t != "BLOB"}
        wanted = [c for c in ("category", "price", "available", *TITLE_COLUMNS) if c in columns]
        select = ", ".join(["item_id", *(quote_ident(c) for c in wanted)])
        frame = store.con.sql(f"SELECT {select} FROM items WHERE item_id IS NOT NULL").df()
        return cls.from_frame(frame)

    @classmethod
    def from_model(cls, model: Recommender[Any]) -> Catalog:
        """The snapshot a fitted model keeps from its training view."""
        cold = model.cold_start_
        return cls(
            item_ids=np.asarray(model.item_ids_, dtype=object),
            category=np.asarray(model.item_categories_, dtype=object),
            price=cold.price.copy(),
            available=cold.available.copy(),
            title=cold.titles.astype(object),
        )

    def aligned(
        self, item_ids: Sequence[str] | npt.ArrayLike, fallback: Catalog | None = None
    ) -> Catalog:
        """This catalogue reordered to ``item_ids``; items it lacks take ``fallback``'s
        values where given (same IDs as ``item_ids``), else: no category, no price,
        available, the ID as title."""
        ids = np.asarray(item_ids, dtype=object)
        pos = pd.Index(self.item_ids, dtype=object).get_indexer(pd.Index(ids, dtype=object))
        hit = pos >= 0
        src = np.maximum(pos, 0)
        if fallback is not None and len(fallback) != len(ids):
            raise ValueError("fallback must have one entry per item ID")
        base = fallback or Catalog(
            item_ids=ids,
            category=np.full(len(ids), "", dtype=object),
            price=np.full(len(ids), np.nan),
            available=np.ones(len(ids), dtype=bool),
            title=ids.copy(),
        )
        return Catalog(
            item_ids=ids,
            category=np.where(hit, self.category[src], base.category).astype(object),
            price=np.where(hit, self.price[src], base.price),
            available=np.where(hit, self.available[src], base.available),
            title=np.where(hit, self.title[src], base.title).astype(object),
        )

    def titles(self, item_ids: Sequence[str] | npt.ArrayLike) -> Ids:
        """Display titles of ``item_ids`` (the ID itself for items not in the catalogue)."""
        return self.aligned(item_ids).title


def available_flags(column: pd.Series) -> npt.NDArray[np.bool_]:
    """True unless the value says no (False, 0, "false", "no"...); missing is available."""
    missing = column.isna().to_numpy()
    text = column.astype(object).where(~missing, "").astype(str).str.strip().str.lower()
    return np.asarray(missing | ~text.isin(_NO).to_numpy(), dtype=bool)


def _texts(column: pd.Series) -> Ids:
    values = column.astype(object).where(column.notna(), None).tolist()
    return np.asarray(["" if v is None else str(v).strip() for v in values], dtype=object)
