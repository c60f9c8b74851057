"""API keys: the store of hashed keys, the CLI, and the auth matrix over every route."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from api_fixtures import (
    KNOWN_CUSTOMER,
    first_item,
    headers,
    item_categories,
    route_samples,
    served,
    trained_store,
)
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tailorcast.cli.main import app as cli
from tailorcast.errors import ConfigError, NotFoundError
from tailorcast.serving.audit import read_audit
from tailorcast.serving.auth import KEYS_FILE, KeyStore

UNKEYED = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_store(tmp_path_factory.mktemp("auth"))


def test_keys_are_stored_hashed_and_checked(store: Path) -> None:
    keys = KeyStore(store)
    created = keys.create(["read", "write"], name="shop backend")
    text = (store / KEYS_FILE).read_text(encoding="utf-8")
    assert created.key not in text
    assert created.key.split("_")[-1] not in text
    assert stat.S_IMODE((store / KEYS_FILE).stat().st_mode) == 0o600
    assert "hidden" in repr(created)
    found = keys.verify(created.key)
    assert found is not None and found.scopes == ("read", "write")
    assert keys.verify(created.key[:-1] + ("A" if created.key[-1] != "A" else "B")) is None
    assert keys.verify("tck_000000000000_" + "A" * 43) is None
    assert keys.verify("not a key") is None


def test_revoked_key_is_refused_by_a_running_reader(store: Path) -> None:
    reader = KeyStore(store)  # as the server holds it
    created = KeyStore(store).create(["read"])
    assert reader.verify(created.key) is not None
    KeyStore(store).revoke(created.info.id)
    reader._checked = 0.0  # the server looks again after RELOAD_EVERY_S
    assert reader.verify(created.key) is None
    listed = {k.id: k for k in reader.entries()}
    assert listed[created.info.id].revoked_at is not None


def test_bad_scopes_and_unknown_ids_are_user_errors(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scope"):
        KeyStore(store).create(["superuser"])
    with pytest.raises(ConfigError, match="at least one scope"):
        KeyStore(store).create([])
    with pytest.raises(NotFoundError, match="no API key"):
        KeyStore(store).revoke("ffffffffffff")
    with pytest.raises(NotFoundError, match="no store"):
        KeyStore(tmp_path).create(["read"])


def test_cli_keys_create_list_revoke(store: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli,
        ["keys", "create", "--scope", "admin", "--name", "ops", "--json", "--store", str(store)],
    )
    assert made.exit_code == 0, made.output
    data = json.loads(made.stdout)
    assert data["key"].startswith("tck_") and data["scopes"] == ["admin"]
    assert KeyStore(store).verify(data["key"]) is not None
    listed = runner.invoke(cli, ["keys", "list", "--json", "--store", str(store)])
    assert listed.exit_code == 0
    assert data["key"] not in listed.stdout
    assert data["id"] in [k["id"] for k in json.loads(listed.stdout)]
    gone = runner.invoke(cli, ["keys", "revoke", data["id"], "--store", str(store)])
    assert gone.exit_code == 0
    assert KeyStore(store).verify(data["key"]) is None
    bad = runner.invoke(cli, ["keys", "create", "--scope", "root", "--store", str(store)])
    assert bad.exit_code == 2 and "unknown scope" in bad.stderr
    actions = [e["action"] for e in read_audit(store) if e["details"].get("id") == data["id"]]
    assert actions == ["api_key.create", "api_key.revoke"]
    assert data["key"] not in (store / "audit.jsonl").read_text(encoding="utf-8")


def test_auth_matrix_every_route(store: Path, tmp_path: Path) -> None:
    """Every keyed route: 401 without a key or with a revoked one, 403 with a key of another
    scope, 2xx with the right scope."""
    import shutil

    shop = shutil.copytree(store, tmp_path / "store")
    samples = route_samples(first_item(shop), sorted(set(item_categories(shop).values()))[0])
    with served(shop) as srv, TestClient(srv.app) as client:
        routes = {
            (method.upper(), path)
            for path, ops in srv.app.openapi()["paths"].items()
            if path not in UNKEYED
            for method in ops
        }
        assert routes == {(s["method"], s["route"]) for s in samples}, "a route lacks a sample"
        revoked = KeyStore(shop).create(["read", "write", "admin"])
        KeyStore(shop).revoke(revoked.info.id)
        srv.app.state.ctx.keys._checked = 0.0
        for s in samples:
            call = {"method": s["method"], "url": s["url"], "json": s.get("json")}
            assert client.request(**call).status_code == 401, s["route"]
            bearer = {"Authorization": f"Bearer {revoked.key}"}
            assert client.request(**call, headers=bearer).status_code == 401, s["route"]
            for other in ("read", "write", "admin"):
                if other != s["scope"]:
                    answer = client.request(**call, headers=headers(srv.keys[other]))
                    assert answer.status_code == 403, (s["route"], other)
                    assert s["scope"] in answer.json()["detail"]
        for s in samples:
            call = {"method": s["method"], "url": s["url"], "json": s.get("json")}
            answer = client.request(**call, headers=headers(srv.keys[s["scope"]]))
            assert answer.status_code in (200, 201, 202), (s["route"], answer.text)
            bearer = {"Authorization": f"Bearer {srv.keys['all']}"}
            if s["method"] == "GET":
                assert client.request(**call, headers=bearer).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(store: Path) -> None:
    with served(store, rate_limit=1.0, rate_burst=3) as srv, TestClient(srv.app) as client:
        url = "/v1/customers/C000001/recommendations"
        codes = [client.get(url, headers=headers(srv.keys["read"])).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        limited = client.get(url, headers=headers(srv.keys["read"]))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # the limit is per key: another key still gets through
        assert client.get(url, headers=headers(srv.keys["all"])).status_code == 200
        text = client.get("/metrics", headers=headers(srv.keys["all"])).text
        assert "tailorcast_rate_limited_total 3.0" in text


def test_no_key_is_401_before_the_body_is_read(store: Path) -> None:
    """A request without a valid key is refused before its body is parsed or even read:
    malformed JSON or an oversized body without a key is 401, not 422 or 413."""
    with served(store, max_body_bytes=1000) as srv, TestClient(srv.app) as client:
        broken = {"content": b'{"events": [', "headers": {"Content-Type": "application/json"}}
        for url in (
            "/v1/events",
            f"/v1/customers/{KNOWN_CUSTOMER}/recommendations",
            f"/v1/customers/{KNOWN_CUSTOMER}/rank",
            "/v1/model/retrain",
        ):
            answer = client.post(url, **broken)  # type: ignore[arg-type]
            assert answer.status_code == 401, url
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "API key is required" in answer.json()["detail"]
            wrong = {**broken["headers"], "X-API-Key": "tck_000000000000_" + "A" * 43}
            assert client.post(url, content=broken["content"], headers=wrong).status_code == 401
        assert client.post("/v1/events", content=b"x" * 5000).status_code == 401
        assert client.get("/no/such/route").status_code == 401
        # With a key the body is judged as before: 422 naming the body, 413 when too big.
        keyed = {**broken["headers"], **headers(srv.keys["write"])}
        answer = client.post("/v1/events", content=broken["content"], headers=keyed)
        assert answer.status_code == 422 and answer.json()["detail"].startswith("body")
        big = client.post("/v1/events", content=b"x" * 5000, headers=keyed)
        assert big.status_code == 413
        assert client.get("/no/such/route", headers=keyed).status_code == 404
        # The OpenAPI document still says which routes take which key.
        doc = srv.app.openapi()
        assert set(doc["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
        ops = doc["paths"]["/v1/events"]["post"]
        assert {"APIKeyHeader": []} in ops["security"]
        assert "security" not in doc["paths"]["/healthz"]["get"]
