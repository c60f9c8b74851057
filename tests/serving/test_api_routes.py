"""The HTTP API through FastAPI's TestClient, around a real engine on a real store."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import (
    KNOWN_CUSTOMER,
    first_item,
    headers,
    item_categories,
    served,
    trained_store,
)
from fastapi.testclient import TestClient

from tailorcast.config import Settings
from tailorcast.marketing.rfm import rfm_segments
from tailorcast.privacy import resolve_keys
from tailorcast.serving.app import create_app
from tailorcast.serving.audit import read_audit
from tailorcast.serving.auth import KeyStore
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.middleware import ACCESS_LOGGER
from tailorcast.serving.settings import ServeSettings
from tailorcast.store import Store


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_store(tmp_path_factory.mktemp("routes"))


@pytest.fixture
def store(shop: Path, tmp_path: Path) -> Path:
    """A private copy: tests here write events, items and erasures."""
    return shutil.copytree(shop, tmp_path / "store")


@pytest.fixture
def api(store: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with served(store) as srv, TestClient(srv.app, raise_server_exceptions=False) as client:
        yield client, {scope: key for scope, key in srv.keys.items()}


def _get(client: TestClient, url: str, key: str) -> Any:
    return client.get(url, headers=headers(key))


def test_recommendations_known_and_unknown_customers(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = api
    known = _get(client, f"/v1/customers/{KNOWN_CUSTOMER}/recommendations?k=5", keys["read"])
    assert known.status_code == 200
    body = known.json()
    assert body["customer_id"] == KNOWN_CUSTOMER and body["model_version"]
    assert [r["rank"] for r in body["items"]] == [1, 2, 3, 4, 5]
    assert all(r["reason"] for r in body["items"])
    cold = _get(client, "/v1/customers/never-seen-42/recommendations?k=4", keys["read"])
    assert cold.status_code == 200 and len(cold.json()["items"]) == 4
    quiet = _get(
        client, f"/v1/customers/{KNOWN_CUSTOMER}/recommendations?explain=false", keys["read"]
    )
    assert all(r["reason"] is None for r in quiet.json()["items"])


def test_filters_and_business_rules(api: tuple[TestClient, dict[str, str]], store: Path) -> None:
    client, keys = api
    categories = item_categories(store)
    wanted = sorted(set(categories.values()))[0]
    url = f"/v1/customers/{KNOWN_CUSTOMER}/recommendations"
    only = _get(client, f"{url}?k=5&category={wanted}", keys["read"])
    assert only.status_code == 200
    got = [r["item_id"] for r in only.json()["items"]]
    assert got and all(categories.get(i) == wanted for i in got)
    none_of = _get(client, f"{url}?k=10&exclude_category={wanted}", keys["read"])
    assert all(categories.get(r["item_id"]) != wanted for r in none_of.json()["items"])
    bad = _get(client, f"{url}?min_price=50&max_price=5", keys["read"])
    assert bad.status_code == 422 and "min_price" in bad.json()["detail"]
    pin = sorted(categories)[-1]
    pinned = client.post(
        url, json={"k": 4, "rules": {"pin": [pin]}}, headers=headers(keys["read"])
    ).json()["items"]
    assert pinned[0]["item_id"] == pin and pinned[0]["reason"] == "promoted"
    unknown_rule = client.post(
        url, json={"rules": {"colour": "red"}}, headers=headers(keys["read"])
    )
    assert unknown_rule.status_code == 422
    assert unknown_rule.json()["detail"].startswith("body.rules.colour")


def test_segments_and_lifetime_value(api: tuple[TestClient, dict[str, str]], store: Path) -> None:
    client, keys = api
    with Store.open(store, read_only=True) as opened:
        rfm = rfm_segments(opened).set_index("user_id")
    resolved = resolve_keys(Settings(), store, insecure_dev=True, create=False)
    buyers = [f"C{i:06d}" for i in range(1, 300)]
    buyer = next(b for b in buyers if resolved.pseudonymizer().one(b) in rfm.index)
    answer = _get(client, f"/v1/customers/{buyer}/segments", keys["read"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = rfm.loc[resolved.pseudonymizer().one(buyer)]
    assert body["rfm"]["segment"] == expected["segment"]
    assert body["rfm"]["frequency"] == int(expected["frequency"])
    assert body["clv"] is None or 0.0 <= body["clv"]["p_alive"] <= 1.0
    assert body["clv"] is not None or body["clv_note"]
    nobody = _get(client, "/v1/customers/never-bought/segments", keys["read"]).json()
    assert nobody["rfm"] is None and nobody["clv"] is None


def test_audiences_and_campaigns(api: tuple[TestClient, dict[str, str]], store: Path) -> None:
    client, keys = api
    admin = headers(keys["admin"])
    category = sorted(set(item_categories(store).values()))[0]
    target = {"category": category}
    found = client.post(
        "/v1/audiences", json={"target": target, "size": 15, "min_size": 5}, headers=admin
    )
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["size"] == 15 and [m["rank"] for m in body["members"]] == list(range(1, 16))
    assert all(m["customer_id"].startswith("C") for m in body["members"])  # shop IDs
    both = client.post(
        "/v1/audiences", json={"target": {"category": category, "item": "x"}}, headers=admin
    )
    assert both.status_code == 422
    made = client.post(
        "/v1/campaigns",
        json={"name": "spring", "target": target, "min_size": 5, "size": 40, "holdout": 0.25},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["members"] == 40 and made.json()["control"] > 0
    again = client.post(
        "/v1/campaigns", json={"name": "spring", "target": target, "min_size": 5}, headers=admin
    )
    assert again.status_code == 422 and "exists already" in again.json()["detail"]
    sheet = client.get("/v1/campaigns/spring/export?contacts=false", headers=admin)
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    lines = sheet.text.strip().splitlines()
    assert lines[0].startswith("customer_pseudonym") and len(lines) - 1 == made.json()["treated"]
    measured = client.get("/v1/campaigns/spring/measure?window_days=14", headers=admin)
    assert measured.status_code == 200 and measured.json()["n_control"] > 0
    missing = client.get("/v1/campaigns/nothing/measure", headers=admin)
    assert missing.status_code == 404
    actions = [e["action"] for e in read_audit(store)]
    assert actions[-2:] == ["campaign.create", "campaign.export"]


@pytest.mark.parametrize("k", ["0", "101", "ten", "2.5"])
def test_bad_k_is_a_422_naming_k(api: tuple[TestClient, dict[str, str]], k: str) -> None:
    client, keys = api
    answer = _get(client, f"/v1/customers/{KNOWN_CUSTOMER}/recommendations?k={k}", keys["read"])
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("query.k:")


def test_similar_items_and_unknown_item(
    api: tuple[TestClient, dict[str, str]], store: Path
) -> None:
    client, keys = api
    item = first_item(store)
    ok = _get(client, f"/v1/items/{item}/similar?k=3", keys["read"])
    assert ok.status_code == 200 and len(ok.json()["items"]) == 3
    assert item not in [r["item_id"] for r in ok.json()["items"]]
    missing = _get(client, "/v1/items/NO-SUCH-ITEM/similar", keys["read"])
    assert missing.status_code == 404
    assert "NO-SUCH-ITEM" in missing.json()["detail"]


def test_rank_orders_candidates_unknown_last(
    api: tuple[TestClient, dict[str, str]], store: Path
) -> None:
    client, keys = api
    item = first_item(store)
    answer = client.post(
        f"/v1/customers/{KNOWN_CUSTOMER}/rank",
        json={"items": ["NOT-IN-CATALOG", item]},
        headers=headers(keys["read"]),
    )
    assert answer.status_code == 200
    assert [r["item_id"] for r in answer.json()["items"]] == [item, "NOT-IN-CATALOG"]


def test_no_model_is_503_saying_train(shop: Path, tmp_path: Path) -> None:
    bare = trained_store(tmp_path, model=False)
    with served(bare) as srv, TestClient(srv.app) as client:
        for url in (
            "/v1/customers/C000001/recommendations",
            f"/v1/items/{first_item(bare)}/similar",
        ):
            answer = _get(client, url, srv.keys["read"])
            assert answer.status_code == 503, url
            assert "tailorcast train" in answer.json()["detail"]
        assert _get(client, "/readyz", srv.keys["read"]).status_code == 503
        assert client.get("/healthz").status_code == 200


def test_events_one_batch_and_duplicates(
    api: tuple[TestClient, dict[str, str]], store: Path
) -> None:
    client, keys = api
    item = first_item(store)
    one = {"user_id": "C000010", "item_id": item, "event_type": "cart", "timestamp": 1714557600}
    answer = client.post(
        "/v1/events", json={**one, "event_id": "e-1"}, headers=headers(keys["write"])
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    batch = {
        "events": [
            {**one, "event_id": f"b-{i}", "timestamp": "2024-05-01T10:00:00", "amount": 9.5}
            for i in range(20)
        ]
        + [{**one, "event_id": "e-1"}]
    }
    report = client.post("/v1/events", json=batch, headers=headers(keys["write"])).json()
    assert report["rows_read"] == 21
    assert report["accepted"] == 20 and report["duplicates"] == 1
    metrics = _get(client, "/metrics", keys["read"]).text
    assert "tailorcast_events_ingested_total 21.0" in metrics
    assert "tailorcast_events_duplicate_total 1.0" in metrics


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "item_id": "i", "event_type": "view"}, "body.event.timestamp"),
        (
            {"user_id": 7, "item_id": "i", "event_type": "view", "timestamp": 1},
            "body.event.user_id",
        ),
        (
            {"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 1, "qty": 2},
            "body.event.qty",
        ),
        (
            {
                "events": [
                    {
                        "user_id": "u",
                        "item_id": "i",
                        "event_type": "v",
                        "timestamp": 1,
                        "quantity": "3",
                    }
                ]
            },
            "body.batch.events.0.quantity",
        ),
        (
            {
                "events": [
                    {
                        "user_id": "u",
                        "item_id": "i",
                        "event_type": "v",
                        "timestamp": 1,
                        "amount": -1.0,
                    }
                ]
            },
            "body.batch.events.0.amount",
        ),
        ({"events": []}, "body.batch.events"),
        ([1, 2], "body.event"),
    ],
)
def test_invalid_events_are_422_naming_the_field(
    api: tuple[TestClient, dict[str, str]], body: Any, field: str
) -> None:
    client, keys = api
    answer = client.post("/v1/events", json=body, headers=headers(keys["write"]))
    assert answer.status_code == 422
    data = answer.json()
    assert field in [e["field"] for e in data["errors"]], data
    assert all("input" not in e for e in data["errors"])  # values are never echoed


def test_malformed_json_and_oversized_bodies(store: Path) -> None:
    with served(store, max_body_bytes=2048) as srv, TestClient(srv.app) as client:
        write = {**headers(srv.keys["write"]), "content-type": "application/json"}
        bad = client.post("/v1/events", content=b'{"user_id": "u",', headers=write)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("body: malformed JSON")
        big = client.post("/v1/events", content=b"[" + b"1," * 2000 + b"1]", headers=write)
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts the stream
            for _ in range(10):
                yield b" " * 500

        streamed = client.post("/v1/events", content=chunks(), headers=write)
        assert streamed.status_code == 413


def test_catalog_updates_and_deletes(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    put = client.put(
        "/v1/items/NEW-ITEM-1",
        json={
            "category": "shoes",
            "price": 49.9,
            "title": "trail shoe",
            "attributes": {"brand": "x"},
        },
        headers=headers(keys["write"]),
    )
    assert put.status_code == 200 and put.json()["updated"] == 1
    bad = client.put(
        "/v1/items/NEW-ITEM-2", json={"price": "cheap"}, headers=headers(keys["write"])
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("body.price")
    for attributes in ({"bad name": 1}, {"Price": "x"}, {"city": "a", "CITY": "b"}):
        bad_attr = client.put(
            "/v1/items/NEW-ITEM-3", json={"attributes": attributes}, headers=headers(keys["write"])
        )
        assert bad_attr.status_code == 422, attributes
        assert bad_attr.json()["detail"].startswith("body.attributes")
    clash = client.put(
        "/v1/customers/C1", json={"attributes": {"User_ID": "x"}}, headers=headers(keys["write"])
    )
    assert clash.status_code == 422
    gone = client.delete("/v1/items/NEW-ITEM-1", headers=headers(keys["write"]))
    assert gone.status_code == 200
    missing = client.delete("/v1/items/NEVER-THERE", headers=headers(keys["write"]))
    assert missing.status_code == 404 and "NEVER-THERE" in missing.json()["detail"]


def test_long_prices_stay_numbers_in_the_store(store: Path) -> None:
    """Found by the schemathesis run: a price like 0.30000000000000004 made the store's price
    column text, and every later money query (segments, CLV) failed."""
    with served(store) as srv, TestClient(srv.app) as client:
        put = client.put(
            "/v1/items/LONG-PRICE",
            json={"price": 0.30000000000000004},
            headers=headers(srv.keys["write"]),
        )
        assert put.status_code == 200
        assert srv.engine.flush()
        with srv.engine.open_store() as opened:
            assert opened.columns("items")["price"] == "DOUBLE"
        assert _get(client, "/v1/customers/C000001/segments", srv.keys["read"]).status_code == 200


def test_admin_actions_are_audited_without_ids(
    api: tuple[TestClient, dict[str, str]], store: Path
) -> None:
    client, keys = api
    admin_id = next(k.id for k in KeyStore(store).entries() if k.scopes == ("admin",))
    info = _get(client, "/v1/model", keys["admin"]).json()
    assert info["ready"] is True and info["version"]
    job = client.post(
        "/v1/model/retrain",
        json={"model": "popularity", "budget_s": 5},
        headers=headers(keys["admin"]),
    )
    assert job.status_code == 202 and job.json()["job"]
    erased = client.delete(f"/v1/customers/{KNOWN_CUSTOMER}", headers=headers(keys["admin"]))
    assert erased.status_code == 200
    entries = read_audit(store)
    assert [e["action"] for e in entries][-2:] == ["model.retrain", "customer.erase"]
    assert all(e["actor"] == f"api-key:{admin_id}" for e in entries[-2:])
    assert entries[-1]["details"]["customer"].startswith("p_")
    assert KNOWN_CUSTOMER not in (store / "audit.jsonl").read_text(encoding="utf-8")


def test_access_log_has_templates_not_ids_or_keys(
    api: tuple[TestClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, keys = api
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        _get(client, f"/v1/customers/{KNOWN_CUSTOMER}/recommendations", keys["read"])
        _get(client, "/v1/customers/secret-customer/nothing-here", keys["read"])
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert any("GET /v1/customers/{customer_id}/recommendations 200" in line for line in lines)
    text = "\n".join(lines)
    assert KNOWN_CUSTOMER not in text and "secret-customer" not in text
    assert keys["read"] not in text and "<unmatched> 404" in text


def test_docs_can_be_turned_off_and_cors_is_off_by_default(store: Path) -> None:
    with served(store) as srv, TestClient(srv.app) as client:
        assert client.get("/openapi.json").status_code == 200
        answer = client.get("/healthz", headers={"Origin": "https://shop.example"})
        assert "access-control-allow-origin" not in answer.headers
    cors = ("https://shop.example",)
    with served(store, docs=False, cors_origins=cors) as srv, TestClient(srv.app) as client:
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404
        preflight = client.options(
            "/v1/events",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


class _BuggyEngine(ServingEngine):
    """A real engine whose recommend has a bug: stands for any unexpected exception."""

    def recommend_versioned(
        self, user_id: str, k: int = 10, **kwargs: Any
    ) -> tuple[str, list[dict[str, Any]]]:
        raise RuntimeError("bug in a recommender")


def test_a_bug_is_a_logged_500_without_ids(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = resolve_keys(Settings(), store, insecure_dev=True, create=False)
    engine = _BuggyEngine(store, keys=keys)
    try:
        app = create_app(engine, settings=ServeSettings(store=store))
        read = KeyStore(store).create(["read"]).key
        with (
            TestClient(app, raise_server_exceptions=False) as client,
            caplog.at_level(logging.ERROR),
        ):
            answer = client.get("/v1/customers/C000099/recommendations", headers=headers(read))
        assert answer.status_code == 500
        assert answer.json() == {"detail": "internal error (logged on the server)"}
        logged = [r for r in caplog.records if r.name == "tailorcast.serving"]
        assert logged and "{customer_id}" in logged[0].getMessage()
        assert "C000099" not in logged[0].getMessage()
    finally:
        engine.close()
