"""The spool: an append-only, fsync'd log of writes the server accepted but DuckDB has not yet.

DuckDB lets one process at a time open a store file for writing, and while it does no other
process can open the file at all. A server that held the store open would lock out every CLI
job (ingest, train, campaigns); a server that opened it per request would fail whenever a job
runs. So the server never needs the file to accept a write:

1. ``SpoolWriter.append`` writes one record (a batch of validated events, a catalog or
   customer update, an erasure) as one line to this process's open segment
   ``<store>/spool/<time>-<pid>-<rand>.open`` and ``fsync``s it before the caller answers 2xx.
   Lines are AES-GCM encrypted with the store's key (they carry shop customer IDs, which the
   store itself only keeps pseudonymized or encrypted).
2. Segments are sealed (renamed ``.open`` -> ``.seg``, atomic) by their writer every second or
   so; a segment whose writer died (its ``flock`` is free) is adopted and sealed by the next
   merger.
3. :func:`merge_pending` runs in whichever process holds the write lock (the server's merger
   thread, or any CLI command that opens the store for writing): it replays each sealed
   segment through the normal ingest code, one short transaction per group of records,
   labelled ``spool:<segment>#<n>`` in the ``batches`` table. A label already present means
   the group was merged before (say the process died between the commit and deleting the
   segment), so it is skipped: nothing is lost (the segment stays until merged) and nothing is
   counted twice (the label commits in the same transaction as the rows).

Example::

    writer = SpoolWriter(store_dir, keys)
    writer.append("events", rows)           # durable when this returns
    writer.seal()
    with Store.open(store_dir) as store:
        merge_pending(store, keys)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import pandas as pd

from tailorcast.errors import KeyMaterialError, TailorcastError
from tailorcast.ingest.config import CleaningConfig, IngestConfig, PrivacyConfig
from tailorcast.privacy import Keys
from tailorcast.store import Store, scalar

__all__ = [
    "OPS",
    "SPOOL_DIR",
    "MergeReport",
    "SpoolRecord",
    "SpoolWriter",
    "merge_pending",
    "read_segment",
    "segments",
]

logger = logging.getLogger(__name__)

SPOOL_DIR: Final = "spool"
#: Record kinds: validated events, product and customer upserts, erasure of customers, lists
#: served in an A/B test (:mod:`tailorcast.serving.experiments`).
OPS: Final = ("events", "items", "users", "forget", "served")
_OPEN: Final = ".open"
_SEALED: Final = ".seg"
_BAD: Final = ".bad"
_AAD: Final = b"tailorcast-spool"
_NONCE: Final = 12


@dataclass(frozen=True)
class SpoolRecord:
    """One appended write: ``op`` (one of :data:`OPS`), its ``rows`` as the client sent them,
    and ``canon`` (events only: ``[pseudonym, item_id, event_type, epoch_ns]`` per row, so
    other server processes can fold the events in without validating them again)."""

    op: str
    rows: list[dict[str, Any]]
    canon: list[list[Any]] = field(default_factory=list)
    at: float = 0.0


@dataclass
class MergeReport:
    """What one :func:`merge_pending` call did."""

    segments: int = 0
    groups: int = 0
    skipped_groups: int = 0
    events_accepted: int = 0
    events_duplicates: int = 0
    events_rejected: int = 0
    bad_lines: int = 0


def spool_dir(store_dir: str | Path) -> Path:
    return Path(store_dir) / SPOOL_DIR


def _encode(record: SpoolRecord, keys: Keys | None) -> bytes:
    payload = json.dumps(
        {"op": record.op, "rows": record.rows, "canon": record.canon, "at": record.at},
        default=str,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    if keys is None:  # a store without keys keeps no pseudonyms either: plain JSON
        return b"p:" + base64.b64encode(payload) + b"\n"
    nonce = os.urandom(_NONCE)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealed = AESGCM(keys.encryption_key).encrypt(nonce, payload, _AAD)
    return b"e:" + base64.b64encode(nonce + sealed) + b"\n"


def _decode(line: bytes, keys: Keys | None) -> SpoolRecord:
    kind, _, body = line.partition(b":")
    raw = base64.b64decode(body, validate=True)
    if kind == b"e":
        if keys is None:
            raise KeyMaterialError("an encrypted spool segment needs the store keys")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            raw = AESGCM(keys.encryption_key).decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        except InvalidTag:
            raise KeyMaterialError("spool line does not decrypt with this store's key") from None
    elif kind != b"p":
        raise ValueError("unknown spool line kind")
    data = json.loads(raw)
    op = data["op"]
    if op not in OPS:
        raise ValueError(f"unknown spool op {op!r}")
    return SpoolRecord(op, list(data["rows"]), list(data.get("canon") or []), float(data["at"]))


def read_segment(
    path: Path, keys: Keys | None, offset: int = 0
) -> tuple[list[SpoolRecord], int, int]:
    """Records of a segment from byte ``offset``: ``(records, next offset, bad lines)``.

    A last line without its newline is a write still in progress (or torn by a crash before
    its fsync, so never acknowledged): it is left for the next read.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    records: list[SpoolRecord] = []
    bad = 0
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            records.append(_decode(line, keys))
        except (ValueError, KeyError, TypeError) as exc:  # wrong keys raise: nothing is lost
            bad += 1
            logger.warning("unreadable spool line in %s skipped (%s)", path.name, exc)
    return records, offset + end, bad


def segments(store_dir: str | Path, *, sealed_only: bool = False) -> list[Path]:
    """Segment files, oldest first (names start with the creation time)."""
    root = spool_dir(store_dir)
    if not root.is_dir():
        return []
    wanted = (_SEALED,) if sealed_only else (_SEALED, _OPEN)
    return sorted((p for p in root.iterdir() if p.suffix in wanted), key=lambda p: p.name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolWriter:
    """This process's appender. Thread-safe; one open segment at a time, ``flock``-held so a
    merger in another process can tell a live writer from a dead one."""

    def __init__(self, store_dir: str | Path, keys: Keys | None) -> None:
        self.root = spool_dir(store_dir)
        self.keys = keys
        self._lock = threading.Lock()
        self._fh: TextIO | None = None
        self._fd = -1
        self._path: Path | None = None
        self._opened_at = 0.0
        self._bytes = 0
        self.names: set[str] = set()
        """Stems of every segment this writer created (its own records need no tailing)."""

    def append(
        self, op: str, rows: list[dict[str, Any]], canon: list[list[Any]] | None = None
    ) -> None:
        """Write one record durably (``fsync``) before returning."""
        if op not in OPS:  # pragma: no cover - a bug in the caller
            raise ValueError(f"unknown spool op {op!r}")
        line = _encode(SpoolRecord(op, rows, canon or [], time.time()), self.keys)
        with self._lock:
            if self._fd < 0:
                self._open()
            os.write(self._fd, line)
            os.fsync(self._fd)
            self._bytes += len(line)

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp = self.root / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        # Locked before it gets its visible name, so no merger can mistake it for abandoned.
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.root / f"{stem}{_OPEN}"
        os.rename(tmp, path)
        _fsync_dir(self.root)
        self._fd, self._path, self._opened_at, self._bytes = fd, path, time.monotonic(), 0
        self.names.add(stem)

    def seal(self, min_age_s: float = 0.0) -> Path | None:
        """Close the open segment (if it holds anything and is ``min_age_s`` old) and rename
        it to ``.seg`` so mergers take it; the next append opens a new one."""
        with self._lock:
            if self._fd < 0 or self._path is None or self._bytes == 0:
                return None
            if time.monotonic() - self._opened_at < min_age_s:
                return None
            sealed = self._path.with_suffix(_SEALED)
            os.rename(self._path, sealed)
            _fsync_dir(self.root)
            os.close(self._fd)  # releases the flock
            self._fd, self._path = -1, None
            return sealed

    @property
    def current(self) -> Path | None:
        return self._path

    def close(self) -> None:
        self.seal()
        with self._lock:
            if self._fd >= 0 and self._path is not None:
                # An empty open segment: nothing to keep.
                with contextlib.suppress(OSError):
                    self._path.unlink()
                os.close(self._fd)
                self._fd, self._path = -1, None


def _adopt_abandoned(root: Path) -> None:
    """Seal ``.open`` segments whose writer is gone (their flock can be taken)."""
    for path in sorted(root.glob(f"*{_OPEN}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            if path.exists():
                os.rename(path, path.with_suffix(_SEALED))
                _fsync_dir(root)
        finally:
            os.close(fd)


def merge_config(store: Store) -> IngestConfig:
    """Ingest settings for merged records: the store's privacy mode; bot flags are left to
    the next full ingest (recomputing them scans every event, too much once a second)."""
    pseudonymize = store.meta("pseudonymize") != "false"
    return IngestConfig(
        cleaning=CleaningConfig(bot_detection=False),
        privacy=PrivacyConfig(pseudonymize=pseudonymize),
    )


def _groups(records: list[SpoolRecord]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Consecutive records of the same kind, in order (an erasure after events of the same
    customer must run after them)."""
    op: str | None = None
    rows: list[dict[str, Any]] = []
    for rec in records:
        if rec.op != op and rows:
            assert op is not None
            yield op, rows
            rows = []
        op = rec.op
        rows.extend(rec.rows)
    if rows and op is not None:
        yield op, rows


def _merged(store: Store, label: str) -> bool:
    return bool(scalar(store.con, "SELECT count(*) > 0 FROM batches WHERE source = ?", [label]))


def merge_pending(
    store: Store,
    keys: Keys | None,
    *,
    min_age_s: float = 0.0,
    config: IngestConfig | None = None,
) -> MergeReport:
    """Merge every sealed segment (and abandoned open ones) into ``store``, oldest first.

    ``store`` must be open for writing. Segments sealed less than ``min_age_s`` ago wait
    (other server processes tail segments to fold their events in; a short delay lets them
    read a segment before it is gone). Safe to run in several processes: DuckDB's file lock
    lets one at a time in, and the batch labels make a repeated merge a no-op.
    """
    report = MergeReport()
    root = spool_dir(store.folder)
    if not root.is_dir():
        return report
    _adopt_abandoned(root)
    cfg = config or merge_config(store)
    now = time.time()
    for path in segments(store.folder, sealed_only=True):
        try:
            if now - path.stat().st_mtime < min_age_s:
                continue
            records, _, bad = read_segment(path, keys)
        except FileNotFoundError:
            continue  # merged by another process meanwhile
        report.bad_lines += bad
        for n, (op, rows) in enumerate(_groups(records)):
            label = f"spool:{path.stem}#{n}"
            if _merged(store, label):
                report.skipped_groups += 1
                continue
            _apply(store, keys, cfg, op, rows, label, report)
            report.groups += 1
        if bad:
            # Kept for inspection; its readable records are merged.
            os.rename(path, path.with_suffix(_BAD))
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        _fsync_dir(root)
        report.segments += 1
    return report


def _apply(
    store: Store,
    keys: Keys | None,
    cfg: IngestConfig,
    op: str,
    rows: list[dict[str, Any]],
    label: str,
    report: MergeReport,
) -> None:
    from tailorcast.ingest.events import ingest_events
    from tailorcast.ingest.tables import ingest_table

    if op == "events":
        summary = ingest_events(store, _frame(rows), config=cfg, keys=keys, label=label)
        report.events_accepted += summary.accepted
        report.events_duplicates += summary.duplicates
        report.events_rejected += summary.rejected
    elif op in ("items", "users"):
        ingest_table(store, op, _frame(rows), config=cfg, keys=keys, label=label)  # type: ignore[arg-type]
    elif op == "served":
        from tailorcast.marketing.experiments import merge_served  # lazy, like ingest above

        merge_served(store, rows, label)
    else:
        store.forget([str(r["user_id"]) for r in rows], keys, source=label)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as the ingest readers take them: every value text (or missing), as from a file."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    data = {c: [None if r.get(c) is None else _text(r[c]) for r in rows] for c in columns}
    return pd.DataFrame(data, dtype=object)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def merge_if_pending(store: Store, keys: Keys | None) -> MergeReport | None:
    """For CLI commands that open the store for writing: merge what a server spooled first,
    so the command sees (and never re-adds) those rows. A no-op without a spool."""
    if store.read_only or not segments(store.folder):
        return None
    if keys is None and store.pseudonymized:
        return None  # its segments are encrypted: a process with the keys merges them
    try:
        return merge_pending(store, keys)
    except TailorcastError as exc:
        logger.warning("spooled writes not merged now (%s); the server will retry", exc)
        return None
