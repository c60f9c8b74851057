"""``tailorcast evaluate`` end to end on an ingested demo shop.

The command is registered on a Typer app built here (``evaluate_cmd.register``), the way
``tailorcast.cli.main`` registers it; errors a user causes propagate as ``UserError``
subclasses, which ``main()`` turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from tailorcast.cli import evaluate_cmd
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.errors import ConfigError, DataError, NotFoundError, UserError
from tailorcast.evaluation import ALL_ACCURACY
from tailorcast.evaluation.report import REPORT_FILES
from tailorcast.ingest.config import IngestConfig
from tailorcast.store import Store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def root() -> None:
        """A command group, like the real ``tailorcast`` app."""

    evaluate_cmd.register(app)
    return app


APP = make_app()


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(APP, ["evaluate", *map(str, args)], env={"COLUMNS": "220"})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evaluate")
    files = demo_shop(n_customers=300, n_items=80, days=30, seed=5).write(folder / "data")
    store_dir = folder / "store"
    run_ingest(
        store_dir,
        IngestConfig(),
        events=files.events,
        users=files.customers,
        items=files.items,
        insecure_dev=True,
        show_progress=False,
    )
    return store_dir


def test_json_on_stdout_matches_the_library(store: Path) -> None:
    got = run("--store", store, "--models", "popularity,itemknn", "--json", "-", "--seed", "3")
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)  # nothing but JSON on stdout
    assert data["protocol"] == "random" and data["seed"] == 3 and data["k"] == 10
    assert list(data["models"]) == ["popularity", "itemknn"]
    pop, knn = (data["models"][m]["metrics"] for m in ("popularity", "itemknn"))
    # The demo shop's customers have category tastes: neighbours beat the best sellers.
    assert knn["ndcg@10"] > pop["ndcg@10"] + 0.1
    assert knn["recall@10"] > pop["recall@10"]

    direct = evaluate_cmd.run_evaluate(
        store, "popularity,itemknn", seed=3, show_progress=False
    ).to_dict()
    for label in ("popularity", "itemknn"):
        assert data["models"][label]["metrics"] == direct["models"][label]["metrics"]
    for key in ("n_users", "n_items", "n_train_events", "n_test_users", "fingerprint"):
        assert data[key] == direct[key], key


def test_table_json_file_and_report(store: Path, tmp_path: Path) -> None:
    out, folder = tmp_path / "out" / "eval.json", tmp_path / "report"
    args: list[str | Path] = ["--models", "popularity,ease", "-k", "5"]
    args += ["--json", out, "--report", folder]
    got = run("--store", store, *args)
    assert got.exit_code == 0, got.output
    for column in [f"{m}@5" for m in ALL_ACCURACY] + ["coverage@5", "novelty@5", "diversity@5"]:
        assert column in got.stdout
    assert "popularity" in got.stdout and "ease" in got.stdout
    assert "ease vs popularity" in got.stdout or "popularity vs ease" in got.stdout
    data = json.loads(out.read_text())
    assert data["k"] == 5 and data["ks"] == [1, 5, 10, 20]
    assert {"popularity", "ease"} == set(data["models"])
    table_value = f"{data['models']['ease']['metrics']['ndcg@5']:.4f}"
    assert table_value in got.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    for name in ("metrics_by_model.png", "metric_by_k.png"):
        raw = (folder / name).read_bytes()
        assert raw[:8] == PNG_SIGNATURE and len(raw) > 1024
    assert "| model | precision@5 |" in (folder / "report.md").read_text()


@pytest.mark.parametrize("protocol", ["temporal", "last", "session"])
def test_every_protocol_runs(store: Path, protocol: str) -> None:
    model = "itemknn:neighbors=20"
    got = run("--store", store, "--models", model, "--protocol", protocol, "--json", "-")
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    assert data["protocol"] == ("last_session" if protocol == "session" else protocol)
    assert data["models"]["itemknn:neighbors=20"]["params"]["neighbors"] == 20
    assert 0 < data["n_test_users"] <= data["n_users"]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--models", "popularity,nope"], NotFoundError, "unknown model 'nope'"),
        (["--protocol", "shuffle"], ConfigError, "unknown protocol 'shuffle'"),
        (["-k", "0"], ConfigError, "k must be an integer >= 1"),
        (["--models", "ease:regularization=-1"], ConfigError, "greater than 0"),
    ],
)
def test_user_errors_propagate_for_main_to_print(
    store: Path, args: list[str], error: type[UserError], message: str
) -> None:
    got = run("--store", store, "--json", "-", *args)
    assert got.exit_code != 0
    assert isinstance(got.exception, error)
    assert message in str(got.exception)
    assert "\n" not in str(got.exception)
    assert got.stdout == ""


def test_missing_and_empty_stores_are_user_errors(tmp_path: Path) -> None:
    missing = run("--store", tmp_path / "none")
    assert isinstance(missing.exception, NotFoundError)
    assert "no store at" in str(missing.exception)
    Store.open(tmp_path / "empty", create=True).close()
    empty = run("--store", tmp_path / "empty")
    assert isinstance(empty.exception, DataError)
    assert "no events in the store" in str(empty.exception)


def test_json_to_a_folder_is_a_user_error(store: Path, tmp_path: Path) -> None:
    got = run("--store", store, "--models", "popularity", "--json", tmp_path)
    assert isinstance(got.exception, ConfigError)
    assert "cannot write the JSON" in str(got.exception)
