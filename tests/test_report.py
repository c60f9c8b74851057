"""data_health on a small store whose every number can be counted by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import ingest_events
from tailorcast.ingest.tables import ingest_table
from tailorcast.privacy import Keys
from tailorcast.report import data_health
from tailorcast.store import Store

KEYS = Keys(b"k" * 32, b"e" * 32)


def _events() -> pd.DataFrame:
    rows = [
        ("u1", "i1", "view", "2026-02-01T10:00:00Z", None),
        ("u1", "i1", "view", "2026-02-01T10:00:00Z", None),  # exact duplicate
        ("u1", "i1", "view", "2026-02-01T10:00:01Z", None),  # double click
        ("u1", "i1", "add_to_cart", "2026-02-01T10:01:00Z", None),
        ("u1", "i1", "purchase", "2026-02-01T10:02:00Z", "10.00"),
        ("u2", "i2", "view", "2026-02-01T11:00:00Z", None),
        ("u2", "i3", "view", "2026-02-01T11:00:10Z", None),
        ("u2", "i3", "buy", "2026-02-01T11:01:40Z", "5.00"),
        ("u3", "i4", "view", "2026-02-02T09:00:00Z", None),
        ("u3", "i4", "wishlist", "2026-02-02T09:00:30Z", None),
        ("u4", "i1", "teleport", "2026-02-01T10:00:00Z", None),
        ("u5", "i1", "view", "soon", None),
        ("u5", "i2", "view", "later", None),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "amount"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "s"
    cfg = IngestConfig.model_validate(
        {"items": {"impute": {"category": {"strategy": "constant", "value": "misc"}}}}
    )
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i9"],
            "category": ["shoes", "shoes", "hats", None, "hats"],
            "price": ["10", "20", "5", "8", "-1"],
        }
    )
    with Store.open(folder, create=True) as store:
        ingest_table(store, "items", items, config=cfg, keys=KEYS)
        ingest_events(store, _events(), config=cfg, keys=KEYS)
    return folder


@pytest.fixture
def health(shop: Path) -> dict[str, Any]:
    with Store.open(shop, read_only=True) as store:
        return data_health(store)


def test_counts_and_range(health: dict[str, Any], shop: Path) -> None:
    assert health["store"] == str(shop)
    assert health["counts"] == {"events": 8, "users": 0, "items": 4, "rejects": 4, "batches": 2}
    assert (health["customers"], health["items_with_events"], health["sessions"]) == (3, 4, 3)
    assert health["first_event"] == "2026-02-01T10:00:00"
    assert health["last_event"] == "2026-02-02T09:00:30"
    assert health["revenue"] == 15.0
    assert health["outlier_amounts"] == 0
    assert health["bots"] == []
    json.dumps(health)  # JSON-ready as promised


def test_funnel(health: dict[str, Any]) -> None:
    assert health["funnel"] == [
        {"event_type": "view", "events": 4, "customers": 3, "per_100_views": 100.0},
        {"event_type": "favorite", "events": 1, "customers": 1, "per_100_views": 25.0},
        {"event_type": "cart", "events": 1, "customers": 1, "per_100_views": 25.0},
        {"event_type": "purchase", "events": 2, "customers": 2, "per_100_views": 50.0},
    ]


def test_rejects_by_reason(health: dict[str, Any]) -> None:
    assert health["rejects_by_reason"] == [
        {"kind": "events", "reason": "unparseable timestamp", "rows": 2},
        {"kind": "events", "reason": "unknown event type", "rows": 1},
        {"kind": "items", "reason": "negative price", "rows": 1},
    ]


def test_duplicates_exact_and_near(health: dict[str, Any]) -> None:
    assert health["duplicates"] == {"exact": 1, "near": 1}
    [items_batch, events_batch] = health["batches"]
    assert items_batch["kind"] == "items" and items_batch["rows_read"] == 5
    assert (items_batch["accepted"], items_batch["rejected"]) == (4, 1)
    assert events_batch["kind"] == "events"
    assert {k: events_batch[k] for k in ("rows_read", "accepted", "rejected", "duplicates")} == {
        "rows_read": 13,
        "accepted": 8,
        "rejected": 3,
        "duplicates": 2,
    }
    assert (events_batch["near_duplicates"], events_batch["sessions_derived"]) == (1, 3)


def test_imputations(health: dict[str, Any]) -> None:
    assert health["imputations"] == [
        {
            "table": "items",
            "column": "category",
            "strategy": "constant",
            "n_imputed": 1,
            "fill_value": "misc",
        }
    ]


def test_top_categories(health: dict[str, Any], shop: Path) -> None:
    assert health["top_categories"] == [
        {"category": "shoes", "events": 4, "purchases": 1, "customers": 2},
        {"category": "hats", "events": 2, "purchases": 1, "customers": 1},
        {"category": "misc", "events": 2, "purchases": 0, "customers": 1},
    ]
    with Store.open(shop, read_only=True) as store:
        assert [c["category"] for c in data_health(store, top=1)["top_categories"]] == ["shoes"]


def test_events_of_unknown_items_count_as_unknown_category(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["x1", "x2"],
            "event_type": ["view", "purchase"],
            "timestamp": ["2026-02-01T10:00:00Z", "2026-02-01T10:00:00Z"],
            "amount": [None, "7.5"],
        }
    )
    with Store.open(tmp_path / "s", create=True) as store:
        ingest_events(store, df, keys=KEYS)
        health = data_health(store)
    assert health["top_categories"] == [
        {"category": "(unknown)", "events": 2, "purchases": 1, "customers": 2}
    ]
    assert health["funnel"][3] == {
        "event_type": "purchase",
        "events": 1,
        "customers": 1,
        "per_100_views": 100.0,
    }


def test_empty_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        health = data_health(store)
    assert health["counts"]["events"] == 0
    assert health["first_event"] is None and health["last_event"] is None
    assert [f["events"] for f in health["funnel"]] == [0, 0, 0, 0]
    assert all(f["per_100_views"] is None for f in health["funnel"])
    assert health["revenue"] == 0.0
    assert health["duplicates"] == {"exact": 0, "near": 0}
    assert health["rejects_by_reason"] == [] and health["top_categories"] == []
