"""Ingest: read, map, validate, clean and impute shop data.

``ingest_events`` loads an event log, ``ingest_table`` a customers or products table.
"""

from __future__ import annotations

from tailorcast.ingest.config import IngestConfig, parse_mapping
from tailorcast.ingest.events import IngestSummary, ingest_events

__all__ = ["IngestConfig", "IngestSummary", "ingest_events", "ingest_table", "parse_mapping"]


def __getattr__(name: str) -> object:
    # The tables path needs pandas and scikit-learn; importing them lazily keeps
    # `tailorcast ingest events.csv` quick to start.
    if name == "ingest_table":
        from tailorcast.ingest.tables import ingest_table

        return ingest_table
    raise AttributeError(name)
