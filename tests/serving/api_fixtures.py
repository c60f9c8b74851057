"""Shared set-up of the HTTP API tests: a trained demo store, keys, an app around a real
engine, and one sample request per route (for the auth matrix and the server tests)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from conftest import ingest_demo_shop
from tailorcast.config import Settings
from tailorcast.privacy import resolve_keys
from tailorcast.serving.app import create_app
from tailorcast.serving.auth import KeyStore
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.settings import ServeSettings
from tailorcast.store import Store
from tailorcast.training import train

KNOWN_CUSTOMER = "C000001"


def trained_store(root: Path, *, model: bool = True) -> Path:
    """A small demo shop ingested into ``root/store``, with an item-kNN model when asked."""
    store = ingest_demo_shop(root, customers=300, items=80, days=30)
    if model:
        with Store.open(store, read_only=True) as opened:
            train(opened, "itemknn")
    return store


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def first_item(store: Path) -> str:
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute("SELECT min(item_id) FROM items").fetchall()
    return str(rows[0][0])


def item_categories(store: Path) -> dict[str, str]:
    """item_id -> category of the store's catalog."""
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute(
            "SELECT item_id, any_value(category) FROM items WHERE category IS NOT NULL "
            "GROUP BY item_id"
        ).fetchall()
    return {str(i): str(c) for i, c in rows}


def make_keys(store: Path) -> dict[str, str]:
    """One key per scope, plus one holding all three (``all``)."""
    keys = KeyStore(store)
    made = {
        scope: keys.create([scope], name=f"test {scope}").key
        for scope in ("read", "write", "admin")
    }
    made["all"] = keys.create(["read", "write", "admin"], name="test all").key
    return made


@dataclass
class Served:
    app: FastAPI
    engine: ServingEngine
    store: Path
    keys: dict[str, str]


@contextmanager
def served(store: Path, **settings: Any) -> Iterator[Served]:
    """An app around a real engine on ``store``; the engine is closed afterwards."""
    store_keys = resolve_keys(Settings(), store, insecure_dev=True, create=False)
    engine = ServingEngine(store, keys=store_keys)
    try:
        app = create_app(engine, settings=ServeSettings(store=store, **settings))
        yield Served(app=app, engine=engine, store=store, keys=make_keys(store))
    finally:
        engine.close()


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def route_samples(item_id: str, category: str) -> list[dict[str, Any]]:
    """One valid request per keyed route, with the scope it needs.

    Order matters for the campaign routes (create before export and measure) and for the
    erasure and delete routes, which come last.
    """
    target = {"category": category}
    event = {
        "user_id": "C000002",
        "item_id": item_id,
        "event_type": "view",
        "timestamp": "2024-05-01T10:00:00",
        "event_id": "matrix-1",
    }
    return [
        {"scope": "read", "method": "GET", "route": "/readyz", "url": "/readyz"},
        {"scope": "read", "method": "GET", "route": "/metrics", "url": "/metrics"},
        {
            "scope": "read",
            "method": "GET",
            "route": "/v1/customers/{customer_id}/recommendations",
            "url": f"/v1/customers/{KNOWN_CUSTOMER}/recommendations?k=5",
        },
        {
            "scope": "read",
            "method": "POST",
            "route": "/v1/customers/{customer_id}/recommendations",
            "url": f"/v1/customers/{KNOWN_CUSTOMER}/recommendations",
            "json": {"k": 3, "rules": {"exclude_items": [item_id]}},
        },
        {
            "scope": "read",
            "method": "POST",
            "route": "/v1/customers/{customer_id}/rank",
            "url": f"/v1/customers/{KNOWN_CUSTOMER}/rank",
            "json": {"items": [item_id]},
        },
        {
            "scope": "read",
            "method": "GET",
            "route": "/v1/customers/{customer_id}/segments",
            "url": f"/v1/customers/{KNOWN_CUSTOMER}/segments",
        },
        {
            "scope": "read",
            "method": "GET",
            "route": "/v1/items/{item_id}/similar",
            "url": f"/v1/items/{item_id}/similar?k=3",
        },
        {
            "scope": "write",
            "method": "POST",
            "route": "/v1/events",
            "url": "/v1/events",
            "json": event,
        },
        {
            "scope": "write",
            "method": "PUT",
            "route": "/v1/customers/{customer_id}",
            "url": "/v1/customers/C900001",
            "json": {"attributes": {"city": "Lyon"}},
        },
        {
            "scope": "write",
            "method": "PUT",
            "route": "/v1/items/{item_id}",
            "url": "/v1/items/NEW-1",
            "json": {"category": "shoes", "price": 10.0, "title": "red running shoe"},
        },
        {"scope": "admin", "method": "GET", "route": "/v1/model", "url": "/v1/model"},
        {
            "scope": "admin",
            "method": "POST",
            "route": "/v1/audiences",
            "url": "/v1/audiences",
            "json": {"target": target, "size": 10, "min_size": 5},
        },
        {
            "scope": "admin",
            "method": "POST",
            "route": "/v1/campaigns",
            "url": "/v1/campaigns",
            "json": {"name": "matrix", "target": target, "min_size": 5, "holdout": 0.2},
        },
        {
            "scope": "admin",
            "method": "GET",
            "route": "/v1/campaigns/{name}/measure",
            "url": "/v1/campaigns/matrix/measure",
        },
        {
            "scope": "admin",
            "method": "GET",
            "route": "/v1/campaigns/{name}/export",
            "url": "/v1/campaigns/matrix/export",
        },
        {
            "scope": "admin",
            "method": "POST",
            "route": "/v1/model/retrain",
            "url": "/v1/model/retrain",
            "json": {"model": "popularity", "budget_s": 5},
        },
        {
            "scope": "write",
            "method": "DELETE",
            "route": "/v1/items/{item_id}",
            "url": "/v1/items/NEW-1",
        },
        {
            "scope": "admin",
            "method": "DELETE",
            "route": "/v1/customers/{customer_id}",
            "url": "/v1/customers/C000003",
        },
    ]
