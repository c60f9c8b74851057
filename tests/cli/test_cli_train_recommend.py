"""``tailorcast train``, ``recommend`` and ``similar`` end to end on a demo shop store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from conftest import ingest_demo_shop
from tailorcast.cli import recommend_cmd, train_cmd
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.data import Interactions
from tailorcast.datasets import demo_shop
from tailorcast.ingest.config import IngestConfig
from tailorcast.models import COLD_START_REASON
from tailorcast.store import open_store

app = typer.Typer()
train_cmd.register(app)
recommend_cmd.register(app)


def cli(*args: str | Path) -> Result:
    """Run a command with no TAILORCAST_* settings from the developer's environment."""
    env = {key: None for key in os.environ if key.startswith("TAILORCAST_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-shop")
    ingest_demo_shop(root)
    return root


@pytest.fixture(scope="module")
def trained(shop: Path) -> Path:
    store = shop / "store"
    result = cli("train", "--model", "itemknn", "--param", "neighbors=50", "--store", store)
    assert result.exit_code == 0, result.output
    return store


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a folder without a .env file


def _one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def test_train_named_model_prints_choice_metrics_and_version(trained: Path) -> None:
    result = cli("train", "--model", "ease", "--store", trained, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "ease" and data["params"]["regularization"] == 500.0
    assert 0.0 < data["validation"]["ndcg@10"] <= 1.0
    assert (trained / "models" / data["version"] / "metadata.json").is_file()

    text = cli("train", "--model", "popularity", "--store", trained)
    assert text.exit_code == 0, text.output
    assert "Model popularity" in text.stdout and "ndcg@10" in text.stdout
    assert "Saved version" in text.stdout


def test_train_auto_searches_every_family(shop: Path, tmp_path: Path) -> None:
    result = cli(
        "train", "--store", shop / "store", "--budget", "60", "--max-trials", "7", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["trials"]) == 7
    families = [t["model"] for t in data["trials"]]
    assert families[:5] == ["popularity", "itemknn", "ease", "als", "bpr"]
    best = max(t["ndcg@10"] for t in data["trials"] if t["ndcg@10"] is not None)
    assert data["validation"]["ndcg@10"] == best
    popularity = max(t["ndcg@10"] for t in data["trials"] if t["model"] == "popularity")
    assert data["validation"]["ndcg@10"] >= popularity


def test_recommend_all_writes_shop_ids_without_seen_items(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    result = cli(
        "recommend", "--all", "-k", "5", "--exclude-seen", "--out", out, "--store", trained
    )
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.stdout
    frame = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score", "reason"]
    assert frame["user_id"].str.fullmatch(r"C\d{6}").all()
    assert "C000123" in set(frame["user_id"])  # a customer of the demo shop, as exported
    assert frame.groupby("user_id").size().eq(5).all()

    store, keys = open_store(trained, read_only=True)
    assert keys is not None
    with store:
        inter = Interactions.from_store(store)
    users = inter.user_index(keys.pseudonymizer().many(frame["user_id"].tolist()))
    items = inter.item_index(frame["item_id"].to_numpy(dtype=object))
    assert (users >= 0).all() and (items >= 0).all()
    assert not (np.asarray(inter.matrix[users, items]).ravel() > 0).any()


def test_recommend_unknown_customer_gets_the_cold_start_list(trained: Path) -> None:
    result = cli("recommend", "--user", "C999999", "-k", "4", "--store", trained, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["user_id"] for r in rows} == {"C999999"}
    assert {r["reason"] for r in rows} == {COLD_START_REASON}


def test_recommend_known_customer_table_and_include_seen(trained: Path) -> None:
    result = cli("recommend", "--user", "C000011", "-k", "3", "--store", trained)
    assert result.exit_code == 0, result.output
    assert "C000011" in result.stdout and "because you" in result.stdout
    seen = cli(
        "recommend", "--user", "C000011", "--include-seen", "--no-explain", "--json",
        "--store", trained,
    )  # fmt: skip
    rows = json.loads(seen.stdout)
    assert len(rows) == 10 and all(r["reason"] is None for r in rows)


def test_recommend_rules_flags(trained: Path) -> None:
    store, _ = open_store(trained, read_only=True)
    with store:
        items = store.con.sql("SELECT item_id, category, price, title FROM items").df()
    items = items.set_index("item_id")
    promoted = str(items.index[items["category"] == "toys"][0])
    result = cli(
        "recommend", "--user", "C000011", "--user", "C999999", "-k", "5", "--json",
        "--category", "toys", "--category", "Books", "--max-price", "60",
        "--max-per-category", "3", "--pin", promoted, "--boost", f"{promoted}=2",
        "--exclude-seen", "--store", trained,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pd.DataFrame(json.loads(result.stdout))
    assert rows.groupby("user_id").size().eq(5).all()
    chosen = items.loc[rows["item_id"]]
    assert set(chosen["category"]) <= {"toys", "books"} and (chosen["price"] <= 60).all()
    assert chosen.assign(u=rows["user_id"].to_numpy()).groupby(["u", "category"]).size().max() <= 3
    cold = rows[rows["user_id"] == "C999999"]
    assert cold.iloc[0]["item_id"] == promoted and cold.iloc[0]["reason"] == "promoted"
    viewed = str(items.index[0])
    browsing = cli(
        "recommend", "--user", "C999999", "-k", "3", "--json", "--session-items",
        f"{viewed},NOT-AN-ITEM", "--store", trained,
    )  # fmt: skip
    assert browsing.exit_code == 0, browsing.output
    reasons = {r["reason"] for r in json.loads(browsing.stdout)}
    assert f"because you viewed {items.loc[viewed, 'title']}" in reasons


def test_recommend_all_to_stdout_is_csv(trained: Path) -> None:
    result = cli("recommend", "--all", "-k", "1", "--store", trained)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "user_id,item_id,rank,score,reason"
    assert len(lines) > 200 and all(line.startswith("C") for line in lines[1:])


def test_similar(trained: Path) -> None:
    result = cli("similar", "P00002", "-k", "3", "--store", trained, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(r["source_item_id"] == "P00002" for r in rows)
    assert "P00002" not in {r["item_id"] for r in rows}


def test_similar_unknown_item_exits_2_with_one_line(trained: Path) -> None:
    _one_line_error(cli("similar", "NOPE", "--store", trained), "unknown item 'NOPE'")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["recommend", "-k", "3"], "give --user ID (one or more) or --all"),
        (["recommend", "--all", "--user", "C000001"], "not both or neither"),
        (["recommend", "--all", "-k", "0"], "-k must be at least 1"),
        (["recommend", "--all", "--out", "recs.xlsx"], "unknown extension"),
        (["recommend", "--all", "--model-version", "v1"], "no model version 'v1'"),
        (["recommend", "--all", "--boost", "P00001"], "write ITEM=FACTOR"),
        (["recommend", "--all", "--boost", "P00001=-2"], "must be a number > 0"),
        (["recommend", "--all", "--boost", "P00001=lots"], "is not a number"),
        (["recommend", "--all", "--min-price", "9", "--max-price", "3"], "above max_price"),
        (["recommend", "--all", "--max-per-category", "0"], "max_per_category"),
        (["recommend", "--all", "--seen-events", "purchase,bought"], "unknown event type"),
        (["recommend", "--all", "--session-items", "a,,b"], "without empty ones"),
        (["train", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--param", "neighbors"], "--param takes KEY=VALUE"),
        (["train", "--budget", "0"], "budget must be more than 0"),
    ],
)
def test_user_errors_exit_2_with_one_line(trained: Path, args: list[str], text: str) -> None:
    _one_line_error(cli(*args, "--store", trained), text)


def test_nothing_trained_yet(tmp_path: Path) -> None:
    files = demo_shop(n_customers=40, n_items=15, days=10, seed=1).write(tmp_path / "data")
    run_ingest(
        tmp_path / "store",
        IngestConfig(),
        events=files.events,
        insecure_dev=True,
        show_progress=False,
    )
    for args in (["recommend", "--all"], ["similar", "P00001"]):
        _one_line_error(
            cli(*args, "--store", tmp_path / "store"), "no trained model: run `tailorcast train`"
        )
