"""Events ingest: map -> validate -> pseudonymize -> dedupe -> clean -> store, in one transaction.

The heavy lifting is DuckDB SQL over the loaded source table, so millions of rows never
pass through Python. Python touches only the *distinct* customer IDs (keyed HMAC and
AES-GCM are not available in DuckDB) and the handful of rows the parser could not read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.readers import ParseReject, SourceTable, load_source
from tailorcast.privacy import Keys
from tailorcast.schema import EVENT_COLUMNS, REQUIRED_EVENT_COLUMNS
from tailorcast.store import Store, quote_ident, scalar

__all__ = ["IngestSummary", "Progress", "ingest_events", "resolve_columns"]

Progress = Callable[[str, float], None]

#: Columns the events table owns; a source column of the same name is stored with a suffix.
#: Columns of the events table that a source column cannot take (it gets a ``_src`` suffix).
_RESERVED = {"amount_outlier", "batch_id", "event_key"}
_MAX_QUANTITY = 1_000_000
_USER_PROBLEMS = ("missing user_id", "user_id too long", "user_id contains a NUL byte")
_ETYPE_PROBLEMS = ("missing event_type", "unknown event type")
_TEMP_TABLES = (
    "_raw",
    "_stage",
    "_pseudo",
    "_users",
    "_prior_marks",
    "_good",
    "_priced",
    "_outlier",
    "_etypes",
    "_ident_new",
)
_MAX_EPOCH_MS = 1e14  # year ~5138: anything larger is not a timestamp


@dataclass
class IngestSummary:
    """What one ingest did. ``rows_read == accepted + rejected + duplicates`` always."""

    kind: str
    source: str
    batch_id: int
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    outliers: int = 0
    outlier_action: str = "flag"
    sessions_derived: int = 0
    new_customers: int = 0
    bots_flagged: int = 0
    imputations: list[dict[str, Any]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Raise if the counts do not reconcile (that would be a bug, never a user error)."""
        total = self.accepted + self.rejected + self.duplicates
        if total != self.rows_read:
            raise AssertionError(
                f"ingest of {self.source} does not reconcile: read {self.rows_read}, "
                f"accepted {self.accepted} + rejected {self.rejected} + duplicates "
                f"{self.duplicates} = {total}"
            )


def _noop(step: str, fraction: float) -> None:
    return None


def resolve_columns(
    source: SourceTable, mapping: dict[str, str], canonical: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """Map source columns to canonical names.

    Returns ``(canonical -> source column, extra source columns)``. Canonical names match
    case-insensitively; ``mapping`` is ``source -> target``.
    """
    by_lower = {c.lower(): c for c in source.columns}
    resolved: dict[str, str] = {}
    for src, dst in mapping.items():
        col = by_lower.get(src.strip().lower())
        if col is None:
            continue  # a mapping for a column this file lacks (the same --map serves 3 files)
        dst = dst.strip()
        if dst in resolved and resolved[dst] != col:
            raise DataError(
                f"columns {resolved[dst]!r} and {col!r} are both mapped to {dst!r}",
                source=source.label,
            )
        resolved[dst] = col
    for c in source.columns:
        name = c.strip().lower()
        if name in canonical and name not in resolved and c not in resolved.values():
            resolved[name] = c
    used = set(resolved.values())
    extras = [c for c in source.columns if c not in used]
    return resolved, extras


def _store_name(extra: str, taken: set[str]) -> str:
    name = extra.strip()
    while name.lower() in _RESERVED or name.lower() in taken:
        name = f"{name}_src"
    return name


class _EventsIngest:
    def __init__(
        self, store: Store, config: IngestConfig, keys: Keys | None, progress: Progress
    ) -> None:
        self.store = store
        self.con: duckdb.DuckDBPyConnection = store.con
        self.config = config
        self.keys = keys
        self.progress = progress
        self.pseudonymize = config.privacy.pseudonymize
        self.has_prior = False  # whether stored events take part in this batch's windows
        self.constant: dict[str, str] = {}  # columns of _good constant in this batch: SQL
        if self.pseudonymize and keys is None:
            raise ConfigError("pseudonymizing customer IDs needs the store keys")

    # -- SQL building ---------------------------------------------------------------------
    def _stage_sql(self, src: SourceTable, cols: dict[str, str], extras: dict[str, str]) -> str:
        """One pass over the source: clean text, parse, validate.

        Customers are carried as ``uidx`` (see :meth:`_customers`): the pseudonyms are
        still being computed in a thread while this runs, and join in where the event key
        is hashed (:func:`_key_sql`).
        """
        cfg = self.config
        clean = cfg.cleaning

        def text(canon: str) -> str:
            col = cols.get(canon)
            return f"NULLIF(trim(r.{quote_ident(col)}), '')" if col else "NULL::VARCHAR"

        def raw(canon: str) -> str:
            col = cols.get(canon)
            return f"r.{quote_ident(col)}" if col else "NULL::VARCHAR"

        etype_expr, etype_problem, etype_join = self._event_types(cols.get("event_type"))
        if cfg.events.timestamp_format:
            ts_expr = "CAST(try_strptime(t.ts_raw, $fmt) AS TIMESTAMP)"
        else:
            # Cheap shape tests first: most files hold one format, and the general casts
            # (to DOUBLE for epochs, ICU's TIMESTAMPTZ for offsets) cost the most per row.
            # ISO text without a zone (10, 16 or 19 characters, or 17/20 ending in Z) is
            # exact as a plain TIMESTAMP; anything else ISO-like goes through TIMESTAMPTZ,
            # which applies offsets and zone names; the rest is tried as Unix s or ms.
            ts_expr = (
                "CASE WHEN t.ts_raw[5] = '-' THEN CASE "
                "WHEN strlen(t.ts_raw) IN (10, 16, 19) "
                "OR (strlen(t.ts_raw) IN (17, 20) AND t.ts_raw[-1] = 'Z') "
                "THEN TRY_CAST(t.ts_raw AS TIMESTAMP) "
                "ELSE CAST(TRY_CAST(t.ts_raw AS TIMESTAMPTZ) AS TIMESTAMP) END "
                "ELSE CASE "
                f"WHEN abs(t.ts_num) >= {_MAX_EPOCH_MS} THEN NULL "
                "WHEN abs(t.ts_num) >= 1e11 THEN make_timestamp(CAST(t.ts_num * 1000 AS BIGINT)) "
                "WHEN t.ts_num IS NOT NULL "
                "THEN make_timestamp(CAST(t.ts_num * 1000000 AS BIGINT)) "
                "ELSE CAST(TRY_CAST(t.ts_raw AS TIMESTAMPTZ) AS TIMESTAMP) END END"
            )
        max_id = clean.max_id_length
        # Session and event IDs only where the source has them: a column of NULLs would be
        # stored and carried for nothing (their absence is handled where they are read).
        optional = "".join(
            f", {text(canon)} AS {name}"
            for canon, name in (("session_id", "session_src"), ("event_id", "event_id"))
            if canon in cols
        )
        extra_sel = "".join(
            f", r.{quote_ident(src_col)} AS {_alias(i)}" for i, src_col in enumerate(extras)
        )
        reasons = [
            ("user_problem IS NOT NULL", "user_problem", "user_id"),
            ("item_id IS NULL", "missing item_id", "item_id"),
            (f"length(item_id) > {max_id}", "item_id too long", "item_id"),
            ("contains(item_id, chr(0))", "item_id contains a NUL byte", "item_id"),
            ("event_type IS NULL", "etype_problem", "event_type"),
            ("ts_raw IS NULL", "missing timestamp", "timestamp"),
            ("ts IS NULL", "unparseable timestamp", "timestamp"),
            ("ts > $max_ts", "timestamp in the future", "timestamp"),
            ("ts < $min_ts", "timestamp too old", "timestamp"),
            ("amount_raw IS NOT NULL AND amount IS NULL", "amount is not a number", "amount"),
            ("isnan(amount) OR isinf(amount)", "amount is not finite", "amount"),
            ("amount < 0", "negative amount", "amount"),
            (
                "quantity_raw IS NOT NULL AND quantity_num IS NULL",
                "quantity is not a number",
                "quantity",
            ),
            (
                f"quantity_num < 1 OR quantity_num > {_MAX_QUANTITY} "
                "OR quantity_num <> floor(quantity_num)",
                "quantity is not a whole number >= 1",
                "quantity",
            ),
        ]
        # Customer-ID and event-type problems were judged once per distinct value (see
        # _customers and _event_types); their reason text comes from those tables.
        reason = (
            "CASE "
            + " ".join(
                f"WHEN {c} THEN {r if r.endswith('_problem') else repr(r)}" for c, r, _ in reasons
            )
            + " END"
        )
        named = [(r, k) for _, r, k in reasons if not r.endswith("_problem")]
        named += [(r, "user_id") for r in _USER_PROBLEMS]
        named += [(r, "event_type") for r in _ETYPE_PROBLEMS]
        reason_col = (
            "CASE WHEN reason IS NOT NULL THEN CASE reason "
            + " ".join(f"WHEN '{r}' THEN '{k}'" for r, k in named)
            + " END END"
        )
        return f"""
        CREATE OR REPLACE TEMP TABLE _stage AS
        WITH t AS (
            SELECT {src.line_sql} AS _line,
                {raw("user_id")} AS user_raw,
                {text("item_id")} AS item_id,
                {raw("event_type")} AS etype_raw,
                {text("timestamp")} AS ts_raw,
                CASE WHEN ts_raw[5] <> '-' THEN TRY_CAST(ts_raw AS DOUBLE) END AS ts_num,
                {text("amount")} AS amount_raw,
                {text("quantity")} AS quantity_raw
                {optional}{extra_sel}
            FROM {quote_ident(src.table)} r
        ), p AS (
            SELECT t.* EXCLUDE (ts_num), ps.uidx,
                coalesce(ps.user_problem, CASE WHEN t.user_raw IS NULL THEN 'missing user_id' END)
                    AS user_problem,
                {etype_expr} AS event_type,
                {etype_problem} AS etype_problem,
                {ts_expr} AS ts,
                TRY_CAST(t.amount_raw AS DOUBLE) AS amount,
                TRY_CAST(t.quantity_raw AS DOUBLE) AS quantity_num
            FROM t
            LEFT JOIN _pseudo ps ON ps.raw = t.user_raw
            {etype_join}
        ), v AS (
            SELECT p.* EXCLUDE (quantity_num),
                CAST(CASE WHEN quantity_num BETWEEN 1 AND {_MAX_QUANTITY}
                     THEN quantity_num ELSE 1 END AS INTEGER) AS quantity,
                {reason} AS reason
            FROM p
        )
        SELECT v.* EXCLUDE (user_raw, etype_raw, ts_raw, amount_raw, quantity_raw,
                            user_problem, etype_problem),
            {reason_col} AS reason_column
        FROM v
        """

    # -- steps ----------------------------------------------------------------------------
    def run(self, source: Any, label: str | None) -> IngestSummary:
        started = time.perf_counter()
        con = self.con
        cfg = self.config
        self.progress("reading", 0.0)
        src = load_source(con, source, table="_raw", label=label)
        self.progress("validating", 0.25)
        mapped, extras_src = resolve_columns(src, cfg.events.columns, tuple(EVENT_COLUMNS))
        required = [c for c in REQUIRED_EVENT_COLUMNS if c != "event_type"]
        if cfg.events.event_type is None:
            required.append("event_type")
        missing = [c for c in required if c not in mapped]
        if missing:
            hint = " (use --map SOURCE=TARGET"
            hint += ", or --event-type" if "event_type" in missing else ""
            raise DataError(
                f"required column(s) missing after mapping: {', '.join(missing)}; "
                f"columns found: {', '.join(src.columns)}{hint})",
                source=src.label,
            )
        taken = {c.lower() for c in EVENT_COLUMNS} | {"event_key"}
        extras: dict[str, str] = {}
        for e in extras_src:
            name = _store_name(e, taken)
            taken.add(name.lower())
            extras[e] = name

        summary = IngestSummary(
            kind="events",
            source=src.label,
            batch_id=self.store.next_batch_id(),
            outlier_action=cfg.cleaning.outliers,
            extra_columns=list(extras.values()),
        )
        # From here on rows carry their line number, so DuckDB may reorder them freely
        # (more parallel, less memory); ``ingest_events`` restores the setting.
        con.execute("SET preserve_insertion_order = false")
        # Freed memory is reused by the next step: handing it back to the system after
        # every statement and faulting it in again costs seconds of system time on 5M rows.
        con.execute("SET allocator_flush_threshold = '4GiB'")
        self.progress("pseudonymizing", 0.35)
        pending = self._customers(mapped["user_id"])

        try:
            self.progress("validating", 0.45)
            self._stage(src, mapped, extras)
        finally:
            pending.exception()  # the thread has finished, whether staging did or not
        customers = pending.result()
        self._users(customers)

        with self.store.transaction():
            # The privacy mode is fixed by the first ingest that succeeds.
            if self.store.meta("pseudonymize") is None:
                self.store.set_meta("pseudonymize", "true" if self.pseudonymize else "false")
            if self.pseudonymize:
                summary.new_customers = self._identities(customers)
            self.progress("deduplicating", 0.55)
            self._dedupe_and_clean(summary, mapped, n_extras=len(extras))
            self.progress("writing", 0.7)
            self.store.add_columns("events", {name: "VARCHAR" for name in extras.values()})
            summary.accepted = self._insert_events(summary.batch_id, extras)
            summary.rejected = self._insert_rejects(src, mapped, summary.batch_id)
            summary.rejected_by_reason = self._rejects_by_reason(src)
            summary.rows_read = src.rows_read
            if cfg.cleaning.bot_detection:
                self.progress("flagging bots", 0.9)
                summary.bots_flagged = flag_bots(self.store, cfg)
            summary.seconds = round(time.perf_counter() - started, 3)
            summary.check()
            self._record_batch(summary)
            _pause_for_tests()
        self.progress("done", 1.0)
        return summary

    def _stage(self, src: SourceTable, mapped: dict[str, str], extras: dict[str, str]) -> None:
        """``_stage``: every source row parsed, with its reject reason or NULL."""
        cfg = self.config
        now = datetime.now(UTC).replace(tzinfo=None)
        params: dict[str, Any] = {
            "max_ts": now + timedelta(seconds=cfg.cleaning.max_future_seconds),
            "min_ts": datetime.fromisoformat(cfg.cleaning.min_timestamp),
        }
        if cfg.events.timestamp_format:
            params["fmt"] = cfg.events.timestamp_format
        try:
            self.con.execute(self._stage_sql(src, mapped, extras), params)
        except duckdb.Error as exc:
            if cfg.events.timestamp_format and "format" in str(exc).lower():
                raise ConfigError(
                    f"--timestamp-format {cfg.events.timestamp_format!r} is not a valid "
                    f"strftime format ({str(exc).splitlines()[0]})"
                ) from None
            raise

    def _customers(self, column: str) -> Future[_Customers]:
        """``_pseudo(raw, user_raw, user_problem, uidx)``: one row per distinct customer ID.

        Trimming and checking once per distinct value (thousands) instead of once per event
        (millions). ``uidx`` numbers the valid customers densely: events carry it through
        staging and sorting (cheaper than the 34-character pseudonym). The pseudonyms and
        the encrypted IDs of new customers (keyed HMAC and AES-GCM are not available in SQL)
        are computed in a thread meanwhile, so staging does not wait for them.
        """
        con = self.con
        col = quote_ident(column)
        values = (
            con.sql(f"SELECT DISTINCT r.{col} AS v FROM _raw r WHERE r.{col} IS NOT NULL")
            .to_arrow_table()
            .column("v")
            .to_pylist()
        )
        max_id = self.config.cleaning.max_id_length
        trimmed: list[str | None] = []
        problems: list[str | None] = []
        uidx: list[int | None] = []
        # One pass, numbering customers in order of appearance (any dense numbering will do).
        codes: dict[str, int] = {}
        for v in values:
            t = v.strip()
            problem = None
            if not t:
                problem = _USER_PROBLEMS[0]
            elif len(t) > max_id:
                problem = _USER_PROBLEMS[1]
            elif "\x00" in t:
                problem = _USER_PROBLEMS[2]
            if problem is None:
                trimmed.append(t)
                uidx.append(codes.setdefault(t, len(codes)))
            else:
                trimmed.append(None)
                uidx.append(None)
            problems.append(problem)
        unique = list(codes)
        _temp_table(
            con,
            "_pseudo",
            pa.table(
                {
                    "raw": pa.array(values, pa.string()),
                    "user_raw": pa.array(trimmed, pa.string()),
                    "user_problem": pa.array(problems, pa.string()),
                    "uidx": pa.array(uidx, pa.int32()),
                }
            ),
        )
        done: Future[_Customers] = Future()
        if not self.pseudonymize:
            done.set_result(_Customers(unique, [], []))
            return done
        assert self.keys is not None
        # A connection of its own: the main one is busy staging meanwhile.
        cursor = con.cursor()
        worker = threading.Thread(
            target=_pseudonymize,
            args=(self.keys, unique, cursor, done),
            name="tailorcast-pseudonyms",
            daemon=True,
        )
        worker.start()
        return done

    def _users(self, customers: _Customers) -> None:
        """``_users(uidx, user_id, session_prefix)``: the stored ID of each valid customer.

        ``session_prefix`` starts the IDs of derived sessions (computed once per customer).
        """
        _temp_table(
            self.con,
            "_users",
            pa.table(
                {
                    "uidx": pa.array(range(len(customers.ids)), pa.int32()),
                    "user_id": pa.array(customers.ids, pa.string()),
                }
            ),
        )
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _users AS "
            "SELECT uidx, user_id, left(md5(user_id), 16) AS session_prefix FROM _users"
        )

    def _event_types(self, column: str | None) -> tuple[str, str, str]:
        """SQL for (event_type, its problem, a join) from the distinct raw event-type values.

        Few distinct values (the usual case) become a CASE expression, which DuckDB
        evaluates faster than a join; many become a lookup table.
        """
        cfg = self.config
        syn = cfg.synonyms()
        fallback = cfg.events.event_type
        fallback_type = syn.get(fallback.strip().lower()) if fallback is not None else None
        if column is None:
            return f"'{fallback_type}'", "NULL::VARCHAR", ""
        col = quote_ident(column)
        values = [
            str(r[0])
            for r in self.con.execute(
                f"SELECT DISTINCT r.{col} FROM _raw r WHERE r.{col} IS NOT NULL"
            ).fetchall()
        ]
        canonical: list[str | None] = []
        problems: list[str | None] = []
        for v in values:
            t = v.strip().lower()
            c = syn.get(t) if t else fallback_type
            canonical.append(c)
            problems.append(
                None if c is not None else _ETYPE_PROBLEMS[1] if t else _ETYPE_PROBLEMS[0]
            )
        missing = f"'{fallback_type}'" if fallback_type else "NULL"
        missing_problem = "NULL" if fallback_type else f"'{_ETYPE_PROBLEMS[0]}'"
        if len(values) <= 64:

            def lit(x: str | None) -> str:
                return "NULL" if x is None else "'" + x.replace("'", "''") + "'"

            def case(out: list[str | None], null_value: str) -> str:
                arms = " ".join(
                    f"WHEN {lit(v)} THEN {lit(o)}" for v, o in zip(values, out, strict=True)
                )
                # Every non-NULL value has an arm, so ELSE is reached by NULL only.
                return f"CASE t.etype_raw {arms} ELSE {null_value} END" if arms else null_value

            return case(canonical, missing), case(problems, missing_problem), ""
        _temp_table(
            self.con,
            "_etypes",
            pa.table(
                {
                    "raw": pa.array(values, pa.string()),
                    "canonical": pa.array(canonical, pa.string()),
                    "problem": pa.array(problems, pa.string()),
                }
            ),
        )
        return (
            f"CASE WHEN t.etype_raw IS NULL THEN {missing} ELSE et.canonical END",
            f"CASE WHEN t.etype_raw IS NULL THEN {missing_problem} ELSE et.problem END",
            "LEFT JOIN _etypes et ON et.raw = t.etype_raw",
        )

    def _identities(self, customers: _Customers) -> int:
        """Store encrypted pseudonym -> ID rows for customers new to the store."""
        if not customers.new:
            return 0
        _temp_table(
            self.con,
            "_ident_new",
            pa.table(
                {
                    "pseudonym": pa.array([customers.ids[i] for i in customers.new], pa.string()),
                    "id_encrypted": pa.array(customers.blobs, pa.binary()),
                }
            ),
        )
        self.con.execute("INSERT INTO identities SELECT pseudonym, id_encrypted FROM _ident_new")
        return len(customers.new)

    def _dedupe_and_clean(
        self, summary: IngestSummary, mapped: dict[str, str], n_extras: int
    ) -> None:
        con = self.con
        clean = self.config.cleaning
        window = clean.near_duplicate_seconds
        gap = clean.session_gap_minutes * 60.0
        dedupe = "true" if clean.dedupe else "false"
        lo, hi = con.execute("SELECT min(ts), max(ts) FROM _stage WHERE reason IS NULL").fetchall()[
            0
        ]
        has_prior = lo is not None and bool(
            scalar(con, 'SELECT count(*) > 0 FROM events WHERE "timestamp" <= $hi', {"hi": hi})
        )
        # Earlier events of the same customers take part in the window below, so a batch
        # continues their sessions and cannot add again what the store already holds.
        prior = (
            f"""
            UNION ALL BY NAME
            SELECT c.uidx, e.item_id, e.event_type, e."timestamp" AS ts,
                e.event_key, true AS prior, e.session_id AS prior_session, -1 AS _line
            FROM events e JOIN _users c USING (user_id)
            WHERE e."timestamp" BETWEEN $lo::TIMESTAMP - INTERVAL ({max(window, gap)}) SECOND
                AND $hi::TIMESTAMP"""
            if has_prior
            else ""
        )
        self.has_prior = has_prior
        has_event_ids = "event_id" in mapped
        # Columns that are constant in this batch stay out of the sorts (every column of
        # their input is carried through them) and out of _good: readers of _good use
        # ``self.constant`` for them.
        constant = {"prior": "false", "prior_session": "NULL::VARCHAR"} if not has_prior else {}
        if not has_event_ids:
            constant["event_id"] = "NULL::VARCHAR"
        if "session_id" not in mapped:
            constant["session_src"] = "NULL::VARCHAR"
        self.constant = constant
        key = _key_sql(n_extras, has_event_ids, "session_id" in mapped)
        j_prior = (
            "" if constant.get("prior") else ", false AS prior, NULL::VARCHAR AS prior_session"
        )
        # Source event IDs may repeat anywhere: elsewhere in the file, or in the store at
        # another time (a resend with a corrected timestamp).
        p = "j.prior" if has_prior else "false"
        repeated = (
            f"row_number() OVER (PARTITION BY j.event_key ORDER BY {p} DESC, j._line) > 1 "
            f"OR (NOT {p} AND j.event_key IN (SELECT event_key FROM events))"
            if has_event_ids
            else "false"
        )
        # One sort by (customer, time, key) serves everything: exact duplicates are
        # neighbours (a derived key includes customer and time), a double click is the same
        # item and type right after, and a session starts after a long enough gap.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _good AS
            WITH j AS (
                -- the key hashes the pseudonym, which joins in here (see _customers); the
                -- sorts below carry the customer's number instead of the long text
                SELECT s.* EXCLUDE (reason, reason_column),
                    {key} AS event_key{j_prior}
                FROM _stage s JOIN _users u USING (uidx) WHERE s.reason IS NULL
                {prior}
            ), w AS (
                SELECT j.*,
                    epoch(j.ts) - epoch(lag(j.ts) OVER win) AS since_prev,
                    lag(j.item_id) OVER win AS prev_item,
                    lag(j.event_type) OVER win AS prev_type,
                    lag(j.event_key) OVER win AS prev_key,
                    {repeated} AS repeated
                FROM j
                -- item and type before the key: which of two simultaneous events counts
                -- as "right before" a third must not depend on the keys (pseudonyms)
                WINDOW win AS (
                    PARTITION BY j.uidx
                    ORDER BY j.ts, hash(j.item_id, j.event_type), j.event_key, j._line)
            )
            SELECT w.* EXCLUDE (since_prev, prev_item, prev_type, prev_key, repeated),
                {dedupe} AND (coalesce(w.prev_key = w.event_key, false) OR w.repeated)
                    AS dup_exact,
                {"true" if window > 0 else "false"} AND coalesce(
                    w.prev_item = w.item_id AND w.prev_type = w.event_type
                    AND w.since_prev <= {window}, false) AS dup_near,
                coalesce(w.since_prev >= {gap}, true) AS starts_session
            FROM w
            """,
            {"lo": lo, "hi": hi} if has_prior else None,
        )
        no_src = "true" if "session_src" in constant else "session_src IS NULL"
        counts = con.execute(
            "SELECT count(*) FILTER (dup_exact), count(*) FILTER (dup_near AND NOT dup_exact), "
            f"count(*) FILTER (starts_session AND {no_src} AND NOT dup_exact "
            f"AND NOT dup_near) FROM _good {'WHERE NOT prior' if has_prior else ''}"
        ).fetchall()[0]
        summary.duplicates = int(counts[0]) + int(counts[1])
        summary.near_duplicates = int(counts[1])
        summary.sessions_derived = int(counts[2])
        summary.outliers = self._outliers()

    def _outliers(self) -> int:
        """Flag (or cap) purchase amounts far from the item's typical unit price.

        Residual r = log(unit price) - log(the item's median unit price in this batch, or its
        catalogue price when it has fewer than 3 purchases here; items with neither are not
        judged). Outlier when |r| exceeds the threshold
        in robust units (MAD or IQR of r over the batch) *and* the price is at least 3x off,
        so shops with constant prices do not flag every small discount.
        """
        con = self.con
        clean = self.config.cleaning
        if clean.outliers == "off":
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _outlier AS "
                "SELECT NULL::BIGINT AS _line, NULL::DOUBLE AS capped WHERE false"
            )
            return 0
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _priced AS
            SELECT _line, item_id, quantity, ln(amount / quantity) AS lu
            FROM _good
            WHERE amount > 0 AND event_type = 'purchase' AND NOT dup_exact AND NOT dup_near
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _priced AS
            WITH im AS (SELECT item_id, median(lu) AS m, count(*) AS n FROM _priced GROUP BY 1),
                 cat AS (SELECT item_id, any_value(price) AS price FROM items
                         WHERE price > 0 GROUP BY 1)
            SELECT p._line, p.quantity, p.lu,
                CASE WHEN im.n >= 3 THEN im.m ELSE ln(cat.price) END AS center
            FROM _priced p JOIN im USING (item_id) LEFT JOIN cat USING (item_id)
            WHERE im.n >= 3 OR cat.price IS NOT NULL
        """)
        if clean.outlier_method == "mad":
            bound_sql = (
                f"SELECT {clean.outlier_threshold} * "
                "greatest(1.4826 * median(abs(lu - center)), 1e-9) FROM _priced"
            )
        else:
            bound_sql = (
                "SELECT quantile_cont(abs(lu - center), 0.75) + "
                f"{clean.outlier_threshold} * greatest("
                "quantile_cont(abs(lu - center), 0.75) - quantile_cont(abs(lu - center), 0.25),"
                " 1e-9) FROM _priced"
            )
        bound = scalar(con, bound_sql)
        bound = max(float(bound), float(__import__("math").log(3.0))) if bound is not None else 0.0
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _outlier AS
            SELECT _line,
                exp(center + sign(lu - center) * {bound}) * quantity AS capped
            FROM _priced WHERE abs(lu - center) > {bound}
            """
        )
        return int(scalar(con, "SELECT count(*) FROM _outlier"))

    def _insert_events(self, batch_id: int, extras: dict[str, str]) -> int:
        con = self.con
        cap = self.config.cleaning.outliers == "cap"
        amount = "coalesce(o.capped, s.amount)" if cap else "s.amount"
        extra_cols = "".join(f", {quote_ident(n)}" for n in extras.values())
        extra_sel = "".join(f", g.{_alias(i)}" for i in range(len(extras)))
        extra_vals = "".join(f", s.{_alias(i)}" for i in range(len(extras)))
        # Derived session IDs (the customer's pseudonym prefix and the session's first second)
        # are assigned while inserting: the time of the last session start up to each event's
        # time (a RANGE frame, so events at the same second agree whichever sorts first), a
        # number, which is cheaper to carry through the sort than the ID's text. Earlier
        # stored events are starts too and pass on their session IDs (_prior_marks).
        const = self.constant
        marks = "(g.prior AND g.prior_session IS NOT NULL) OR (NOT g.prior AND g.starts_session)"
        keep = "g.prior OR (NOT g.dup_exact AND NOT g.dup_near)"
        new_only = "QUALIFY NOT g.prior"
        if not self.has_prior:
            marks, keep, new_only = "g.starts_session", "NOT g.dup_exact AND NOT g.dup_near", ""

        def col(name: str) -> str:
            return const.get(name, f"s.{name}")

        carried = "".join(f", g.{c}" for c in ("event_id", "session_src") if c not in const)
        prior_join, prior_session = "", ""
        if self.has_prior:
            # Stored events of different sessions at one time: the last in the order of the
            # dedupe sort (item and type, then key) passes on its session.
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _prior_marks AS
                SELECT uidx, ts,
                    arg_max(prior_session, (hash(item_id, event_type), event_key)) AS session
                FROM _good WHERE prior AND prior_session IS NOT NULL GROUP BY uidx, ts
            """)
            prior_join = "LEFT JOIN _prior_marks pm ON pm.uidx = s.uidx AND pm.ts = s.mark_ts"
            prior_session = "pm.session, "
        inserted = con.execute(f"""
            INSERT INTO events (event_key, event_id, user_id, item_id, event_type, "timestamp",
                                amount, quantity, session_id, amount_outlier, batch_id
                                {extra_cols})
            WITH s AS (
                SELECT g.event_key, g.uidx, g.item_id, g.event_type, g.ts,
                    g.amount, g.quantity, g._line{carried}{extra_sel},
                    max(CASE WHEN {marks} THEN g.ts END) OVER (
                        PARTITION BY g.uidx ORDER BY g.ts
                        RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS mark_ts
                FROM _good g
                WHERE {keep}
                {new_only}
            )
            SELECT s.event_key, {col("event_id")}, u.user_id, s.item_id, s.event_type, s.ts,
                {amount}, s.quantity,
                coalesce({col("session_src")}, {prior_session}concat(u.session_prefix, '-',
                    CAST(CAST(epoch(s.mark_ts) AS BIGINT) AS VARCHAR))),
                o._line IS NOT NULL, {batch_id}{extra_vals}
            FROM s JOIN _users u USING (uidx) LEFT JOIN _outlier o USING (_line)
            {prior_join}
        """).fetchall()
        return int(inserted[0][0])

    def _insert_rejects(self, src: SourceTable, mapped: dict[str, str], batch_id: int) -> int:
        """Rejected rows, each with its raw values as JSON (customer ID pseudonymized)."""
        con = self.con
        user_col = mapped.get("user_id")
        fields = []
        for c in src.columns:
            name = c.replace("'", "''")
            if c == user_col and self.pseudonymize:
                fields.append(f"'{name}', u.user_id")
            else:
                fields.append(f"'{name}', r.{quote_ident(c)}")
        con.execute(
            f"""
            INSERT INTO rejects
            WITH n AS (
                SELECT s._line, s.reason, s.reason_column,
                    CAST(json_object({", ".join(fields)}) AS VARCHAR) AS raw
                FROM _stage s JOIN _raw r ON {src.line_sql} = s._line
                LEFT JOIN _users u ON u.uidx = s.uidx
                WHERE s.reason IS NOT NULL
            )
            SELECT {batch_id}, 'events', $label, n._line, n.reason, n.reason_column, n.raw, NULL
            FROM n
            -- the same data ingested again adds no second copy of its rejects
            WHERE NOT EXISTS (
                SELECT 1 FROM rejects x WHERE x.kind = 'events' AND x.source = $label
                AND x.line = n._line AND x.reason = n.reason AND CAST(x.raw AS VARCHAR) = n.raw)
            """,
            {"label": src.label},
        )
        n = int(scalar(con, "SELECT count(*) FROM _stage WHERE reason IS NOT NULL"))
        if src.parse_rejects:
            self._insert_parse_rejects(src, user_col, batch_id)
        return n + len(src.parse_rejects)

    def _insert_parse_rejects(self, src: SourceTable, user_col: str | None, batch_id: int) -> None:
        cipher = self.keys.cipher() if self.keys is not None else None
        rows = []
        known = set(
            self.con.execute(
                "SELECT line, reason, CAST(raw AS VARCHAR) FROM rejects "
                "WHERE kind = 'events' AND source = ?",
                [src.label],
            ).fetchall()
        )
        for rej in src.parse_rejects:
            preview = _redact_line(rej, src, user_col, self.keys if self.pseudonymize else None)
            if (rej.line, rej.reason, json.dumps(preview, ensure_ascii=False)) in known:
                continue
            blob = cipher.encrypt(rej.raw, "reject") if cipher is not None else None
            rows.append(
                (
                    batch_id,
                    "events",
                    src.label,
                    rej.line,
                    rej.reason,
                    rej.column,
                    json.dumps(preview, ensure_ascii=False),
                    blob,
                )
            )
        if rows:
            self.con.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _rejects_by_reason(self, src: SourceTable) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason, n in self.con.execute(
            "SELECT reason, count(*) FROM _stage WHERE reason IS NOT NULL GROUP BY 1"
        ).fetchall():
            counts[str(reason)] = int(n)
        for rej in src.parse_rejects:
            counts[rej.reason] = counts.get(rej.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def _record_batch(self, s: IngestSummary) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        self.con.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                s.batch_id,
                s.kind,
                s.source,
                now - timedelta(seconds=s.seconds),
                now,
                s.rows_read,
                s.accepted,
                s.rejected,
                s.duplicates,
                json.dumps(s.to_dict()),
            ],
        )
        self.store.audit(
            "ingest",
            {
                "kind": s.kind,
                "source": s.source,
                "batch_id": s.batch_id,
                "rows_read": s.rows_read,
                "accepted": s.accepted,
                "rejected": s.rejected,
                "duplicates": s.duplicates,
            },
        )

    def _cleanup(self) -> None:
        for t in _TEMP_TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS {t}")


@dataclass
class _Customers:
    """The valid customers of a batch, by ``uidx``, and which of them the store lacks."""

    ids: list[str]  # the stored ID (pseudonym, or the trimmed ID without pseudonyms)
    new: list[int]  # uidx of pseudonyms not yet in ``identities``
    blobs: list[bytes]  # their IDs, encrypted, in the order of ``new``


def _pseudonymize(
    keys: Keys, unique: list[str], cursor: duckdb.DuckDBPyConnection, done: Future[_Customers]
) -> None:
    """Thread body: pseudonyms of ``unique``; the IDs of those new to the store, encrypted.

    Runs beside the staging query (which releases the GIL), reading the committed
    ``identities`` through its own connection; the result or error goes to ``done``.
    """
    try:
        ids = keys.pseudonymizer().many(unique)
        cursor.register(
            "_candidates",
            pa.table({"i": pa.array(range(len(ids)), pa.int64()), "pseudonym": ids}),
        )
        new = [
            int(i)
            for i in cursor.sql(
                "SELECT c.i FROM _candidates c ANTI JOIN identities x USING (pseudonym) "
                "ORDER BY c.i"
            )
            .to_arrow_table()
            .column("i")
            .to_pylist()
        ]
        blobs = keys.cipher().encrypt_many([unique[i] for i in new], "identity")
        done.set_result(_Customers(ids, new, [b for b in blobs if b is not None]))
    except BaseException as exc:  # handed to the waiting ingest, which raises it
        done.set_exception(exc)
    finally:
        cursor.close()


def _key_sql(n_extras: int, has_event_ids: bool, has_sessions: bool) -> str:
    """``event_key``: the 128-bit MD5 that makes re-ingest idempotent.

    Of the source's event_id when it has one, else of the row's canonical values, with the
    customer's *pseudonym* (``user_id``), never the raw ID: an unkeyed hash of a raw ID
    could be reversed by hashing guesses. The hashed text is part of the store format:
    changing it would make re-ingesting a file into an existing store add it again.
    Without event or session IDs in the source the text is the same, spelled without them.
    """
    parts = [
        "user_id",
        "item_id",
        "event_type",
        "CAST(epoch_us(ts) AS VARCHAR)",
        "coalesce(CAST(amount AS VARCHAR), '')",
        "CAST(quantity AS VARCHAR)",
        "coalesce(session_src, '')" if has_sessions else "''",
    ] + [f"coalesce({_alias(i)}, '')" for i in range(n_extras)]
    derived = f"concat_ws('|', {', '.join(parts)})"
    if not has_event_ids:
        return f"md5_number({derived})"
    return f"md5_number(CASE WHEN event_id IS NOT NULL THEN 'id|' || event_id ELSE {derived} END)"


def _alias(i: int) -> str:
    """Working name of the i-th extra source column (its stored name may be anything)."""
    return f"__extra_{i}"


def _temp_table(con: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> None:
    """Copy an Arrow table into a DuckDB temp table."""
    view = f"{name}_arrow"
    con.register(view, data)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
    finally:
        con.unregister(view)


def _redact_line(
    rej: ParseReject, src: SourceTable, user_col: str | None, keys: Keys | None
) -> dict[str, Any]:
    """A readable preview of an unparseable record with the customer ID pseudonymized.

    The exact original is kept encrypted beside it; the preview splits the line naively on
    the delimiter, and where the customer field cannot be located the text is withheld.
    """
    if keys is None:
        return {"text": rej.raw[:2000]}
    # A keyed fingerprint tells different withheld lines apart without revealing them.
    fingerprint = keys.pseudonymizer().one(rej.raw)[2:18]
    if src.format == "csv" and src.delimiter and user_col in src.columns:
        # Read the line in the file's own CSV dialect; only when it splits into exactly the
        # header's fields is the customer field known for sure.
        try:
            fields = next(csv.reader([rej.raw], delimiter=src.delimiter, strict=True))
        except (csv.Error, StopIteration):
            fields = []
        if len(fields) == len(src.columns):
            idx = src.columns.index(user_col)
            if fields[idx].strip():
                fields[idx] = keys.pseudonymizer().one(fields[idx].strip())
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=src.delimiter, lineterminator="").writerow(fields)
            return {"text": buffer.getvalue()[:2000], "fingerprint": fingerprint}
    return {
        "text": None,
        "note": "withheld: customer field not locatable; original encrypted",
        "fingerprint": fingerprint,
    }


def _pause_for_tests() -> None:
    # Lets the crash-safety test kill the process at a known point inside the transaction.
    pause = os.environ.get("TAILORCAST_TEST_PAUSE_BEFORE_COMMIT")
    if pause:
        print("tailorcast: ingest transaction open, about to commit", file=sys.stderr, flush=True)
        time.sleep(float(pause))


def flag_bots(store: Store, config: IngestConfig) -> int:
    """Recompute ``user_flags``: customers whose event rate is far above everyone else's.

    Rate = events per active hour. A customer is bot-like with at least ``bot_min_events``
    events and a rate above ``bot_rate_factor`` x the median rate of customers.
    """
    clean = config.cleaning
    is_bot = f"u.events >= {clean.bot_min_events} AND u.rate > {clean.bot_rate_factor} * m.med"
    store.con.execute(f"""
        CREATE OR REPLACE TABLE user_flags AS
        WITH u AS (
            SELECT user_id, count(*) AS events,
                count(*) / count(DISTINCT date_trunc('hour', "timestamp")) AS rate
            FROM events GROUP BY user_id
        ), m AS (SELECT median(rate) AS med FROM u)
        SELECT u.user_id,
            {is_bot} AS is_bot,
            u.events, u.rate AS events_per_hour,
            CASE WHEN {is_bot}
                THEN printf('%.0f events per active hour, %.0fx the median', u.rate, u.rate / m.med)
            END AS reason
        FROM u, m
    """)
    return int(scalar(store.con, "SELECT count(*) FROM user_flags WHERE is_bot"))


def ingest_events(
    store: Store,
    source: Any,
    *,
    config: IngestConfig | None = None,
    keys: Keys | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest one events file or DataFrame into ``store`` (all or nothing).

    Example::

        summary = ingest_events(store, "events.csv", keys=keys)
        assert summary.rows_read == summary.accepted + summary.rejected + summary.duplicates
    """
    cfg = config or IngestConfig()
    if (
        store.meta("pseudonymize") is not None
        and (store.meta("pseudonymize") == "true") != cfg.privacy.pseudonymize
    ):
        raise ConfigError(
            f"the store at {store.folder} was created with pseudonymize="
            f"{store.meta('pseudonymize')}; it cannot change"
        )
    if keys is not None:
        store.bind_keys(keys)
    job = _EventsIngest(store, cfg, keys, progress or _noop)
    try:
        return job.run(source, label)
    finally:
        job._cleanup()
        store.con.execute("RESET preserve_insertion_order")
        store.con.execute("RESET allocator_flush_threshold")
