"""The Store: one embedded DuckDB file in a store folder.

Tables (see ``SCHEMA``): ``events``, ``users``, ``items``, ``rejects`` (every refused row,
with source file, line and reason), ``identities`` (pseudonym -> encrypted customer ID),
``batches`` (one row per ingest), ``imputations``, ``user_flags`` (bot-like customers) and
``audit_log``. Every write goes through :meth:`Store.transaction`, so a process killed
half-way leaves the store exactly as it was before (DuckDB's WAL drops uncommitted work).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from tailorcast.config import Settings
from tailorcast.errors import KeyMaterialError, NotFoundError, UserError
from tailorcast.privacy import Keys, resolve_keys

__all__ = ["DB_FILE", "SCHEMA_VERSION", "Store", "open_store", "quote_ident", "scalar"]

DB_FILE = "tailorcast.duckdb"
SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS batches (
    batch_id BIGINT, kind VARCHAR, source VARCHAR, started_at TIMESTAMP,
    finished_at TIMESTAMP, rows_read BIGINT, accepted BIGINT, rejected BIGINT,
    duplicates BIGINT, summary JSON);
CREATE TABLE IF NOT EXISTS events (
    event_key UHUGEINT, event_id VARCHAR, user_id VARCHAR, item_id VARCHAR, event_type VARCHAR,
    "timestamp" TIMESTAMP, amount DOUBLE, quantity INTEGER, session_id VARCHAR,
    amount_outlier BOOLEAN, batch_id BIGINT);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR, batch_id BIGINT, updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR, category VARCHAR, price DOUBLE, batch_id BIGINT, updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS rejects (
    batch_id BIGINT, kind VARCHAR, source VARCHAR, line BIGINT, reason VARCHAR,
    column_name VARCHAR, raw JSON, raw_encrypted BLOB);
CREATE TABLE IF NOT EXISTS identities (pseudonym VARCHAR, id_encrypted BLOB);
CREATE TABLE IF NOT EXISTS imputations (
    batch_id BIGINT, table_name VARCHAR, column_name VARCHAR, strategy VARCHAR,
    n_imputed BIGINT, fill_value VARCHAR);
CREATE TABLE IF NOT EXISTS user_flags (
    user_id VARCHAR, is_bot BOOLEAN, events BIGINT, events_per_hour DOUBLE, reason VARCHAR);
CREATE TABLE IF NOT EXISTS audit_log ("at" TIMESTAMP, actor VARCHAR, action VARCHAR, details JSON);
CREATE TABLE IF NOT EXISTS erasures (user_id VARCHAR, erased_at TIMESTAMP, source VARCHAR);
"""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Quote a column or table name for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> Any:
    """The first value of a query's first row, or None.

    Uses ``fetchall`` on purpose: DuckDB 2 keeps a result open after ``fetchone`` and then
    refuses relational calls on the same connection.
    """
    rows = (
        con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    )
    return rows[0][0] if rows else None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """An open store folder. Use as a context manager, or call :meth:`close`.

    Example::

        with Store.open("tailorcast-store") as store:
            print(store.counts())
    """

    def __init__(self, folder: Path, con: duckdb.DuckDBPyConnection, *, read_only: bool) -> None:
        self.folder = folder
        self.con = con
        self.read_only = read_only

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        create: bool = False,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> Store:
        """Open the store in ``folder``; with ``create`` make it (and its tables) if absent."""
        folder = Path(folder)
        db = folder / DB_FILE
        if folder.exists() and not folder.is_dir():
            raise UserError(f"store path {folder} exists and is not a folder")
        if not db.exists():
            if not create:
                raise NotFoundError(
                    f"no store at {folder} (run `tailorcast ingest` first, or pass --store)"
                )
            folder.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        try:
            con = duckdb.connect(str(db), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise UserError(
                    f"the store at {folder} is in use by another tailorcast process; "
                    "try again when it has finished"
                ) from None
            raise
        # Timestamps are stored as naive UTC; the session zone makes every cast agree.
        con.execute("SET TimeZone = 'UTC'")
        # tailorcast shows its own progress; DuckDB's bar would write into stderr.
        con.execute("SET enable_progress_bar = false")
        store = cls(folder, con, read_only=read_only)
        if not read_only:
            store.con.execute(SCHEMA)
            if store.meta("schema_version") is None:
                store.set_meta("schema_version", SCHEMA_VERSION)
                store.set_meta("created_at", _now().isoformat())
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions and metadata -------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: commits on success, rolls back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        value = scalar(self.con, "SELECT value FROM meta WHERE key = ?", [key])
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("DELETE FROM meta WHERE key = ?", [key])
        self.con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    def bind_keys(self, keys: Keys) -> None:
        """Record the keys' fingerprint on first use; refuse other keys afterwards."""
        stored = self.meta("key_fingerprint")
        if stored is None:
            self.set_meta("key_fingerprint", keys.fingerprint())
        elif stored != keys.fingerprint():
            raise KeyMaterialError(
                f"the keys given do not belong to the store at {self.folder} "
                "(it was created with other keys)"
            )

    def audit(self, action: str, details: Mapping[str, Any], actor: str = "cli") -> None:
        """Append an entry to the audit log (never put raw IDs or secrets in ``details``)."""
        self.con.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?)",
            [_now(), actor, action, json.dumps(details, default=str)],
        )

    # -- schema helpers -------------------------------------------------------------------
    def columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of a table, in table order."""
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {str(name): str(kind) for name, kind in rows}

    def add_columns(self, table: str, new: Mapping[str, str]) -> None:
        """Add columns that the table lacks (extra source columns are kept, never dropped)."""
        have = {c.lower() for c in self.columns(table)}
        for name, kind in new.items():
            if name.lower() not in have:
                self.con.execute(
                    f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} {kind}"
                )
                have.add(name.lower())

    def next_batch_id(self) -> int:
        return int(scalar(self.con, "SELECT coalesce(max(batch_id), 0) + 1 FROM batches"))

    # -- erasure ----------------------------------------------------------------------------
    def forget(self, user_ids: Sequence[str], keys: Keys | None, *, source: str = "cli") -> int:
        """Erase customers (shop IDs): their events, customer row, identity, flags and
        rejected rows, all in one transaction. Returns how many events were deleted.

        The pseudonym stays in ``erasures``, a suppression list: models trained before the
        erasure still hold the customer, and servers must stop using them until retrained
        (a keyed pseudonym alone does not identify anyone). A ``batches`` row labelled
        ``source`` records the erasure (never the IDs), so a replayed erasure is recognised.
        """
        ids = [str(u).strip() for u in user_ids]
        if self.pseudonymized:
            if keys is None:
                raise KeyMaterialError("erasing customers of a pseudonymized store needs its keys")
            ids = keys.pseudonymizer().many(ids)
        if not ids:
            return 0
        now = _now()
        with self.transaction() as con:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _forget AS SELECT unnest($ids) AS u", {"ids": ids}
            )
            n = int(
                scalar(con, "SELECT count(*) FROM events WHERE user_id IN (SELECT u FROM _forget)")
            )
            for table in ("events", "users", "user_flags"):
                con.execute(f"DELETE FROM {table} WHERE user_id IN (SELECT u FROM _forget)")
            con.execute("DELETE FROM identities WHERE pseudonym IN (SELECT u FROM _forget)")
            if self.pseudonymized:  # pseudonyms are unique 34-character tokens
                con.execute(
                    "DELETE FROM rejects WHERE EXISTS (SELECT 1 FROM _forget "
                    "WHERE contains(CAST(rejects.raw AS VARCHAR), u))"
                )
            else:
                con.execute(
                    "DELETE FROM rejects WHERE json_extract_string(raw, '$.user_id') "
                    "IN (SELECT u FROM _forget)"
                )
            con.execute(
                "INSERT INTO erasures SELECT u, $now, $src FROM _forget",
                {"now": now, "src": source},
            )
            batch = self.next_batch_id()
            con.execute(
                "INSERT INTO batches VALUES (?, 'forget', ?, ?, ?, ?, 0, 0, 0, ?)",
                [batch, source, now, now, len(ids), json.dumps({"events_deleted": n})],
            )
            self.audit("forget", {"customers": len(ids), "events_deleted": n, "source": source})
            con.execute("DROP TABLE _forget")
        return n

    # -- reading --------------------------------------------------------------------------
    def count(self, table: str) -> int:
        return int(scalar(self.con, f"SELECT count(*) FROM {quote_ident(table)}"))

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables."""
        return {t: self.count(t) for t in ("events", "users", "items", "rejects", "batches")}

    @property
    def pseudonymized(self) -> bool:
        return self.meta("pseudonymize") != "false"

    def reidentify(self, pseudonyms: Sequence[str], keys: Keys) -> list[str | None]:
        """Customer IDs as the shop sent them, for pseudonyms (None where unknown)."""
        if not self.pseudonymized:
            return list(pseudonyms)
        want = pa.table(
            {
                "i": pa.array(range(len(pseudonyms)), pa.int64()),
                "pseudonym": pa.array(list(pseudonyms), pa.string()),
            }
        )
        self.con.register("_want", want)
        try:
            rows = self.con.execute(
                "SELECT w.i, any_value(x.id_encrypted) FROM _want w "
                "LEFT JOIN identities x USING (pseudonym) GROUP BY w.i ORDER BY w.i"
            ).fetchall()
        finally:
            self.con.unregister("_want")
        cipher = keys.cipher()
        return [None if blob is None else cipher.decrypt(blob, "identity") for _, blob in rows]


def open_store(
    folder: str | Path | None = None,
    *,
    settings: Settings | None = None,
    insecure_dev: bool = False,
    create: bool = False,
    read_only: bool = False,
    need_keys: bool = True,
) -> tuple[Store, Keys | None]:
    """Open a store together with its keys, the way every surface (CLI, API, server) does.

    ``folder`` defaults to ``settings.store``. Creating a store needs keys (from the
    environment), or ``insecure_dev`` to generate development keys into the folder.
    """
    settings = settings or Settings()
    path = Path(folder) if folder is not None else settings.store
    if path.exists() and not path.is_dir():
        raise UserError(f"store path {path} exists and is not a folder")
    exists = (path / DB_FILE).exists()
    if not exists and not create:
        raise NotFoundError(f"no store at {path} (run `tailorcast ingest` first, or pass --store)")
    keys: Keys | None = None
    if need_keys or not exists:
        keys = resolve_keys(settings, path, insecure_dev=insecure_dev, create=create and not exists)
    store = Store.open(
        path,
        create=create,
        read_only=read_only,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
    )
    try:
        if keys is not None:
            if read_only:
                stored = store.meta("key_fingerprint")
                if stored is not None and stored != keys.fingerprint():
                    raise KeyMaterialError(
                        f"the keys given do not belong to the store at {path} "
                        "(it was created with other keys)"
                    )
            else:
                store.bind_keys(keys)
        if not read_only and (path / "spool").is_dir():
            # Writes a running server accepted come first, so this command sees them.
            from tailorcast.serving.spool import merge_if_pending  # lazy: it imports ingest

            merge_if_pending(store, keys)
    except BaseException:
        store.close()
        raise
    return store, keys
