"""Shared set-up of the engine tests: a trained demo store per model family, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from conftest import ingest_demo_shop
from tailorcast.config import Settings
from tailorcast.privacy import Keys, resolve_keys
from tailorcast.store import Store
from tailorcast.training import train

#: Small, fast fits: the tests are about serving, not accuracy.
PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 16, "iterations": 8},
    "bpr": {"factors": 16, "iterations": 20},
    "itemknn": {},
    "ease": {},
    "content": {},
    "popularity": {},
}


def demo_store(root: Path, model: str | None = "als") -> Path:
    store = ingest_demo_shop(root, customers=300, items=80, days=30)
    if model is not None:
        with Store.open(store, read_only=True) as opened:
            train(opened, model, params=PARAMS[model])
    return store


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def keys_of(store: Path) -> Keys:
    return resolve_keys(Settings(), store, insecure_dev=True, create=False)


def customers(store: Path, keys: Keys, n: int = 5) -> list[str]:
    """Shop IDs of the ``n`` customers with the most events."""
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute(
            "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?", [n]
        ).fetchall()
        ids = opened.reidentify([str(r[0]) for r in rows], keys)
    return [str(i) for i in ids]


def catalog(store: Path) -> list[dict[str, Any]]:
    with Store.open(store, read_only=True) as opened:
        frame = opened.con.sql("SELECT item_id, category, title, price FROM items").df()
    return frame.to_dict("records")


def stored_event_ids(store: Path) -> list[str]:
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute(
            "SELECT event_id FROM events WHERE event_id IS NOT NULL"
        ).fetchall()
    return [str(r[0]) for r in rows]
