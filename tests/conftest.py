"""Helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path

from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.ingest.config import IngestConfig


def ingest_demo_shop(root: Path, *, customers: int = 300, items: int = 80, days: int = 30) -> Path:
    """A small demo shop written under ``root/data`` and ingested into ``root/store``."""
    files = demo_shop(n_customers=customers, n_items=items, days=days, seed=5).write(root / "data")
    run_ingest(
        root / "store",
        IngestConfig(),
        events=files.events,
        users=files.customers,
        items=files.items,
        insecure_dev=True,
        show_progress=False,
    )
    return root / "store"
