"""``tailorcast audience`` and ``tailorcast campaign`` end to end on a demo-shop store:
exit 0 with the files written, exit 2 with one line on stderr for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from conftest import ingest_demo_shop
from tailorcast.cli import audience_cmd, campaign_cmd, experiment_cmd, train_cmd

app = typer.Typer()
for module in (audience_cmd, campaign_cmd, experiment_cmd, train_cmd):
    module.register(app)


def cli(*args: str | Path) -> Result:
    env = {key: None for key in os.environ if key.startswith("TAILORCAST_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = ingest_demo_shop(tmp_path_factory.mktemp("cli"), customers=400, items=60, days=30)
    run = cli("train", "--model", "itemknn", "--param", "neighbors=40", "--store", folder)
    assert run.exit_code == 0, run.output
    return folder


def _refused(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def test_audience_command(store: Path, tmp_path: Path) -> None:
    run = cli("audience", "--category", "toys", "--size", "60", "--store", store, "--json")
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["size"] == 60 and out["target"] == {"category": "toys"}
    plain = cli("audience", "--category", "toys", "--store", store, "--out", tmp_path / "a.csv")
    assert plain.exit_code == 0, plain.output
    assert "customer_pseudonym" in pd.read_csv(tmp_path / "a.csv").columns
    shown = cli(
        "audience", "--category", "toys", "--reveal", "--store", store, "--out", tmp_path / "b.csv"
    )
    assert shown.exit_code == 0, shown.output
    assert pd.read_csv(tmp_path / "b.csv")["email"].str.contains("@").all()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--category", "toys", "--size", "10"], "below the minimum"),
        (["--category", "toys", "--min-size", "5000"], "fewer than the minimum of 5000"),
        (["--category", "toys", "--item", "P00001"], "exactly one of"),
        ([], "exactly one of"),
        (["--category", "nothing-like-it"], "unknown category"),
        (["--segment", "Royalty"], "unknown segment"),
        (["--category", "toys", "--reveal"], "--out"),
        (["--category", "toys", "--out", "x.txt"], "unknown extension"),
    ],
)
def test_audience_bad_input_exits_2(store: Path, args: list[str], text: str) -> None:
    _refused(cli("audience", *args, "--store", store), text)


def test_campaign_create_export_measure_list(store: Path, tmp_path: Path) -> None:
    run = cli(
        "campaign", "create", "--name", "spring", "--audience-category", "fashion",
        "--holdout", "20%", "--items-per-customer", "2", "--seed", "3", "--send-date",
        "2026-02-04", "--store", store, "--json",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    made = json.loads(run.stdout)
    assert made["control"] == round(0.2 * made["members"]) and made["treated"] > 0
    exported = cli("campaign", "export", "spring", "--out", tmp_path / "m.csv", "--store", store)
    assert exported.exit_code == 0, exported.output
    frame = pd.read_csv(tmp_path / "m.csv")
    assert 0.8 * made["treated"] <= len(frame) <= made["treated"]  # those with an offer
    assert {"customer_id", "email", "first_name", "item_2_title", "item_2_reason"} <= set(
        frame.columns
    )
    measured = cli("campaign", "measure", "spring", "--window-days", "14", "--store", store)
    assert measured.exit_code == 0, measured.output
    assert "conversion" in measured.stdout and "interval" in measured.stdout
    as_json = cli("campaign", "measure", "spring", "--store", store, "--json")
    assert json.loads(as_json.stdout)["n_control"] == made["control"]
    listed = cli("campaign", "list", "--store", store, "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["spring"]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["create", "--name", "x", "--audience-category", "fashion", "--holdout", "0%"],
         "holdout"),
        (["create", "--name", "x", "--audience-category", "fashion", "--holdout", "ten"],
         "holdout"),
        (["create", "--name", "x"], "exactly one of"),
        (["create", "--name", "x", "--audience-category", "fashion", "--min-size", "9999"],
         "minimum"),
        (["create", "--name", "x", "--audience-item", "NOPE"], "unknown item"),
        (["create", "--name", "x", "--audience-category", "fashion", "--send-date", "soon"],
         "send date"),
        (["measure", "no-such"], "no campaign"),
        (["export", "no-such", "--out", "x.csv"], "no campaign"),
    ],
)  # fmt: skip
def test_campaign_bad_input_exits_2(store: Path, args: list[str], text: str) -> None:
    _refused(cli("campaign", *args, "--store", store), text)


def test_campaign_needs_a_store(tmp_path: Path) -> None:
    _refused(cli("campaign", "list", "--store", tmp_path / "none"), "no store")


def test_campaign_offers_respect_business_rules(store: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"max_price": 25}), encoding="utf-8")
    for name, extra in (("toys-all", []), ("toys-cheap", ["--rules", rules])):
        run = cli(
            "campaign", "create", "--name", name, "--audience-category", "toys", *extra,
            "--store", store, "--json",
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        out = cli("campaign", "export", name, "--out", tmp_path / f"{name}.csv", "--store", store)
        assert out.exit_code == 0, out.output
    prices = {}
    for name in ("toys-all", "toys-cheap"):
        frame = pd.read_csv(tmp_path / f"{name}.csv")
        prices[name] = frame[[c for c in frame.columns if c.endswith("_price")]].stack().dropna()
        assert frame["item_1_id"].notna().all()
    assert (prices["toys-all"] > 25).any()  # without the rule, dearer toys are offered
    assert len(prices["toys-cheap"]) and (prices["toys-cheap"] <= 25).all()
    rules.write_text(json.dumps({"max_price": "cheap"}), encoding="utf-8")
    bad = cli(
        "campaign", "create", "--name", "bad", "--audience-category", "toys",
        "--rules", rules, "--store", store,
    )  # fmt: skip
    _refused(bad, "max_price")


def test_experiment_create_serve_measure(store: Path, tmp_path: Path) -> None:
    from tailorcast.artifacts import list_versions

    run = cli("train", "--model", "popularity", "--store", store)
    assert run.exit_code == 0, run.output
    knn, pop = list_versions(store)[:2]
    made = cli(
        "experiment", "create", "pop-vs-knn", "--variant", f"control={pop}",
        "--variant", f"knn={knn}", "--weight", "knn=3", "--store", store, "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    served = cli(
        "experiment", "serve", "pop-vs-knn", "-k", "4", "--out", tmp_path / "s.csv",
        "--store", store, "--json",
    )  # fmt: skip
    assert served.exit_code == 0, served.output
    counts = json.loads(served.stdout)["customers"]
    assert counts["knn"] > 2 * counts["control"] > 0  # weights 1:3
    lists = pd.read_csv(tmp_path / "s.csv")
    assert set(lists["variant"]) == {"control", "knn"}
    assert lists["user_id"].str.startswith("C").all()  # the shop's IDs in the file
    measured = cli("experiment", "measure", "pop-vs-knn", "--store", store, "--json")
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.stdout)
    assert [v["variant"] for v in report["variants"]] == ["control", "knn"]
    _refused(
        cli("experiment", "create", "x", "--variant", "a=nope", "--variant", "b", "--store", store),
        "no model version",
    )
    _refused(cli("experiment", "create", "x", "--variant", "a", "--store", store), "two variants")
    _refused(cli("experiment", "measure", "nope", "--store", store), "no experiment")
    _refused(
        cli("experiment", "create", "y", "--variant", "a", "--variant", "b", "--weight", "c=2",
            "--store", store),
        "unknown variant",
    )  # fmt: skip
