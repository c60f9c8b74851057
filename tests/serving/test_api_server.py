"""The real server: ``tailorcast serve`` in its own process on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_fixtures import KNOWN_CUSTOMER, first_item, trained_store

CLI = [sys.executable, "-m", "tailorcast.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_store(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log = tmp_path_factory.mktemp("log") / "server.log"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
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
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
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
        yield base, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _key(store: Path, scope: str) -> dict[str, str]:
    made = _cli("keys", "create", "--scope", scope, "--json", "--store", str(store))
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    return {"key": data["key"], "id": data["id"]}


def test_real_server_end_to_end(server: tuple[str, Path], store: Path) -> None:
    base, log = server
    read, write = _key(store, "read"), _key(store, "write")  # made while the server runs
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/v1/customers/C000001/recommendations").status_code == 401
        recs = client.get(
            f"/v1/customers/{KNOWN_CUSTOMER}/recommendations?k=5",
            headers={"X-API-Key": read["key"]},
        )
        assert recs.status_code == 200 and len(recs.json()["items"]) == 5
        event = {
            "user_id": "C000123",
            "item_id": first_item(store),
            "event_type": "purchase",
            "timestamp": "2024-05-02T08:00:00Z",
            "amount": 12.0,
        }
        posted = client.post("/v1/events", json=event, headers={"X-API-Key": write["key"]})
        assert posted.status_code == 200 and posted.json()["accepted"] == 1
        wrong = client.post("/v1/events", json=event, headers={"X-API-Key": read["key"]})
        assert wrong.status_code == 403
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {read['key']}"})
        assert "tailorcast_events_ingested_total 1.0" in metrics.text
        assert client.get("/openapi.json").status_code == 200

        revoked = _cli("keys", "revoke", read["id"], "--store", str(store))
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 5
        while True:  # the server rereads the keys file within about a second
            status = client.get("/readyz", headers={"X-API-Key": read["key"]}).status_code
            if status == 401:
                break
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.2)
    text = log.read_text()
    assert "GET /v1/customers/{customer_id}/recommendations 200" in text
    for secret in (KNOWN_CUSTOMER, "C000123", read["key"], write["key"]):
        assert secret not in text


def test_serve_refuses_a_missing_store(tmp_path: Path) -> None:
    done = _cli("serve", "--store", str(tmp_path / "nothing"), "--port", str(_free_port()))
    assert done.returncode == 2 and "no store" in done.stderr
