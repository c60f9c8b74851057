"""The Store: schema, transactions, keys binding, opening rules, locking, re-identification."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tailorcast.config import Settings
from tailorcast.errors import KeyMaterialError, NotFoundError, UserError
from tailorcast.ingest.events import ingest_events
from tailorcast.privacy import Keys, generate_key
from tailorcast.store import DB_FILE, Store, open_store

KEYS = Keys(b"k" * 32, b"e" * 32)
TABLES = {
    "meta",
    "batches",
    "events",
    "users",
    "items",
    "rejects",
    "identities",
    "imputations",
    "user_flags",
    "audit_log",
    "erasures",
}


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TAILORCAST_PSEUDONYM_KEY", "TAILORCAST_ENCRYPTION_KEY", "TAILORCAST_STORE"):
        monkeypatch.delenv(name, raising=False)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _tables(store: Store) -> set[str]:
    rows = store.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {str(r[0]) for r in rows}


def test_create_makes_folder_and_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a" / "s", create=True) as store:
        assert (tmp_path / "a" / "s" / DB_FILE).exists()
        assert _tables(store) == TABLES
        assert store.meta("schema_version") == "1"
        assert store.meta("created_at") is not None
        assert store.counts() == {"events": 0, "users": 0, "items": 0, "rejects": 0, "batches": 0}
        assert list(store.columns("users")) == ["user_id", "batch_id", "updated_at"]
    # opening again keeps the tables and the creation time
    with Store.open(tmp_path / "a" / "s") as again:
        assert _tables(again) == TABLES


def test_store_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        Store.open(tmp_path / "f", create=True)


def test_transaction_commits_on_success(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        with store.transaction() as con:
            con.execute("INSERT INTO items (item_id, price) VALUES ('i1', 3.5)")
        assert store.con.execute("SELECT item_id, price FROM items").fetchall() == [("i1", 3.5)]


def test_transaction_rolls_back_on_exception(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        store.con.execute("INSERT INTO items (item_id) VALUES ('kept')")
        with pytest.raises(RuntimeError, match="boom"), store.transaction() as con:
            con.execute("INSERT INTO items (item_id) VALUES ('gone')")
            store.audit("test", {"n": 1})
            store.add_columns("items", {"brand": "VARCHAR"})
            raise RuntimeError("boom")
        assert store.con.execute("SELECT item_id FROM items").fetchall() == [("kept",)]
        assert store.count("audit_log") == 0
        assert "brand" not in store.columns("items")
        # the connection is usable again afterwards
        with store.transaction() as con:
            con.execute("INSERT INTO items (item_id) VALUES ('later')")
        assert store.count("items") == 2


def test_add_columns_keeps_existing_columns_and_data(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        store.con.execute("INSERT INTO users (user_id) VALUES ('u1')")
        store.add_columns("users", {"USER_ID": "BIGINT", "city": "VARCHAR", "age": "DOUBLE"})
        store.add_columns("users", {"City": "BIGINT"})  # same name, other case: no-op
        assert store.columns("users") == {
            "user_id": "VARCHAR",
            "batch_id": "BIGINT",
            "updated_at": "TIMESTAMP",
            "city": "VARCHAR",
            "age": "DOUBLE",
        }
        assert store.con.execute("SELECT user_id, city FROM users").fetchall() == [("u1", None)]


def test_bind_keys_records_first_keys_and_refuses_others(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        assert store.meta("key_fingerprint") is None
        store.bind_keys(KEYS)
        assert store.meta("key_fingerprint") == KEYS.fingerprint()
        store.bind_keys(Keys(b"k" * 32, b"e" * 32))  # the same keys again: fine
        with pytest.raises(KeyMaterialError, match="do not belong"):
            store.bind_keys(Keys(b"k" * 32, b"E" * 32))
        assert store.meta("key_fingerprint") == KEYS.fingerprint()


def test_open_store_refuses_to_create_without_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="refusing to create"):
        open_store(tmp_path / "s", settings=_settings(), create=True)
    assert not (tmp_path / "s" / DB_FILE).exists()
    assert not (tmp_path / "s" / "dev-keys.json").exists()


def test_open_store_insecure_dev_writes_private_dev_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "s"
    store, keys = open_store(folder, settings=_settings(), create=True, insecure_dev=True)
    store.close()
    dev = folder / "dev-keys.json"
    assert keys is not None and keys.development
    assert stat.S_IMODE(dev.stat().st_mode) == 0o600
    err = capsys.readouterr().err
    assert "--insecure-dev" in err and str(dev) in err
    assert keys.pseudonym_key.hex() not in err
    # later opens find the development keys without the flag, and without a second note
    again, keys2 = open_store(folder, settings=_settings())
    again.close()
    assert keys2 is not None and keys2.fingerprint() == keys.fingerprint()
    assert capsys.readouterr().err == ""


def test_open_store_with_environment_keys_binds_them(tmp_path: Path) -> None:
    pk, ek = generate_key(), generate_key()
    settings = _settings(pseudonym_key=pk, encryption_key=ek)
    store, keys = open_store(tmp_path / "s", settings=settings, create=True)
    store.close()
    assert keys is not None and not keys.development
    assert not (tmp_path / "s" / "dev-keys.json").exists()
    with pytest.raises(KeyMaterialError, match="do not belong"):
        open_store(
            tmp_path / "s",
            settings=_settings(pseudonym_key=pk, encryption_key=generate_key()),
        )
    with pytest.raises(KeyMaterialError, match="do not belong"):
        open_store(
            tmp_path / "s",
            settings=_settings(pseudonym_key=generate_key(), encryption_key=ek),
            read_only=True,
        )


def test_read_only_open_of_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no store"):
        Store.open(tmp_path / "missing", read_only=True)
    with pytest.raises(NotFoundError):
        Store.open(tmp_path / "missing")
    keyed = _settings(pseudonym_key=generate_key(), encryption_key=generate_key())
    with pytest.raises(NotFoundError):
        open_store(tmp_path / "missing", settings=keyed, read_only=True)
    assert not (tmp_path / "missing").exists()


def test_read_only_open_store_of_missing_store_without_keys_says_not_found(
    tmp_path: Path,
) -> None:
    with pytest.raises(NotFoundError):
        open_store(tmp_path / "missing", settings=_settings(), read_only=True, need_keys=False)


_HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
print("locked", flush=True)
time.sleep(20)
"""


def test_store_locked_by_another_process_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    Store.open(folder, create=True).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(folder / DB_FILE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="in use by another tailorcast process"):
            Store.open(folder)
        with pytest.raises(UserError, match="in use"):
            Store.open(folder, read_only=True)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    with Store.open(folder) as store:  # free again once the other process is gone
        assert store.count("events") == 0


def test_reidentify_round_trip(tmp_path: Path) -> None:
    events = pd.DataFrame(
        {
            "user_id": ["alice@shop", "bob-77", "alice@shop"],
            "item_id": ["i1", "i2", "i3"],
            "event_type": ["view", "view", "purchase"],
            "timestamp": ["2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z", "2026-01-01T10:09:00Z"],
        }
    )
    with Store.open(tmp_path / "s", create=True) as store:
        ingest_events(store, events, keys=KEYS)
        alice = KEYS.pseudonymizer().one("alice@shop")
        bob = KEYS.pseudonymizer().one("bob-77")
        assert store.count("identities") == 2
        assert store.reidentify([bob, "p_unknown", alice, alice], KEYS) == [
            "bob-77",
            None,
            "alice@shop",
            "alice@shop",
        ]
        assert store.reidentify([], KEYS) == []
        with pytest.raises(KeyMaterialError):
            store.reidentify([alice], Keys(b"k" * 32, b"E" * 32))


def test_reidentify_is_identity_without_pseudonyms(tmp_path: Path) -> None:
    from tailorcast.ingest.config import IngestConfig

    cfg = IngestConfig.model_validate({"privacy": {"pseudonymize": False}})
    events = pd.DataFrame(
        {
            "user_id": ["alice"],
            "item_id": ["i1"],
            "event_type": ["view"],
            "timestamp": ["2026-01-01T10:00:00Z"],
        }
    )
    with Store.open(tmp_path / "s", create=True) as store:
        ingest_events(store, events, config=cfg, keys=KEYS)
        assert not store.pseudonymized
        assert store.reidentify(["alice", "zed"], KEYS) == ["alice", "zed"]
