"""Audiences: consent, recent buyers and the minimum size enforced; ranking by affinity that
follows the shop's planted tastes; value weighting by CLV x propensity; exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ingest_demo_shop
from tailorcast.artifacts import load_model
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.ingest.config import IngestConfig
from tailorcast.marketing.audiences import AudienceTarget, build_audience, export_audience
from tailorcast.models.base import Recommender
from tailorcast.store import open_store
from tailorcast.training import train

SHOP = {"customers": 500, "items": 80, "days": 40}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audiences")
    store_dir = ingest_demo_shop(root, **SHOP)
    store, _ = open_store(store_dir)
    with store:
        train(store, "itemknn", params={"neighbors": 50}, store_dir=store_dir)
    return store_dir


@pytest.fixture(scope="module")
def model(folder: Path) -> Recommender:  # type: ignore[type-arg]
    return load_model(folder)


def _consent(folder: Path) -> pd.Series:
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        rows = store.con.execute("SELECT user_id, marketing_consent FROM users").fetchall()
    return pd.Series({u: bool(c) for u, c in rows})


def test_only_consenting_customers_and_no_bots(folder: Path, model: Recommender) -> None:  # type: ignore[type-arg]
    consent = _consent(folder)
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        audience = build_audience(store, AudienceTarget(category="fashion"), model=model)
        bots = {
            r[0]
            for r in store.con.execute("SELECT user_id FROM user_flags WHERE is_bot").fetchall()
        }
    members = audience.members["user_id"]
    assert len(members) >= 50 and members.is_unique
    assert consent.reindex(members).fillna(False).all()
    assert (~consent).sum() > 50  # the shop has customers without consent; none got in
    assert not set(members) & bots
    assert list(audience.members["rank"]) == list(range(1, len(members) + 1))
    assert audience.members["score"].is_monotonic_decreasing


def test_withdrawn_consent_takes_effect(folder: Path, model: Recommender, tmp_path: Path) -> None:  # type: ignore[type-arg]
    shop = demo_shop(
        n_customers=SHOP["customers"], n_items=SHOP["items"], days=SHOP["days"], seed=5
    )
    store, keys = open_store(folder, read_only=True)
    with store:
        first = build_audience(store, AudienceTarget(category="toys"), model=model)
        top = first.members["user_id"].iloc[0]
        assert keys is not None
        shop_id = store.reidentify([top], keys)[0]
    customers = shop.customers.copy()
    customers.loc[customers["user_id"] == shop_id, "marketing_consent"] = False
    customers.to_csv(tmp_path / "customers.csv", index=False)
    run_ingest(folder, IngestConfig(), users=tmp_path / "customers.csv", show_progress=False)
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        again = build_audience(store, AudienceTarget(category="toys"), model=model)
    assert top not in set(again.members["user_id"])
    assert len(again) == len(first) - 1


def test_recent_buyers_of_the_item_are_left_out(folder: Path, model: Recommender) -> None:  # type: ignore[type-arg]
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        item = store.con.execute(
            "SELECT item_id FROM events WHERE event_type = 'purchase' "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchall()[0][0]
        recent = build_audience(store, AudienceTarget(item=item), model=model, recent_days=14)
        latest = recent.as_of
        buyers = {
            r[0]
            for r in store.con.execute(
                "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' "
                'AND item_id = ? AND "timestamp" > ?',
                [item, (latest - pd.Timedelta(days=14)).to_pydatetime()],
            ).fetchall()
        }
        everyone = build_audience(store, AudienceTarget(item=item), model=model, recent_days=0)
    assert buyers and recent.excluded["recent_buyers"] > 0
    assert not buyers & set(recent.members["user_id"])
    assert buyers & set(everyone.members["user_id"])


def test_affinity_follows_the_planted_tastes(folder: Path, model: Recommender) -> None:  # type: ignore[type-arg]
    shop = demo_shop(
        n_customers=SHOP["customers"], n_items=SHOP["items"], days=SHOP["days"], seed=5
    )
    store, keys = open_store(folder, read_only=True)
    with store:
        assert keys is not None
        for category in ("fashion", "electronics"):
            audience = build_audience(store, AudienceTarget(category=category), model=model)
            ids = store.reidentify(audience.members["user_id"].tolist(), keys)
            taste = shop.truth.tastes.loc[ids, category].to_numpy()
            half = len(taste) // 2
            # customers ranked first care clearly more for the category than the rest
            assert taste[:half].mean() > 1.5 * taste[half:].mean(), category


def test_minimum_size_and_targets_are_enforced(folder: Path, model: Recommender) -> None:  # type: ignore[type-arg]
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        with pytest.raises(UserError, match="minimum of 1000"):
            build_audience(store, AudienceTarget(category="toys"), model=model, min_size=1000)
        with pytest.raises(ConfigError, match="below the minimum"):
            build_audience(store, AudienceTarget(category="toys"), model=model, size=10)
        sized = build_audience(store, AudienceTarget(category="toys"), model=model, size=60)
        assert len(sized) == 60
        with pytest.raises(NotFoundError, match="unknown category"):
            build_audience(store, AudienceTarget(category="spaceships"), model=model)
        with pytest.raises(NotFoundError, match="unknown item"):
            build_audience(store, AudienceTarget(item="NOPE"), model=model)
        with pytest.raises(NotFoundError, match="unknown segment"):
            build_audience(store, AudienceTarget(segment="Royalty"))
        with pytest.raises(ConfigError, match="trained model"):
            build_audience(store, AudienceTarget(category="toys"))
    with pytest.raises(ConfigError):
        AudienceTarget.of(item="P1", category="toys")
    with pytest.raises(ConfigError):
        AudienceTarget.of()


def test_segment_audience_holds_only_that_segment(folder: Path) -> None:
    from tailorcast.marketing.rfm import rfm_segments

    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        rfm = rfm_segments(store).set_index("user_id")["segment"]
        segment = rfm.value_counts().index[0]
        audience = build_audience(store, AudienceTarget(segment=segment), min_size=10)
    members = audience.members
    assert (members["segment"] == segment).all()
    assert (rfm.reindex(members["user_id"]) == segment).all()
    assert members["score"].is_monotonic_decreasing  # by CLV expected spend


def test_no_consent_column_is_a_clear_error(tmp_path: Path) -> None:
    folder = ingest_demo_shop(tmp_path, customers=120, items=30, days=10)
    store, _ = open_store(folder)
    with store:
        store.con.execute("ALTER TABLE users DROP COLUMN marketing_consent")
        train(store, "popularity", store_dir=folder)
        model = load_model(folder)
        with pytest.raises(ConfigError, match="marketing_consent"):
            build_audience(store, AudienceTarget(category="toys"), model=model)


def test_export_is_pseudonymous_unless_revealed_with_keys(
    folder: Path,
    model: Recommender,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    store, keys = open_store(folder, read_only=True)
    with store:
        audience = build_audience(store, AudienceTarget(category="books"), model=model, size=80)
        export_audience(store, audience, tmp_path / "a.csv")
        plain = pd.read_csv(tmp_path / "a.csv")
        assert list(plain["customer_pseudonym"]) == list(audience.members["user_id"])
        assert not {"email", "first_name", "customer_id"} & set(plain.columns)
        assert (
            not plain.astype(str).apply(lambda c: c.str.contains("@|^C0", regex=True)).any().any()
        )
        export_audience(store, audience, tmp_path / "b.json", keys=keys, reveal=True)
        shown = pd.read_json(tmp_path / "b.json")
        assert keys is not None
        assert list(shown["customer_id"]) == store.reidentify(
            audience.members["user_id"].tolist(), keys
        )
        assert shown["email"].str.endswith("@example.com").all()
        assert shown["first_name"].notna().all()
        with pytest.raises(ConfigError, match="keys"):
            export_audience(store, audience, tmp_path / "c.csv", keys=None, reveal=True)


@pytest.mark.slow
def test_value_weighting_uses_clv_times_propensity(folder: Path, model: Recommender) -> None:  # type: ignore[type-arg]
    from tailorcast.marketing._data import resolve_as_of
    from tailorcast.marketing.clv import fit_clv
    from tailorcast.marketing.propensity import propensity_folder, train_propensity

    store, _ = open_store(folder, read_only=True, need_keys=False)
    saved = propensity_folder(folder)
    try:
        with store:
            as_of = resolve_as_of(store, None)
            # saved models (as `tailorcast propensity train` leaves them) are used, not retrained
            models = train_propensity(store, ["fashion"], as_of=as_of)
            models.save(saved)
            plain = build_audience(store, AudienceTarget(category="fashion"), model=model)
            weighted = build_audience(
                store, AudienceTarget(category="fashion"), model=model, value_weighted=True
            )
            clv = fit_clv(store, as_of).predict(90).set_index("user_id")["expected_spend"]
            prop = models.score(store, as_of)
    finally:
        shutil.rmtree(saved.parent, ignore_errors=True)
    p = prop[prop["category"] == "fashion"].set_index("user_id")["probability"]
    members = weighted.members.set_index("user_id")
    ids = members.index.to_series()
    expected = ids.map(clv).fillna(0.0) * ids.map(p).fillna(0.0)
    np.testing.assert_allclose(members["expected_value"], expected, rtol=1e-9)
    assert (members["expected_value"] > 0).mean() > 0.5
    value_pct = members["expected_value"].rank(pct=True)
    np.testing.assert_allclose(members["score"], members["affinity"] * value_pct, rtol=1e-9)
    # the same customers, ordered differently: value moved high-value customers up
    assert set(members.index) == set(plain.members["user_id"])
    assert list(members.index[:20]) != list(plain.members["user_id"][:20])
    top_value = members["expected_value"].iloc[: len(members) // 4].mean()
    assert top_value > 1.5 * members["expected_value"].mean()
