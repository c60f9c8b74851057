"""The end-to-end demo: a generated shop, ingested and cleaned, with its data-health report.

Later stages (training, recommendations, segments, campaigns) add themselves here as they
land, so ``tailorcast demo`` always shows the whole product on one machine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorcast.errors import UserError
from tailorcast.ingest.config import IngestConfig
from tailorcast.store import DB_FILE, Store

__all__ = ["DEMO_CONFIG", "DemoResult", "prepare_demo_store"]

#: How the demo cleans its shop: every cleaning step on, imputation per column.
DEMO_CONFIG: dict[str, Any] = {
    "cleaning": {"outliers": "cap"},
    "users": {"impute": {"age": "median", "city": "mode"}},
    "items": {"impute": {"price": "knn", "brand": {"strategy": "constant", "value": "unknown"}}},
}


@dataclass
class DemoResult:
    store: Path
    files: dict[str, str]
    summaries: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def prepare_demo_store(folder: Path) -> None:
    """Start the demo from a clean store; refuse to wipe a store that is not a demo store."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"store path {folder} exists and is not a folder")
    db = folder / DB_FILE
    if not db.exists():
        return
    with Store.open(folder, read_only=True) as store:
        is_demo = store.meta("demo") == "true"
    if not is_demo:
        raise UserError(
            f"{folder} holds a store that is not a demo store; pass another --store for the demo"
        )
    shutil.rmtree(folder)


def demo_config() -> IngestConfig:
    return IngestConfig.model_validate(DEMO_CONFIG)
