"""Events ingest: accounting, dedupe, near-duplicates, sessions, outliers, bots, timestamps,
event types, extra columns and privacy, each on data small enough to check by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import IngestSummary, ingest_events
from tailorcast.ingest.tables import ingest_table
from tailorcast.privacy import Keys
from tailorcast.report import data_health
from tailorcast.store import Store

KEYS = Keys(b"k" * 32, b"e" * 32)
T0 = datetime(2026, 3, 2, 10, 0, 0)


def pid(raw: str) -> str:
    return KEYS.pseudonymizer().one(raw)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float = 0, minutes: float = 0) -> str:
    return iso(T0 + timedelta(seconds=seconds, minutes=minutes))


def frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Rows of (user, item, type, timestamp[, amount[, quantity]]) as a text DataFrame."""
    cols = columns or ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity")
    width = max(len(r) for r in rows)
    return pd.DataFrame(
        [[None if v is None else str(v) for v in r] + [None] * (width - len(r)) for r in rows],
        columns=list(cols[:width]),
    )


def config(**sections: Any) -> IngestConfig:
    return IngestConfig.model_validate(sections)


def ingest(store: Store, source: Any, cfg: IngestConfig | None = None, **kw: Any) -> IngestSummary:
    summary = ingest_events(store, source, config=cfg, keys=KEYS, **kw)
    assert summary.rows_read == summary.accepted + summary.rejected + summary.duplicates
    return summary


def rows(store: Store, sql: str, params: object = None) -> list[tuple[Any, ...]]:
    cur = store.con.execute(sql, params) if params is not None else store.con.execute(sql)
    return [tuple(r) for r in cur.fetchall()]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "s", create=True)
    yield s  # type: ignore[misc]
    s.close()


# -- accounting and exact duplicates -------------------------------------------------------
def test_accounting_and_exact_duplicates(store: Store) -> None:
    df = frame(
        [
            ("u1", "i1", "view", at(0)),
            ("u1", "i1", "view", at(0)),  # exact duplicate
            ("u1", "i1", "view", at(0)),  # and again
            ("u2", "i2", "purchase", at(60), "9.5", "1"),
            ("u2", "i2", "purchase", at(60), "9.5", "1"),  # exact duplicate
            ("u3", "i3", "teleport", at(0)),  # unknown event type
            (None, "i3", "view", at(0)),  # missing customer
            ("u4", "i4", "view", "yesterday-ish"),  # unparseable timestamp
            ("u5", "i5", "purchase", at(0), "-3"),  # negative amount
            ("u6", "i6", "cart", at(0), None, "0"),  # quantity below 1
        ]
    )
    s = ingest(store, df)
    assert (s.rows_read, s.accepted, s.rejected, s.duplicates) == (10, 2, 5, 3)
    assert s.near_duplicates == 0
    assert s.rejected_by_reason == {
        "missing user_id": 1,
        "negative amount": 1,
        "quantity is not a whole number >= 1": 1,
        "unknown event type": 1,
        "unparseable timestamp": 1,
    }
    assert store.count("events") == 2
    assert store.count("rejects") == 5
    assert rows(store, "SELECT rows_read, accepted, rejected, duplicates FROM batches") == [
        (10, 2, 5, 3)
    ]
    assert rows(store, "SELECT action FROM audit_log") == [("ingest",)]


@pytest.mark.parametrize("window", [2.0, 0.0])  # 0: no help from near-duplicate detection
def test_the_same_file_twice_adds_nothing(store: Store, tmp_path: Path, window: float) -> None:
    cfg = config(cleaning={"near_duplicate_seconds": window})
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp,amount\n"
        f"u1,i1,view,{at(0)},\n"
        f"u1,i2,purchase,{at(90)},12.00\n"
        f"u2,i1,view,{at(0)},\n"
        f"u2,i1,view,{at(0)},\n"
        f"u3,i1,bogus,{at(0)},\n"
        f"u4,i1,view,1970-01-02T00:00:00Z,\n"
    )
    first = ingest(store, path, cfg)
    assert (first.accepted, first.rejected, first.duplicates) == (3, 2, 1)
    before = {t: store.count(t) for t in ("events", "rejects", "identities", "user_flags")}
    second = ingest(store, path, cfg)
    assert second.accepted == 0
    assert second.duplicates == 4  # the three stored events + the duplicate row
    assert second.rejected == 2  # still counted, so the file reconciles ...
    after = {t: store.count(t) for t in ("events", "rejects", "identities", "user_flags")}
    assert after == before  # ... but neither events nor rejects are stored twice
    assert store.count("batches") == 2


def test_source_event_id_dedupes_even_when_rows_differ_and_are_far_apart(store: Store) -> None:
    data = [("u1", f"i{k}", "view", at(minutes=k), None, None, f"E{k}") for k in range(60)]
    # row 50 repeats E1 with another item, time and type: the source says it is the same event
    data[50] = ("u9", "i999", "purchase", at(minutes=500), "5", "1", "E1")
    df = frame(
        data, ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity", "event_id")
    )
    s = ingest(store, df)
    assert (s.accepted, s.duplicates, s.near_duplicates) == (59, 1, 0)
    assert rows(store, "SELECT item_id, event_type FROM events WHERE event_id = 'E1'") == [
        ("i1", "view")  # the first occurrence is kept
    ]
    assert rows(store, "SELECT count(*) FROM events WHERE item_id = 'i999'") == [(0,)]


def test_source_event_id_dedupes_across_batches(store: Store) -> None:
    cols = ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity", "event_id")
    exact_only = config(cleaning={"near_duplicate_seconds": 0})
    ingest(store, frame([("u1", "i1", "view", at(0), None, None, "E1")], cols), exact_only)
    # the same event again, even with another amount: the source's ID says it is a repeat
    again = frame([("u1", "i1", "view", at(0), "1.0", None, "E1")], cols)
    s = ingest(store, again, exact_only)
    assert (s.accepted, s.duplicates) == (0, 1)
    assert store.count("events") == 1


def test_source_event_id_is_idempotent_even_when_a_resend_moves_the_timestamp(
    store: Store,
) -> None:
    cols = ("user_id", "item_id", "event_type", "timestamp", "amount", "quantity", "event_id")
    ingest(store, frame([("u1", "i1", "purchase", at(0), "10", "1", "ORDER-1")], cols))
    s = ingest(
        store, frame([("u1", "i1", "purchase", at(minutes=-120), "10", "1", "ORDER-1")], cols)
    )
    assert (s.accepted, s.duplicates) == (0, 1)
    assert rows(store, "SELECT count(*) FROM events WHERE event_id = 'ORDER-1'") == [(1,)]


# -- near duplicates ------------------------------------------------------------------------
def test_near_duplicates_within_two_seconds_are_dropped(store: Store) -> None:
    df = frame(
        [
            ("u1", "i1", "view", at(0)),
            ("u1", "i1", "view", at(2)),  # double click: dropped
            ("u2", "i1", "view", at(0)),
            ("u2", "i1", "view", at(1)),  # dropped
            ("u3", "i1", "view", at(0)),
            ("u3", "i1", "view", at(3)),  # 3 s apart: kept
            ("u4", "i1", "view", at(0)),
            ("u4", "i2", "view", at(1)),  # another item: kept
            ("u5", "i1", "view", at(0)),
            ("u5", "i1", "cart", at(1)),  # another type: kept
            ("u6", "i1", "view", at(0)),
            ("u7", "i1", "view", at(1)),  # another customer: kept
        ]
    )
    s = ingest(store, df)
    assert (s.accepted, s.duplicates, s.near_duplicates) == (10, 2, 2)
    assert rows(store, "SELECT count(*) FROM events WHERE user_id = ?", [pid("u3")]) == [(2,)]
    assert rows(store, "SELECT count(*) FROM events WHERE user_id = ?", [pid("u1")]) == [(1,)]


def test_near_duplicate_window_is_configurable(store: Store) -> None:
    df = frame([("u1", "i1", "view", at(0)), ("u1", "i1", "view", at(3))])
    s = ingest(store, df, config(cleaning={"near_duplicate_seconds": 5}))
    assert (s.accepted, s.near_duplicates) == (1, 1)


def test_near_duplicate_of_an_event_stored_by_an_earlier_batch(store: Store) -> None:
    ingest(store, frame([("u1", "i1", "view", at(0)), ("u2", "i1", "view", at(0))]))
    s = ingest(
        store,
        frame(
            [
                ("u1", "i1", "view", at(1)),  # 1 s after the stored event: dropped
                ("u2", "i1", "view", at(5)),  # 5 s after: kept
            ]
        ),
    )
    assert (s.accepted, s.duplicates, s.near_duplicates) == (1, 1, 1)
    assert store.count("events") == 3


# -- sessions -------------------------------------------------------------------------------
def _sessions(store: Store, user: str) -> list[str]:
    return [
        r[0]
        for r in rows(
            store,
            'SELECT session_id FROM events WHERE user_id = ? ORDER BY "timestamp"',
            [pid(user)],
        )
    ]


def test_sessions_split_after_a_long_gap(store: Store) -> None:
    df = frame(
        [
            ("u1", "i1", "view", at(minutes=0)),
            ("u1", "i2", "view", at(minutes=29)),  # 29 min later: same session
            ("u1", "i3", "view", at(minutes=58)),  # 29 min later again: same session
            ("u2", "i1", "view", at(minutes=0)),
            ("u2", "i2", "view", at(minutes=31)),  # 31 min later: a new session
            ("u2", "i3", "view", at(minutes=32)),
        ]
    )
    s = ingest(store, df)
    assert s.sessions_derived == 3
    one = _sessions(store, "u1")
    assert len(one) == 3 and len(set(one)) == 1
    two = _sessions(store, "u2")
    assert two[0] != two[1] and two[1] == two[2]
    assert rows(store, "SELECT count(DISTINCT session_id) FROM events") == [(3,)]


def test_a_gap_of_exactly_thirty_minutes_starts_a_new_session(store: Store) -> None:
    ingest(
        store, frame([("u1", "i1", "view", at(minutes=0)), ("u1", "i2", "view", at(minutes=30))])
    )
    first, second = _sessions(store, "u1")
    assert first != second


def test_sessions_of_different_customers_never_share_an_id(store: Store) -> None:
    raw = config(privacy={"pseudonymize": False})
    df = frame([("customer-0001", "i1", "view", at(0)), ("customer-0002", "i2", "view", at(0))])
    s = ingest(store, df, raw)
    assert s.sessions_derived == 2
    assert rows(store, "SELECT count(DISTINCT session_id) FROM events") == [(2,)]


def test_session_continues_across_batches(store: Store) -> None:
    ingest(store, frame([("u1", "i1", "view", at(minutes=0)), ("u2", "i1", "view", at(0))]))
    [stored] = _sessions(store, "u1")
    s = ingest(
        store,
        frame(
            [
                ("u1", "i2", "view", at(minutes=10)),  # 10 min after the stored event
                ("u1", "i3", "view", at(minutes=15)),
                ("u1", "i4", "view", at(minutes=60)),  # 45 min later: new session
                ("u2", "i5", "view", at(minutes=40)),  # 40 min after u2's stored event
            ]
        ),
    )
    sessions = _sessions(store, "u1")
    assert sessions[:3] == [stored] * 3
    assert sessions[3] != stored
    u2 = _sessions(store, "u2")
    assert u2[0] != u2[1]
    assert s.sessions_derived == 2


def test_provided_session_id_is_kept(store: Store) -> None:
    cols = ("user_id", "item_id", "event_type", "timestamp", "session_id")
    df = frame(
        [
            ("u1", "i1", "view", at(minutes=0), "S-a"),
            ("u1", "i2", "view", at(minutes=120), "S-a"),  # the shop's own sessions win
            ("u1", "i3", "view", at(minutes=121), "S-b"),
        ],
        cols,
    )
    s = ingest(store, df)
    assert _sessions(store, "u1") == ["S-a", "S-a", "S-b"]
    assert s.sessions_derived == 0


# -- outliers -------------------------------------------------------------------------------
def _purchases(big: str = "1000.00") -> pd.DataFrame:
    data: list[tuple[Any, ...]] = [
        (f"u{k}", "i1", "purchase", at(minutes=k), "10.00", "1") for k in range(10)
    ]
    data.append(("u10", "i1", "purchase", at(0), big, "1"))  # 100x the usual price
    data.append(("u11", "i1", "purchase", at(0), "8.00", "1"))  # a 20 % discount
    data.append(("u12", "i1", "purchase", at(0), "30.00", "3"))  # 3 at the usual price
    return frame(data)


def _amounts(store: Store, user: str) -> tuple[float, bool]:
    [row] = rows(store, "SELECT amount, amount_outlier FROM events WHERE user_id = ?", [pid(user)])
    return float(row[0]), bool(row[1])


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_outlier_amount_is_flagged(store: Store, method: str) -> None:
    s = ingest(store, _purchases(), config(cleaning={"outlier_method": method}))
    assert s.outliers == 1 and s.outlier_action == "flag"
    assert _amounts(store, "u10") == (1000.0, True)
    assert _amounts(store, "u11") == (8.0, False)
    assert _amounts(store, "u12") == (30.0, False)
    assert rows(store, "SELECT count(*) FROM events WHERE amount_outlier") == [(1,)]


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_outlier_amount_is_capped(store: Store, method: str) -> None:
    s = ingest(store, _purchases(), config(cleaning={"outliers": "cap", "outlier_method": method}))
    assert s.outliers == 1
    amount, flagged = _amounts(store, "u10")
    assert flagged
    assert 10.0 < amount < 1000.0
    assert amount == pytest.approx(30.0)  # capped at the bound: 3x the item's median price
    assert _amounts(store, "u11") == (8.0, False)


def test_outliers_off_leaves_amounts_alone(store: Store) -> None:
    s = ingest(store, _purchases(), config(cleaning={"outliers": "off"}))
    assert s.outliers == 0
    assert _amounts(store, "u10") == (1000.0, False)


def test_a_tiny_amount_is_an_outlier_too(store: Store) -> None:
    ingest(store, _purchases(big="0.10"))
    assert _amounts(store, "u10") == (0.1, True)


def test_outlier_judged_against_catalogue_price_for_rarely_bought_items(store: Store) -> None:
    # every item is bought once or twice here, so only the catalogue says what is usual
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(9)], "price": ["10"] * 9})
    ingest_table(store, "items", items, keys=KEYS)
    normal = [(f"n{k}", f"i{k}", "purchase", at(k), "10", "1") for k in range(1, 9)]
    s = ingest(
        store,
        frame(
            [
                ("u1", "i0", "purchase", at(0), "1000", "1"),
                ("u2", "i1", "purchase", at(0), "9", "1"),
                ("u3", "i99", "purchase", at(0), "1000", "1"),  # unknown price: not judged
                *normal,
            ]
        ),
    )
    assert s.outliers == 1
    assert _amounts(store, "u1") == (1000.0, True)
    assert _amounts(store, "u2") == (9.0, False)
    assert _amounts(store, "u3") == (1000.0, False)


# -- bots -----------------------------------------------------------------------------------
def test_bot_with_two_thousand_views_in_an_hour_is_flagged(store: Store) -> None:
    data: list[tuple[Any, ...]] = []
    for c in range(50):  # normal customers: a handful of views in an hour
        data += [(f"c{c}", f"i{(c + k) % 40}", "view", at(minutes=10 * k)) for k in range(5)]
    # 2000 views 1.5 s apart, cycling through 40 items so none is a double click
    data += [("crawler-1", f"i{k % 40}", "view", at(seconds=1.5 * k)) for k in range(2000)]
    s = ingest(store, frame(data))
    assert s.accepted == 2250 and s.duplicates == 0
    assert s.bots_flagged == 1
    assert rows(store, "SELECT user_id, events FROM user_flags WHERE is_bot") == [
        (pid("crawler-1"), 2000)
    ]
    assert rows(store, "SELECT count(*) FROM user_flags WHERE NOT is_bot") == [(50,)]
    bots = data_health(store)["bots"]
    assert [b["user_id"] for b in bots] == [pid("crawler-1")]
    assert bots[0]["events"] == 2000 and bots[0]["events_per_hour"] == 2000.0


def test_bot_detection_can_be_turned_off(store: Store) -> None:
    data = [("crawler-1", f"i{k % 40}", "view", at(seconds=1.5 * k)) for k in range(400)]
    data += [(f"c{c}", "i1", "view", at(0)) for c in range(10)]
    s = ingest(store, frame(data), config(cleaning={"bot_detection": False}))
    assert s.bots_flagged == 0 and store.count("user_flags") == 0


# -- timestamps -----------------------------------------------------------------------------
def _ts(store: Store, user: str) -> datetime:
    [(value,)] = rows(store, 'SELECT "timestamp" FROM events WHERE user_id = ?', [pid(user)])
    return value


def test_timestamp_formats_are_parsed_to_utc(store: Store) -> None:
    ten = datetime(2026, 1, 1, 10, 0, 0)
    epoch = int(ten.replace(tzinfo=UTC).timestamp())
    assert epoch == 1767261600
    df = frame(
        [
            ("iso-z", "i1", "view", "2026-01-01T10:00:00Z"),
            ("offset", "i1", "view", "2026-01-01T12:00:00+02:00"),
            ("naive", "i1", "view", "2026-01-01 10:00:00"),
            ("seconds", "i1", "view", str(epoch)),
            ("millis", "i1", "view", str(epoch * 1000)),
            ("frac", "i1", "view", "2026-01-01T10:00:00.250Z"),
        ]
    )
    s = ingest(store, df)
    assert s.accepted == 6
    for user in ("iso-z", "offset", "naive", "seconds", "millis"):
        assert _ts(store, user) == ten, user
    assert _ts(store, "frac") == ten + timedelta(milliseconds=250)


def test_datetime_and_integer_dataframe_columns(store: Store) -> None:
    ten = datetime(2026, 1, 1, 10, 0, 0)
    aware = pd.DataFrame(
        {
            "user_id": ["a"],
            "item_id": ["i"],
            "event_type": ["view"],
            "timestamp": [pd.Timestamp("2026-01-01 11:00", tz="Europe/Berlin")],
        }
    )
    ints = aware.assign(user_id=["b"], timestamp=[1767261600])
    ingest(store, aware)
    ingest(store, ints)
    assert _ts(store, "a") == ten and _ts(store, "b") == ten


def test_explicit_timestamp_format(store: Store) -> None:
    cfg = IngestConfig.load(timestamp_format="%Y%m%d")
    df = frame(
        [
            ("u1", "i1", "view", "20260101"),
            ("u2", "i1", "view", "2026-01-01T10:00:00Z"),  # does not match the format
        ]
    )
    s = ingest(store, df, cfg)
    assert s.accepted == 1
    assert _ts(store, "u1") == datetime(2026, 1, 1)
    assert s.rejected_by_reason == {"unparseable timestamp": 1}


def test_invalid_timestamp_format_is_a_config_error(store: Store) -> None:
    with pytest.raises(ConfigError, match="%Q"):
        ingest_events(
            store,
            frame([("u1", "i1", "view", "20260101")]),
            config=IngestConfig.load(timestamp_format="%Q"),
            keys=KEYS,
        )
    assert store.count("events") == 0 and store.count("batches") == 0


def test_future_and_ancient_timestamps_are_rejected(store: Store) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    df = frame(
        [
            ("u1", "i1", "view", iso(now + timedelta(days=30))),
            ("u2", "i1", "view", "1989-12-31T23:59:59Z"),
            ("u3", "i1", "view", "1990-01-02T00:00:00Z"),
            ("u4", "i1", "view", iso(now - timedelta(minutes=5))),
            ("u5", "i1", "view", "99999999999999999"),  # no sane epoch
        ]
    )
    s = ingest(store, df)
    assert s.accepted == 2
    assert s.rejected_by_reason == {
        "timestamp in the future": 1,
        "timestamp too old": 1,
        "unparseable timestamp": 1,
    }
    assert rows(store, "SELECT column_name FROM rejects GROUP BY 1") == [("timestamp",)]


# -- event types ----------------------------------------------------------------------------
def test_event_type_synonyms_map_to_canonical_types(store: Store) -> None:
    df = frame(
        [
            ("u1", "i1", "BUY", at(0)),
            ("u2", "i1", "add_to_cart", at(0)),
            ("u3", "i1", "Click", at(0)),
            ("u4", "i1", "wishlist", at(0)),
            ("u5", "i1", "  Purchase ", at(0)),
            ("u6", "i1", "teleport", at(0)),
        ]
    )
    s = ingest(store, df)
    got = dict(rows(store, "SELECT user_id, event_type FROM events"))
    assert got == {
        pid("u1"): "purchase",
        pid("u2"): "cart",
        pid("u3"): "view",
        pid("u4"): "favorite",
        pid("u5"): "purchase",
    }
    assert s.rejected_by_reason == {"unknown event type": 1}


def test_configured_event_type_synonyms(store: Store, tmp_path: Path) -> None:
    toml = tmp_path / "ingest.toml"
    toml.write_text('[event_types]\n"Basket-Add" = "cart"\nkauf = "purchase"\n')
    df = frame(
        [("u1", "i1", "basket-add", at(0)), ("u2", "i1", "KAUF", at(0)), ("u3", "i1", "BUY", at(0))]
    )
    s = ingest(store, df, IngestConfig.load(toml))
    assert s.accepted == 3
    assert sorted(r[0] for r in rows(store, "SELECT event_type FROM events")) == [
        "cart",
        "purchase",
        "purchase",
    ]


def test_event_type_constant_for_files_without_the_column(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(f"user_id,item_id,timestamp,amount\nu1,i1,{at(0)},5\nu2,i2,{at(0)},6\n")
    s = ingest(store, path, IngestConfig.load(event_type="purchase"))
    assert s.accepted == 2
    assert rows(store, "SELECT DISTINCT event_type FROM events") == [("purchase",)]
    # the flag's value may be a synonym too
    ingest(store, frame([("u3", "i3", None, at(0))]), IngestConfig.load(event_type="BUY"))
    assert rows(store, "SELECT event_type FROM events WHERE user_id = ?", [pid("u3")]) == [
        ("purchase",)
    ]


def test_mapping_from_foreign_column_names(store: Store) -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["u1"],
            "product_id": ["i1"],
            "action": ["view"],
            "ts": [at(0)],
        }
    )
    cfg = IngestConfig.load(
        mapping={"customer_id": "user_id", "product_id": "item_id", "action": "event_type"}
        | {"ts": "timestamp"}
    )
    s = ingest(store, df, cfg)
    assert s.accepted == 1 and s.extra_columns == []
    assert rows(store, "SELECT user_id, item_id FROM events") == [(pid("u1"), "i1")]


# -- extra columns --------------------------------------------------------------------------
def test_extra_columns_are_kept_as_text(store: Store) -> None:
    df = frame([("u1", "i1", "purchase", at(0), "5", "1")]).assign(order_id=["0042"], coupon=["10"])
    s = ingest(store, df)
    assert s.extra_columns == ["order_id", "coupon"]
    cols = store.columns("events")
    assert cols["order_id"] == "VARCHAR" and cols["coupon"] == "VARCHAR"
    assert rows(store, "SELECT order_id, coupon FROM events") == [("0042", "10")]
    # a later file without those columns leaves them empty
    ingest(store, frame([("u2", "i1", "view", at(0))]))
    assert rows(store, "SELECT order_id FROM events WHERE user_id = ?", [pid("u2")]) == [(None,)]


def test_extra_column_named_like_a_store_column_gets_a_suffix(store: Store) -> None:
    df = frame([("u1", "i1", "view", at(0))]).assign(batch_id=["shop-batch-7"])
    s = ingest(store, df)
    assert s.extra_columns == ["batch_id_src"]
    assert rows(store, "SELECT batch_id, batch_id_src FROM events") == [(1, "shop-batch-7")]


@pytest.mark.parametrize("name", ["ts", "prior", "session_src"])
def test_extra_column_with_an_internal_name_is_kept(store: Store, name: str) -> None:
    df = frame([("u1", "i1", "view", at(0))]).assign(**{name: ["shop value"]})
    s = ingest(store, df)
    [stored] = s.extra_columns
    assert rows(store, f'SELECT "{stored}" FROM events') == [("shop value",)]


# -- privacy --------------------------------------------------------------------------------
def test_without_pseudonyms_raw_ids_are_stored_and_the_mode_is_fixed(store: Store) -> None:
    raw = config(privacy={"pseudonymize": False})
    ingest(store, frame([("alice", "i1", "view", at(0))]), raw)
    assert rows(store, "SELECT user_id FROM events") == [("alice",)]
    assert store.count("identities") == 0
    assert not store.pseudonymized
    with pytest.raises(ConfigError, match="pseudonymize"):
        ingest_events(store, frame([("bob", "i1", "view", at(0))]), keys=KEYS)
    assert store.count("events") == 1


def test_a_pseudonymized_store_refuses_raw_ids_later(store: Store) -> None:
    ingest(store, frame([("alice", "i1", "view", at(0))]))
    with pytest.raises(ConfigError, match="cannot change"):
        ingest_events(
            store,
            frame([("bob", "i1", "view", at(0))]),
            config=config(privacy={"pseudonymize": False}),
            keys=KEYS,
        )
    assert store.count("events") == 1


def test_pseudonymizing_needs_keys(store: Store) -> None:
    with pytest.raises(ConfigError, match="keys"):
        ingest_events(store, frame([("alice", "i1", "view", at(0))]))


SECRET_IDS = ("alice.secret@mail.test", "CUST-0099-7777", "bob_private_42")


def _all_text(store: Store) -> tuple[str, list[bytes]]:
    """Every value of every table as text, plus every BLOB."""
    texts: list[str] = []
    blobs: list[bytes] = []
    for table in ("events", "users", "items", "rejects", "identities", "user_flags", "batches"):
        for row in rows(store, f"SELECT * FROM {table}"):
            for value in row:
                if isinstance(value, bytes | bytearray):
                    blobs.append(bytes(value))
                elif value is not None:
                    texts.append(str(value))
    texts += [str(r) for r in rows(store, "SELECT * FROM audit_log")]
    return "\n".join(texts), blobs


def test_no_raw_customer_id_is_stored_anywhere(store: Store) -> None:
    alice, cust, bob = SECRET_IDS
    df = frame(
        [
            (alice, "i1", "view", at(0)),
            (alice, "i1", "view", at(0)),  # duplicate
            (alice, "i2", "purchase", at(60), "12.5", "1"),
            (cust, "i1", "view", at(0)),
            (cust, "i1", "teleport", at(5)),  # rejected
            (bob, "i3", "view", "1970-01-01T00:00:00Z"),  # rejected: too old
            (bob, None, "view", at(0)),  # rejected: no item
        ]
    )
    ingest(store, df)
    users = pd.DataFrame(
        {"user_id": [alice, cust, "  "], "email": ["a@x.test", None, "c@x.test"], "age": [1, 2, 3]}
    )
    ingest_table(store, "users", users, keys=KEYS)
    text, blobs = _all_text(store)
    for raw in (*SECRET_IDS, "a@x.test", "c@x.test"):
        assert raw not in text, raw
        assert all(raw.encode() not in b for b in blobs), raw
    for raw in SECRET_IDS:
        assert pid(raw) in text


def test_rejects_keep_the_raw_row_with_the_customer_pseudonymized(store: Store) -> None:
    df = frame([("CUST-0099-7777", "i1", "teleport", at(0), "3.5")])
    ingest(store, df)
    [(line, reason, column, raw)] = rows(
        store, "SELECT line, reason, column_name, raw FROM rejects"
    )
    assert (line, reason, column) == (1, "unknown event type", "event_type")
    assert json.loads(raw) == {
        "user_id": pid("CUST-0099-7777"),
        "item_id": "i1",
        "event_type": "teleport",
        "timestamp": at(0),
        "amount": "3.5",
    }


@pytest.mark.parametrize("via", ["dataframe", "same path, new content"])
def test_rejects_of_different_data_with_the_same_label_are_all_kept(
    store: Store, tmp_path: Path, via: str
) -> None:
    day1 = frame([("u1", "i1", "teleport", at(0))])
    day2 = frame([("u2", "i2", "fly", at(60))])
    if via == "dataframe":
        ingest(store, day1)
        s = ingest(store, day2)
    else:
        path = tmp_path / "export.csv"
        day1.to_csv(path, index=False)
        ingest(store, path)
        day2.to_csv(path, index=False)
        s = ingest(store, path)
    assert s.rejected == 1
    raws = [json.loads(r[0]) for r in rows(store, "SELECT raw FROM rejects ORDER BY batch_id")]
    assert [r["event_type"] for r in raws] == ["teleport", "fly"]


def test_a_failed_first_ingest_does_not_fix_the_privacy_mode(store: Store) -> None:
    with pytest.raises(DataError):
        ingest_events(
            store,
            frame([("u1", "i1")]),  # no event_type, no timestamp
            config=config(privacy={"pseudonymize": False}),
            keys=KEYS,
        )
    assert store.count("events") == 0
    s = ingest(store, frame([("u1", "i1", "view", at(0))]))
    assert s.accepted == 1


def test_rejects_of_a_csv_file_name_the_file_line(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        f"user_id,item_id,event_type,timestamp\nu1,i1,view,{at(0)}\nu2,i1,view,not-a-time\n"
    )
    ingest(store, path)
    assert rows(store, "SELECT source, line, reason FROM rejects") == [
        (str(path), 3, "unparseable timestamp")
    ]


@pytest.mark.parametrize(
    "content",
    [
        # semicolon file with a decimal comma (a European export); the last line has 6 fields
        "item_id;user_id;event_type;timestamp;amount\n"
        "i1;u1;view;2026-01-01T00:00:00Z;1\n"
        "i1;CUST-0099-7777;purchase;2026-01-01T00:00:00Z;1,5;extra\n",
        # a quoted comma before the customer field
        "item_id,user_id,event_type,timestamp\n"
        '"shoe, red",u1,view,2026-01-01T00:00:00Z\n'
        '"shoe, red",CUST-0099-7777,view,2026-01-01T00:00:00Z,extra\n',
    ],
)
def test_unparseable_lines_do_not_leak_the_customer_id(
    store: Store, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(content)
    s = ingest(store, path)
    assert s.rejected == 1
    text, _ = _all_text(store)
    assert "CUST-0099-7777" not in text


def test_identities_map_pseudonyms_back(store: Store) -> None:
    ingest(store, frame([(raw, "i1", "view", at(0)) for raw in SECRET_IDS]))
    s = ingest(
        store, frame([(SECRET_IDS[0], "i2", "view", at(60)), ("new-one", "i2", "view", at(0))])
    )
    assert s.new_customers == 1
    assert store.count("identities") == 4
    stored = sorted(r[0] for r in rows(store, "SELECT DISTINCT user_id FROM events"))
    assert sorted(store.reidentify(stored, KEYS)) == sorted([*SECRET_IDS, "new-one"])  # type: ignore[type-var]
