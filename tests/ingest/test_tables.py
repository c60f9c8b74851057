"""Customers and products tables: encryption, type inference, upsert, rejects, imputation."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tailorcast.errors import ConfigError, DataError, KeyMaterialError
from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import IngestSummary, ingest_events
from tailorcast.ingest.tables import ingest_table
from tailorcast.privacy import Keys
from tailorcast.store import Store

KEYS = Keys(b"k" * 32, b"e" * 32)


def pid(raw: str) -> str:
    return KEYS.pseudonymizer().one(raw)


def rows(store: Store, sql: str, params: object = None) -> list[tuple[Any, ...]]:
    cur = store.con.execute(sql, params) if params is not None else store.con.execute(sql)
    return [tuple(r) for r in cur.fetchall()]


def ingest(store: Store, kind: str, source: Any, cfg: IngestConfig | None = None) -> IngestSummary:
    summary = ingest_table(store, kind, source, config=cfg, keys=KEYS)  # type: ignore[arg-type]
    assert summary.rows_read == summary.accepted + summary.rejected + summary.duplicates
    return summary


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "s", create=True)
    yield s  # type: ignore[misc]
    s.close()


USERS_CSV = (
    "user_id,email,first_name,age,vip,city,score\n"
    "alice,alice@mail.test,Alice,31,yes,Oslo,1.5\n"
    "bob,bob@mail.test,Bob,45,no,Rome,2\n"
    "carol,,Carol,,YES,,\n"
)


def _user(store: Store, raw: str, *cols: str) -> tuple[Any, ...]:
    select = ", ".join(f'"{c}"' for c in cols)
    [row] = rows(store, f"SELECT {select} FROM users WHERE user_id = ?", [pid(raw)])
    return row


def test_users_personal_columns_are_encrypted(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS_CSV)
    s = ingest(store, "users", path)
    assert (s.rows_read, s.accepted, s.rejected, s.duplicates) == (3, 3, 0, 0)
    cols = store.columns("users")
    assert cols["email"] == "BLOB" and cols["first_name"] == "BLOB"
    cipher = KEYS.cipher()
    email, first = _user(store, "alice", "email", "first_name")
    assert isinstance(email, bytes) and b"alice" not in email
    assert cipher.decrypt(email, "users.email") == "alice@mail.test"
    assert cipher.decrypt(first, "users.first_name") == "Alice"
    assert _user(store, "carol", "email") == (None,)  # a blank stays missing, not encrypted ""
    with pytest.raises(KeyMaterialError):
        cipher.decrypt(email, "users.first_name")  # bound to its column
    # raw IDs are pseudonymized like in events, and can be mapped back
    assert sorted(r[0] for r in rows(store, "SELECT user_id FROM users")) == sorted(
        pid(u) for u in ("alice", "bob", "carol")
    )
    assert store.reidentify([pid("bob")], KEYS) == ["bob"]


def test_configured_personal_columns(store: Store) -> None:
    cfg = IngestConfig.model_validate({"privacy": {"pii_columns": ["mobile"]}})
    df = pd.DataFrame({"user_id": ["u1"], "mobile": ["+47 123"], "email": ["x@y.test"]})
    ingest(store, "users", df, cfg)
    cols = store.columns("users")
    assert cols["mobile"] == "BLOB" and cols["email"] == "VARCHAR"


def test_numeric_and_boolean_columns_are_inferred(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS_CSV)
    ingest(store, "users", path)
    cols = store.columns("users")
    assert (cols["age"], cols["vip"], cols["city"], cols["score"]) == (
        "DOUBLE",
        "BOOLEAN",
        "VARCHAR",
        "DOUBLE",
    )
    assert _user(store, "alice", "age", "vip", "city", "score") == (31.0, True, "Oslo", 1.5)
    assert _user(store, "bob", "age", "vip", "score") == (45.0, False, 2.0)
    assert _user(store, "carol", "age", "vip", "city") == (None, True, None)


def test_codes_with_leading_zeros_stay_text(store: Store) -> None:
    df = pd.DataFrame({"user_id": ["u1", "u2"], "zip": ["01109", "20095"]})
    ingest(store, "users", df)
    assert sorted(r[0] for r in rows(store, "SELECT CAST(zip AS VARCHAR) FROM users")) == [
        "01109",
        "20095",
    ]


def test_reingest_with_some_columns_updates_those_and_keeps_the_others(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS_CSV)
    first = ingest(store, "users", path)
    update = pd.DataFrame({"user_id": ["bob", "dave"], "city": ["Paris", "Lima"]})
    second = ingest(store, "users", update)
    assert (second.accepted, second.duplicates) == (2, 0)
    assert store.count("users") == 4
    assert _user(store, "bob", "city", "age", "vip", "batch_id") == (
        "Paris",
        45.0,
        False,
        second.batch_id,
    )
    [email] = _user(store, "bob", "email")
    assert KEYS.cipher().decrypt(email, "users.email") == "bob@mail.test"
    # untouched customers keep their values and their batch
    assert _user(store, "alice", "city", "batch_id") == ("Oslo", first.batch_id)
    assert _user(store, "dave", "city", "age", "email") == ("Lima", None, None)
    assert store.count("identities") == 4


def test_duplicate_ids_in_a_file_last_one_wins(store: Store) -> None:
    df = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i1", " i1 "],
            "category": ["shoes", "hats", "boots", "sandals"],
            "price": ["10", "20", "11", "12"],
        }
    )
    s = ingest(store, "items", df)
    assert (s.rows_read, s.accepted, s.rejected, s.duplicates) == (4, 2, 0, 2)
    assert rows(store, "SELECT item_id, category, price FROM items ORDER BY 1") == [
        ("i1", "sandals", 12.0),
        ("i2", "hats", 20.0),
    ]


def test_items_with_bad_prices_are_rejected_with_a_reason(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,category,price\n"
        "i1,shoes,10.5\n"
        "i2,shoes,ten\n"
        "i3,hats,-4\n"
        "i4,hats,inf\n"
        "i5,hats,\n"
        ",hats,3\n"
    )
    s = ingest(store, "items", path)
    assert (s.rows_read, s.accepted, s.rejected, s.duplicates) == (6, 2, 4, 0)
    assert s.rejected_by_reason == {
        "missing item_id": 1,
        "negative price": 1,
        "price is not a number": 1,
        "price is not finite": 1,
    }
    assert rows(store, "SELECT item_id, price FROM items ORDER BY 1") == [
        ("i1", 10.5),
        ("i5", None),
    ]
    got = rows(store, "SELECT line, reason, column_name, raw FROM rejects ORDER BY line")
    assert [(r[0], r[1], r[2]) for r in got] == [
        (3, "price is not a number", "price"),
        (4, "negative price", "price"),
        (5, "price is not finite", "price"),
        (7, "missing item_id", "item_id"),
    ]
    missing_id = json.loads(got[3][3])
    assert (missing_id["item_id"], missing_id["category"]) == (None, "hats")
    # the same file again adds no second copy of its rejects
    ingest(store, "items", path)
    assert store.count("rejects") == 4


def test_price_rejects_keep_the_refused_value(store: Store) -> None:
    df = pd.DataFrame({"item_id": ["i2", "i3"], "price": ["ten", "-4"]})
    ingest(store, "items", df)
    raws = [json.loads(r[0]) for r in rows(store, "SELECT raw FROM rejects ORDER BY line")]
    assert raws == [{"item_id": "i2", "price": "ten"}, {"item_id": "i3", "price": "-4"}]


def test_rejects_of_a_second_dataframe_are_stored(store: Store) -> None:
    ingest(store, "items", pd.DataFrame({"item_id": ["i1"], "price": ["-1"]}))
    s = ingest(store, "items", pd.DataFrame({"item_id": ["i2"], "price": ["-5"]}))
    assert s.rejected == 1
    assert store.count("rejects") == 2


def test_users_rejects_withhold_personal_data(store: Store) -> None:
    df = pd.DataFrame(
        {"user_id": ["u1", None, "x" * 300], "email": ["a@b.test", "c@d.test", "e@f.test"]}
    )
    s = ingest(store, "users", df)
    assert s.rejected_by_reason == {"missing user_id": 1, "user_id too long": 1}
    raws = [json.loads(r[0]) for r in rows(store, "SELECT raw FROM rejects ORDER BY line")]
    assert raws == [
        {"user_id": None, "email": "[personal data withheld]"},
        {"user_id": pid("x" * 300), "email": "[personal data withheld]"},
    ]


IMPUTE_TOML = """
[users.impute]
age = "median"
city = { strategy = "constant", value = "unknown" }
segment = "drop"

[items.impute]
price = "mean"
category = "mode"
"""


def test_imputation_is_recorded_and_dropped_rows_are_rejected(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ingest.toml").write_text(IMPUTE_TOML)
    cfg = IngestConfig.load(tmp_path / "ingest.toml")
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "age": ["20", "", "40", "30", None],
            "city": ["Oslo", None, "Rome", " ", "Oslo"],
            "segment": ["a", "b", None, "a", "b"],
        }
    )
    s = ingest(store, "users", users, cfg)
    assert (s.rows_read, s.accepted, s.rejected, s.duplicates) == (5, 4, 1, 0)
    assert s.rejected_by_reason == {"missing value (imputation: drop)": 1}
    assert s.imputations == [
        {"table": "users", "column": "age", "strategy": "median", "n_imputed": 2,
         "fill_value": "25.0"},
        {"table": "users", "column": "city", "strategy": "constant", "n_imputed": 2,
         "fill_value": "unknown"},
        {"table": "users", "column": "segment", "strategy": "drop", "n_imputed": 1,
         "fill_value": None},
    ]  # fmt: skip
    # the median is over the rows kept (u3 with age 40 is dropped): median(20, 30) = 25
    assert _user(store, "u2", "age", "city") == (25.0, "unknown")
    assert _user(store, "u4", "city") == ("unknown",)
    assert rows(store, "SELECT count(*) FROM users WHERE user_id = ?", [pid("u3")]) == [(0,)]
    [(reason, raw)] = rows(store, "SELECT reason, raw FROM rejects")
    assert reason == "missing value (imputation: drop)"
    assert json.loads(raw)["user_id"] == pid("u3")
    assert rows(
        store,
        "SELECT batch_id, table_name, column_name, strategy, n_imputed, fill_value "
        "FROM imputations ORDER BY column_name",
    ) == [
        (s.batch_id, "users", "age", "median", 2, "25.0"),
        (s.batch_id, "users", "city", "constant", 2, "unknown"),
        (s.batch_id, "users", "segment", "drop", 1, None),
    ]

    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "category": ["hats", "shoes", None, "hats"],
            "price": ["10", None, "20", "30"],
        }
    )
    t = ingest(store, "items", items, cfg)
    assert [
        (r["column"], r["strategy"], r["n_imputed"], r["fill_value"]) for r in t.imputations
    ] == [
        ("price", "mean", 1, "20.0"),
        ("category", "mode", 1, "hats"),
    ]
    assert rows(store, "SELECT item_id, category, price FROM items ORDER BY 1") == [
        ("i1", "hats", 10.0),
        ("i2", "shoes", 20.0),
        ("i3", "hats", 20.0),
        ("i4", "hats", 30.0),
    ]
    [(n_batches,)] = rows(store, "SELECT count(*) FROM batches")
    assert n_batches == 2


def test_users_table_and_events_share_pseudonyms(store: Store) -> None:
    events = pd.DataFrame(
        {
            "user_id": ["alice"],
            "item_id": ["i1"],
            "event_type": ["view"],
            "timestamp": ["2026-01-01T10:00:00Z"],
        }
    )
    ingest_events(store, events, keys=KEYS)
    ingest(store, "users", pd.DataFrame({"user_id": ["alice"], "age": ["30"]}))
    assert rows(store, "SELECT u.age FROM events e JOIN users u USING (user_id)") == [(30.0,)]
    assert store.count("identities") == 1


def test_users_table_cannot_switch_off_pseudonyms_of_a_pseudonymized_store(store: Store) -> None:
    events = pd.DataFrame(
        {
            "user_id": ["alice"],
            "item_id": ["i1"],
            "event_type": ["view"],
            "timestamp": ["2026-01-01T10:00:00Z"],
        }
    )
    ingest_events(store, events, keys=KEYS)
    raw = IngestConfig.model_validate({"privacy": {"pseudonymize": False}})
    with contextlib.suppress(ConfigError):  # refusing is one correct answer ...
        ingest_table(store, "users", pd.DataFrame({"user_id": ["alice"]}), config=raw, keys=KEYS)
    # ... storing the raw ID is not
    assert rows(store, "SELECT count(*) FROM users WHERE user_id = 'alice'") == [(0,)]


def test_missing_id_column_is_a_data_error(store: Store) -> None:
    with pytest.raises(DataError, match="user_id"):
        ingest_table(store, "users", pd.DataFrame({"customer": ["a"]}), keys=KEYS)
    cfg = IngestConfig.load(mapping={"customer": "user_id"})
    s = ingest(store, "users", pd.DataFrame({"customer": ["a"], "age": ["3"]}), cfg)
    assert s.accepted == 1
    assert rows(store, "SELECT user_id, age FROM users") == [(pid("a"), 3.0)]
