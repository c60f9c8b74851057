"""Shared by the marketing benchmarks: a demo shop ingested into a fresh store, and the
machine and source state to record beside the figures."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.ingest.config import IngestConfig


def build_store(
    folder: Path,
    *,
    customers: int,
    days: int,
    start: str,
    seed: int,
    lifetime_days: float | None,
) -> tuple[Path, dict[str, Any]]:
    """Generate the demo shop (with churn when ``lifetime_days``) and ingest it; a store
    already in ``folder`` from the same arguments is reused."""
    began = time.perf_counter()
    marker = folder / "shop.json"
    wanted = {
        "customers": customers,
        "days": days,
        "start": start,
        "seed": seed,
        "mean_lifetime_days": lifetime_days,
    }
    if marker.exists() and (folder / "store").exists():
        cached = json.loads(marker.read_text(encoding="utf-8"))
        if all(cached.get(k) == v for k, v in wanted.items()):
            return folder / "store", {**cached, "reused": True}
    if (folder / "store").exists():
        shutil.rmtree(folder / "store")
    shop = demo_shop(
        n_customers=customers,
        n_items=400,
        days=days,
        start=start,
        seed=seed,
        mean_lifetime_days=lifetime_days,
    )
    files = shop.write(folder / "data")
    run_ingest(
        folder / "store",
        IngestConfig(),
        events=files.events,
        users=files.customers,
        items=files.items,
        insecure_dev=True,
        show_progress=False,
    )
    churned = 0 if shop.truth.churn_day is None else int(shop.truth.churn_day.notna().sum())
    info = {
        "customers": customers,
        "days": days,
        "start": start,
        "seed": seed,
        "mean_lifetime_days": lifetime_days,
        "churned_customers": churned,
        "raw_events": len(shop.events),
        "stored_events": _stored_events(folder / "store"),
        "build_seconds": round(time.perf_counter() - began, 1),
    }
    marker.write_text(json.dumps(info), encoding="utf-8")
    return folder / "store", info


def _stored_events(store: Path) -> int:
    from tailorcast.store import Store

    with Store.open(store, read_only=True) as opened:
        return opened.count("events")


def machine() -> dict[str, Any]:
    """Where and on what the figures were measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        source: dict[str, Any] | None = {"commit": commit, "changed": [c[3:] for c in changed]}
    except (OSError, subprocess.CalledProcessError):
        source = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "source": source,
    }
