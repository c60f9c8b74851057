"""Recommendations as tables, for the CLI, the HTTP API and batch exports.

Customer IDs cross a privacy boundary here: the store and the models know customers by keyed
pseudonyms, while the shop asks about and wants back its own IDs. :func:`recommend_for` takes
shop IDs, pseudonymizes them with the store's keys, asks the model once for the whole batch
(the model blocks and threads internally) and writes the shop IDs back, re-identified with
the encryption key where it has to.

Example::

    store, keys = open_store("tailorcast-store", read_only=True)
    model = load_model("tailorcast-store")
    frame = recommend_for(store, model, ["C000123"], k=10, keys=keys,
                          rules=Rules(include_categories=("books",), max_per_category=2))
    write_table(frame, "recs.parquet")
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.catalog import Catalog
from tailorcast.errors import ConfigError, UserError
from tailorcast.models.base import Recommender
from tailorcast.privacy import Keys
from tailorcast.rules import Rules
from tailorcast.schema import DEFAULT_PII_COLUMNS
from tailorcast.store import Store, quote_ident

__all__ = ["RECOMMENDATION_COLUMNS", "TABLE_FORMATS", "recommend_for", "similar_to", "write_table"]

RECOMMENDATION_COLUMNS: Final = ("user_id", "item_id", "rank", "score", "reason")
#: Output formats by file extension.
TABLE_FORMATS: Final = (".csv", ".parquet", ".json")
_USERS_INTERNAL: Final = frozenset({"user_id", "batch_id", "updated_at"})
_PII: Final = frozenset(c.lower() for c in DEFAULT_PII_COLUMNS)


def recommend_for(
    store: Store,
    model: Recommender[Any],
    user_ids: Sequence[str] | None = None,
    k: int = 10,
    *,
    rules: Rules | None = None,
    keys: Keys | None = None,
    explain: bool = True,
    catalog: Catalog | None = None,
    session_items: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Top-``k`` recommendations per customer, one row per item.

    Args:
        store: the store the model was trained from (its privacy mode and identities).
        model: a fitted recommender (usually :func:`~tailorcast.artifacts.load_model`).
        user_ids: customer IDs as the shop sent them; None = every customer with training
            history in the model. Customers without history are not an error: known to the
            store's users table they get what customers with the same attributes chose;
            with ``session_items``, items like those; else the most popular items.
        k: items per customer.
        rules: filters and business rules (:class:`~tailorcast.rules.Rules`); by default
            unavailable items are left out and seen items follow the model's data-driven
            default (kept in shops where customers rebuy).
        keys: the store's keys; needed for a pseudonymized store (to pseudonymize the asked
            IDs, and for ``user_ids=None`` to re-identify the customers).
        explain: fill ``reason``; otherwise the column is empty.
        catalog: the catalogue the rules filter on; default: the store's items table now.
        session_items: item IDs viewed in the current visit (used for customers without
            history).

    Returns:
        ``user_id`` (the shop's ID), ``item_id``, ``rank`` (1-based), ``score`` (float32, the
        model's own scale), ``reason``; customers in the order asked (``None``: by shop ID),
        items best first.

    Raises:
        ConfigError: a pseudonymized store and no keys.
    """
    pseudonymized = store.pseudonymized
    if pseudonymized and keys is None:
        raise ConfigError(
            "keys are needed to write shop customer IDs: this store keeps pseudonyms; set "
            "TAILORCAST_PSEUDONYM_KEY and TAILORCAST_ENCRYPTION_KEY (or use the development "
            "store's keys with --insecure-dev)"
        )
    if user_ids is None:
        asked = np.asarray(model.user_ids_[np.diff(model.user_items_.indptr) > 0], dtype=object)
        shop_ids: np.ndarray[Any, np.dtype[np.object_]] | None = None
    else:
        if isinstance(user_ids, str):
            raise TypeError("user_ids must be a list of IDs, not a single string")
        shop_ids = np.asarray(
            pd.unique(pd.Series([str(u).strip() for u in user_ids], dtype=object))
        )
        if pseudonymized:
            assert keys is not None
            asked = np.asarray(keys.pseudonymizer().many(shop_ids.tolist()), dtype=object)
        else:
            asked = shop_ids
    filters = (rules or Rules()).compile(model, catalog or Catalog.from_store(store))
    recs = model.recommend(
        asked,
        k,
        filters=filters,
        user_attributes=None if user_ids is None else _cold_attributes(store, model, asked),
        session_items=session_items,
        explain=explain,
    )
    frame = recs.to_frame()
    rows = np.nonzero(~np.isnan(recs.scores))[0]  # the row of each frame line, as in to_frame
    if shop_ids is not None:
        names = shop_ids
    elif pseudonymized:
        assert keys is not None
        names = np.asarray(store.reidentify(asked.tolist(), keys), dtype=object)
        missing = np.asarray(pd.isna(names))
        if missing.any():
            raise ConfigError(
                f"{int(missing.sum())} customers of the model are not in the store's identity "
                "table (was the model trained on another store, or were they erased?); "
                "retrain with `tailorcast train`"
            )
    else:
        names = asked
    frame["user_id"] = names[rows]
    if not explain:
        frame["reason"] = None  # a column of nulls, not of padding markers
    frame = frame.loc[:, list(RECOMMENDATION_COLUMNS)]
    if user_ids is None:  # pseudonym order means nothing to the shop: its own IDs instead
        frame = frame.sort_values(["user_id", "rank"], kind="stable", ignore_index=True)
    return frame


def _cold_attributes(
    store: Store, model: Recommender[Any], asked: npt.NDArray[np.object_]
) -> pd.DataFrame | None:
    """Users-table attributes (never the encrypted BLOB columns) of the asked customers the
    model has no history of, indexed by their stored ID; None when there are none."""
    pos = np.asarray(model._user_lookup.get_indexer(pd.Index(asked, dtype=object)))
    cold = asked[(pos < 0) | (model._history_len[np.maximum(pos, 0)] == 0)]
    columns = [
        c
        for c, kind in store.columns("users").items()
        if kind != "BLOB" and c not in _USERS_INTERNAL and c.lower() not in _PII
    ]
    if cold.size == 0 or not columns:
        return None
    select = ", ".join(["user_id", *(quote_ident(c) for c in columns)])
    frame = store.con.execute(
        f"SELECT {select} FROM users WHERE user_id IN (SELECT UNNEST($ids))",
        {"ids": [str(x) for x in cold.tolist()]},
    ).df()
    if frame.empty:
        return None
    return frame.drop_duplicates("user_id", keep="last").set_index("user_id")


def similar_to(model: Recommender[Any], item_id: str, k: int = 10) -> pd.DataFrame:
    """The ``k`` items most similar to ``item_id``: ``source_item_id``, ``item_id``,
    ``rank``, ``score``, ``reason``.

    Raises:
        NotFoundError: the item is not in the model's catalog.
    """
    return model.similar_items([item_id], k).to_frame()


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV, Parquet or JSON (an array of records) by ``path``'s extension.

    The file appears complete or not at all (a temporary file beside it, then a rename).

    Raises:
        UserError: another extension, or the folder does not exist.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise UserError(
            f"cannot write {target}: unknown extension {target.suffix or '(none)'!r}; "
            f"use {', '.join(TABLE_FORMATS)}"
        )
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: folder {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", indent=2, force_ascii=False)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target
