"""A/B tests of recommenders: deterministic hashed assignment, served lists recorded with
their variant, and per-variant KPIs with significance from later (simulated) purchases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ingest_demo_shop
from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.data import Interactions
from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.ingest.config import IngestConfig
from tailorcast.marketing.experiments import (
    Variant,
    assign_variants,
    create_experiment,
    get_experiment,
    measure_experiment,
    merge_served,
    serve_experiment,
)
from tailorcast.models import ItemKNNRecommender, PopularityRecommender
from tailorcast.privacy import DEV_KEYS_FILE
from tailorcast.store import open_store

SERVED_AT = pd.Timestamp("2026-02-01")  # after the 20-day shop's last event


def _fixed_dev_keys(store_dir: Path) -> None:
    """Development keys known in advance, so pseudonyms (and the hashed variants drawn from
    them) are the same on every run."""
    store_dir.mkdir(parents=True)
    keys = {
        "pseudonym_key": base64.b64encode(bytes(range(32))).decode(),
        "encryption_key": base64.b64encode(bytes(range(32, 64))).decode(),
    }
    (store_dir / DEV_KEYS_FILE).write_text(json.dumps(keys), encoding="utf-8")


def test_assignment_is_deterministic_and_order_free() -> None:
    ids = [f"p_{i}" for i in range(5000)]
    first = assign_variants("exp-1", ids, ["a", "b"])
    again = assign_variants("exp-1", list(reversed(ids)), ["a", "b"])[::-1]
    np.testing.assert_array_equal(first, again)
    one_by_one = [assign_variants("exp-1", [u], ["a", "b"])[0] for u in ids[:50]]
    assert one_by_one == list(first[:50])


def test_assignment_follows_weights_and_salts_are_independent() -> None:
    ids = [f"p_{i}" for i in range(40_000)]
    arms = assign_variants("exp-w", ids, ["a", "b", "c"], [0.5, 0.3, 0.2])
    share = pd.Series(arms).value_counts(normalize=True)
    assert share["a"] == pytest.approx(0.5, abs=0.01)
    assert share["b"] == pytest.approx(0.3, abs=0.01)
    assert share["c"] == pytest.approx(0.2, abs=0.01)
    x = assign_variants("exp-x", ids, ["a", "b"])
    y = assign_variants("exp-y", ids, ["a", "b"])
    both = pd.crosstab(x, y, normalize=True).to_numpy()
    np.testing.assert_allclose(both, 0.25, atol=0.01)  # no carry-over between experiments
    with pytest.raises(ConfigError):
        assign_variants("e", ids, ["a", "b"], [1.0])
    with pytest.raises(ConfigError):
        assign_variants("e", ids, ["a", "b"], [1.0, 0.0])


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, PopularityRecommender | ItemKNNRecommender]]:
    root = tmp_path_factory.mktemp("experiments")
    _fixed_dev_keys(root / "store")
    folder = ingest_demo_shop(root, customers=600, items=60, days=20)
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        inter = Interactions.from_store(store)
    models = {
        "control": PopularityRecommender().fit(inter),
        "knn": ItemKNNRecommender(neighbors=40).fit(inter),
    }
    return folder, models


def test_create_and_get_experiment(
    setup: tuple[Path, dict[str, PopularityRecommender | ItemKNNRecommender]],
) -> None:
    folder, _ = setup
    store, _ = open_store(folder, need_keys=False)
    with store:
        made = create_experiment(store, "pop-vs-knn", {"control": "v1", "knn": "v2"})
        assert get_experiment(store, "pop-vs-knn") == made
        assert made.control == "control"
        with pytest.raises(UserError, match="exists"):
            create_experiment(store, "pop-vs-knn", {"control": None, "knn": None})
        with pytest.raises(ConfigError):
            create_experiment(store, "one-arm", {"control": None})
        with pytest.raises(ConfigError):
            create_experiment(store, "bad name!", {"a": None, "b": None})
        with pytest.raises(NotFoundError):
            get_experiment(store, "nope")
    with pytest.raises(ValueError):
        Variant(name="x", weight=0)


def test_served_lists_are_recorded_with_their_variant_and_measured(
    setup: tuple[Path, dict[str, PopularityRecommender | ItemKNNRecommender]], tmp_path: Path
) -> None:
    folder, models = setup
    store, keys = open_store(folder)
    with store:
        experiment = create_experiment(store, "ab", {"control": None, "knn": None})
        users = models["knn"].user_ids_[np.diff(models["knn"].user_items_.indptr) > 0]
        served = serve_experiment(store, experiment, models, users, k=5, at=SERVED_AT)
        recorded = store.con.execute(
            "SELECT user_id, variant, items FROM experiment_served WHERE experiment = 'ab'"
        ).df()
        assert keys is not None
        shop_ids = dict(
            zip(
                recorded["user_id"],
                store.reidentify(recorded["user_id"].tolist(), keys),
                strict=True,
            )
        )
    # one recorded list per customer, with the variant the hash gives, from that variant's model
    assert len(recorded) == len(users) and recorded["user_id"].is_unique
    np.testing.assert_array_equal(recorded["variant"], experiment.assign(recorded["user_id"]))
    control_users = recorded.loc[recorded["variant"] == "control", "user_id"].to_numpy(dtype=object)
    expected = models["control"].recommend(control_users, 5).to_frame()
    got = served[served["variant"] == "control"].reset_index(drop=True)
    assert got["item_id"].tolist() == expected["item_id"].tolist()
    assert set(served["variant"]) == {"control", "knn"}

    # later purchases: "knn" customers buy their first shown item far more often
    rng = np.random.default_rng(3)
    rate = np.where(recorded["variant"] == "knn", 0.35, 0.08)
    buyers = recorded[rng.random(len(recorded)) < rate]
    events = pd.DataFrame(
        {
            "user_id": buyers["user_id"].map(shop_ids),
            "item_id": [next(iter(items)) for items in buyers["items"]],
            "event_type": "purchase",
            "timestamp": (SERVED_AT + pd.Timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": 20.0,
            "quantity": 1,
        }
    )
    events.to_csv(tmp_path / "after.csv", index=False)
    run_ingest(folder, IngestConfig(), events=tmp_path / "after.csv", show_progress=False)
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        report = measure_experiment(store, "ab", window_days=7)
    by = {v.variant: v for v in report.variants}
    assert by["control"].customers + by["knn"].customers == len(users)
    assert by["knn"].hit_rate > by["control"].hit_rate
    assert by["knn"].hit_rate_p < 0.001 and by["knn"].conversion_p < 0.001
    assert report.conversion_chi2_p < 0.001
    low, high = by["knn"].conversion_ci
    true_diff = 0.35 - 0.08
    assert low <= true_diff <= high
    assert by["knn"].revenue_lift > 0 and by["knn"].revenue_p < 0.05
    assert report.frame().shape[0] == 2


def test_an_aa_test_finds_nothing(
    setup: tuple[Path, dict[str, PopularityRecommender | ItemKNNRecommender]],
) -> None:
    folder, models = setup
    store, _ = open_store(folder)
    with store:
        same = {"a": models["knn"], "b": models["knn"]}
        experiment = create_experiment(store, "aa", {"a": None, "b": None})
        users = models["knn"].user_ids_
        serve_experiment(store, experiment, same, users, k=5, at=SERVED_AT)
        report = measure_experiment(store, "aa", window_days=7)
        assert report.variants[1].conversion_p > 0.01
        with pytest.raises(NotFoundError, match="served no lists"):
            create_experiment(store, "empty", {"a": None, "b": None})
            measure_experiment(store, "empty")
        with pytest.raises(ConfigError, match="no model"):
            serve_experiment(store, experiment, {"a": models["knn"]}, users, k=5)


def test_merged_server_lists_are_added_once_per_spool_label(
    setup: tuple[Path, dict[str, PopularityRecommender | ItemKNNRecommender]],
) -> None:
    folder, _ = setup
    rows = [
        {
            "experiment": "spooled",
            "variant": "a" if i % 2 else "b",
            "user_id": f"p_{i}",
            "served_at": SERVED_AT.timestamp() + i,
            "items": [f"I{i}", f"I{i + 1}"],
        }
        for i in range(6)
    ]
    store, _ = open_store(folder, need_keys=False)
    with store:
        assert merge_served(store, rows, "spool:seg-1#0") == 6
        assert merge_served(store, rows, "spool:seg-1#0") == 0  # a replayed group
        assert merge_served(store, rows[:2], "spool:seg-2#0") == 2
        got = store.con.execute(
            "SELECT user_id, variant, served_at, items FROM experiment_served "
            "WHERE experiment = 'spooled' ORDER BY served_at, user_id"
        ).df()
    assert len(got) == 8
    first = got.iloc[0]
    assert first["user_id"] == "p_0" and first["variant"] == "b"
    assert pd.Timestamp(first["served_at"]) == SERVED_AT
    assert list(first["items"]) == ["I0", "I1"]
