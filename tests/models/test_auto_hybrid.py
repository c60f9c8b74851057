"""``auto``'s hybrid family: an EASE + ALS blend whose components start from the best
parameters their own families found, with blend weights learned on a split of the protocol
``auto`` validates on."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / implicit load

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import ingest_demo_shop
from tailorcast import training
from tailorcast.artifacts import TrialRecord
from tailorcast.data import Interactions, validation_split
from tailorcast.models import make_model
from tailorcast.store import Store
from tailorcast.training import HYBRID_COMPONENTS, SEARCH_SPACES, train, validation_metrics


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    ingest_demo_shop(root)
    return root / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    with Store.open(store_dir, read_only=True) as opened:
        yield opened


def test_hybrid_space_searches_each_component_under_its_prefix() -> None:
    values = {
        "ease.regularization": 321.0,
        "ease.dropout": 0.25,
        "ease.popularity_damping": 0.1,
        "ease.recency": 0.5,
        "ease.recency_items": 7.0,
        "als.factors": 24,
        "als.regularization": 0.2,
        "als.iterations": 12,
        "als.alpha": 3.0,
    }
    params = SEARCH_SPACES["hybrid"](optuna.trial.FixedTrial(values))
    assert params == {
        "component_params": {
            "ease": {
                "regularization": 321.0,
                "dropout": 0.25,
                "popularity_damping": 0.1,
                "recency": 0.5,
                "recency_items": 7.0,
            },
            "als": {"factors": 24, "regularization": 0.2, "iterations": 12, "alpha": 3.0},
        }
    }
    # The component spaces are the families' own: one fixed trial answers both.
    for name in HYBRID_COMPONENTS:
        own = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{name}.")}
        assert SEARCH_SPACES[name](optuna.trial.FixedTrial(own)) == own


def test_first_hybrid_trial_blends_the_families_defaults_and_reproduces(store: Store) -> None:
    result = train(store, "auto", budget_seconds=600, max_trials=6, protocol="last", save=False)
    by_model = {t.model: t for t in result.trials}
    assert list(by_model) == ["popularity", "itemknn", "ease", "als", "bpr", "hybrid"]
    hybrid = by_model["hybrid"]
    assert hybrid.params == {
        "components": "ease+als",
        "weight_step": 0.05,
        "validation_protocol": "last",  # the blend is weighed on auto's own protocol
        "seed": 2026,
        "component_params": {"ease": by_model["ease"].params, "als": by_model["als"].params},
    }
    # The recorded score is that of this configuration fitted on the validation train part.
    split = validation_split(Interactions.from_store(store), "last", seed=2026)
    fitted = make_model("hybrid", **hybrid.params).fit(split.train)
    assert validation_metrics(fitted, split)["ndcg@10"] == pytest.approx(hybrid.ndcg_at_10)


def _bests_before(trials: list[TrialRecord], name: str, end: int) -> dict[str, Any] | None:
    scored = [t for t in trials[:end] if t.model == name and t.ndcg_at_10 is not None]
    return max(scored, key=lambda t: t.ndcg_at_10 or 0.0).params if scored else None


def test_hybrid_follows_its_components_improvements(store: Store) -> None:
    result = train(store, "auto", budget_seconds=600, max_trials=24, save=False)
    trials = result.trials
    positions = [i for i, t in enumerate(trials) if t.model == "hybrid"]
    assert len(positions) >= 2
    seeded: dict[str, dict[str, Any] | None] | None = None
    checked = 0
    for at in positions:
        bests = {name: _bests_before(trials, name, at) for name in HYBRID_COMPONENTS}
        for name, best in bests.items():
            if best is not None and (seeded is None or seeded[name] != best):
                # A component whose family found better parameters is tried with them.
                assert trials[at].params["component_params"][name] == best
                checked += 1
        seeded = bests
    assert checked >= 3  # the first trial's two components and at least one improvement


def test_hybrid_is_left_out_with_ease_for_a_large_catalog(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "AUTO_EASE_MAX_ITEMS", 10)
    result = train(store, "auto", budget_seconds=600, max_trials=6, save=False)
    assert "hybrid" in result.skipped and "items" in result.skipped["hybrid"]
    assert all(t.model not in ("ease", "hybrid") for t in result.trials)
