from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.datasets import DemoShop, demo_shop, write_events_csv
from tailorcast.errors import ConfigError
from tailorcast.schema import DEFAULT_EVENT_SYNONYMS, EVENT_TYPES

EVENT_COLUMNS = ["user_id", "item_id", "event_type", "timestamp", "amount", "quantity"]
ISO = "%Y-%m-%dT%H:%M:%SZ"
SMALL = {"n_customers": 600, "n_items": 150, "days": 60, "seed": 3}
CONSUMABLES = {"groceries", "beauty", "pets"}


def canonical(events: pd.DataFrame) -> pd.Series:
    return events["event_type"].str.strip().str.lower().map(DEFAULT_EVENT_SYNONYMS)


def parsed_times(events: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(events["timestamp"], format=ISO, errors="coerce", utc=True)


@pytest.fixture(scope="module")
def shop() -> DemoShop:
    return demo_shop()


@pytest.fixture(scope="module")
def small() -> DemoShop:
    return demo_shop(**SMALL)


@pytest.fixture(scope="module")
def tidy() -> DemoShop:
    return demo_shop(**SMALL, dirt=False)


def test_same_seed_gives_identical_shop(small: DemoShop) -> None:
    again = demo_shop(**SMALL)
    pd.testing.assert_frame_equal(again.events, small.events)
    pd.testing.assert_frame_equal(again.customers, small.customers)
    pd.testing.assert_frame_equal(again.items, small.items)
    pd.testing.assert_frame_equal(again.truth.dirt, small.truth.dirt)
    pd.testing.assert_frame_equal(again.truth.tastes, small.truth.tastes)
    assert again.truth.bot_user_ids == small.truth.bot_user_ids


def test_different_seeds_differ(small: DemoShop) -> None:
    other = demo_shop(**{**SMALL, "seed": 4})
    assert not other.events.head(500).equals(small.events.head(500))
    assert not np.allclose(other.truth.tastes.to_numpy(), small.truth.tastes.to_numpy())
    assert not other.items["price"].equals(small.items["price"])


def test_default_size_and_funnel(shop: DemoShop) -> None:
    assert 80_000 <= len(shop.events) <= 200_000
    counts = canonical(shop.events).value_counts()
    assert set(counts.index) == set(EVENT_TYPES)
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    assert counts["view"] > counts["favorite"] > 0
    assert len(shop.customers) == 2000
    assert len(shop.items) == 400


def test_event_schema(shop: DemoShop) -> None:
    events = shop.events
    assert list(events.columns) == EVENT_COLUMNS
    assert events["amount"].dtype == np.float64
    assert events["quantity"].dtype == np.int64
    assert (events["quantity"] >= 1).all()
    assert events["user_id"].dropna().str.fullmatch(r"C\d{6}").all()
    assert events["item_id"].str.fullmatch(r"P\d{5}").all()
    assert set(events["item_id"]) <= set(shop.items["item_id"])
    assert set(events["user_id"].dropna()) <= set(shop.customers["user_id"])
    # amount only on purchases
    kind = canonical(events)
    assert events.loc[kind.notna() & (kind != "purchase"), "amount"].isna().all()
    assert events.loc[kind == "purchase", "amount"].notna().all()
    clean = events.drop(index=shop.truth.dirt["row"])
    times = parsed_times(clean)
    assert times.notna().all()
    start = pd.Timestamp("2026-01-05", tz="UTC")
    assert times.min() >= start
    assert times.max() < start + pd.Timedelta(days=121)


def test_synonyms_in_mixed_case(shop: DemoShop) -> None:
    names = shop.events["event_type"]
    synonym = ~names.isin(EVENT_TYPES) & canonical(shop.events).notna()
    assert 0.02 < synonym.mean() < 0.10
    assert (names[synonym] != names[synonym].str.lower()).any()
    assert names[synonym].str.lower().isin(["add_to_cart", "buy", "click", "wishlist"]).any()


def test_customers_and_items_tables(shop: DemoShop) -> None:
    customers = shop.truth.customers
    assert list(shop.customers.columns) == [
        "user_id",
        "email",
        "first_name",
        "age",
        "gender",
        "city",
        "signup_date",
        "marketing_consent",
    ]
    assert customers["user_id"].is_unique
    assert customers["email"].str.endswith("@example.com").all()
    assert customers["age"].between(18, 100).all()
    assert 0.7 < customers["marketing_consent"].mean() < 0.9
    pd.to_datetime(customers["signup_date"], format="%Y-%m-%d")  # raises if not ISO dates
    items = shop.truth.items
    assert list(shop.items.columns) == [
        "item_id",
        "title",
        "category",
        "brand",
        "price",
        "tags",
        "image_url",
        "available",
    ]
    assert items["item_id"].is_unique
    assert (items["price"] > 0).all()
    assert (items["price"] == items["price"].round(2)).all()
    assert (
        items.groupby("category")["price"].median()["electronics"]
        > 3 * (items.groupby("category")["price"].median()["groceries"])
    )
    assert 0.9 < items["available"].mean() < 1.0
    assert (items["image_url"] == "https://shop.example/img/" + items["item_id"] + ".jpg").all()
    assert items["title"].str.split().str.len().ge(3).all()
    # Zipf-like: within a category the most popular item gets several times the median share
    top = items.groupby("category")["popularity"].agg(lambda p: p.max() / p.median())
    assert (top > 3).all()


def test_missing_attributes_are_planted(shop: DemoShop) -> None:
    assert 0.04 < shop.customers["age"].isna().mean() < 0.13
    assert 0.02 < shop.customers["city"].isna().mean() < 0.09
    assert 0.01 < shop.items["price"].isna().mean() < 0.10
    assert 0.01 < shop.items["brand"].isna().mean() < 0.10
    assert shop.truth.customers.notna().all().all()
    assert shop.truth.items.notna().all().all()


def test_dirt_is_recorded(shop: DemoShop) -> None:
    events, truth = shop.events, shop.truth
    kinds = truth.dirt["kind"].value_counts()
    assert set(kinds.index) == {
        "duplicate",
        "near_duplicate",
        "bot",
        "outlier_amount",
        "empty_user_id",
        "bad_timestamp",
        "negative_amount",
        "unknown_event_type",
        "future_timestamp",
    }
    assert 0.005 < kinds["duplicate"] / len(events) < 0.02
    assert 0.005 < kinds["near_duplicate"] / len(events) < 0.02
    assert 5 <= kinds["outlier_amount"] <= 10
    malformed = kinds[["empty_user_id", "bad_timestamp", "negative_amount"]].sum()
    malformed += kinds[["unknown_event_type", "future_timestamp"]].sum()
    assert 0.001 < malformed / len(events) < 0.006
    # exact duplicates: precisely the planted rows
    assert np.array_equal(np.flatnonzero(events.duplicated()), truth.rows("duplicate"))
    assert events.loc[truth.rows("empty_user_id"), "user_id"].isna().all()
    assert events["user_id"].isna().sum() == kinds["empty_user_id"]
    assert parsed_times(events.loc[truth.rows("bad_timestamp")]).isna().all()
    assert events.loc[truth.rows("future_timestamp"), "timestamp"].str.startswith("2099-").all()
    assert (events.loc[truth.rows("negative_amount"), "amount"] < 0).all()
    assert (events["amount"] < 0).sum() == kinds["negative_amount"]
    assert (events.loc[truth.rows("unknown_event_type"), "event_type"] == "teleport").all()
    assert canonical(events).isna().sum() == kinds["unknown_event_type"]


def test_near_duplicates_are_double_clicks(shop: DemoShop) -> None:
    events = shop.events.assign(t=parsed_times(shop.events))
    keys = ["user_id", "item_id", "event_type", "amount", "quantity"]
    near = events.loc[shop.truth.rows("near_duplicate")]
    earlier = near.assign(t=near["t"] - pd.Timedelta(seconds=1))
    found = earlier.merge(events.drop_duplicates(), on=[*keys, "t"], how="left", indicator=True)
    assert (found["_merge"] == "both").all()


def test_outlier_and_regular_amounts(shop: DemoShop) -> None:
    events = shop.events
    price = events["item_id"].map(shop.truth.items.set_index("item_id")["price"])
    expected = (price * events["quantity"]).round(2)
    purchase = canonical(events) == "purchase"
    odd = np.union1d(shop.truth.rows("outlier_amount"), shop.truth.rows("negative_amount"))
    regular = purchase & ~events.index.isin(odd)
    assert np.allclose(events.loc[regular, "amount"], expected[regular])
    outliers = shop.truth.rows("outlier_amount")
    ratio = events.loc[outliers, "amount"] / expected[outliers]
    assert ratio.between(49.9, 200.1).all()


def test_bots_are_the_top_rate_customers(shop: DemoShop) -> None:
    bots = shop.truth.bot_user_ids
    assert 1 <= len(bots) <= 2
    events = shop.events.assign(hour=parsed_times(shop.events).dt.floor("h"))
    per_hour = events.groupby(["user_id", "hour"]).size().groupby(level="user_id").max()
    assert set(per_hour.nlargest(len(bots)).index) == set(bots)
    for bot in bots:
        times = parsed_times(shop.events[shop.events["user_id"] == bot]).dropna()
        assert len(times) >= 2000
        assert times.max() - times.min() < pd.Timedelta(hours=8)
    assert set(shop.truth.rows("bot")) == set(np.flatnonzero(shop.events["user_id"].isin(bots)))


def test_consumables_are_repurchased(shop: DemoShop) -> None:
    events = shop.events[canonical(shop.events) == "purchase"].drop(
        index=shop.truth.dirt["row"], errors="ignore"
    )
    category = events["item_id"].map(shop.truth.items.set_index("item_id")["category"])
    per_pair = events.groupby([events["user_id"], events["item_id"], category]).size()
    repeat = (per_pair >= 2).groupby(level=2).mean()
    assert repeat[sorted(CONSUMABLES)].min() > 0.2
    assert repeat.drop(sorted(CONSUMABLES)).max() == 0  # durable goods are bought once
    staples = shop.truth.replenishment
    assert set(staples["category"]) == CONSUMABLES
    bought = per_pair.droplevel(2).reindex(
        pd.MultiIndex.from_frame(staples[["user_id", "item_id"]])
    )
    assert (bought.fillna(0) >= 3).mean() > 0.5


def test_tastes_drive_browsing(shop: DemoShop) -> None:
    tastes = shop.truth.tastes
    assert np.allclose(tastes.sum(axis=1), 1)
    assert tastes.max(axis=1).mean() > 0.4  # concentrated on few categories
    views = shop.events[canonical(shop.events) == "view"]
    views = views[~views["user_id"].isin(shop.truth.bot_user_ids)]
    category = views["item_id"].map(shop.truth.items.set_index("item_id")["category"])
    favourite = category.groupby(views["user_id"]).agg(lambda c: c.value_counts().index[0])
    busy = views["user_id"].value_counts().loc[lambda n: n >= 20].index
    assert (favourite[busy] == tastes.idxmax(axis=1)[busy]).mean() > 0.6
    # attributes carry signal: women care more for beauty than men do
    gender = shop.truth.customers.set_index("user_id")["gender"]
    by_gender = tastes["beauty"].groupby(gender).mean()
    assert by_gender["F"] > 1.5 * by_gender["M"]


def test_activity_and_sale_shape_visits(shop: DemoShop) -> None:
    events = shop.events.drop(index=shop.truth.dirt["row"])
    day = parsed_times(events).dt.strftime("%Y-%m-%d")
    active_days = day.groupby(events["user_id"]).nunique()
    activity = shop.truth.activity.drop(list(shop.truth.bot_user_ids))
    per_customer = active_days.reindex(activity.index, fill_value=0)
    assert per_customer.corr(activity, method="spearman") > 0.5
    per_day = day.value_counts()
    assert per_day[list(shop.truth.sale_days)].mean() > 1.5 * per_day.median()


def test_events_follow_signup_and_are_mostly_chronological(small: DemoShop) -> None:
    events = small.events.drop(index=small.truth.dirt["row"])
    times = parsed_times(events)
    assert (times.diff().dt.total_seconds() < 0).mean() < 0.05
    signup = events["user_id"].map(small.truth.customers.set_index("user_id")["signup_date"])
    assert (times.dt.strftime("%Y-%m-%d") >= signup).all()


def test_clean_shop_has_no_dirt(tidy: DemoShop) -> None:
    assert tidy.truth.dirt.empty
    assert tidy.truth.bot_user_ids == ()
    assert not tidy.events.duplicated().any()
    assert parsed_times(tidy.events).notna().all()
    assert canonical(tidy.events).notna().all()
    assert tidy.events["user_id"].notna().all()
    assert (tidy.events["amount"].dropna() > 0).all()
    assert tidy.customers.notna().all().all()
    assert tidy.items.notna().all().all()


def test_write_round_trips(small: DemoShop, tmp_path: Path) -> None:
    files = small.write(tmp_path / "shop")
    assert files.events == tmp_path / "shop" / "events.csv"
    pd.testing.assert_frame_equal(pd.read_csv(files.events), small.events)
    customers = pd.read_csv(files.customers, dtype={"age": "Int64"})
    pd.testing.assert_frame_equal(customers, small.customers)
    pd.testing.assert_frame_equal(pd.read_csv(files.items), small.items)
    with files.events.open() as fh:
        assert fh.readline().strip() == ",".join(EVENT_COLUMNS)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_customers": 5}, {"n_items": 3}, {"days": 0}, {"start": "next monday"}],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        demo_shop(**kwargs)  # type: ignore[arg-type]


def test_unknown_dirt_kind(small: DemoShop) -> None:
    with pytest.raises(ConfigError, match="unknown dirt kind"):
        small.truth.rows("spam")


# --------------------------------------------------------------------------- write_events_csv


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "events.csv"
    returned = write_events_csv(path, 25_000, n_customers=5_000, n_items=1_000, chunk_size=10_000)
    assert returned == path
    return path


def test_large_file_has_exact_rows_and_format(big: Path) -> None:
    events = pd.read_csv(big)
    assert len(events) == 25_000
    assert list(events.columns) == EVENT_COLUMNS
    assert events["amount"].dtype == np.float64
    assert events["quantity"].dtype == np.int64
    with big.open() as fh:
        assert fh.readline().strip() == ",".join(EVENT_COLUMNS)
        assert '"' not in fh.read()
    assert events["item_id"].str.fullmatch(r"P\d{5}").all()
    assert events["user_id"].dropna().str.fullmatch(r"C\d{6}").all()
    times = parsed_times(events)
    assert 0.99 < times.notna().mean() < 1
    assert (times.diff().dt.total_seconds() < 0).mean() < 0.01


def test_large_file_funnel_and_dirt(big: Path) -> None:
    events = pd.read_csv(big)
    share = canonical(events).value_counts(normalize=True)
    assert share["view"] == pytest.approx(0.75, abs=0.04)
    assert share["favorite"] == pytest.approx(0.07, abs=0.02)
    assert share["cart"] == pytest.approx(0.10, abs=0.02)
    assert share["purchase"] == pytest.approx(0.08, abs=0.02)
    assert 0.003 < events.duplicated().mean() < 0.008
    assert 0 < (events["event_type"] == "teleport").sum() < 100
    assert events["user_id"].isna().sum() < 100
    purchases = events[canonical(events) == "purchase"]
    assert (purchases["amount"] > 0).mean() > 0.99
    # popularity is skewed: the top 1% of items get several times their share of views
    views = events.loc[canonical(events) == "view", "item_id"].value_counts()
    assert views.head(10).sum() / views.sum() > 0.03


def test_large_file_is_reproducible(big: Path, tmp_path: Path) -> None:
    again = write_events_csv(
        tmp_path / "again.csv", 25_000, n_customers=5_000, n_items=1_000, chunk_size=10_000
    )
    assert again.read_bytes() == big.read_bytes()
    other = write_events_csv(
        tmp_path / "other.csv", 2_000, n_customers=5_000, n_items=1_000, seed=8, chunk_size=500
    )
    assert len(pd.read_csv(other)) == 2_000
    assert other.read_bytes()[:2000] != big.read_bytes()[:2000]


def test_large_file_edge_cases(tmp_path: Path) -> None:
    empty = write_events_csv(tmp_path / "deep" / "none.csv", 0, n_customers=100, n_items=50)
    assert empty.read_text() == ",".join(EVENT_COLUMNS) + "\n"
    one = write_events_csv(tmp_path / "one.csv", 1, n_customers=100, n_items=50)
    assert len(pd.read_csv(one)) == 1
    with pytest.raises(ConfigError):
        write_events_csv(tmp_path / "x.csv", -1)
    with pytest.raises(ConfigError):
        write_events_csv(tmp_path / "x.csv", 10, chunk_size=0)
