"""Hostile inputs: every malformed file ends in a clear refusal or in reconciled rejects.

Refusal: exit 2, exactly one line on stderr naming the file (or flag) and the problem, no
traceback, nothing written. Rejects: exit 0, the ``--json`` summary reconciles
(``rows_read = accepted + rejected + duplicates``) and the store's rejects table holds
exactly the rejected rows of that source, each with its reason and file line.

The CLI runs in-process (``tailorcast.cli.main.main``, the console-script entry point) for
speed; a few cases run as real subprocesses to check the exit code and stderr end to end.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tailorcast.cli.main import main
from tailorcast.store import Store, open_store

HEADER = "user_id,item_id,event_type,timestamp,amount,quantity"
TS = "2025-03-04T10:00:00Z"
EPOCH_S = int(datetime(2025, 3, 4, 10, 0, tzinfo=UTC).timestamp())

# ---------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def cli(args: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``tailorcast ARGS`` in-process through the console-script entry point."""
    runner = CliRunner()
    with (
        runner.isolation(env=env) as (out, err, _),
        mock.patch.object(sys, "argv", ["tailorcast", *args]),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Run(code, out.getvalue().decode(), err.getvalue().decode())


def row(
    user: str = "ok1",
    item: str = "i1",
    etype: str = "view",
    ts: str = TS,
    amount: str = "",
    qty: str = "",
) -> str:
    return ",".join([user, item, etype, ts, amount, qty])


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


Maker = Callable[[Path], None]


def text(content: str) -> Maker:
    return lambda p: p.write_text(content, encoding="utf-8", newline="")


def raw(content: bytes) -> Maker:
    return lambda p: p.write_bytes(content)


def gz_bytes(content: bytes) -> Maker:
    return lambda p: p.write_bytes(gzip.compress(content))


def parquet(columns: dict[str, list[Any]]) -> Maker:
    return lambda p: pq.write_table(pa.table(columns), p)


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def event(user: str, **kw: object) -> dict[str, object]:
    return {"user_id": user, "item_id": "i1", "event_type": "view", "timestamp": TS, **kw}


def truncated_gzip(p: Path) -> None:
    body = csv_text(*(row(f"u{i}") for i in range(3000))).encode()
    p.write_bytes(gzip.compress(body)[:-300])


def truncated_parquet(p: Path) -> None:
    pq.write_table(pa.table({"user_id": ["u1"] * 50, "item_id": ["i1"] * 50}), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def mkdir(p: Path) -> None:
    p.mkdir()


def nothing(p: Path) -> None:
    return None


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAILORCAST_* settings from the environment or a .env file in the working folder."""
    for name in list(os.environ):
        if name.startswith("TAILORCAST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A development store made beforehand, so stderr carries only what the ingest says."""
    folder = tmp_path / "store"
    opened, _ = open_store(folder, insecure_dev=True, create=True)
    opened.close()
    return folder


def ingest(path: Path, store: Path, *extra: str) -> Run:
    return cli(["ingest", str(path), "--store", str(store), "--insecure-dev", "--json", *extra])


def store_rejects(store: Path, source: Path) -> list[tuple[int, str]]:
    with Store.open(store, read_only=True) as s:
        rows = s.con.execute(
            "SELECT line, reason FROM rejects WHERE kind = 'events' AND source = ? "
            "ORDER BY line, reason",
            [str(source)],
        ).fetchall()
    return [(int(line), str(reason)) for line, reason in rows]


def store_counts(store: Path) -> dict[str, int]:
    with Store.open(store, read_only=True) as s:
        return s.counts()


def assert_refused(run: Run, names: str, problem: str) -> None:
    assert run.code == 2, run
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {run.err!r}"
    assert lines[0].startswith("error: "), lines
    assert names in lines[0], lines
    assert problem.lower() in lines[0].lower(), lines
    assert run.out == ""


def assert_reconciled(run: Run) -> dict[str, Any]:
    assert run.code == 0, run
    assert "Traceback" not in run.err
    summary: dict[str, Any] = json.loads(run.out)
    assert summary["rows_read"] == (
        summary["accepted"] + summary["rejected"] + summary["duplicates"]
    ), summary
    assert sum(summary["rejected_by_reason"].values()) == summary["rejected"]
    return summary


# ---------------------------------------------------------------------------------------------
# refusals: exit 2, one line naming the file and the problem, nothing stored

FILE = "{file}"  # the error line must name the input file

REFUSALS = [
    pytest.param("missing.csv", nothing, (), FILE, "file not found", id="missing-file"),
    pytest.param("events_dir", mkdir, (), FILE, "is a directory", id="directory"),
    pytest.param("empty.csv", text(""), (), FILE, "file is empty", id="empty-file"),
    pytest.param(
        "blank.csv", text("  \n\n \t \r\n"), (), FILE, "only whitespace", id="whitespace-only"
    ),
    pytest.param(
        "header.csv", text(HEADER + "\n"), (), FILE, "header but no data rows", id="header-only"
    ),
    pytest.param(
        "noheader.csv",
        text("u1,i1,view,2025-03-04T10:00:00Z\nu2,i2,cart,2025-03-04T10:00:00Z\n"),
        (),
        FILE,
        "required column(s) missing after mapping: user_id, item_id",
        id="no-header-row",
    ),
    pytest.param(
        "cols.csv",
        text("user_id,item_id\nu1,i1\n"),
        (),
        FILE,
        "required column(s) missing after mapping: timestamp, event_type",
        id="missing-required-columns",
    ),
    pytest.param(
        "foreign.csv",
        text("customer_id,product_id,event_type,timestamp\nc1,p1,view,2025-03-04\n"),
        ("--map", "customer=user_id", "--map", "product_id=item_id"),
        FILE,
        "missing after mapping: user_id; columns found: customer_id",
        id="missing-after-wrong-map",
    ),
    pytest.param(
        "dup.csv",
        text("user_id,item_id,event_type,timestamp,user_id\nu1,i1,view,2025-03-04,u2\n"),
        (),
        FILE,
        "duplicate column name 'user_id' (columns 1 and 5)",
        id="duplicate-column-names",
    ),
    pytest.param(
        "dupcase.csv",
        text("user_id,item_id,event_type,timestamp,USER_ID\nu1,i1,view,2025-03-04,u2\n"),
        (),
        FILE,
        "duplicate column name",
        id="duplicate-column-names-differing-in-case",
    ),
    pytest.param(
        "twice.csv",
        text("a,b,item_id,event_type,timestamp\nx,y,i1,view,2025-03-04\n"),
        ("--map", "a=user_id", "--map", "b=user_id"),
        FILE,
        "both mapped to 'user_id'",
        id="two-columns-mapped-to-one",
    ),
    pytest.param(
        "trailing.csv",
        text("user_id,item_id,event_type,timestamp,\nu1,i1,view,2025-03-04,\n"),
        (),
        FILE,
        "column 5 of the header has no name",
        id="header-with-empty-name",
    ),
    pytest.param(
        "nulhead.csv",
        raw(b"user_id,item\x00_id,event_type,timestamp\nu1,i1,view,2025-03-04\n"),
        (),
        FILE,
        "header line contains NUL bytes",
        id="nul-byte-in-header",
    ),
    pytest.param(
        "spaces.csv",
        text("user_id item_id event_type timestamp\nu1 i1 view 2025-03-04\n"),
        (),
        FILE,
        "columns found: user_id item_id event_type timestamp",
        id="delimiter-hides-required-columns",
    ),
    pytest.param(
        "lead.csv",
        text("\n" + csv_text(row())),
        (),
        FILE,
        "first line is blank",
        id="blank-first-line",
    ),
    pytest.param(
        "mixed.csv",
        text(HEADER + "\n" + row("u1", qty="1") + "\r\n" + row("u2", qty="1") + "\n"),
        (),
        FILE,
        "mixes line endings",
        id="mixed-line-endings",
    ),
    pytest.param("trunc.csv.gz", truncated_gzip, (), FILE, "gzip", id="truncated-gzip"),
    pytest.param(
        "garbage.csv.gz", raw(b"\x1f\x8b" + b"garbage!" * 64), (), FILE, "gzip", id="gzip-garbage"
    ),
    pytest.param(
        "fake.parquet",
        text(csv_text(row())),
        (),
        FILE,
        "is not a Parquet file",
        id="csv-renamed-parquet",
    ),
    pytest.param(
        "empty.parquet",
        parquet({c: pa.array([], pa.string()) for c in HEADER.split(",")}),
        (),
        FILE,
        "Parquet file has no rows",
        id="empty-parquet",
    ),
    pytest.param("cut.parquet", truncated_parquet, (), FILE, "cannot read", id="truncated-parquet"),
    pytest.param(
        "bad.jsonl",
        text('{not json\n[1, 2]\n"text"\nnull\n'),
        (),
        FILE,
        "no line is a valid JSON object (4 lines)",
        id="jsonl-all-lines-bad",
    ),
    pytest.param(
        "blank.jsonl", text("\n  \n\n"), (), FILE, "no JSON records", id="jsonl-blank-lines"
    ),
    pytest.param(
        "cut.jsonl.gz",
        lambda p: p.write_bytes(
            gzip.compress(jsonl(*[event(f"u{i}") for i in range(2000)]).encode())[:-200]
        ),
        (),
        FILE,
        "cannot read file",
        id="truncated-gzip-jsonl",
    ),
    pytest.param(
        "ok.csv",
        text(csv_text(row())),
        ("--map", "customer_id"),
        "--map 'customer_id'",
        "expected SOURCE=TARGET",
        id="map-without-equals",
    ),
    pytest.param(
        "ok.csv",
        text(csv_text(row())),
        ("--event-type", "teleport"),
        "--event-type 'teleport'",
        "not a known event type",
        id="unknown-event-type-flag",
    ),
    pytest.param(
        "ok.csv",
        text(csv_text(row(ts="20250304"))),
        ("--timestamp-format", "%Q"),
        "--timestamp-format '%Q'",
        "not a valid strftime format",
        id="invalid-timestamp-format",
    ),
]


@pytest.mark.parametrize(("name", "make", "args", "names", "problem"), REFUSALS)
def test_unusable_input_is_refused_on_one_line(
    tmp_path: Path,
    store: Path,
    name: str,
    make: Maker,
    args: tuple[str, ...],
    names: str,
    problem: str,
) -> None:
    path = tmp_path / name
    make(path)
    run = ingest(path, store, *args)
    assert_refused(run, names.format(file=path), problem)
    assert store_counts(store) == {"events": 0, "users": 0, "items": 0, "rejects": 0, "batches": 0}


TOMLS = [
    pytest.param("[events\ncolumns = 3\n", "invalid TOML", id="toml-syntax"),
    pytest.param("[cleaning]\noutliers = 'maybe'\n", "cleaning.outliers", id="toml-bad-value"),
    pytest.param(
        "[cleaning]\nnot_an_option = 1\n", "cleaning.not_an_option", id="toml-unknown-key"
    ),
    pytest.param(
        "[event_types]\nzap = 'teleport'\n", "not one of view", id="toml-bad-synonym-target"
    ),
    pytest.param(b"[events]\nevent_type = '\xe9'\n", "cannot read config", id="toml-not-utf8"),
]


@pytest.mark.parametrize(("content", "problem"), TOMLS)
def test_invalid_config_file_is_refused_naming_it(
    tmp_path: Path, store: Path, content: str | bytes, problem: str
) -> None:
    events = tmp_path / "ok.csv"
    events.write_text(csv_text(row()))
    config = tmp_path / "ingest.toml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    run = ingest(events, store, "--config", str(config))
    assert_refused(run, str(config), problem)


def test_missing_config_file_is_refused(tmp_path: Path, store: Path) -> None:
    events = tmp_path / "ok.csv"
    events.write_text(csv_text(row()))
    run = ingest(events, store, "--config", str(tmp_path / "nope.toml"))
    assert_refused(run, str(tmp_path / "nope.toml"), "config file not found")


# ---------------------------------------------------------------------------------------------
# rejects: exit 0, reconciled summary, each rejected row stored with reason and line

BIG = "x" * (2 * 1024 * 1024)

REJECTS = [
    pytest.param(
        "dates.csv",
        text(
            csv_text(
                row("a", ts="2025-13-45"),
                row("b", ts="yesterday"),
                row("c", ts=""),
                row("d", ts="1850-01-01"),
                row("e", ts="2025-02-30"),
                row("f", ts="04/03/2025 10:00"),
                row("g"),
                row("h", ts="2025-03-04 10:00:00+02:00"),
            )
        ),
        (),
        [
            (2, "unparseable timestamp"),
            (3, "unparseable timestamp"),
            (4, "missing timestamp"),
            (5, "timestamp too old"),
            (6, "unparseable timestamp"),
            (7, "unparseable timestamp"),
        ],
        2,
        id="bad-dates",
    ),
    pytest.param(
        "future.csv",
        text(
            csv_text(
                row("a", ts="2999-01-01T00:00:00Z"),
                row("b", ts="32503680000"),  # year 3000 in seconds
                row("c", ts="99999999999999"),  # year 5138 in milliseconds
                row("d", ts="1741082400000000"),  # microseconds: not a supported unit
                row("e"),
            )
        ),
        (),
        [
            (2, "timestamp in the future"),
            (3, "timestamp in the future"),
            (4, "timestamp in the future"),
            (5, "unparseable timestamp"),
        ],
        1,
        id="far-future-timestamps",
    ),
    pytest.param(
        "fmt.csv",
        text(
            csv_text(
                row("a", ts="20250304"),
                row("b", ts="2025-03-04"),
                row("c", ts="20251399"),
                row("d", ts=""),
                row("e", ts="2025030"),
                row("f", ts="20250305"),
            )
        ),
        ("--timestamp-format", "%Y%m%d"),
        [
            (3, "unparseable timestamp"),
            (4, "unparseable timestamp"),
            (5, "missing timestamp"),
            (6, "unparseable timestamp"),
        ],
        2,
        id="timestamp-format-with-bad-values",
    ),
    pytest.param(
        "amounts.csv",
        text(
            csv_text(
                row("a", etype="purchase", amount="-5", qty="1"),
                row("b", etype="purchase", amount="-0.01", qty="1"),
                row("c", etype="purchase", amount="NaN", qty="1"),
                row("d", etype="purchase", amount="inf", qty="1"),
                row("e", etype="purchase", amount="-Infinity", qty="1"),
                row("f", etype="purchase", amount="12 EUR", qty="1"),
                row("g", etype="purchase", amount="€12", qty="1"),
                row("h", etype="purchase", amount="12.50", qty="1"),
                row("i", etype="purchase", amount="0", qty="1"),
            )
        ),
        (),
        [
            (2, "negative amount"),
            (3, "negative amount"),
            (4, "amount is not finite"),
            (5, "amount is not finite"),
            (6, "amount is not finite"),
            (7, "amount is not a number"),
            (8, "amount is not a number"),
        ],
        2,
        id="negative-nan-inf-and-text-amounts",
    ),
    pytest.param(
        "euro.csv",
        text(
            "user_id;item_id;event_type;timestamp;amount;quantity\n"
            f"a;i1;purchase;{TS};12,50;1\n"
            f"b;i1;purchase;{TS};12.50;1\n"
            f'c;i1;purchase;{TS};"1.234,50";1\n'
        ),
        (),
        [(2, "amount is not a number"), (4, "amount is not a number")],
        1,
        id="decimal-comma-amounts-in-a-semicolon-file",
    ),
    pytest.param(
        "qty.csv",
        text(
            csv_text(
                row("a", etype="purchase", amount="5", qty="0"),
                row("b", etype="purchase", amount="5", qty="1.5"),
                row("c", etype="purchase", amount="5", qty="two"),
                row("d", etype="purchase", amount="5", qty="-1"),
                row("e", etype="purchase", amount="5", qty="2"),
                row("f", etype="purchase", amount="5", qty="2.0"),
            )
        ),
        (),
        [
            (2, "quantity is not a whole number >= 1"),
            (3, "quantity is not a whole number >= 1"),
            (4, "quantity is not a number"),
            (5, "quantity is not a whole number >= 1"),
        ],
        2,
        id="quantity-zero-fraction-text",
    ),
    pytest.param(
        "types.csv",
        text(
            csv_text(
                row("a", etype="teleport"),
                row("b", etype=""),
                row("c", etype="PURCHASE "),
                row("d", etype="add_to_cart"),
                row("e", etype="refund"),
            )
        ),
        (),
        [(2, "unknown event type"), (3, "missing event_type"), (6, "unknown event type")],
        2,
        id="unknown-event-types",
    ),
    pytest.param(
        "ids.csv",
        text(csv_text(row("u" * 300), row(item="i" * 257), row(item="i" * 256), row(""))),
        (),
        [(2, "user_id too long"), (3, "item_id too long"), (5, "missing user_id")],
        1,
        id="extremely-long-ids",
    ),
    pytest.param(
        "latin1.csv",
        raw(csv_text(row("a"), row("caf\xe9"), row("b", item="cr\xe8me")).encode("latin-1")),
        (),
        [(3, "malformed line: invalid UTF-8"), (4, "malformed line: invalid UTF-8")],
        1,
        id="latin1-bytes",
    ),
    pytest.param(
        "nul.csv",
        raw(csv_text(row("u\x001"), row(item="i\x002"), row("ok2")).encode()),
        (),
        [(2, "user_id contains a NUL byte"), (3, "item_id contains a NUL byte")],
        1,
        id="nul-bytes-in-fields",
    ),
    pytest.param(
        "bigfield.csv",
        text(csv_text(row("a"), row("b", item=BIG), row("c"))),
        (),
        [(3, "item_id too long")],
        2,
        id="2mb-field",
    ),
    pytest.param(
        "bigfirst.csv",
        text(csv_text(row("b", item=BIG), row("c"))),
        (),
        [(2, "item_id too long")],
        1,
        id="2mb-field-in-first-row",
    ),
    pytest.param(
        "ragged.csv",
        text(csv_text(row("a"), row("b") + ",extra", "c,i1,view", row("d"), "e", row("f"))),
        (),
        [
            (3, "malformed line: too many fields"),
            (4, "malformed line: too few fields"),
            (6, "malformed line: too few fields"),
        ],
        3,
        id="ragged-rows",
    ),
    pytest.param(
        "ragged_runs.csv",
        text(
            csv_text(
                row("a"),
                "x,y",
                "x,y,z,w,v,u,t",
                "x",
                row("b", ts="bad"),
                row("c"),
                row("d", amount="-1"),
            )
        ),
        (),
        [
            (3, "malformed line: too few fields"),
            (4, "malformed line: too many fields"),
            (5, "malformed line: too few fields"),
            (6, "unparseable timestamp"),
            (8, "negative amount"),
        ],
        2,
        id="consecutive-ragged-rows-keep-later-line-numbers",
    ),
    pytest.param(
        "blanklines.csv",
        text(
            HEADER
            + "\n"
            + row("a")
            + "\n\n"
            + row("b", amount="-1")
            + "\n\n\n"
            + row("c", ts="x")
            + "\n\n"
        ),
        (),
        [(4, "negative amount"), (7, "unparseable timestamp")],
        1,
        id="blank-lines-between-rows",
    ),
    pytest.param(
        "trailing_blank.csv",
        text(csv_text(row("a"), "b,i1", row("c", amount="-1")) + "\n\n\n"),
        (),
        [(3, "malformed line: too few fields"), (4, "negative amount")],
        1,
        id="blank-lines-at-the-end",
    ),
    pytest.param(
        "spaces_line.csv",
        text(csv_text(row("a"), "   ", row("b", amount="x"))),
        (),
        [(3, "malformed line: too few fields"), (4, "amount is not a number")],
        1,
        id="whitespace-only-line",
    ),
    pytest.param(
        "multiline.csv",
        text(
            csv_text(
                row("a") + ',"a note\nover two lines"',
                row("b", amount="-1") + ",x",
                '"c\n\nd",i1',
                row("e", ts="bad") + ",y",
                header=HEADER + ",note",
            )
        ),
        (),
        [
            (4, "negative amount"),
            (5, "malformed line: too few fields"),
            (8, "unparseable timestamp"),
        ],
        1,
        id="quoted-line-breaks",
    ),
    pytest.param(
        "after_ml.csv",
        text(csv_text('"u\n1",i1', "x,y", row("a"), row("b", amount="-1"), "q,r")),
        (),
        [
            (2, "malformed line: too few fields"),
            (4, "malformed line: too few fields"),
            (6, "negative amount"),
            (7, "malformed line: too few fields"),
        ],
        1,
        id="lines-after-a-rejected-multiline-record",
    ),
    pytest.param(
        "stray.csv",
        text(csv_text(row("a", item='i"1'), row('"u\n2"'), "x,y", row("b", amount="zz"))),
        (),
        [(5, "malformed line: too few fields"), (6, "amount is not a number")],
        2,
        id="stray-quote-inside-a-value",
    ),
    pytest.param(
        "resync.csv",
        text(
            csv_text(
                row("a"),
                'b,"i1,view,',
                row("c"),
                'd,"i1,x',
                row("e"),
                "x,y",
                row("f", ts="bad"),
            )
        ),
        (),
        [
            (3, "malformed line: broken quoting, too few fields"),
            (4, "malformed line: inside an unclosed quote"),
            (5, "malformed line: inside an unclosed quote"),
            (7, "malformed line: too few fields"),
            (8, "unparseable timestamp"),
        ],
        2,
        id="lines-after-an-unclosed-quote-that-closes-later",
    ),
    pytest.param(
        "unclosed.csv",
        text(csv_text(row("a"), 'b,"i1,view,' + TS + ",,", row("c"), row("d"))),
        (),
        [
            (3, "malformed line: broken quoting"),
            (4, "malformed line: inside an unclosed quote"),
            (5, "malformed line: inside an unclosed quote"),
        ],
        1,
        id="unclosed-quote",
    ),
    pytest.param(
        "unclosed_crlf.csv",
        text(csv_text(row("a"), 'b,"i1,view,' + TS + ",,", row("c")).replace("\n", "\r\n")),
        (),
        [(3, "malformed line: broken quoting"), (4, "malformed line: inside an unclosed quote")],
        1,
        id="unclosed-quote-crlf",
    ),
    pytest.param(
        "crlf_ragged.csv",
        text(csv_text(row("a"), "b,i1", row("c", amount="-2"), row("d")).replace("\n", "\r\n")),
        (),
        [(3, "malformed line: too few fields"), (4, "negative amount")],
        2,
        id="crlf-with-ragged-row",
    ),
    pytest.param(
        "cr.csv",
        text(csv_text(row("a"), "b,i1", row("c", amount="-2")).replace("\n", "\r")),
        (),
        [(3, "malformed line: too few fields"), (4, "negative amount")],
        1,
        id="old-mac-cr-line-endings",
    ),
    pytest.param(
        "mixed.jsonl",
        text(
            jsonl(
                event("a"),
                "{bad json",
                "[1, 2, 3]",
                event("b", amount=-3),
                '"just a string"',
                event("c", timestamp="nope"),
                event("d", timestamp=EPOCH_S),
            )
            + "\n\n"
            + jsonl("42", event("e"))
        ),
        (),
        [
            (2, "malformed line: invalid JSON"),
            (3, "malformed line: not a JSON object"),
            (4, "negative amount"),
            (5, "malformed line: not a JSON object"),
            (6, "unparseable timestamp"),
            (10, "malformed line: not a JSON object"),
        ],
        3,
        id="jsonl-bad-lines-mixed-with-good",
    ),
    pytest.param(
        "nan.jsonl",
        raw(
            jsonl(event("a", amount=1.5)).encode()
            + b'{"user_id":"b","item_id":"i1","event_type":"view","timestamp":"'
            + TS.encode()
            + b'","amount":NaN}\n'
            + b'{"user_id":"c","item_id":"i1","event_type":"view","timestamp":"'
            + TS.encode()
            + b'","amount":1e400}\n'
            + b'{"user_id":"d","item_id":"caf\xe9","event_type":"view","timestamp":"x"}\n'
            + jsonl(event("e", amount="ten")).encode()
        ),
        (),
        [
            (2, "amount is not finite"),
            (3, "amount is not finite"),
            (4, "malformed line: invalid UTF-8"),
            (5, "amount is not a number"),
        ],
        1,
        id="jsonl-nan-inf-and-latin1",
    ),
    pytest.param(
        "rows.parquet",
        parquet(
            {
                "user_id": ["a", "b", None, "d"],
                "item_id": ["i1", "i2", "i3", "i4"],
                "event_type": ["view", "buy", "view", "teleport"],
                "timestamp": [TS, TS, TS, TS],
                "amount": [1.0, -2.0, None, float("inf")],
            }
        ),
        (),
        [(2, "negative amount"), (3, "missing user_id"), (4, "unknown event type")],
        1,
        id="parquet-rows-numbered-from-1",
    ),
    pytest.param(
        "rowid.csv",
        text(
            csv_text(row("a") + ",r1", "b,i1", row("c", ts="bad") + ",r3", header=HEADER + ",rowid")
        ),
        (),
        [(3, "malformed line: too few fields"), (4, "unparseable timestamp")],
        1,
        id="source-column-named-rowid",
    ),
    pytest.param(
        "line.jsonl",
        text(jsonl(event("a", _line="77"), event("b", timestamp="bad", _line="99"))),
        (),
        [(2, "unparseable timestamp")],
        1,
        id="jsonl-key-named-like-the-line-column",
    ),
    pytest.param(
        "frn.parquet",
        parquet(
            {
                "user_id": ["a", "b"],
                "item_id": ["i1", "i2"],
                "event_type": ["view", "view"],
                "timestamp": ["bad", TS],
                "file_row_number": ["x", "y"],
            }
        ),
        (),
        [(1, "unparseable timestamp")],
        1,
        id="parquet-column-named-file_row_number",
    ),
]


@pytest.mark.parametrize(("name", "make", "args", "expected", "accepted"), REJECTS)
def test_bad_rows_are_rejected_with_reason_and_line(
    tmp_path: Path,
    store: Path,
    name: str,
    make: Maker,
    args: tuple[str, ...],
    expected: list[tuple[int, str]],
    accepted: int,
) -> None:
    path = tmp_path / name
    make(path)
    summary = assert_reconciled(ingest(path, store, *args))
    assert summary["accepted"] == accepted
    assert summary["duplicates"] == 0
    assert summary["rejected"] == len(expected)
    assert summary["rejected_by_reason"] == dict(Counter(reason for _, reason in expected))
    assert store_rejects(store, path) == sorted(expected)
    assert store_counts(store)["events"] == accepted


# ---------------------------------------------------------------------------------------------
# files that look odd but are fine


@pytest.mark.parametrize(
    ("name", "delimiter"),
    [
        pytest.param("semi.csv", ";", id="semicolon"),
        pytest.param("tabs.tsv", "\t", id="tab"),
        pytest.param("pipes.txt", "|", id="pipe"),
    ],
)
def test_other_delimiters_are_detected(
    tmp_path: Path, store: Path, name: str, delimiter: str
) -> None:
    rows = [
        row("a", etype="purchase", amount="12.5", qty="2"),
        row("b", item="i2", etype="cart"),
        row("c", item="i3", amount="-1"),
    ]
    path = tmp_path / name
    path.write_text(csv_text(*rows).replace(",", delimiter))
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    assert store_rejects(store, path) == [(4, "negative amount")]
    with Store.open(store, read_only=True) as s:
        got = s.con.execute(
            "SELECT item_id, event_type, amount, quantity FROM events ORDER BY item_id"
        ).fetchall()
    assert got == [("i1", "purchase", 12.5, 2), ("i2", "cart", None, 1)]


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        pytest.param("bom.csv", lambda s: ("\ufeff" + s).encode(), id="utf8-bom"),
        pytest.param("crlf.csv", lambda s: s.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(
            "bomcrlf.csv.gz",
            lambda s: gzip.compress(("\ufeff" + s).replace("\n", "\r\n").encode()),
            id="bom-crlf-gzip",
        ),
    ],
)
def test_bom_and_crlf_are_read_cleanly(
    tmp_path: Path, store: Path, name: str, encode: Callable[[str], bytes]
) -> None:
    path = tmp_path / name
    path.write_bytes(encode(csv_text(row("a"), row("b", item="i2", etype="cart"))))
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"]) == (2, 0)
    assert summary["files"][0]["extra_columns"] == []  # the BOM did not rename user_id
    with Store.open(store, read_only=True) as s:
        types = s.con.execute("SELECT event_type FROM events ORDER BY item_id").fetchall()
    assert types == [("view",), ("cart",)]  # no stray '\r' on the last column


def test_bom_jsonl_is_read_cleanly(tmp_path: Path, store: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(("\ufeff" + jsonl(event("a"), event("b"))).encode())
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"]) == (2, 0)


def test_seconds_and_milliseconds_mean_the_same_instant(tmp_path: Path, store: Path) -> None:
    path = tmp_path / "epoch.csv"
    path.write_text(
        csv_text(
            row("a", ts=str(EPOCH_S)),
            row("a", ts=str(EPOCH_S * 1000)),  # the same event in ms: an exact duplicate
            row("b", ts=f"{EPOCH_S}.5"),
            row("c", ts=TS),
        )
    )
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"], summary["duplicates"]) == (3, 0, 1)
    with Store.open(store, read_only=True) as s:
        stamps = {t for (t,) in s.con.execute('SELECT "timestamp" FROM events').fetchall()}
    assert stamps == {datetime(2025, 3, 4, 10, 0), datetime(2025, 3, 4, 10, 0, 0, 500000)}


def test_a_2mb_extra_field_is_kept(tmp_path: Path, store: Path) -> None:
    path = tmp_path / "note.csv"
    path.write_text(csv_text(row("a") + "," + BIG, row("b") + ",short", header=HEADER + ",note"))
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"]) == (2, 0)
    with Store.open(store, read_only=True) as s:
        sizes = s.con.execute("SELECT length(note) FROM events ORDER BY 1").fetchall()
    assert sizes == [(5,), (len(BIG),)]


def test_a_line_over_the_parser_limit_is_a_reject(tmp_path: Path, store: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(csv_text(row("a"), row("b", item="x" * (5 * 1024 * 1024)), row("c")))
    summary = assert_reconciled(ingest(path, store))
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    assert store_rejects(store, path) == [(3, "malformed line: line too long")]


def test_rejects_are_not_doubled_when_the_hostile_file_comes_again(
    tmp_path: Path, store: Path
) -> None:
    path = tmp_path / "again.csv"
    path.write_text(csv_text(row("a"), "b,i1", row("c", amount="-1"), "", "e", row("d")))
    first = assert_reconciled(ingest(path, store))
    second = assert_reconciled(ingest(path, store))
    assert (first["accepted"], first["rejected"]) == (2, 3)
    assert (second["accepted"], second["rejected"], second["duplicates"]) == (0, 3, 2)
    assert store_rejects(store, path) == [
        (3, "malformed line: too few fields"),
        (4, "negative amount"),
        (6, "malformed line: too few fields"),
    ]
    assert store_counts(store)["events"] == 2


def test_invalid_utf8_preview_pseudonymizes_the_right_field(tmp_path: Path, store: Path) -> None:
    # DuckDB's copy of the bad line swallows the delimiter after the bad byte; a preview
    # built from it would pseudonymize the wrong field and show the customer ID.
    path = tmp_path / "order.csv"
    path.write_bytes(
        "item_id,user_id,event_type,timestamp\ncaf\xe9,secret-customer-7,view,x\nb,c,view,y\n".encode(
            "latin-1"
        )
    )
    summary = assert_reconciled(ingest(path, store))
    assert summary["rejected_by_reason"]["malformed line: invalid UTF-8"] == 1
    with Store.open(store, read_only=True) as s:
        raws = [r for (r,) in s.con.execute("SELECT CAST(raw AS VARCHAR) FROM rejects").fetchall()]
    assert raws and not any("secret-customer-7" in r for r in raws), raws


# ---------------------------------------------------------------------------------------------
# real processes: exit code, one stderr line, no traceback


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        pytest.param("nope.csv", nothing, "file not found", id="missing"),
        pytest.param("fake.parquet", text(csv_text(row())), "not a Parquet", id="fake-parquet"),
    ],
)
def test_refusal_in_a_real_process(
    tmp_path: Path,
    store: Path,
    name: str,
    make: Maker,
    problem: str,
) -> None:
    path = tmp_path / name
    make(path)
    command = [sys.executable, "-m", "tailorcast.cli.main", "ingest", str(path)]
    proc = subprocess.run(
        [*command, "--store", str(store), "--insecure-dev", "--json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TAILORCAST_")},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert_refused(Run(proc.returncode, proc.stdout, proc.stderr), str(path), problem)
