"""Readers: a file or DataFrame -> a DuckDB temp table of text columns plus ``_line``.

Every source becomes the same shape, so validation is written once: all source columns
as VARCHAR (nothing is lost to type guessing), plus ``_line``, the line (CSV, JSON Lines)
or row (Parquet, DataFrame) each record came from. Records the parser itself cannot read
(ragged rows, broken quoting, invalid UTF-8, bad JSON) are returned as
:class:`ParseReject` so they can be stored and counted, never dropped silently.

A source that cannot be used at all raises :class:`~tailorcast.errors.DataError` naming it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from tailorcast.errors import DataError
from tailorcast.store import quote_ident, scalar

__all__ = ["Format", "ParseReject", "SourceTable", "detect_format", "load_source"]

Format = Literal["csv", "parquet", "jsonl", "dataframe"]

_PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"
_DELIMITERS = ",;\t|"
#: DuckDB's default line limit is 2 MB; longer lines become rejects, not failures.
_MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ParseReject:
    """A record the parser could not read; ``raw`` is the text as far as it was readable."""

    line: int
    reason: str
    raw: str
    column: str | None = None


@dataclass
class SourceTable:
    """A loaded source: temp table ``table`` with ``_line`` + ``columns`` (all VARCHAR)."""

    label: str
    table: str
    columns: list[str]
    rows: int
    parse_rejects: list[ParseReject] = field(default_factory=list)
    format: Format = "csv"
    #: SQL for a row's line/row number, with the table aliased ``r``. Numbering a 5M-row
    #: file costs a second, so CSV and DataFrames derive it from DuckDB's ``rowid``.
    line_sql: str = "r._line"

    @property
    def rows_read(self) -> int:
        return self.rows + len(self.parse_rejects)


def detect_format(path: Path) -> Format:
    """By extension, checked against the file's first bytes."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    with path.open("rb") as fh:
        head = fh.read(4)
    if name.endswith((".parquet", ".pq")):
        if head != _PARQUET_MAGIC:
            raise DataError("is not a Parquet file (no PAR1 header)", source=str(path))
        return "parquet"
    if head == _PARQUET_MAGIC:
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "csv"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if path.is_dir():
        raise DataError("is a directory, not a file", source=str(path))
    if path.stat().st_size == 0:
        raise DataError("file is empty", source=str(path))


def load_source(
    con: duckdb.DuckDBPyConnection,
    source: str | Path | Any,
    *,
    table: str,
    label: str | None = None,
) -> SourceTable:
    """Load a path (CSV, gzip CSV, Parquet, JSON Lines) or pandas DataFrame into ``table``."""
    if not isinstance(source, str | Path):
        return _load_dataframe(con, source, table=table, label=label or "<DataFrame>")
    path = Path(source)
    _check_path(path)
    fmt = detect_format(path)
    shown = label or str(path)
    if fmt == "parquet":
        return _load_parquet(con, path, table=table, label=shown)
    if fmt == "jsonl":
        return _load_jsonl(con, path, table=table, label=shown)
    return _load_csv(con, path, table=table, label=shown)


def _check_columns(columns: list[str], label: str) -> None:
    seen: dict[str, int] = {}
    for i, c in enumerate(columns):
        key = c.strip().lower()
        if not key:
            raise DataError(f"column {i + 1} of the header has no name", source=label, row=1)
        if key in seen:
            raise DataError(
                f"duplicate column name {c.strip()!r} (columns {seen[key] + 1} and {i + 1})",
                source=label,
                row=1,
            )
        seen[key] = i


# -- CSV ------------------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _head_text(path: Path, gz: bool, label: str) -> str:
    """The first ~64 KB as text, for sniffing the delimiter and reading the header."""
    try:
        if gz:
            with gzip.open(path, "rb") as fh:
                raw = fh.read(65536)
        else:
            with path.open("rb") as fh:
                raw = fh.read(65536)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot decompress gzip data ({exc})", source=label) from None
    if not raw.strip():
        raise DataError("file has no data (only whitespace)", source=label)
    if b"\x00" in raw.split(b"\n", 1)[0]:
        raise DataError("header line contains NUL bytes: not a text CSV file", source=label, row=1)
    # An incremental decoder tolerates a multi-byte character cut by the 64 KB window.
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(raw)
    return text


def _sniff_delimiter(head: str) -> str:
    lines = [ln for ln in head.splitlines()[:50] if ln.strip()]
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first = lines[0] if lines else ""
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else ","


def _load_csv(con: duckdb.DuckDBPyConnection, path: Path, *, table: str, label: str) -> SourceTable:
    gz = _is_gzip(path)
    head = _head_text(path, gz, label)
    delim = _sniff_delimiter(head)
    header_line = head.splitlines()[0] if head else ""
    header = next(csv.reader(io.StringIO(header_line), delimiter=delim), [])
    header = [h.strip() for h in header]
    if not header or not any(header):
        raise DataError("no header row", source=label, row=1)
    _check_columns(header, label)
    cols = {f"c{i}": "VARCHAR" for i in range(len(header))}
    rj, rs = f"{table}_rejects", f"{table}_scans"
    opts = {
        "header": True,
        "delim": delim,
        "quote": '"',
        "escape": '"',
        "columns": cols,
        "auto_detect": False,
        "store_rejects": True,
        "rejects_table": rj,
        "rejects_scan": rs,
        "max_line_size": _MAX_LINE_BYTES,
        "compression": "gzip" if gz else "none",
        "strict_mode": True,
        "null_padding": False,
    }
    args = ", ".join(f"{k} := ${k}" for k in opts)
    select = ", ".join(f"c{i} AS {quote_ident(h)}" for i, h in enumerate(header))
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
            f"SELECT {select} FROM read_csv($path, {args})",
            {"path": str(path), **opts},
        )
        rejects = con.execute(
            f"SELECT line, string_agg(DISTINCT error_type, '; '), any_value(csv_line), "
            f"any_value(column_name) FROM {rj} GROUP BY line ORDER BY line"
        ).fetchall()
    except duckdb.Error as exc:
        raise DataError(_duckdb_reason(exc), source=label) from None
    finally:
        con.execute(f"DROP TABLE IF EXISTS {rj}")
        con.execute(f"DROP TABLE IF EXISTS {rs}")
    parse_rejects: list[ParseReject] = []
    for line, kind, raw, col in rejects:
        # An unclosed quote swallows the lines after it into one record: each of those
        # lines is counted and kept as a reject of its own, so line counts reconcile.
        pieces = str(raw or "").rstrip("\r\n").split("\n")
        for k, piece in enumerate(pieces):
            reason = (
                _csv_reason(str(kind)) if k == 0 else "malformed line: inside an unclosed quote"
            )
            parse_rejects.append(
                ParseReject(int(line) + k, reason, piece.rstrip("\r"), _source_column(col, header))
            )
    line_sql = _number_lines(con, table, [r.line for r in parse_rejects])
    n = _count(con, table)
    if n == 0 and not parse_rejects:
        raise DataError("file has a header but no data rows", source=label)
    return SourceTable(label, table, header, n, parse_rejects, "csv", line_sql)


def _source_column(col: object, header: list[str]) -> str | None:
    if isinstance(col, str) and col.startswith("c") and col[1:].isdigit():
        i = int(col[1:])
        return header[i] if i < len(header) else None
    return None


def _csv_reason(kind: str) -> str:
    kinds = {
        "TOO MANY COLUMNS": "too many fields",
        "MISSING COLUMNS": "too few fields",
        "UNQUOTED VALUE": "broken quoting",
        "INVALID ENCODING": "invalid UTF-8",
        "INVALID UNICODE": "invalid UTF-8",
        "LINE SIZE OVER MAXIMUM": "line too long",
        "CAST ERROR": "unreadable value",
    }
    parts = [kinds.get(k.strip(), k.strip().lower()) for k in kind.split(";")]
    return "malformed line: " + ", ".join(sorted(set(parts)))


def _number_lines(con: duckdb.DuckDBPyConnection, table: str, reject_lines: list[int]) -> str:
    """SQL for each row's file line (header is line 1); adds ``_line`` when rows were rejected.

    DuckDB keeps insertion order, so ``rowid`` is the row's position among readable rows.

    A row's line is its row number + 1, plus the rejected lines before it. Reject ``j`` (in
    line order) sits after ``line_j - 2 - j`` readable rows, so an ASOF join on that count
    finds, per row, how many rejects precede it.
    """
    t = quote_ident(table)
    if not reject_lines:
        return "(r.rowid + 2)"
    marks = pa.table(
        {
            "before": pa.array([ln - 2 - j for j, ln in enumerate(reject_lines)], pa.int64()),
            "n": pa.array(range(1, len(reject_lines) + 1), pa.int64()),
        }
    )
    con.register("_reject_marks", marks)
    try:
        cols = _table_columns(con, table)
        select = ", ".join(f"r.{quote_ident(c)}" for c in cols)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {t} AS "
            f"SELECT r.rowid + 2 + coalesce(m.n, 0) AS _line, {select} "
            f"FROM {t} r ASOF LEFT JOIN _reject_marks m ON r.rowid + 1 > m.before "
            "ORDER BY r.rowid"
        )
    finally:
        con.unregister("_reject_marks")
    return "r._line"


# -- Parquet ----------------------------------------------------------------------------------
def _load_parquet(
    con: duckdb.DuckDBPyConnection, path: Path, *, table: str, label: str
) -> SourceTable:
    try:
        desc = con.execute("DESCRIBE SELECT * FROM read_parquet($p)", {"p": str(path)}).fetchall()
        columns = [str(r[0]) for r in desc]
        _check_columns(columns, label)
        select = ", ".join(
            f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
            f"SELECT file_row_number + 1 AS _line, {select} "
            "FROM read_parquet($p, file_row_number := true)",
            {"p": str(path)},
        )
    except duckdb.Error as exc:
        raise DataError(_duckdb_reason(exc), source=label) from None
    n = _count(con, table)
    if n == 0:
        raise DataError("Parquet file has no rows", source=label)
    return SourceTable(label, table, columns, n, [], "parquet")


# -- JSON Lines -------------------------------------------------------------------------------
def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _load_jsonl(
    con: duckdb.DuckDBPyConnection, path: Path, *, table: str, label: str
) -> SourceTable:
    # DuckDB's read_json can skip bad lines but cannot say which; every bad line must be
    # kept with its line number, so lines are parsed here (json is C code per line).
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    rejects: list[ParseReject] = []
    columns: dict[str, None] = {}
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    rejects.append(
                        ParseReject(number, "malformed line: invalid UTF-8", _lossy(raw))
                    )
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    rejects.append(ParseReject(number, "malformed line: invalid JSON", text[:4096]))
                    continue
                if not isinstance(obj, dict):
                    rejects.append(
                        ParseReject(number, "malformed line: not a JSON object", text[:4096])
                    )
                    continue
                for k in obj:
                    columns.setdefault(k, None)
                records.append(obj)
                lines.append(number)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read file ({exc})", source=label) from None
    if not records and not rejects:
        raise DataError("file has no JSON records", source=label)
    if not records:
        raise DataError(f"no line is a valid JSON object ({len(rejects)} lines)", source=label)
    names = list(columns)
    _check_columns(names, label)
    arrays = {"_line": pa.array(lines, pa.int64())}
    for name in names:
        arrays[name] = pa.array([_json_text(r.get(name)) for r in records], pa.string())
    _materialize(con, table, pa.table(arrays))
    return SourceTable(label, table, names, len(records), rejects, "jsonl")


def _lossy(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")[:4096].rstrip("\r\n")


# -- DataFrame --------------------------------------------------------------------------------
def _load_dataframe(
    con: duckdb.DuckDBPyConnection, frame: Any, *, table: str, label: str
) -> SourceTable:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"expected a file path or a pandas DataFrame, got {type(frame).__name__}", source=label
        )
    columns = [str(c) for c in frame.columns]
    _check_columns(columns, label)
    if len(frame) == 0:
        raise DataError("DataFrame has no rows", source=label)
    view = f"{table}_frame"
    flat = frame.reset_index(drop=True)
    flat.columns = pd.Index(columns)
    con.register(view, flat)
    try:
        select = ", ".join(
            f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
            f"SELECT {select} FROM {quote_ident(view)}"
        )
    except duckdb.Error as exc:
        raise DataError(_duckdb_reason(exc), source=label) from None
    finally:
        con.unregister(view)
    return SourceTable(label, table, columns, len(frame), [], "dataframe", "(r.rowid + 1)")


# -- helpers ------------------------------------------------------------------------------------
def _materialize(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    view = f"{table}_arrow"
    con.register(view, data)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
            f"SELECT * FROM {quote_ident(view)}"
        )
    finally:
        con.unregister(view)


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [str(r[0]) for r in con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(scalar(con, f"SELECT count(*) FROM {quote_ident(table)}"))


def _duckdb_reason(exc: duckdb.Error) -> str:
    """The first meaningful line of a DuckDB error, without its internal hints."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("Invalid Input Error: ", "IO Error: ", "Conversion Error: ", "Parser Error: "):
        text = text.removeprefix(prefix)
    return "cannot read: " + text[:300]
