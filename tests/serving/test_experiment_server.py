"""A/B tests on the live server (``tailorcast serve --experiment``): deterministic variants,
each answered by its own model version, every served list recorded with its variant through
the spool into ``experiment_served``, and ``experiment measure`` working on those records."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import typer
from api_fixtures import copy_store, headers, served
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import ingest_demo_shop
from tailorcast.artifacts import latest_version, list_versions
from tailorcast.cli import experiment_cmd
from tailorcast.config import Settings
from tailorcast.marketing.experiments import (
    Assigner,
    Experiment,
    Variant,
    assign_variants,
    check_experiment,
    create_experiment,
    measure_experiment,
)
from tailorcast.privacy import DEV_KEYS_FILE, Keys, resolve_keys
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.experiments import close_experiment, experiment_server
from tailorcast.serving.spool import segments
from tailorcast.store import Store
from tailorcast.training import train

CLI = [sys.executable, "-m", "tailorcast.cli.main"]
EXPERIMENT = "srv"


def _fixed_dev_keys(store_dir: Path) -> None:
    """Development keys known in advance: the same pseudonyms, so the same variants, on
    every run (the split, and so the measured figures, do not change between runs)."""
    store_dir.mkdir(parents=True)
    keys = {
        "pseudonym_key": base64.b64encode(bytes(range(32))).decode(),
        "encryption_key": base64.b64encode(bytes(range(32, 64))).decode(),
    }
    (store_dir / DEV_KEYS_FILE).write_text(json.dumps(keys), encoding="utf-8")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo store with two model versions (item-kNN, then popularity: the current one) and
    an experiment: ``control`` follows the current model, ``knn`` is pinned to the first."""
    root = tmp_path_factory.mktemp("experiment-server")
    _fixed_dev_keys(root / "store")
    folder = ingest_demo_shop(root, customers=300, items=80, days=30)
    with Store.open(folder, read_only=True) as opened:
        train(opened, "itemknn")
    with Store.open(folder, read_only=True) as opened:
        train(opened, "popularity")
    first, current = list_versions(folder)
    assert latest_version(folder) == current
    with Store.open(folder) as opened:
        create_experiment(opened, EXPERIMENT, {"control": None, "knn": first})
    return folder


def _keys(store: Path) -> Keys:
    return resolve_keys(Settings(), store, insecure_dev=True, create=False)


def _customers(store: Path, keys: Keys) -> list[str]:
    """Shop IDs of every customer with events."""
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute("SELECT DISTINCT user_id FROM events ORDER BY 1").fetchall()
        ids = opened.reidentify([str(r[0]) for r in rows], keys)
    return sorted(str(i) for i in ids if i is not None)


def _now_iso() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _purchases(answers: dict[str, dict[str, Any]], rates: dict[str, float]) -> list[dict[str, Any]]:
    """Customers buy the first item they were shown, at their variant's rate (seeded)."""
    rng = np.random.default_rng(11)
    now = _now_iso()
    return [
        {
            "user_id": cid,
            "item_id": body["items"][0]["item_id"],
            "event_type": "purchase",
            "timestamp": now,
            "amount": 25.0,
            "event_id": f"ab-{cid}",
        }
        for cid, body in sorted(answers.items())
        if body["items"] and rng.random() < rates[body["variant"]]
    ]


def test_assigner_matches_the_batch_assignment() -> None:
    ids = [f"p_{i}" for i in range(3000)]
    exp = Experiment(
        name="w",
        salt="w",
        variants=(Variant(name="a", weight=3), Variant(name="b"), Variant(name="c", weight=2)),
    )
    one = Assigner(exp)
    assert [one(u) for u in ids] == list(assign_variants("w", ids, ["a", "b", "c"], [3, 1, 2]))


def test_server_assigns_answers_records_and_measures(shop: Path, tmp_path: Path) -> None:
    store = copy_store(shop, tmp_path / "store")
    keys = _keys(store)
    pseudonym = keys.pseudonymizer().one
    first, current = list_versions(store)
    variant_of = Assigner(check_experiment(store, EXPERIMENT))
    customers = _customers(store, keys)
    with served(store, experiment=EXPERIMENT) as s:
        client = TestClient(s.app)
        read, write = headers(s.keys["read"]), headers(s.keys["write"])
        answers: dict[str, dict[str, Any]] = {}
        for cid in customers:
            got = client.get(f"/v1/customers/{cid}/recommendations?k=5", headers=read)
            assert got.status_code == 200, got.text
            answers[cid] = got.json()
        # the POST form runs the experiment too, and a customer keeps their variant
        again = client.post(
            f"/v1/customers/{customers[0]}/recommendations", json={"k": 5}, headers=read
        )
        assert again.json()["variant"] == answers[customers[0]]["variant"]
        # each list comes from its variant's model version
        for cid, body in answers.items():
            assert body["variant"] == variant_of(pseudonym(cid))
            assert body["model_version"] == (first if body["variant"] == "knn" else current)
        split = pd.Series([b["variant"] for b in answers.values()]).value_counts()
        assert set(split.index) == {"control", "knn"} and split.min() > 0.35 * len(customers)
        control_lists = {
            tuple(i["item_id"] for i in b["items"])
            for b in answers.values()
            if b["variant"] == "control"
        }
        knn_lists = {
            tuple(i["item_id"] for i in b["items"])
            for b in answers.values()
            if b["variant"] == "knn"
        }
        assert len(knn_lists) > 5 * len(control_lists)  # personal lists vs a popularity chart
        plain = s.engine.recommend(customers[1], 5)  # the current model, outside the test
        if answers[customers[1]]["variant"] == "control":
            assert [r["item_id"] for r in plain] == [
                i["item_id"] for i in answers[customers[1]]["items"]
            ]

        time.sleep(1.5)  # purchases come after the lists, at whole-second timestamps
        rates = {"control": 0.1, "knn": 0.6}
        events = _purchases(answers, rates)
        posted = client.post("/v1/events", json={"events": events}, headers=write)
        assert posted.status_code == 200 and posted.json()["accepted"] == len(events)
        close_experiment(s.app)
        assert s.engine.flush()

    with Store.open(store, read_only=True) as opened:
        recorded = opened.con.execute(
            "SELECT user_id, variant, items FROM experiment_served WHERE experiment = ?",
            [EXPERIMENT],
        ).df()
        report = measure_experiment(opened, EXPERIMENT, window_days=1)
    # every served list is recorded once, with the customer's pseudonym and variant
    assert len(recorded) == len(customers) + 1
    assert set(recorded["user_id"]) == {pseudonym(c) for c in customers}
    assert (recorded["variant"] == [variant_of(u) for u in recorded["user_id"]]).all()
    by_user = recorded.drop_duplicates("user_id").set_index("user_id")["items"]
    for cid in customers[:20]:
        shown = [i["item_id"] for i in answers[cid]["items"]]
        assert list(by_user[pseudonym(cid)]) == shown
    # the measurement sees the served split and the simulated effect
    by = {v.variant: v for v in report.variants}
    assert by["control"].customers == split["control"] and by["knn"].customers == split["knn"]
    assert by["knn"].hit_rate > by["control"].hit_rate and by["knn"].hit_rate_p < 0.001
    low, high = by["knn"].conversion_ci
    assert low <= rates["knn"] - rates["control"] <= high


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_real_server_records_what_measure_counts(shop: Path, tmp_path: Path) -> None:
    store = copy_store(shop, tmp_path / "store")
    made = {
        scope: json.loads(
            _cli("keys", "create", "--scope", scope, "--json", "--store", str(store)).stdout
        )["key"]
        for scope in ("read", "write")
    }
    customers = _customers(store, _keys(store))[:120]
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--store",
                str(store),
                "--insecure-dev",
                "--port",
                str(port),
                "--rate-limit",
                "0",
                "--experiment",
                EXPERIMENT,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up: " + log.read_text()
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            for cid in customers:
                got = client.get(
                    f"/v1/customers/{cid}/recommendations?k=4", headers=headers(made["read"])
                )
                assert got.status_code == 200, got.text
                answers[cid] = got.json()
            time.sleep(1.5)
            events = _purchases(answers, {"control": 0.1, "knn": 0.7})
            posted = client.post(
                "/v1/events", json={"events": events}, headers=headers(made["write"])
            )
            assert posted.status_code == 200, posted.text
    finally:
        proc.send_signal(signal.SIGINT)  # an orderly stop flushes and merges the served lists
        proc.wait(timeout=60)
    measured = _cli(
        "experiment", "measure", EXPERIMENT, "--window-days", "1", "--json", "--store", str(store)
    )
    assert measured.returncode == 0, measured.stderr
    report = json.loads(measured.stdout)
    counts = {v["variant"]: v["customers"] for v in report["variants"]}
    expected = pd.Series([a["variant"] for a in answers.values()]).value_counts().to_dict()
    assert counts == expected
    knn = next(v for v in report["variants"] if v["variant"] == "knn")
    assert knn["hit_rate_lift"] > 0.3 and knn["hit_rate_p"] < 0.01


def test_serve_refuses_an_unknown_experiment(shop: Path) -> None:
    done = _cli(
        "serve",
        "--store",
        str(shop),
        "--insecure-dev",
        "--port",
        str(_free_port()),
        "--experiment",
        "nope",
    )
    assert done.returncode == 2 and "no experiment 'nope'" in done.stderr


def test_measure_merges_lists_still_in_the_spool(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists a server wrote to its spool but no merge has reached yet (say it was killed)
    are merged by ``experiment measure`` itself, once, and counted."""
    store = copy_store(shop, tmp_path / "store")
    engine = ServingEngine(store, keys=_keys(store), background=False)
    try:
        server = experiment_server(engine, EXPERIMENT)
        assert server is not None
        customers = _customers(store, _keys(store))[:50]
        arms = [server.recommend(cid, 3)[0] for cid in customers]
        server.close()  # written and sealed; the engine never merges (no background loop)
        assert segments(store, sealed_only=True)
        app = typer.Typer()
        experiment_cmd.register(app)
        monkeypatch.chdir(tmp_path)
        env = {key: None for key in os.environ if key.startswith("TAILORCAST_")}
        for _ in range(2):  # a second run finds nothing left to merge and the same figures
            done = CliRunner().invoke(
                app,
                ["experiment", "measure", EXPERIMENT, "--json", "--store", str(store)],
                env=env,
            )
            assert done.exit_code == 0, done.output
            counts = {v["variant"]: v["customers"] for v in json.loads(done.stdout)["variants"]}
            assert counts == pd.Series(arms).value_counts().to_dict()
        assert not segments(store, sealed_only=True)
    finally:
        engine.close()
