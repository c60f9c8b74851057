"""The training view: exact matrices on hand-built events, weights and decay, filters, lookups,
fingerprints, and the store path (bots, personal data, ratings, outliers, the demo shop)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from tailorcast.data import Interactions, InteractionsConfig
from tailorcast.datasets.demo_shop import demo_shop
from tailorcast.datasets.movielens import load_movielens
from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import ingest_events
from tailorcast.ingest.tables import ingest_table
from tailorcast.privacy import Keys
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS
from tailorcast.store import Store

KEYS = Keys(b"k" * 32, b"e" * 32)
T0 = datetime(2026, 3, 2, 12, 0, 0)
ML_100K = Path("/work/shared/data/ml-100k")


def at(days: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def frame(rows: list[tuple[Any, ...]], **extra: list[Any]) -> pd.DataFrame:
    """(user, item, type, datetime) rows as a canonical events frame, plus extra columns."""
    data = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    for name, values in extra.items():
        data[name] = values
    return data


# 3 customers x 5 items (+ one catalogue item nobody touched)
SMALL = [
    ("u1", "i1", "view", at(0, 1)),
    ("u1", "i1", "purchase", at(0, 5)),
    ("u1", "i2", "cart", at(0, 3)),
    ("u1", "i3", "favorite", at(0, 2)),
    ("u2", "i2", "view", at(-1)),
    ("u2", "i2", "view", at(-2)),
    ("u2", "i5", "purchase", at(0)),
    ("u3", "i4", "cart", at(-3)),
    ("u3", "i1", "view", at(-4)),
]
CATALOGUE = pd.DataFrame(
    {
        "item_id": ["i6", "i5", "i4", "i3", "i2", "i1"],
        "category": ["toys", "books", "books", "home", "toys", "home"],
        "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
)
SMALL_MATRIX = np.array(
    [
        [6, 3, 2, 0, 0, 0],  # u1: view+purchase of i1, cart i2, favorite i3
        [0, 2, 0, 0, 5, 0],  # u2: two views of i2, purchase i5
        [1, 0, 0, 3, 0, 0],  # u3: view i1, cart i4
    ],
    dtype=np.float32,
)


@pytest.fixture
def small() -> Interactions:
    return Interactions.from_events(frame(SMALL), items=CATALOGUE)


# -- the matrix and the frames ------------------------------------------------------------------
def test_matrix_sums_default_event_weights(small: Interactions) -> None:
    assert small.user_ids.tolist() == ["u1", "u2", "u3"]
    assert small.item_ids.tolist() == ["i1", "i2", "i3", "i4", "i5", "i6"]  # i6: cold item
    assert (small.n_users, small.n_items) == (3, 6)
    assert small.matrix.dtype == np.float32 and small.matrix.format == "csr"
    np.testing.assert_array_equal(small.matrix.toarray(), SMALL_MATRIX)
    assert small.matrix.nnz == 7


def test_events_frame_columns_dtypes_and_order(small: Interactions) -> None:
    ev = small.events
    assert list(ev.columns[:7]) == [
        "user_idx",
        "item_idx",
        "event_type",
        "timestamp",
        "weight",
        "amount",
        "session_id",
    ]
    assert ev["user_idx"].dtype == np.int32 and ev["item_idx"].dtype == np.int32
    assert isinstance(ev["event_type"].dtype, pd.CategoricalDtype)
    assert list(ev["event_type"].cat.categories) == ["view", "favorite", "cart", "purchase"]
    assert ev["timestamp"].dtype == "datetime64[ns]"
    assert ev["weight"].dtype == np.float32
    # sorted by customer, then time
    u1 = ev[ev["user_idx"] == 0]
    assert u1["event_type"].tolist() == ["view", "favorite", "cart", "purchase"]
    assert u1["weight"].tolist() == [1.0, 2.0, 3.0, 5.0]
    keys = list(zip(ev["user_idx"], ev["timestamp"], strict=True))
    assert keys == sorted(keys)
    assert len(ev) == len(SMALL)
    assert small.config.as_of == at(0, 5)  # the latest event, recorded


def test_items_and_users_frames_align_with_the_vocabularies() -> None:
    users = pd.DataFrame(
        {
            "user_id": ["u3", "u1", "ghost"],
            "age": [40, 30, 50],
            "email": ["c@x", "a@x", "g@x"],
            "Phone": ["1", "2", "3"],
        }
    )
    inter = Interactions.from_events(frame(SMALL), items=CATALOGUE, users=users)
    assert inter.items.index.tolist() == inter.item_ids.tolist()
    assert inter.items["price"].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert inter.users.index.name == "user_id"
    assert inter.users.index.tolist() == ["u1", "u2", "u3"]
    assert list(inter.users.columns) == ["age"]  # personal columns dropped
    assert inter.users["age"].tolist()[0] == 30 and np.isnan(inter.users["age"].iloc[1])
    bare = Interactions.from_events(frame(SMALL))
    assert bare.item_ids.tolist() == ["i1", "i2", "i3", "i4", "i5"]  # no catalogue, no i6
    assert bare.items.shape == (5, 0) and bare.users.shape == (3, 0)


def test_extra_columns_are_kept_and_clashing_names_renamed() -> None:
    data = frame(
        SMALL[:3],
        amount=[None, 19.9, None],
        session_id=["s1", "s1", None],
        order_id=[None, "o-1", None],
        weight=[9, 9, 9],
    )
    ev = Interactions.from_events(data).events
    assert ev["amount"].tolist()[2] == 19.9  # the purchase (sorted last)
    assert ev["session_id"].isna().tolist() == [False, True, False]
    assert ev["order_id"].tolist()[2] == "o-1"
    assert ev["weight"].tolist() == [1.0, 3.0, 5.0] and ev["weight_src"].tolist() == [9, 9, 9]


def test_custom_weights_drop_event_types_without_a_weight() -> None:
    cfg = InteractionsConfig(event_weights={"purchase": 1.0, "cart": 0.5})
    inter = Interactions.from_events(frame(SMALL), items=CATALOGUE, config=cfg)
    assert inter.user_ids.tolist() == ["u1", "u2", "u3"]
    expected = np.zeros((3, 6), np.float32)
    expected[0, 0], expected[0, 1], expected[1, 4], expected[2, 3] = 1.0, 0.5, 1.0, 0.5
    np.testing.assert_array_equal(inter.matrix.toarray(), expected)
    assert set(inter.events["event_type"]) == {"purchase", "cart"}
    only_views = InteractionsConfig(event_weights={"view": 1.0})
    assert Interactions.from_events(frame(SMALL), config=only_views).user_ids.tolist() == [
        "u1",
        "u2",
        "u3",
    ]
    buyers = InteractionsConfig(event_weights={"purchase": 1.0})
    assert Interactions.from_events(frame(SMALL), config=buyers).user_ids.tolist() == ["u1", "u2"]


# -- decay and time filters ---------------------------------------------------------------------
def test_an_event_one_half_life_old_weighs_half() -> None:
    rows = [
        ("u1", "i1", "purchase", at(0)),
        ("u1", "i2", "purchase", at(-10)),
        ("u1", "i3", "view", at(-20)),
        ("u2", "i1", "cart", at(-5)),
    ]
    inter = Interactions.from_events(frame(rows), config=InteractionsConfig(half_life_days=10))
    np.testing.assert_allclose(
        inter.matrix.toarray(),
        [[5.0, 2.5, 0.25], [3.0 * 0.5**0.5, 0.0, 0.0]],
        rtol=1e-6,
    )
    # an explicit as_of ten days after the last event halves everything once more
    later = InteractionsConfig(half_life_days=10, as_of=at(10))
    inter = Interactions.from_events(frame(rows), config=later)
    np.testing.assert_allclose(inter.matrix.toarray()[0], [2.5, 1.25, 0.125], rtol=1e-6)


def test_decay_sums_per_pair() -> None:
    rows = [("u1", "i1", "view", at(0)), ("u1", "i1", "view", at(-7))]
    cfg = InteractionsConfig(half_life_days=7)
    inter = Interactions.from_events(frame(rows), config=cfg)
    np.testing.assert_allclose(inter.matrix.toarray(), [[1.5]], rtol=1e-6)
    assert inter.events["weight"].tolist() == [0.5, 1.0]


def test_as_of_and_window_filter_events() -> None:
    rows = [
        ("u1", "i1", "view", at(-30)),
        ("u1", "i2", "view", at(-5)),
        ("u2", "i3", "view", at(0)),
        ("u3", "i4", "view", at(1)),
    ]
    cut = Interactions.from_events(frame(rows), config=InteractionsConfig(as_of=at(0)))
    assert cut.user_ids.tolist() == ["u1", "u2"]  # u3's only event is after as_of
    assert cut.item_ids.tolist() == ["i1", "i2", "i3"]
    window = InteractionsConfig(as_of=at(0), window_days=7)
    recent = Interactions.from_events(frame(rows), config=window)
    assert recent.item_ids.tolist() == ["i2", "i3"]
    assert recent.events["timestamp"].min() == pd.Timestamp(at(-5))
    # the window is relative to the latest event when as_of is not given
    default = Interactions.from_events(frame(rows), config=InteractionsConfig(window_days=2))
    assert default.user_ids.tolist() == ["u2", "u3"]
    assert default.config.as_of == at(1)


def test_time_zone_aware_as_of_means_the_same_instant() -> None:
    plus2 = timezone(timedelta(hours=2))
    cfg = InteractionsConfig(as_of=at(0).replace(tzinfo=UTC).astimezone(plus2))
    assert cfg.as_of == at(0) and cfg.as_of.tzinfo is None


def test_min_events_drop_repeatedly_until_both_hold() -> None:
    rows = [
        ("u1", "i1", "view", at(0)),
        ("u1", "i2", "view", at(0)),
        ("u2", "i1", "view", at(0)),
        ("u2", "i2", "view", at(0)),
        ("u3", "i1", "view", at(0)),
        ("u3", "i3", "view", at(0)),
        ("u4", "i3", "view", at(0)),
    ]
    # u4 goes (1 event) -> i3 has 1 event left and goes -> u3 has 1 left and goes
    cfg = InteractionsConfig(min_user_events=2, min_item_events=2)
    inter = Interactions.from_events(frame(rows), config=cfg)
    assert inter.user_ids.tolist() == ["u1", "u2"]
    assert inter.item_ids.tolist() == ["i1", "i2"]
    np.testing.assert_array_equal(inter.matrix.toarray(), np.ones((2, 2)))
    catalogue = pd.DataFrame({"item_id": ["i1", "i2", "i3"]})
    kept = Interactions.from_events(frame(rows), items=catalogue, config=cfg)
    assert kept.item_ids.tolist() == ["i1", "i2", "i3"]  # i3 stays known, as a cold item
    assert kept.matrix[:, 2].nnz == 0


def test_timestamp_formats_agree() -> None:
    base = frame(SMALL)
    as_text = base.assign(timestamp=base["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    as_unix = base.assign(timestamp=(base["timestamp"] - pd.Timestamp(0)) // pd.Timedelta("1s"))
    as_unix_text = as_unix.assign(timestamp=as_unix["timestamp"].astype(str))
    berlin = base.assign(
        timestamp=base["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    )
    offsets = base.assign(
        timestamp=base["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo").astype(str)
    )
    prints = {
        Interactions.from_events(f, config=InteractionsConfig(half_life_days=3)).fingerprint()
        for f in (base, as_text, as_unix, as_unix_text, berlin, offsets)
    }
    assert len(prints) == 1
    assert as_unix["timestamp"].dtype == np.int64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["item_id"]), "missing column(s) item_id"),
        (lambda f: f.assign(event_type=["view"] * 8 + ["click"]), "row 8, column 'event_type'"),
        (lambda f: f.assign(user_id=["u1", None] + ["u2"] * 7), "row 1, column 'user_id'"),
        (lambda f: f.assign(item_id=["i1", " "] + ["i2"] * 7), "row 1, column 'item_id'"),
        (lambda f: f.assign(timestamp=["2026-01-01"] * 8 + ["yesterday"]), "'yesterday'"),
        (lambda f: f.assign(timestamp=[1.7e9] * 8 + [1e17]), "row 8, column 'timestamp'"),
        (lambda f: f.iloc[:0], "no events"),
    ],
)
def test_bad_event_frames_name_the_problem(change: Any, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Interactions.from_events(change(frame(SMALL)))


def test_nothing_left_after_filtering_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no events left after filtering"):
        Interactions.from_events(frame(SMALL), config=InteractionsConfig(as_of=at(-100)))
    with pytest.raises(DataError, match="min_user_events=10"):
        Interactions.from_events(frame(SMALL), config=InteractionsConfig(min_user_events=10))


def test_config_is_validated_frozen_and_strict() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown event type 'click'"):
        InteractionsConfig(event_weights={"click": 1.0})
    with pytest.raises(pydantic.ValidationError, match="finite number > 0"):
        InteractionsConfig(event_weights={"view": 0.0})
    with pytest.raises(pydantic.ValidationError):
        InteractionsConfig(half_life_days=-1)
    with pytest.raises(pydantic.ValidationError):
        InteractionsConfig(window_days=0)
    with pytest.raises(pydantic.ValidationError):
        InteractionsConfig(min_user_events=0)
    with pytest.raises(pydantic.ValidationError, match="rating_column"):
        InteractionsConfig(rating_column="timestamp")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        InteractionsConfig.model_validate({"half_life": 3})
    cfg = InteractionsConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.half_life_days = 3  # type: ignore[misc]
    assert cfg.event_weights == {"view": 1.0, "favorite": 2.0, "cart": 3.0, "purchase": 5.0}


# -- lookups, seen, subsets, fingerprints -------------------------------------------------------
def test_index_lookups_are_vectorised_with_minus_one_for_unknown(small: Interactions) -> None:
    idx = small.user_index(["u2", "nobody", "u1"])
    assert idx.dtype == np.int64 and idx.tolist() == [1, -1, 0]
    assert small.item_index(np.array(["i6", "i1", "x"], dtype=object)).tolist() == [5, 0, -1]
    assert small.item_index(pd.Series(["i3"])).tolist() == [2]
    assert small.user_index([]).tolist() == []
    with pytest.raises(TypeError, match="not a single string"):
        small.user_index("u1")
    assert not small.user_ids.flags.writeable  # the vocabularies are read-only


def test_seen_gives_binary_rows_optionally_by_event_type(small: Interactions) -> None:
    rows = small.seen(np.array([0, -1, 1]))
    assert rows.shape == (3, 6) and rows.dtype == np.float32
    np.testing.assert_array_equal(
        rows.toarray(),
        [[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0]],
    )
    bought = small.seen(np.arange(3), event_types=["purchase"]).toarray()
    np.testing.assert_array_equal(bought, [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0] * 6])
    both = small.seen([2], event_types=["cart", "view"]).toarray()
    np.testing.assert_array_equal(both, [[1, 0, 0, 1, 0, 0]])
    with pytest.raises(IndexError, match=r"\[-1, 2\]"):
        small.seen([3])
    with pytest.raises(ConfigError, match="unknown event type"):
        small.seen([0], event_types=["click"])


def test_with_events_keeps_vocabularies_and_rebuilds_the_matrix(small: Interactions) -> None:
    purchases = (small.events["event_type"] == "purchase").to_numpy()
    sub = small.with_events(purchases)
    assert sub.user_ids is small.user_ids and sub.item_ids is small.item_ids
    assert sub.items is small.items and sub.config == small.config
    assert len(sub.events) == 2
    expected = np.zeros((3, 6), np.float32)
    expected[0, 0] = expected[1, 4] = 5.0
    np.testing.assert_array_equal(sub.matrix.toarray(), expected)
    assert small.matrix.nnz == 7  # the original is untouched
    with pytest.raises(ValueError, match="one entry per event"):
        small.with_events(purchases[:3])
    with pytest.raises(ValueError, match="boolean"):
        small.with_events(np.arange(len(small.events)))


def test_fingerprint_identifies_the_training_data(small: Interactions) -> None:
    shuffled = frame(SMALL).sample(frac=1.0, random_state=3)
    same = Interactions.from_events(shuffled, items=CATALOGUE.iloc[::-1])
    assert same.fingerprint() == small.fingerprint()
    assert len(small.fingerprint()) == 64

    moved = frame(SMALL)
    moved.loc[4, "timestamp"] = at(-1, 1)
    changed_time = Interactions.from_events(moved, items=CATALOGUE)
    more = Interactions.from_events(
        pd.concat([frame(SMALL), frame([("u3", "i5", "view", at(-9))])]), items=CATALOGUE
    )
    reweighted = Interactions.from_events(
        frame(SMALL), items=CATALOGUE, config=InteractionsConfig(half_life_days=30)
    )
    fewer = small.with_events(np.arange(len(small.events)) > 0)
    no_catalogue = Interactions.from_events(frame(SMALL))
    prints = [x.fingerprint() for x in (small, changed_time, more, reweighted, fewer, no_catalogue)]
    assert len(set(prints)) == len(prints)


def test_repr_is_short(small: Interactions) -> None:
    assert repr(small) == "Interactions(users=3, items=6, events=9, nnz=7)"


# -- MovieLens: ratings as weights --------------------------------------------------------------
def test_movielens_ratings_become_the_weights() -> None:
    ml = load_movielens(ML_100K)
    cfg = InteractionsConfig(rating_column="rating")
    inter = Interactions.from_events(ml.events, items=ml.items, users=ml.users, config=cfg)
    assert inter.matrix.shape == (943, 1682) and inter.matrix.nnz == 100_000
    rows = inter.user_index(ml.events["user_id"].to_numpy())
    cols = inter.item_index(ml.events["item_id"].to_numpy())
    assert (rows >= 0).all() and (cols >= 0).all()
    np.testing.assert_array_equal(
        np.asarray(inter.matrix[rows, cols]).ravel(), ml.events["rating"].to_numpy()
    )
    assert inter.events["rating"].dtype == np.float64
    np.testing.assert_array_equal(inter.events["weight"], inter.events["rating"])
    assert inter.users.loc["1", "occupation"] == "technician"
    assert inter.items.loc["1", "title"] == "Toy Story"
    # without the rating column every rating is one purchase of weight 5
    plain = Interactions.from_events(ml.events)
    assert plain.matrix.sum() == 500_000


def test_rating_column_must_exist_and_be_numeric() -> None:
    with pytest.raises(ConfigError, match="'stars' is not a column"):
        Interactions.from_events(frame(SMALL), config=InteractionsConfig(rating_column="stars"))
    stars = frame(SMALL, stars=["4", None, "", "2.5", "1", "3", "5", "4", "good"])
    with pytest.raises(DataError, match="row 8, column 'stars'"):
        Interactions.from_events(stars, config=InteractionsConfig(rating_column="stars"))
    inter = Interactions.from_events(
        stars.iloc[:8], config=InteractionsConfig(rating_column="stars")
    )
    assert len(inter.events) == 6  # events without a rating are dropped
    assert inter.matrix.sum() == pytest.approx(4 + 2.5 + 1 + 3 + 5 + 4)


# -- the store ----------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "s", create=True)
    yield s
    s.close()


def iso(data: pd.DataFrame) -> pd.DataFrame:
    return data.assign(timestamp=data["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def ingest(store: Store, data: pd.DataFrame) -> None:
    ingest_events(store, iso(data), keys=KEYS)


def pid(user: str) -> str:
    return KEYS.pseudonymizer().one(user)


def test_empty_store_says_to_ingest_first(store: Store) -> None:
    with pytest.raises(DataError) as info:
        Interactions.from_store(store)
    assert str(info.value) == "no events in the store: run `tailorcast ingest` first"


def test_bots_flagged_in_the_store_are_left_out(store: Store) -> None:
    rows: list[tuple[Any, ...]] = []
    for c in range(50):  # normal customers: a handful of views in an hour
        rows += [(f"c{c}", f"i{(c + k) % 40}", "view", at(minutes=10 * k)) for k in range(5)]
    # 2000 views 1.5 s apart, cycling through 40 items so none is a double click
    rows += [("crawler", f"i{k % 40}", "view", at(minutes=k / 40)) for k in range(2000)]
    ingest(store, frame(rows))
    flags = store.con.execute("SELECT user_id, events FROM user_flags WHERE is_bot").fetchall()
    assert flags == [(pid("crawler"), 2000)]

    inter = Interactions.from_store(store)
    assert inter.n_users == 50 and len(inter.events) == 250
    assert inter.user_index([pid("crawler")]).tolist() == [-1]
    assert sorted(inter.user_ids.tolist()) == inter.user_ids.tolist()
    assert set(inter.user_ids) == {pid(f"c{c}") for c in range(50)}
    np.testing.assert_array_equal(np.asarray(inter.matrix.sum(axis=1)).ravel(), np.full(50, 5.0))

    everyone = Interactions.from_store(store, config=InteractionsConfig(exclude_bots=False))
    assert everyone.n_users == 51
    [bot] = everyone.user_index([pid("crawler")])
    assert everyone.matrix[bot].sum() == 2000 and everyone.matrix[bot].nnz == 40


def test_store_and_frame_give_the_same_view(store: Store) -> None:
    data = frame(
        SMALL,
        amount=[None, 19.5, None, None, None, None, 7.25, None, None],
        session_id=["s1", "s1", "s1", "s1", "s2", "s3", "s4", "s5", "s6"],
    )
    plain = IngestConfig.model_validate({"privacy": {"pseudonymize": False}})
    ingest_events(store, iso(data), keys=KEYS, config=plain)
    users = pd.DataFrame(
        {"user_id": ["u1", "u2"], "email": ["a@x", "b@x"], "city": ["Rome", "Oslo"]}
    )
    ingest_table(store, "users", users, keys=KEYS, config=plain)
    ingest_table(store, "items", CATALOGUE, keys=KEYS, config=plain)
    assert store.columns("users")["email"] == "BLOB"

    cfg = InteractionsConfig(half_life_days=2, window_days=3.5)
    stored = Interactions.from_store(store, config=cfg)
    direct = Interactions.from_events(data, items=CATALOGUE, users=users, config=cfg)
    assert stored.fingerprint() == direct.fingerprint()
    assert stored.user_ids.tolist() == ["u1", "u2", "u3"]  # u3 is inside the window
    np.testing.assert_array_equal(stored.matrix.toarray(), direct.matrix.toarray())
    pd.testing.assert_series_equal(stored.events["amount"], direct.events["amount"])
    assert stored.events["session_id"].tolist() == direct.events["session_id"].tolist()
    assert list(stored.users.columns) == ["city"]  # the encrypted email is never read
    assert stored.users["city"].tolist()[:2] == ["Rome", "Oslo"]
    assert stored.items["price"].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert stored.item_ids.tolist()[-1] == "i6"  # catalogue item without events
    assert {"quantity", "amount_outlier"} <= set(stored.events.columns)
    assert stored.config.as_of == at(0, 5)


def test_store_filters_as_of_and_window_in_sql(store: Store) -> None:
    rows = [
        ("u1", "i1", "view", at(-30)),
        ("u1", "i2", "view", at(-5)),
        ("u2", "i3", "view", at(0)),
        ("u3", "i4", "view", at(1)),
    ]
    ingest(store, frame(rows))
    cfg = InteractionsConfig(as_of=at(0), window_days=7)
    inter = Interactions.from_store(store, config=cfg)
    assert inter.user_ids.tolist() == sorted([pid("u1"), pid("u2")])
    assert inter.item_ids.tolist() == ["i2", "i3"]
    assert sorted(inter.events["timestamp"].tolist()) == [pd.Timestamp(at(-5)), pd.Timestamp(at(0))]
    with pytest.raises(DataError, match="no events left after filtering"):
        Interactions.from_store(store, config=InteractionsConfig(as_of=at(-100)))
    left = store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '_tc_inter%'"
    ).fetchall()
    assert left == []  # temp tables are cleaned up, also after an error


def test_store_rating_column_and_outlier_amounts(store: Store) -> None:
    rows = [(f"u{k % 6}", f"i{k % 9}", "purchase", at(minutes=k)) for k in range(40)]
    amounts = [10.0 + (k % 5) for k in range(40)]
    amounts[7] = 250_000.0
    ingest(store, frame(rows, amount=amounts, stars=[str(1 + k % 5) for k in range(40)]))
    flagged = store.con.execute(
        "SELECT item_id, amount FROM events WHERE amount_outlier"
    ).fetchall()
    assert flagged == [("i7", 250_000.0)]

    inter = Interactions.from_store(store, config=InteractionsConfig(rating_column="stars"))
    assert inter.events["stars"].dtype == np.float64
    np.testing.assert_array_equal(inter.events["weight"], inter.events["stars"])
    assert inter.matrix.sum() == sum(1 + k % 5 for k in range(40))
    outlier = inter.events[inter.events["amount_outlier"]]
    assert outlier["amount"].tolist() == [250_000.0]  # kept, with its amount as stored
    with pytest.raises(ConfigError, match="'rating' is not a column of the events"):
        Interactions.from_store(store, config=InteractionsConfig(rating_column="rating"))


def test_read_only_store_works(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as s:
        ingest(s, frame(SMALL))
    with Store.open(tmp_path / "s", read_only=True) as s:
        inter = Interactions.from_store(s)
    np.testing.assert_array_equal(
        inter.matrix.toarray()[inter.user_index([pid("u1"), pid("u2"), pid("u3")])][:, :5],
        SMALL_MATRIX[:, :5],
    )


def test_demo_shop_store(store: Store) -> None:
    shop = demo_shop(n_customers=150, n_items=60, days=30, seed=5)
    ingest_events(store, shop.events, keys=KEYS)
    ingest_table(store, "items", shop.items, keys=KEYS)
    ingest_table(store, "users", shop.customers, keys=KEYS)
    inter = Interactions.from_store(store, config=InteractionsConfig(half_life_days=14))
    bots = [pid(b) for b in shop.truth.bot_user_ids]
    assert bots and (inter.user_index(bots) == -1).all()
    [(n_events, n_pairs, n_users)] = store.con.execute(
        "SELECT count(*), count(DISTINCT (user_id, item_id)), count(DISTINCT user_id) "
        "FROM events e WHERE NOT EXISTS "
        "(SELECT 1 FROM user_flags f WHERE f.is_bot AND f.user_id = e.user_id)"
    ).fetchall()
    assert (len(inter.events), inter.matrix.nnz, inter.n_users) == (n_events, n_pairs, n_users)
    assert inter.n_items == 60 and inter.items["category"].notna().all()
    assert set(inter.users.columns).isdisjoint({"email", "first_name"})
    assert (inter.events["weight"] > 0).all() and (inter.events["weight"] <= 5).all()
    latest = inter.events.loc[inter.events["timestamp"].idxmax()]
    assert latest["weight"] == DEFAULT_EVENT_WEIGHTS[latest["event_type"]]  # no decay at as_of
