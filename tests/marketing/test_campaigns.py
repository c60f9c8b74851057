"""Campaigns: stratified seeded control groups, stored offers, exports, and measured lift on
a demo shop whose weeks after the send date are simulated with a known effect."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ingest_demo_shop
from tailorcast.artifacts import load_model
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.datasets.campaign_response import CampaignResponse, simulate_campaign_response
from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.ingest.config import IngestConfig
from tailorcast.marketing.audiences import AudienceTarget
from tailorcast.marketing.campaigns import (
    assign_control,
    campaign_members,
    campaign_offers,
    create_campaign,
    export_campaign,
    list_campaigns,
    measure_campaign,
    parse_holdout,
)
from tailorcast.models import ItemKNNRecommender
from tailorcast.privacy import DEV_KEYS_FILE
from tailorcast.store import open_store
from tailorcast.training import train

SHOP = {"customers": 700, "items": 80, "days": 40}
SEND = "2026-02-15"  # the day after the shop's last day (start 2026-01-05 + 40 days)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("campaigns")
    store_dir = ingest_demo_shop(root, **SHOP)
    store, _ = open_store(store_dir)
    with store:
        train(store, "itemknn", params={"neighbors": 50}, store_dir=store_dir)
    return store_dir


@pytest.fixture(scope="module")
def model(folder: Path) -> ItemKNNRecommender:
    loaded = load_model(folder)
    assert isinstance(loaded, ItemKNNRecommender)
    return loaded


def _segments(n: int, seed: int = 0) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    names = np.array(["Champions", "Loyal", "At risk", "Lost", "New"], dtype=object)
    ids = pd.Series([f"p_{i:05d}" for i in range(n)], dtype=object)
    return ids, pd.Series(names[rng.choice(5, n, p=[0.1, 0.2, 0.3, 0.35, 0.05])])


# -- control group ----------------------------------------------------------------------------
def test_control_is_reproducible_by_seed_and_independent_of_order() -> None:
    ids, segs = _segments(1000)
    first = assign_control(ids, segs, 0.2, seed=7)
    again = assign_control(ids, segs, 0.2, seed=7)
    other = assign_control(ids, segs, 0.2, seed=8)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    shuffled = np.random.default_rng(1).permutation(len(ids))
    moved = assign_control(ids.iloc[shuffled], segs.iloc[shuffled], 0.2, seed=7)
    np.testing.assert_array_equal(moved, first[shuffled])


@pytest.mark.parametrize("holdout", [0.1, 0.25, 0.5])
def test_control_is_balanced_by_segment(holdout: float) -> None:
    ids, segs = _segments(1237, seed=3)
    control = assign_control(ids, segs, holdout, seed=1)
    assert control.sum() == round(holdout * len(ids))
    share = pd.Series(control).groupby(segs.to_numpy()).mean()
    sizes = segs.value_counts()
    for segment, value in share.items():
        # floor/ceil of the exact quota: within one member of the holdout share
        assert abs(value - holdout) <= 1.0 / sizes[segment] + 1e-12, segment


@pytest.mark.parametrize(
    ("text", "value"), [("10%", 0.1), ("0.25", 0.25), (" 50 % ", 0.5), ("ten", None)]
)
def test_parse_holdout(text: str, value: float | None) -> None:
    if value is None:
        with pytest.raises(ConfigError):
            parse_holdout(text)
    else:
        assert parse_holdout(text) == pytest.approx(value)
    for bad in ("0%", "100%", "-5%", "abc", "1.5"):
        with pytest.raises(ConfigError):
            parse_holdout(bad)


# -- creating, listing, exporting -----------------------------------------------------------
def test_create_stores_members_arms_and_offers(folder: Path, model: ItemKNNRecommender) -> None:
    store, keys = open_store(folder)
    with store:
        summary = create_campaign(
            store,
            "toys-a",
            AudienceTarget(category="toys"),
            model=model,
            holdout=0.2,
            seed=11,
            items_per_customer=3,
            send_date=SEND,
        )
        members = campaign_members(store, "toys-a")
        offers = campaign_offers(store, "toys-a")
        catalog = store.con.execute("SELECT item_id, category FROM items").df()
        assert summary.members == len(members) == summary.treated + summary.control
        assert members["user_id"].is_unique  # one arm per member: arms are disjoint
        assert set(members["arm"]) == {"treated", "control"}
        assert summary.control == round(0.2 * summary.members)
        # every member has up to three offers, all in the category, best first
        per = offers.groupby("user_id")["rank"].agg(["min", "max", "size"])
        assert per["min"].eq(1).all() and per["size"].le(3).all()
        assert per["size"].eq(3).mean() > 0.9
        categories = offers["item_id"].map(catalog.set_index("item_id")["category"])
        assert categories.eq("toys").all()
        assert offers["title"].notna().all() and offers["reason"].notna().all()
        # the same audience and seed give the same control group
        create_campaign(
            store, "toys-b", AudienceTarget(category="toys"), model=model, holdout=0.2, seed=11
        )
        again = campaign_members(store, "toys-b").set_index("user_id")["arm"]
        assert again.equals(members.set_index("user_id")["arm"].loc[again.index])
        listed = list_campaigns(store)
        assert {"toys-a", "toys-b"} <= set(listed["name"])
        del keys


def test_item_campaign_offers_the_item_first(folder: Path, model: ItemKNNRecommender) -> None:
    store, _ = open_store(folder)
    with store:
        item = store.con.execute(
            "SELECT item_id FROM events WHERE event_type = 'purchase' "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchall()[0][0]
        create_campaign(store, "item-x", AudienceTarget(item=item), model=model, min_size=20)
        offers = campaign_offers(store, "item-x")
        assert offers.loc[offers["rank"] == 1, "item_id"].eq(item).all()
        assert not offers.loc[offers["rank"] > 1, "item_id"].eq(item).any()


def test_duplicate_names_and_bad_inputs_are_refused(
    folder: Path, model: ItemKNNRecommender
) -> None:
    store, _ = open_store(folder)
    with store:
        create_campaign(store, "dup", AudienceTarget(category="books"), model=model)
        before = store.count("campaign_members")
        with pytest.raises(UserError, match="exists already"):
            create_campaign(store, "dup", AudienceTarget(category="books"), model=model)
        with pytest.raises(ConfigError):
            create_campaign(store, "bad/name", AudienceTarget(category="books"), model=model)
        with pytest.raises(UserError, match="minimum"):
            create_campaign(
                store, "tiny", AudienceTarget(category="books"), model=model, min_size=100_000
            )
        with pytest.raises(NotFoundError):
            measure_campaign(store, "no-such-campaign")
        assert store.count("campaign_members") == before
        assert "tiny" not in set(list_campaigns(store)["name"])


def test_export_writes_treated_members_with_contacts(
    folder: Path, model: ItemKNNRecommender, tmp_path: Path
) -> None:
    store, keys = open_store(folder)
    with store:
        create_campaign(
            store, "mail", AudienceTarget(category="fashion"), model=model, holdout=0.3, seed=2
        )
        members = campaign_members(store, "mail")
        offered = set(campaign_offers(store, "mail")["user_id"])
        path, rows = export_campaign(store, "mail", tmp_path / "mail.csv", keys=keys)
        frame = pd.read_csv(path)
        # every treated member with an offer, and no one else
        treated = members[(members["arm"] == "treated") & members["user_id"].isin(offered)]
        assert rows == len(frame) == len(treated) > 0.8 * (members["arm"] == "treated").sum()
        expected_ids = set(store.reidentify(treated["user_id"].tolist(), keys))
        assert set(frame["customer_id"]) == expected_ids
        control_ids = set(
            store.reidentify(members.loc[members["arm"] == "control", "user_id"].tolist(), keys)
        )
        assert not control_ids & set(frame["customer_id"])
        assert frame["email"].str.contains("@").all() and frame["first_name"].notna().all()
        for column in (
            "item_1_id",
            "item_1_title",
            "item_1_price",
            "item_1_image_url",
            "item_1_reason",
        ):
            assert column in frame.columns
        assert frame["item_1_image_url"].str.startswith("https://").all()
        hidden, n = export_campaign(
            store, "mail", tmp_path / "p.parquet", keys=None, pseudonymized=True
        )
        pseudo = pd.read_parquet(hidden)
        assert n == len(treated) and "email" not in pseudo.columns
        assert set(pseudo["customer_pseudonym"]) == set(treated["user_id"])
        with pytest.raises(ConfigError, match="keys"):
            export_campaign(store, "mail", tmp_path / "x.csv", keys=None)


# -- measuring ----------------------------------------------------------------------------------
def _simulate(
    folder: Path, name: str, response_rate: float, seed: int, tmp: Path
) -> CampaignResponse:
    """Re-identify the campaign's members, simulate the weeks after SEND and ingest them."""
    shop = demo_shop(
        n_customers=SHOP["customers"], n_items=SHOP["items"], days=SHOP["days"], seed=5
    )
    store, keys = open_store(folder)
    with store:
        members = campaign_members(store, name)
        offers = campaign_offers(store, name)
        assert keys is not None
        ids = dict(
            zip(
                members["user_id"], store.reidentify(members["user_id"].tolist(), keys), strict=True
            )
        )
    sim = simulate_campaign_response(
        shop,
        members.assign(user_id=members["user_id"].map(ids), treated=members["arm"] == "treated"),
        offers.assign(user_id=offers["user_id"].map(ids)),
        send_date=SEND,
        weeks=4,
        response_rate=response_rate,
        seed=seed,
    )
    run_ingest(folder, IngestConfig(), events=sim.write(tmp / f"{name}.csv"), show_progress=False)
    return sim


def _fixed_dev_keys(store_dir: Path) -> None:
    """Development keys known in advance: pseudonyms, and so the seeded control group that
    is drawn in pseudonym order, are the same on every run."""
    store_dir.mkdir(parents=True)
    keys = {
        "pseudonym_key": base64.b64encode(bytes(range(32))).decode(),
        "encryption_key": base64.b64encode(bytes(range(32, 64))).decode(),
    }
    (store_dir / DEV_KEYS_FILE).write_text(json.dumps(keys), encoding="utf-8")


@pytest.fixture(scope="module")
def measured_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("measure")
    _fixed_dev_keys(root / "store")
    store_dir = ingest_demo_shop(root, **SHOP)
    store, _ = open_store(store_dir)
    with store:
        train(store, "itemknn", params={"neighbors": 50}, store_dir=store_dir)
    return store_dir


@pytest.mark.slow
def test_measure_finds_a_known_simulated_effect_within_its_interval(
    measured_store: Path, tmp_path: Path
) -> None:
    model = load_model(measured_store)
    store, _ = open_store(measured_store)
    with store:
        create_campaign(
            store,
            "effect",
            AudienceTarget(category="fashion"),
            model=model,
            holdout=0.5,
            seed=4,
            send_date=SEND,
        )
        create_campaign(
            store,
            "null",
            AudienceTarget(category="home"),
            model=model,
            holdout=0.5,
            seed=4,
            send_date=SEND,
        )
    sim = _simulate(measured_store, "effect", response_rate=0.9, seed=1, tmp=tmp_path)
    store, _ = open_store(measured_store, read_only=True, need_keys=False)
    with store:
        # 99% intervals: each misses the truth once in a hundred draws, not once in twenty
        result = measure_campaign(store, "effect", window_days=28, confidence=0.99)
        assert result.complete and result.n_treated + result.n_control == len(sim.members)
        for lift, truth in (
            (result.conversion, sim.true_conversion_lift),
            (result.offer_conversion, sim.true_offer_conversion_lift),
            (result.revenue_per_member, sim.true_revenue_lift),
        ):
            assert lift.low <= truth <= lift.high, (lift, truth)
        # the planted effect is large enough to be found, not just to be inside a wide interval
        assert sim.true_offer_conversion_lift > 0.05
        assert result.offer_conversion.low > 0 and result.offer_conversion.p_value < 0.001
        # a campaign nobody responded to (its members got no simulated response): no lift
        # found beyond chance; its interval holds zero
        null = measure_campaign(store, "null", window_days=28, confidence=0.99)
        assert null.conversion.low <= 0 <= null.conversion.high
        assert null.offer_conversion.low <= 0 <= null.offer_conversion.high
        assert "normal approximation" in result.method


def test_measure_notes_an_unfinished_window(folder: Path, model: ItemKNNRecommender) -> None:
    store, _ = open_store(folder)
    with store:
        create_campaign(
            store, "future", AudienceTarget(category="sports"), model=model, send_date="2031-01-01"
        )
        result = measure_campaign(store, "future", window_days=14)
        assert not result.complete and any("not over" in n for n in result.notes)
        assert result.conversion.difference == 0.0
        with pytest.raises(ConfigError):
            measure_campaign(store, "future", window_days=0)
