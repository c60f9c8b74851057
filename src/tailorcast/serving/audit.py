"""Audit entries for admin actions taken while the server runs, and for API-key changes.

The store's ``audit_log`` table needs DuckDB's write lock, which the server does not hold
(CLI jobs write the store while it runs). So these entries go to ``<store>/audit.jsonl``: one
JSON object a line, appended under an ``flock`` and fsync'd before the action's answer. Entries
carry the acting key's public id and the action's counts, never raw customer IDs or keys;
an erasure names the customer by the store's keyed pseudonym.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["AUDIT_FILE", "append_audit", "read_audit"]

AUDIT_FILE: Final = "audit.jsonl"


def append_audit(folder: Path, action: str, details: Mapping[str, Any], *, actor: str) -> None:
    """Append one entry to ``folder/audit.jsonl`` durably (fsync'd)."""
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "actor": actor,
        "action": action,
        "details": dict(details),
    }
    line = (json.dumps(entry, default=str, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(Path(folder) / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one whole line at a time, across processes
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_audit(folder: Path) -> list[dict[str, Any]]:
    """Every entry, oldest first (for ``tailorcast report`` and tests)."""
    path = Path(folder) / AUDIT_FILE
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
