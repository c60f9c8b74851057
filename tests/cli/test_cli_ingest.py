"""CLI end to end on temporary stores: ingest, report, demo, and the keys a store needs.

Most cases run the console-script entry point (``tailorcast.cli.main.main``) in-process for
speed; a few run a real ``python -m tailorcast.cli.main`` to check exit codes and stderr.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from click.testing import CliRunner

from tailorcast.cli.main import main
from tailorcast.datasets import DemoShop, demo_shop
from tailorcast.datasets.demo_shop import DemoFiles
from tailorcast.privacy import Keys, generate_key
from tailorcast.schema import EVENT_TYPES
from tailorcast.store import DB_FILE, Store

IMPUTE_TOML = """
[users.impute]
age = "median"
city = { strategy = "constant", value = "unknown" }
"""

# ---------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    """No TAILORCAST_* settings leak in from the developer's environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TAILORCAST_")}
    env.update(extra or {})
    return env


def cli(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``tailorcast ARGS`` in-process through the console-script entry point.

    ``cwd`` is a folder without a ``.env`` file, so only ``env`` configures the run.
    """
    runner = CliRunner()
    with (
        runner.isolation(env=_clean_env(env)) as (out, err, _),
        mock.patch.object(sys, "argv", ["tailorcast", *map(str, args)]),
        _chdir(cwd),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Run(code, out.getvalue().decode(), err.getvalue().decode())


class _chdir:  # contextlib.chdir, spelled out for clarity of intent in a with-statement
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, Path.cwd()

    def __enter__(self) -> None:
        os.chdir(self.path)

    def __exit__(self, *exc: object) -> None:
        os.chdir(self.old)


def process(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``python -m tailorcast.cli.main ARGS`` as a real process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAILORCAST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tailorcast.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def assert_refused(run: Run, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr with every fragment, no traceback."""
    assert run.code == 2, run
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {run.err!r}"
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_reconciles(summary: dict[str, Any]) -> None:
    for part in [summary, *summary.get("files", [])]:
        assert part["rows_read"] == part["accepted"] + part["rejected"] + part["duplicates"]
        assert sum(part["rejected_by_reason"].values()) == part["rejected"]


def dev_keys(store: Path) -> Keys:
    data = json.loads((store / "dev-keys.json").read_text())
    return Keys(base64.b64decode(data["pseudonym_key"]), base64.b64decode(data["encryption_key"]))


def store_counts(store: Path) -> dict[str, int]:
    with Store.open(store, read_only=True) as s:
        return s.counts()


def ingest(events: Path, store: Path, *extra: str | Path, cwd: Path) -> Run:
    return cli(["ingest", events, "--store", store, "--insecure-dev", "--json", *extra], cwd=cwd)


# ---------------------------------------------------------------------------------------------
# fixtures: one demo shop and two ingested stores per module


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shop")


@pytest.fixture(scope="module")
def shop() -> DemoShop:
    return demo_shop(n_customers=200, n_items=60, days=20, seed=3)


@pytest.fixture(scope="module")
def files(shop: DemoShop, shop_dir: Path) -> DemoFiles:
    return shop.write(shop_dir / "data")


@pytest.fixture(scope="module")
def full(files: DemoFiles, shop_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Events, customers and products ingested with an imputation config."""
    store = shop_dir / "full-store"
    config = shop_dir / "impute.toml"
    config.write_text(IMPUTE_TOML)
    tables = ["--users", files.customers, "--items", files.items, "--config", config]
    run = cli(
        ["ingest", files.events, *tables, "--store", store, "--insecure-dev", "--json"],
        cwd=shop_dir,
    )
    return store, run.json()


@pytest.fixture(scope="module")
def baseline(files: DemoFiles, shop_dir: Path) -> dict[str, Any]:
    """The events CSV alone into a fresh store: what other formats must match."""
    return ingest(files.events, shop_dir / "baseline-store", cwd=shop_dir).json()


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def small_events(path: Path, rows: int = 3) -> Path:
    lines = ["user_id,item_id,event_type,timestamp,amount"]
    lines += [f"cust-{i},item-{i},view,2025-03-0{1 + i % 9}T10:00:00Z," for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# ingest of a demo shop


def test_demo_shop_ingest_totals_reconcile(
    full: tuple[Path, dict[str, Any]], shop: DemoShop
) -> None:
    store, summary = full
    assert_reconciles(summary)
    by_kind = {f["kind"]: f for f in summary["files"]}
    assert [f["kind"] for f in summary["files"]] == ["items", "users", "events"]
    assert by_kind["events"]["rows_read"] == len(shop.events)
    assert by_kind["users"]["rows_read"] == len(shop.customers)
    assert by_kind["items"]["rows_read"] == len(shop.items)
    for key in ("rows_read", "accepted", "rejected", "duplicates"):
        assert summary[key] == sum(f[key] for f in summary["files"])
    ev = by_kind["events"]
    assert ev["rejected"] > 0 and ev["duplicates"] > 0  # the shop's planted dirt
    assert ev["near_duplicates"] > 0 and ev["bots_flagged"] == len(shop.truth.bot_user_ids)
    counts = store_counts(store)
    assert counts["events"] == ev["accepted"]
    assert counts["users"] == len(shop.customers) and counts["items"] == len(shop.items)
    assert counts["rejects"] == summary["rejected"]
    assert counts["batches"] == 3


def test_same_file_twice_adds_nothing(files: DemoFiles, work: Path) -> None:
    store = work / "store"
    first = ingest(files.events, store, cwd=work).json()
    counts = store_counts(store)
    second = ingest(files.events, store, cwd=work).json()
    assert_reconciles(first)
    assert_reconciles(second)
    assert second["rows_read"] == first["rows_read"]
    assert second["accepted"] == 0
    assert second["rejected"] == first["rejected"]
    assert second["duplicates"] == second["rows_read"] - second["rejected"]
    again = store_counts(store)
    assert again["events"] == counts["events"] == first["accepted"]
    assert again["rejects"] == counts["rejects"] == first["rejected"]  # not doubled
    assert again["batches"] == 2


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv.gz"])
def test_other_formats_give_the_same_counts_as_csv(
    files: DemoFiles, baseline: dict[str, Any], work: Path, fmt: str
) -> None:
    frame = pd.read_csv(files.events, dtype=str, keep_default_na=False)
    path = work / f"events.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        path.write_bytes(gzip.compress(files.events.read_bytes()))
    summary = ingest(path, work / "store", cwd=work).json()
    assert_reconciles(summary)
    for key in ("rows_read", "accepted", "rejected", "duplicates", "rejected_by_reason"):
        assert summary[key] == baseline[key], key


def test_map_renamed_columns_and_keep_extra_columns(
    files: DemoFiles, baseline: dict[str, Any], work: Path
) -> None:
    frame = pd.read_csv(files.events, dtype=str, keep_default_na=False)
    frame = frame.rename(columns={"user_id": "customer_id", "item_id": "product_id"})
    frame["order_id"] = [f"o-{i}" for i in range(len(frame))]
    frame["rating"] = ["5" if i % 7 == 0 else "" for i in range(len(frame))]
    path = work / "foreign.csv"
    frame.to_csv(path, index=False)
    store = work / "store"
    summary = ingest(
        path, store, "--map", "customer_id=user_id", "--map", "product_id=item_id", cwd=work
    ).json()
    assert_reconciles(summary)
    # The extra columns make each row's key differ, so only exact duplicates that are also
    # equal in order_id would collapse: none. Accepted + duplicates still match the CSV.
    assert summary["rejected"] == baseline["rejected"]
    assert summary["rejected_by_reason"] == baseline["rejected_by_reason"]
    assert summary["files"][0]["extra_columns"] == ["order_id", "rating"]
    with Store.open(store, read_only=True) as s:
        assert {"order_id", "rating"} <= set(s.columns("events"))
        assert "customer_id" not in s.columns("events")
        got = s.con.execute(
            "SELECT count(*), count(rating), count(DISTINCT order_id) FROM events"
        ).fetchall()[0]
        sample = s.con.execute("SELECT item_id FROM events WHERE order_id = 'o-0'").fetchall()
    assert got[0] == got[2] == summary["accepted"]
    assert 0 < got[1] < got[0]
    assert sample == [(frame.loc[0, "product_id"],)]


def test_event_type_flag_for_a_file_without_the_column(work: Path) -> None:
    path = work / "orders.csv"
    path.write_text(
        "customer,sku,ordered_at,amount,quantity\n"
        "c1,s1,2025-03-01T10:00:00Z,19.90,1\n"
        "c2,s2,2025-03-01T11:00:00Z,5.00,2\n"
        "c3,s3,2025-03-01T12:00:00Z,-1,1\n"
    )
    store = work / "store"
    run = ingest(
        path,
        store,
        "--event-type",
        "purchase",
        "--map",
        "customer=user_id",
        "--map",
        "sku=item_id",
        "--map",
        "ordered_at=timestamp",
        cwd=work,
    )
    summary = run.json()
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    with Store.open(store, read_only=True) as s:
        rows = s.con.execute(
            "SELECT item_id, event_type, amount, quantity FROM events ORDER BY item_id"
        ).fetchall()
    assert rows == [("s1", "purchase", 19.9, 1), ("s2", "purchase", 5.0, 2)]


def test_event_type_synonym_flag_and_missing_column_without_flag(work: Path) -> None:
    path = work / "orders.csv"
    path.write_text("user_id,item_id,timestamp\nc1,s1,2025-03-01T10:00:00Z\n")
    assert ingest(path, work / "a", "--event-type", "Buy", cwd=work).json()["accepted"] == 1
    run = ingest(path, work / "a", cwd=work)  # the store exists: stderr has just the error
    assert_refused(run, str(path), "event_type", "--event-type")


# ---------------------------------------------------------------------------------------------
# report


def test_report_json_matches_what_ingest_did(
    full: tuple[Path, dict[str, Any]], shop: DemoShop, shop_dir: Path
) -> None:
    store, summary = full
    report = cli(["report", "--store", store, "--json"], cwd=shop_dir).json()
    ev = next(f for f in summary["files"] if f["kind"] == "events")
    counts = store_counts(store)
    assert report["counts"] == counts

    funnel = report["funnel"]
    assert [f["event_type"] for f in funnel] == list(EVENT_TYPES)
    assert sum(f["events"] for f in funnel) == counts["events"]
    assert funnel[0]["per_100_views"] == 100.0
    assert all(0 < f["customers"] <= len(shop.customers) for f in funnel)

    by_reason = {(r["kind"], r["reason"]): r["rows"] for r in report["rejects_by_reason"]}
    assert by_reason == {("events", r): n for r, n in ev["rejected_by_reason"].items()}

    assert report["duplicates"] == {
        "exact": ev["duplicates"] - ev["near_duplicates"],
        "near": ev["near_duplicates"],
    }

    pseudonymizer = dev_keys(store).pseudonymizer()
    assert {b["user_id"] for b in report["bots"]} == {
        pseudonymizer.one(u) for u in shop.truth.bot_user_ids
    }
    assert all(b["reason"] and b["events_per_hour"] > 0 for b in report["bots"])

    imputed = {(i["table"], i["column"]): i for i in report["imputations"]}
    assert set(imputed) == {("users", "age"), ("users", "city")}
    assert imputed["users", "age"]["strategy"] == "median"
    assert imputed["users", "city"]["strategy"] == "constant"
    assert imputed["users", "city"]["fill_value"] == "unknown"
    missing_city = int(shop.customers["city"].isna().sum())
    assert imputed["users", "city"]["n_imputed"] == missing_city > 0
    users = next(f for f in summary["files"] if f["kind"] == "users")
    assert {(i["column"], i["n_imputed"]) for i in users["imputations"]} == {
        (i["column"], i["n_imputed"]) for i in imputed.values()
    }


def test_report_on_a_missing_store_is_refused(work: Path) -> None:
    assert_refused(cli(["report", "--store", work / "none", "--json"], cwd=work), "no store at")


def test_ingest_without_any_file_is_refused(work: Path) -> None:
    run = cli(["ingest", "--store", work / "s", "--insecure-dev"], cwd=work)
    assert_refused(run, "nothing to ingest")


# ---------------------------------------------------------------------------------------------
# privacy: pseudonyms only, personal columns encrypted


def test_store_holds_no_raw_customer_ids_or_personal_data(
    full: tuple[Path, dict[str, Any]], shop: DemoShop
) -> None:
    store, _ = full
    raw_ids = set(shop.customers["user_id"].astype(str)) | set(
        shop.events["user_id"].dropna().astype(str)
    )
    emails = set(shop.customers["email"].dropna().astype(str))
    assert raw_ids and emails
    with Store.open(store, read_only=True) as s:
        for table in ("users", "events", "rejects", "identities", "user_flags", "batches"):
            text = "\n".join(
                str(r[0])
                for r in s.con.execute(f"SELECT CAST(t AS VARCHAR) FROM {table} t").fetchall()
            )
            leaked = sorted(x for x in raw_ids | emails if x in text)
            assert not leaked, f"{table} holds raw values: {leaked[:5]}"
        users = s.con.execute("SELECT user_id FROM users").fetchall()
    assert all(u.startswith("p_") for (u,) in users)
    keys = dev_keys(store)
    with Store.open(store, read_only=True) as s:
        back = s.reidentify([keys.pseudonymizer().one("C000001")], keys)
    assert back == ["C000001"]


# ---------------------------------------------------------------------------------------------
# demo


def test_demo_runs_end_to_end_and_refuses_a_non_demo_store(work: Path) -> None:
    demo_store = work / "demo"
    size = ["--customers", "300", "--items", "80", "--days", "30", "--budget", "4", "--json"]
    run = cli(["demo", "--store", demo_store, "--insecure-dev", *size], cwd=work)
    out = run.json()
    # the demo trains, beats popularity and explains one customer's list
    assert out["model"]["version"] and out["model"]["validation"]["ndcg@10"] > 0
    assert out["model"]["validation"]["ndcg@10"] >= out["popularity_ndcg@10"]
    assert len(out["recommendations"]) == 5
    assert all(r["reason"] for r in out["recommendations"])
    assert out["customer"].startswith("C")
    assert_reconciles(out["ingest"])
    assert out["ingest"]["accepted"] > 0 and out["ingest"]["rejected"] > 0
    assert out["report"]["counts"]["users"] == 300
    assert out["report"]["counts"]["items"] == 80
    assert out["report"]["counts"]["events"] == next(
        f["accepted"] for f in out["ingest"]["files"] if f["kind"] == "events"
    )
    assert out["report"]["bots"]
    with Store.open(demo_store, read_only=True) as s:
        assert s.meta("demo") == "true"

    shop_store = work / "shop"
    assert ingest(small_events(work / "e.csv"), shop_store, cwd=work).json()["accepted"] == 3
    before = store_counts(shop_store)
    refused = cli(["demo", "--store", shop_store, "--insecure-dev", *size], cwd=work)
    assert_refused(refused, str(shop_store), "not a demo store")
    assert store_counts(shop_store) == before


# ---------------------------------------------------------------------------------------------
# keys


def test_creating_a_store_without_keys_is_refused(work: Path) -> None:
    events = small_events(work / "e.csv")
    run = cli(["ingest", events, "--store", work / "store", "--json"], cwd=work)
    assert_refused(run, "refusing to create a store without keys", "--insecure-dev")
    assert not (work / "store" / DB_FILE).exists()


def test_keys_from_the_environment_and_a_second_run_with_other_keys(work: Path) -> None:
    keys = {"TAILORCAST_PSEUDONYM_KEY": generate_key(), "TAILORCAST_ENCRYPTION_KEY": generate_key()}
    other = {
        "TAILORCAST_PSEUDONYM_KEY": generate_key(),
        "TAILORCAST_ENCRYPTION_KEY": generate_key(),
    }
    events = small_events(work / "e.csv")
    store = work / "store"
    args: list[str | Path] = ["ingest", events, "--store", store, "--insecure-dev", "--json"]
    first = cli(args, cwd=work, env=keys)
    assert first.json()["accepted"] == 3
    assert not (store / "dev-keys.json").exists()  # the environment's keys were used
    env_keys = Keys(
        base64.b64decode(keys["TAILORCAST_PSEUDONYM_KEY"]),
        base64.b64decode(keys["TAILORCAST_ENCRYPTION_KEY"]),
    )
    with Store.open(store, read_only=True) as s:
        assert s.meta("key_fingerprint") == env_keys.fingerprint()
        users = {u for (u,) in s.con.execute("SELECT user_id FROM events").fetchall()}
    assert users == {env_keys.pseudonymizer().one(f"cust-{i}") for i in range(3)}

    again = cli(args, cwd=work, env=keys)
    assert again.json()["duplicates"] == 3

    wrong = cli(args, cwd=work, env=other)
    assert_refused(wrong, "do not belong to the store")
    for secret in other.values():
        assert secret not in wrong.err
    assert store_counts(store)["batches"] == 2


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param({"TAILORCAST_PSEUDONYM_KEY": "K" * 44}, "set both", id="one-key-only"),
        pytest.param(
            {"TAILORCAST_PSEUDONYM_KEY": "not base64!", "TAILORCAST_ENCRYPTION_KEY": "x"},
            "not valid base64",
            id="not-base64",
        ),
        pytest.param(
            {
                "TAILORCAST_PSEUDONYM_KEY": base64.b64encode(b"short").decode(),
                "TAILORCAST_ENCRYPTION_KEY": base64.b64encode(b"k" * 32).decode(),
            },
            "must decode to 32 bytes",
            id="short-key",
        ),
    ],
)
def test_malformed_environment_keys_are_refused(
    work: Path, env: dict[str, str], problem: str
) -> None:
    events = small_events(work / "e.csv")
    run = cli(["ingest", events, "--store", work / "store", "--insecure-dev"], cwd=work, env=env)
    assert_refused(run, problem)
    for secret in env.values():
        assert secret not in run.err


# ---------------------------------------------------------------------------------------------
# stderr discipline


def test_refusal_without_json_prints_one_line(work: Path) -> None:
    store = work / "store"
    assert ingest(small_events(work / "ok.csv"), store, cwd=work).code == 0
    bad = work / "bad.csv"
    bad.write_text("user_id,item_id\nu1,i1\n")
    run = process(["ingest", bad, "--store", store, "--insecure-dev"], cwd=work)
    assert_refused(run, str(bad), "required column(s) missing")


# ---------------------------------------------------------------------------------------------
# real processes


def test_json_output_of_a_real_process_is_pure_json(work: Path) -> None:
    events = small_events(work / "e.csv")
    run = process(
        ["ingest", events, "--store", work / "store", "--insecure-dev", "--json"], cwd=work
    )
    assert run.code == 0, run
    summary = json.loads(run.out)  # nothing but JSON on stdout
    assert (summary["rows_read"], summary["accepted"]) == (3, 3)
    assert "Traceback" not in run.err


def test_real_process_refuses_to_create_a_store_without_keys(work: Path) -> None:
    events = small_events(work / "e.csv")
    run = process(["ingest", events, "--store", work / "store", "--json"], cwd=work)
    assert_refused(run, "refusing to create a store without keys")


# ---------------------------------------------------------------------------------------------
# known bugs outside the readers (each xfail names the file and the fix in the report)


def test_users_file_with_a_column_named_line(work: Path) -> None:
    users = work / "users.csv"
    users.write_text("user_id,_line,age\nu1,x,30\nu2,y,41\n")
    run = cli(
        ["ingest", "--users", users, "--store", work / "s", "--insecure-dev", "--json"], cwd=work
    )
    summary = run.json()
    assert (summary["accepted"], summary["rejected"]) == (2, 0)


@pytest.mark.parametrize("command", ["ingest", "demo"])
def test_store_path_that_is_a_file_is_refused(work: Path, command: str) -> None:
    events = small_events(work / "e.csv")
    args: list[str | Path] = (
        ["ingest", events]
        if command == "ingest"
        else ["demo", "--customers", "20", "--items", "12", "--days", "2", "--json"]
    )
    run = cli([*args, "--store", events, "--insecure-dev"], cwd=work)
    assert_refused(run, str(events), "not a folder")
