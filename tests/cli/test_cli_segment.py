"""``tailorcast segment rfm|clusters|clv`` and ``propensity train|score`` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from tailorcast.cli import propensity_cmd, segment_cmd
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.ingest.config import IngestConfig

app = typer.Typer()
segment_cmd.register(app)
propensity_cmd.register(app)


def cli(*args: str | Path) -> Result:
    env = {key: None for key in os.environ if key.startswith("TAILORCAST_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("segment-shop")
    made = demo_shop(n_customers=500, n_items=80, days=150, seed=3, mean_lifetime_days=150)
    files = made.write(root / "data")
    run_ingest(
        root / "store",
        IngestConfig(),
        events=files.events,
        users=files.customers,
        items=files.items,
        insecure_dev=True,
        show_progress=False,
    )
    return root / "store", made.customers


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def test_rfm_writes_pseudonyms_or_shop_ids(shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    store, customers = shop
    result = cli("segment", "rfm", "--store", store, "--out", tmp_path / "rfm.csv")
    assert result.exit_code == 0, result.output
    assert "Champions" in result.output
    table = pd.read_csv(tmp_path / "rfm.csv")
    assert table["user_id"].str.startswith("p_").all()
    result = cli(
        "segment",
        "rfm",
        "--store",
        store,
        "--as-of",
        "2026-04-01",
        "--shop-ids",
        "--insecure-dev",
        "--out",
        tmp_path / "rfm.parquet",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    shop_ids = pd.read_parquet(tmp_path / "rfm.parquet")
    assert summary["customers"] == len(shop_ids) < len(table)
    assert set(shop_ids["user_id"]) <= set(customers["user_id"])


def test_clusters_and_clv(shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    store, _ = shop
    result = cli("segment", "clusters", "--store", store, "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["k"] == 3
    result = cli(
        "segment",
        "clv",
        "--store",
        store,
        "--as-of",
        "2026-04-15",
        "--horizon-days",
        "30",
        "--out",
        tmp_path / "clv.json",
    )
    assert result.exit_code == 0, result.output
    assert "BG/NBD" in result.output
    table = pd.read_json(tmp_path / "clv.json")
    assert list(table.columns) == ["user_id", "expected_purchases", "expected_spend", "p_alive"]


def test_user_errors_exit_2(shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    store, _ = shop
    _one_line_error(
        cli("segment", "clv", "--store", store, "--as-of", "2026-04-15", "--horizon-days", "-1"),
        "--horizon-days",
    )
    _one_line_error(cli("segment", "rfm", "--store", store, "--as-of", "soon"), "as_of")
    _one_line_error(cli("segment", "rfm", "--store", tmp_path / "none"), "no store")
    _one_line_error(
        cli("segment", "rfm", "--store", store, "--out", tmp_path / "x.txt"), "extension"
    )
    _one_line_error(cli("propensity", "train", "--store", store, "-c", "nope"), "unknown")
    _one_line_error(cli("propensity", "score", "--store", store), "no propensity models")


@pytest.mark.slow
def test_propensity_train_then_score(shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    store, _ = shop
    result = cli("propensity", "train", "--store", store, "-c", "groceries", "--window-days", "21")
    assert result.exit_code == 0, result.output
    assert "groceries" in result.output and "ROC-AUC" in result.output
    assert (store / "marketing" / "propensity" / "meta.json").exists()
    result = cli("propensity", "score", "--store", store, "--out", tmp_path / "p.csv", "--json")
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "p.csv")
    assert set(scores["category"]) == {"groceries"}
    assert scores["probability"].between(0, 1).all()
    assert json.loads(result.stdout)["rows"] == len(scores)
    _one_line_error(cli("propensity", "score", "--store", store, "-c", "books"), "no model")
