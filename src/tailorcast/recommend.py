"""Recommendations as tables, for the CLI, the HTTP API and batch exports.

Customer IDs cross a privacy boundary here: the store and the models know customers by keyed
pseudonyms, while the shop asks about and wants back its own IDs. :func:`recommend_for` takes
shop IDs, pseudonymizes them with the store's keys, asks the model once for the whole batch
(the model blocks and threads internally) and writes the shop IDs back, re-identified with
the encryption key where it has to.

Example::

    store, keys = open_store("tailorcast-store", read_only=True)
    model = load_model("tailorcast-store")
    frame = recommend_for(store, model, ["C000123"], k=10, keys=keys)
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
import pandas as pd

from tailorcast.errors import ConfigError, UserError
from tailorcast.models.base import Recommender
from tailorcast.privacy import Keys
from tailorcast.store import Store

__all__ = ["RECOMMENDATION_COLUMNS", "TABLE_FORMATS", "recommend_for", "similar_to", "write_table"]

RECOMMENDATION_COLUMNS: Final = ("user_id", "item_id", "rank", "score", "reason")
#: Output formats by file extension.
TABLE_FORMATS: Final = (".csv", ".parquet", ".json")


def recommend_for(
    store: Store,
    model: Recommender[Any],
    user_ids: Sequence[str] | None = None,
    k: int = 10,
    *,
    exclude_seen: bool = True,
    keys: Keys | None = None,
    explain: bool = True,
) -> pd.DataFrame:
    """Top-``k`` recommendations per customer, one row per item.

    Args:
        store: the store the model was trained from (its privacy mode and identities).
        model: a fitted recommender (usually :func:`~tailorcast.artifacts.load_model`).
        user_ids: customer IDs as the shop sent them; None = every customer with training
            history in the model. Unknown customers get the cold-start list (most popular
            items, reason ``"popular right now"``), not an error.
        k: items per customer.
        exclude_seen: leave out items the customer already interacted with.
        keys: the store's keys; needed for a pseudonymized store (to pseudonymize the asked
            IDs, and for ``user_ids=None`` to re-identify the customers).
        explain: fill ``reason``; otherwise the column is empty.

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
    recs = model.recommend(asked, k, exclude_seen=exclude_seen)
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
        frame["reason"] = None
    frame = frame.loc[:, list(RECOMMENDATION_COLUMNS)]
    if user_ids is None:  # pseudonym order means nothing to the shop: its own IDs instead
        frame = frame.sort_values(["user_id", "rank"], kind="stable", ignore_index=True)
    return frame


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
