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
    #: The CSV delimiter (None for other formats), for splitting unparseable lines.
    delimiter: str | None = None

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
    if not header_line.strip():
        raise DataError("the first line is blank: the header must be line 1", source=label, row=1)
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
    line_col = _line_column(header)
    # A source column named like DuckDB's ``rowid`` or our line column would shadow them:
    # such files keep DuckDB's names c0, c1, ... until their lines are numbered.
    clash = line_col != "_line" or any(h.lower() == "rowid" for h in header)
    select = ", ".join(
        f"c{i}" if clash else f"c{i} AS {quote_ident(h)}" for i, h in enumerate(header)
    )
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
        if "invalid state" in str(exc) and _mixed_line_endings(head):
            raise DataError(
                "mixes line endings (some lines end in CR LF, others in LF): "
                "convert the file to one kind of line ending",
                source=label,
            ) from None
        raise DataError(_duckdb_reason(exc), source=label) from None
    finally:
        con.execute(f"DROP TABLE IF EXISTS {rj}")
        con.execute(f"DROP TABLE IF EXISTS {rs}")
    records = [
        _BadRecord(int(line), str(kind), str(raw or ""), _source_column(col, header))
        for line, kind, raw, col in rejects
    ]
    n = _count(con, table)
    try:
        line_sql, parse_rejects = _number_lines(con, table, path, gz, delim, n, records)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read file ({exc})", source=label) from None
    if clash:
        line_sql = _rename_columns(con, table, header, line_col, line_sql)
    if n == 0 and not parse_rejects:
        raise DataError("file has a header but no data rows", source=label)
    return SourceTable(label, table, header, n, parse_rejects, "csv", line_sql, delim)


def _mixed_line_endings(head: str) -> bool:
    crlf = head.count("\r\n")
    return 0 < crlf < head.count("\n") or head.count("\r") > crlf > 0


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


@dataclass(frozen=True)
class _BadRecord:
    """A record DuckDB rejected: its ``line`` counts line breaks outside quoted fields only."""

    line: int
    kind: str
    raw: str
    column: str | None

    @property
    def pieces(self) -> list[str]:
        # csv_line starts with the line breaks before the record (a blank line, the LF of
        # a CR LF); ``line`` is already the record's first line.
        text = self.raw.lstrip("\r\n").rstrip("\r\n")
        return [p.rstrip("\r") for p in text.split("\n")]

    def rejects(self, first_line: int) -> list[ParseReject]:
        """The record as parse rejects, its first line being ``first_line`` of the file."""
        pieces = self.pieces
        if "UNQUOTED VALUE" in self.kind and len(pieces) > 1:
            # An unclosed quote swallows the lines after it into one record: each of those
            # lines is counted and kept as a reject of its own, so line counts reconcile.
            return [
                ParseReject(
                    first_line + k,
                    _csv_reason(self.kind)
                    if k == 0
                    else "malformed line: inside an unclosed quote",
                    piece,
                    self.column,
                )
                for k, piece in enumerate(pieces)
            ]
        # One record, perhaps spanning lines through a quoted line break.
        return [ParseReject(first_line, _csv_reason(self.kind), "\n".join(pieces), self.column)]


def _number_lines(
    con: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    gz: bool,
    delim: str,
    rows: int,
    records: list[_BadRecord],
) -> tuple[str, list[ParseReject]]:
    """SQL for each row's file line (header is line 1), and the parse rejects with theirs.

    DuckDB keeps insertion order, so ``rowid`` is the row's position among readable rows.
    When every line of the file is the header, one readable row or one line of a one-line
    rejected record (counting line breaks runs at memchr speed), a row's line is its row
    number + 2 plus the rejected lines before it: reject ``j`` (in line order) sits after
    ``line_j - 2 - j`` readable rows, so an ASOF join on that count finds, per row, how
    many rejected lines precede it. Otherwise (blank lines, quoted line breaks, whose
    breaks DuckDB's line numbers leave out) one pass over the lines finds where each
    record starts, the way DuckDB's parser sees quotes.

    Lines DuckDB could not decode get their exact text (backslash-escaped): its
    ``csv_line`` replaces the bad bytes *and* the delimiter after them, which would shift
    the fields of a preview.
    """
    one_line = all(len(r.pieces) == 1 for r in records)
    regular = one_line and _count_physical_lines(path, gz) == 1 + rows + len(records)
    starts: list[int] | None = None
    if regular:
        parse_rejects = [pr for r in records for pr in r.rejects(r.line)]
    else:
        outside, blank = _record_starts(path, gz, delim)
        parse_rejects = []
        for r in records:
            first = outside[r.line - 1] if 0 < r.line <= len(outside) else r.line
            parse_rejects.extend(r.rejects(first))
        taken = blank | _lines_taken(parse_rejects)
        starts = [ln for ln in outside[1:] if ln not in taken]
        if len(starts) != rows:  # the scan disagrees with DuckDB: keep its line numbers
            starts = None
            parse_rejects = [pr for r in records for pr in r.rejects(r.line)]
    bad_text = {r.line for r in parse_rejects if "invalid UTF-8" in r.reason}
    if bad_text:
        texts = _line_texts(path, gz, bad_text)
        parse_rejects = [
            ParseReject(r.line, r.reason, texts[r.line], r.column) if r.line in texts else r
            for r in parse_rejects
        ]
    t = quote_ident(table)
    if starts is not None:
        lines = pa.table(
            {"i": pa.array(range(rows), pa.int64()), "_line": pa.array(starts, pa.int64())}
        )
        _add_line_column(con, table, lines)
        return "r._line", parse_rejects
    marks_at = sorted(_lines_taken(parse_rejects))
    if not marks_at:
        return "(r.rowid + 2)", parse_rejects
    before: dict[int, int] = {}
    for j, ln in enumerate(marks_at):
        before[ln - 2 - j] = j + 1  # several rejects in a row: the last one counts
    marks = pa.table(
        {
            "before": pa.array(list(before), pa.int64()),
            "n": pa.array(list(before.values()), pa.int64()),
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
    return "r._line", parse_rejects


def _lines_taken(rejects: list[ParseReject]) -> set[int]:
    return {ln for r in rejects for ln in range(r.line, r.line + r.raw.count("\n") + 1)}


def _open_binary(path: Path, gz: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if gz else path.open("rb")


def _count_physical_lines(path: Path, gz: bool) -> int:
    """Lines up to the last non-blank one (blank lines at the end hold no record)."""
    lines, tail = 0, b""
    with _open_binary(path, gz) as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            tail = chunk
    ending = tail[len(tail.rstrip(b"\r\n")) :].count(b"\n")
    return lines - ending + 1


def _record_starts(path: Path, gz: bool, delim: str) -> tuple[list[int], set[int]]:
    """Lines that start outside a quoted field (header first), and which of them are blank.

    DuckDB's line numbers count exactly these lines, so ``outside[duckdb_line - 1]`` is the
    file line. A quote opens a field only at its start (a quote inside an unquoted value is
    text); inside, ``""`` is an escaped quote and a lone ``"`` closes the field.
    """
    sep = delim.encode()
    outside: list[int] = []
    blank: set[int] = set()
    inside = False
    with _open_binary(path, gz) as fh:
        for number, raw in enumerate(fh, start=1):
            if not inside:
                outside.append(number)
                if not raw.strip(b"\r\n"):
                    blank.add(number)
            if b'"' in raw:
                inside = _ends_inside_quotes(raw, inside, sep)
    return outside, blank


def _ends_inside_quotes(line: bytes, inside: bool, sep: bytes) -> bool:
    i = 0
    while (j := line.find(b'"', i)) >= 0:
        if inside:
            if line[j + 1 : j + 2] == b'"':
                i = j + 2  # an escaped quote
                continue
            inside = False
        elif j == 0 or line[j - 1 : j] == sep:
            inside = True
        i = j + 1
    return inside


def _line_texts(path: Path, gz: bool, wanted: set[int]) -> dict[int, str]:
    texts: dict[int, str] = {}
    last = max(wanted)
    with _open_binary(path, gz) as fh:
        for number, raw in enumerate(fh, start=1):
            if number in wanted:
                texts[number] = _lossy(raw)
            if number >= last:
                break
    return texts


def _add_line_column(con: duckdb.DuckDBPyConnection, table: str, lines: pa.Table) -> None:
    t = quote_ident(table)
    con.register("_record_lines", lines)
    try:
        cols = _table_columns(con, table)
        select = ", ".join(f"r.{quote_ident(c)}" for c in cols)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {t} AS "
            f"SELECT l._line, {select} FROM {t} r JOIN _record_lines l ON l.i = r.rowid "
            "ORDER BY r.rowid"
        )
    finally:
        con.unregister("_record_lines")


def _line_column(columns: list[str]) -> str:
    """``_line``, or a variant no source column is called (DuckDB names ignore case)."""
    taken = {c.lower() for c in columns}
    name = "_line"
    while name in taken:
        name = "_" + name
    return name


def _rename_columns(
    con: duckdb.DuckDBPyConnection, table: str, names: list[str], line_col: str, line_sql: str
) -> str:
    """Give a table read with internal names ``c0, c1, ...`` the source's column names.

    Returns the SQL of the line column (``r."<line_col>"``) in the renamed table.
    """
    t = quote_ident(table)
    cols = ", ".join(f"r.c{i} AS {quote_ident(n)}" for i, n in enumerate(names))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {t} AS "
        f"SELECT {line_sql} AS {quote_ident(line_col)}, {cols} FROM {t} r ORDER BY r.rowid"
    )
    return f"r.{quote_ident(line_col)}"


# -- Parquet ----------------------------------------------------------------------------------
def _load_parquet(
    con: duckdb.DuckDBPyConnection, path: Path, *, table: str, label: str
) -> SourceTable:
    try:
        desc = con.execute("DESCRIBE SELECT * FROM read_parquet($p)", {"p": str(path)}).fetchall()
        columns = [str(r[0]) for r in desc]
        _check_columns(columns, label)
        line_col = _line_column(columns)
        if "file_row_number" in {c.lower() for c in columns}:
            # DuckDB cannot add its row number beside a source column of that name.
            select = ", ".join(
                f"CAST({quote_ident(c)} AS VARCHAR) AS c{i}" for i, c in enumerate(columns)
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
                f"SELECT {select} FROM read_parquet($p)",
                {"p": str(path)},
            )
            line_sql = _rename_columns(con, table, columns, line_col, "(r.rowid + 1)")
        else:
            select = ", ".join(
                f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
                f"SELECT file_row_number + 1 AS {quote_ident(line_col)}, {select} "
                "FROM read_parquet($p, file_row_number := true)",
                {"p": str(path)},
            )
            line_sql = f"r.{quote_ident(line_col)}"
    except duckdb.Error as exc:
        raise DataError(_duckdb_reason(exc), source=label) from None
    n = _count(con, table)
    if n == 0:
        raise DataError("Parquet file has no rows", source=label)
    return SourceTable(label, table, columns, n, [], "parquet", line_sql)


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
    line_col = _line_column(names)
    arrays = {line_col: pa.array(lines, pa.int64())}
    for name in names:
        arrays[name] = pa.array([_json_text(r.get(name)) for r in records], pa.string())
    _materialize(con, table, pa.table(arrays))
    line_sql = f"r.{quote_ident(line_col)}"
    return SourceTable(label, table, names, len(records), rejects, "jsonl", line_sql)


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
    line_col = _line_column(columns)
    clash = line_col != "_line" or "rowid" in {c.lower() for c in columns}
    con.register(view, flat)
    try:
        select = ", ".join(
            f"CAST({quote_ident(c)} AS VARCHAR) AS " + (f"c{i}" if clash else quote_ident(c))
            for i, c in enumerate(columns)
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS "
            f"SELECT {select} FROM {quote_ident(view)}"
        )
    except duckdb.Error as exc:
        raise DataError(_duckdb_reason(exc), source=label) from None
    finally:
        con.unregister(view)
    line_sql = "(r.rowid + 1)"
    if clash:  # a column named rowid would shadow DuckDB's row number
        line_sql = _rename_columns(con, table, columns, line_col, line_sql)
    return SourceTable(label, table, columns, len(frame), [], "dataframe", line_sql)


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
