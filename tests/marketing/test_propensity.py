"""Purchase propensity: recovers a planted intent signal, calibrated and reproducible, saved
and loaded without pickle, refusing tampered files."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.errors import ConfigError, DataError, NotFoundError
from tailorcast.ingest.config import IngestConfig
from tailorcast.marketing import PropensityModels, load_propensity, train_propensity
from tailorcast.marketing.propensity import lift_at
from tailorcast.privacy import DEV_KEYS_FILE
from tailorcast.store import Store, open_store

CUTOFF = pd.Timestamp("2026-06-01")
WINDOW = 14


def _planted_shop(folder: Path, n: int = 900, seed: int = 4) -> tuple[Path, set[str]]:
    """Customers browse kitchen items for 60 days; a third of them ("intenders") view garden
    items in the week before the cutoff, and mostly buy garden in the window after it."""
    rng = np.random.default_rng(seed)
    users = np.array([f"U{i:04d}" for i in range(n)])
    intender = rng.random(n) < 0.33
    rows: list[tuple[str, str, str, pd.Timestamp, float | None]] = []

    def at(days_before: float) -> pd.Timestamp:
        return CUTOFF - pd.Timedelta(seconds=int(days_before * 86400))

    for i, user in enumerate(users):
        for _ in range(int(rng.integers(2, 8))):
            item = f"K{rng.integers(10)}"
            rows.append((user, item, "view", at(rng.uniform(1, 60)), None))
        if rng.random() < 0.5:
            rows.append((user, f"K{rng.integers(10)}", "purchase", at(rng.uniform(1, 60)), 15.0))
        if rng.random() < 0.2:  # an old look at the garden says little
            rows.append((user, f"G{rng.integers(10)}", "view", at(rng.uniform(40, 60)), None))
        if intender[i]:
            for _ in range(int(rng.integers(2, 5))):
                rows.append((user, f"G{rng.integers(10)}", "view", at(rng.uniform(0.1, 7)), None))
        if rng.random() < (0.7 if intender[i] else 0.03):
            after = CUTOFF + pd.Timedelta(hours=float(rng.uniform(1, WINDOW * 24 - 1)))
            rows.append((user, f"G{rng.integers(10)}", "purchase", after, 20.0))
        if rng.random() < 0.3:
            after = CUTOFF + pd.Timedelta(hours=float(rng.uniform(1, WINDOW * 24 - 1)))
            rows.append((user, f"K{rng.integers(10)}", "purchase", after, 15.0))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "amount"])
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    items = pd.DataFrame(
        {
            "item_id": [f"K{i}" for i in range(10)] + [f"G{i}" for i in range(10)],
            "category": ["kitchen"] * 10 + ["garden"] * 10,
            "price": [15.0] * 10 + [20.0] * 10,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    # Keys fixed in advance: pseudonyms, and so the customers' train/validation/test split,
    # are the same on every run (random development keys made the figures vary by +-0.02).
    (folder / "store").mkdir()
    fixed = {
        "pseudonym_key": base64.b64encode(bytes(range(32))).decode(),
        "encryption_key": base64.b64encode(bytes(range(32, 64))).decode(),
    }
    (folder / "store" / DEV_KEYS_FILE).write_text(json.dumps(fixed), encoding="utf-8")
    events.to_csv(folder / "events.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    run_ingest(
        folder / "store",
        IngestConfig(),
        events=folder / "events.csv",
        items=folder / "items.csv",
        insecure_dev=True,
        show_progress=False,
    )
    return folder / "store", set(users[intender])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store, _ = _planted_shop(tmp_path_factory.mktemp("propensity"))
    return store


def _end() -> pd.Timestamp:
    return CUTOFF + pd.Timedelta(days=WINDOW)


@pytest.fixture(scope="module")
def garden_models(planted: Path) -> PropensityModels:
    with Store.open(planted, read_only=True) as store:
        return train_propensity(store, ["garden"], _end(), WINDOW, seed=1)


def test_lift_at_top_decile() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    perfect = y + np.linspace(0, 0.1, 100)
    assert lift_at(y, perfect, 0.1) == pytest.approx(5.0)  # all top-10 buy; base rate 0.2
    assert lift_at(np.zeros(10), np.arange(10)) != lift_at(np.zeros(10), np.arange(10))  # nan


@pytest.mark.slow
def test_recovers_the_planted_intent_signal(planted: Path) -> None:
    with Store.open(planted, read_only=True) as store:
        models = train_propensity(store, ["garden", "kitchen"], _end(), WINDOW, seed=1)
    garden = models.metrics["garden"]
    assert models.cutoff == _end() - pd.Timedelta(days=WINDOW)
    assert garden["family"] in ("decision_tree", "random_forest", "gradient_boosting")
    assert set(garden["validation_roc_auc"]) == {
        "decision_tree",
        "random_forest",
        "gradient_boosting",
    }
    assert garden["roc_auc"] > 0.85
    assert garden["lift_top_decile"] > 2.0
    assert garden["pr_auc"] > garden["base_rate"] + 0.3
    top = list(garden["importances"])[:2]
    assert any(name.startswith("target_") for name in top), top
    # Kitchen purchases in the window are pure chance: nothing to find there.
    assert models.metrics["kitchen"]["roc_auc"] < 0.7


@pytest.mark.slow
def test_recovers_the_planted_purchase_probabilities(
    planted: Path, garden_models: PropensityModels
) -> None:
    """The generating process is known: intenders buy garden in the window with probability
    0.7, everyone else 0.03. Calibrated scores at the cutoff must give those back per group."""
    users = np.array([f"U{i:04d}" for i in range(900)])
    intender = np.random.default_rng(4).random(900) < 0.33  # _planted_shop's first draw
    store, keys = open_store(planted, read_only=True)
    with store:
        scores = garden_models.score(store, as_of=CUTOFF)
    assert keys is not None
    truth = pd.Series(intender, index=keys.pseudonymizer().many(list(users)))
    garden = scores[scores["category"] == "garden"].set_index("user_id")["probability"]
    planted_p = truth.reindex(garden.index)
    assert planted_p.notna().all() and planted_p.sum() == intender.sum()
    assert garden[planted_p].mean() == pytest.approx(0.7, abs=0.08)
    assert garden[~planted_p].mean() == pytest.approx(0.03, abs=0.05)
    # and customer by customer: every intender scores above almost every other customer
    assert garden[planted_p].quantile(0.1) > garden[~planted_p].quantile(0.9)


@pytest.mark.slow
def test_scores_are_calibrated_probabilities_and_persist(
    planted: Path, garden_models: PropensityModels, tmp_path: Path
) -> None:
    models = garden_models
    with Store.open(planted, read_only=True) as store:
        before = models.score(store, as_of=CUTOFF)
        models.save(tmp_path / "models")
        again = load_propensity(tmp_path / "models").score(store, as_of=CUTOFF)
        labels = store.con.execute(
            "SELECT DISTINCT e.user_id FROM events e JOIN items i USING (item_id) "
            "WHERE e.event_type = 'purchase' AND i.category = 'garden' AND e.\"timestamp\" > ?",
            [CUTOFF.to_pydatetime()],
        ).fetchall()
    assert list(before.columns) == ["user_id", "category", "probability"]
    assert before["probability"].between(0, 1).all()
    pd.testing.assert_frame_equal(before, again)
    bought = before["user_id"].isin({r[0] for r in labels})
    # Calibrated: predicted buyers in total close to the real number.
    assert before["probability"].sum() == pytest.approx(bought.sum(), rel=0.25)
    assert before.loc[bought, "probability"].mean() > 3 * before.loc[~bought, "probability"].mean()
    assert not list((tmp_path / "models").glob("*.pkl"))


@pytest.mark.slow
def test_load_refuses_a_file_with_untrusted_types(
    garden_models: PropensityModels, tmp_path: Path
) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    folder = garden_models.save(tmp_path / "models")
    (model_file,) = folder.glob("model_*.skops")
    sio.dump(FunctionTransformer(func=os.system), model_file)  # code on load, were it pickle
    with pytest.raises(DataError, match="refusing to load"):
        load_propensity(folder)
    shutil.rmtree(folder)
    with pytest.raises(NotFoundError):
        load_propensity(folder)


def test_bad_requests_are_user_errors(planted: Path) -> None:
    with Store.open(planted, read_only=True) as store:
        with pytest.raises(ConfigError, match="unknown categories"):
            train_propensity(store, ["garden", "nope"], _end(), WINDOW)
        with pytest.raises(ConfigError):
            train_propensity(store, ["garden"], _end(), 0)
        with pytest.raises(DataError, match="buyers"):  # no purchases in a window this early
            train_propensity(store, ["garden"], "2026-05-25", WINDOW)
