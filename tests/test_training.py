"""Training on a generated demo shop: one named model, and ``auto``'s time-boxed search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from conftest import ingest_demo_shop
from tailorcast import training
from tailorcast.artifacts import METADATA_FILE, list_versions, load_artifact
from tailorcast.data import Interactions, validation_split
from tailorcast.errors import ConfigError, NotFoundError
from tailorcast.models import make_model
from tailorcast.store import Store
from tailorcast.training import (
    SEARCH_SPACES,
    TrainProgress,
    TrainResult,
    train,
    validation_metrics,
)

FAMILIES = ["popularity", "itemknn", "ease", "als", "bpr", "hybrid"]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    ingest_demo_shop(root)
    return root / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    with Store.open(store_dir, read_only=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def auto_result(store_dir: Path) -> TrainResult:
    """One auto search with a small budget, shared by the tests that inspect it."""
    with Store.open(store_dir, read_only=True) as opened:
        return train(opened, "auto", budget_seconds=8)


def test_named_model_validates_then_refits_on_all_data(store: Store) -> None:
    result = train(store, "itemknn", params={"neighbors": 40, "similarity": "bm25"})
    inter = Interactions.from_store(store)

    assert result.name == "itemknn"
    assert result.params["neighbors"] == 40 and result.params["similarity"] == "bm25"
    # The metrics are those of a fit on the validation split's train part ...
    split = validation_split(inter, "random", seed=2026)
    held_out = make_model("itemknn", neighbors=40, similarity="bm25").fit(split.train)
    assert result.metrics == validation_metrics(held_out, split)
    assert 0.0 < result.metrics["ndcg@10"] <= 1.0
    # ... while the saved model saw every event.
    assert result.model.user_items_.nnz == inter.matrix.nnz
    assert result.fingerprint == inter.fingerprint() == result.model.fingerprint_
    assert result.n_events == len(inter.events)
    assert [t.model for t in result.trials] == ["itemknn"]

    assert result.version is not None and result.version in list_versions(store.folder)
    saved = load_artifact(store.folder, result.version)
    assert saved.metadata.metrics == result.metrics
    assert saved.metadata.fingerprint == inter.fingerprint()
    assert saved.metadata.training["mode"] == "named"


def test_auto_picks_the_best_validated_configuration(auto_result: TrainResult) -> None:
    trials = auto_result.trials
    models_tried = {t.model for t in trials}
    # Every family got at least its first trial (the costliest, last, may not fit 8 s).
    assert models_tried | set(auto_result.skipped) == set(FAMILIES)
    assert set(FAMILIES[:-1]) <= models_tried
    scores = {
        name: max(t.ndcg_at_10 for t in trials if t.model == name and t.ndcg_at_10 is not None)
        for name in models_tried
    }
    best = auto_result.metrics["ndcg@10"]
    assert best == max(scores.values())
    assert auto_result.name == max(scores, key=lambda n: scores[n])
    assert best >= scores["popularity"]
    assert best > scores["popularity"]  # on this shop personalisation clearly wins
    # The first trial of each family is its default configuration, cheapest family first.
    firsts = [
        next(t for t in trials if t.model == name) for name in FAMILIES if name in models_tried
    ]
    assert firsts == sorted(firsts, key=trials.index)
    assert firsts[1].params == {
        "similarity": "cosine",
        "neighbors": 100,
        "shrinkage": 0.0,
        "recency": 0.0,
        "recency_items": 10.0,
    }
    # The chosen trial's parameters are the saved model's.
    chosen = next(t for t in trials if t.model == auto_result.name and t.ndcg_at_10 == best)
    assert {k: auto_result.params[k] for k in chosen.params} == chosen.params


def test_auto_metadata_has_fingerprint_metrics_and_trace(
    auto_result: TrainResult, store_dir: Path
) -> None:
    assert auto_result.path is not None
    meta = json.loads((auto_result.path / METADATA_FILE).read_text())
    assert meta["model"] == auto_result.name
    assert meta["fingerprint"] == auto_result.fingerprint
    assert meta["metrics"]["ndcg@10"] == auto_result.metrics["ndcg@10"]
    assert {"recall@10", "precision@10", "map@10", "mrr@10", "hit@10"} <= set(meta["metrics"])
    assert len(meta["trials"]) == len(auto_result.trials)
    first = meta["trials"][0]
    assert set(first) >= {"model", "params", "ndcg@10", "seconds"}
    assert meta["training"]["mode"] == "auto"
    assert meta["training"]["budget_seconds"] == 8
    with Store.open(store_dir, read_only=True) as opened:
        inter = Interactions.from_store(opened)
    assert meta["n_events"] == len(inter.events)
    assert meta["fingerprint"] == inter.fingerprint()


def test_auto_with_a_trial_cap_is_reproducible(store: Store) -> None:
    runs = [train(store, "auto", budget_seconds=600, max_trials=8, save=False) for _ in range(2)]
    first, second = ([(t.model, t.params, t.ndcg_at_10) for t in r.trials] for r in runs)
    assert first == second
    assert len(first) == 8
    assert [m for m, _, _ in first[: len(FAMILIES)]] == FAMILIES
    assert runs[0].version is None and runs[0].name == runs[1].name


def test_auto_skips_ease_for_a_large_catalog(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "AUTO_EASE_MAX_ITEMS", 10)
    result = train(store, "auto", budget_seconds=600, max_trials=6, save=False)
    assert "ease" in result.skipped and "items" in result.skipped["ease"]
    assert "ease" not in {t.model for t in result.trials}


def test_a_failing_trial_is_recorded_and_the_search_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_ease(trial: optuna.Trial) -> dict[str, object]:
        # max_items=1 makes every EASE fit refuse the catalogue with a ConfigError.
        return {
            "regularization": trial.suggest_float("regularization", 10.0, 5000.0),
            "max_items": 1,
        }

    monkeypatch.setitem(SEARCH_SPACES, "ease", broken_ease)
    result = train(store, "auto", budget_seconds=600, max_trials=5, save=False)
    ease = [t for t in result.trials if t.model == "ease"]
    assert len(ease) == 1 and ease[0].state == "failed" and ease[0].ndcg_at_10 is None
    assert ease[0].error is not None and "max_items" in ease[0].error
    assert result.name != "ease"


def test_progress_is_reported(store: Store) -> None:
    seen: list[TrainProgress] = []
    train(store, "auto", budget_seconds=600, max_trials=3, save=False, progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "data" and phases[-1] == "done"
    assert phases.count("search") == 3
    assert all(p.budget == 600 for p in seen)
    searches = [p for p in seen if p.phase == "search"]
    assert [p.trials for p in searches] == [1, 2, 3]
    assert searches[-1].best_model in FAMILIES and searches[-1].best_ndcg is not None


def test_training_a_view_without_a_store(store: Store, tmp_path: Path) -> None:
    inter = Interactions.from_store(store)
    unsaved = train(inter, "popularity", save=False)
    assert unsaved.version is None and unsaved.path is None
    with pytest.raises(ConfigError, match="store_dir"):
        train(inter, "popularity")
    saved = train(inter, "popularity", store_dir=tmp_path)
    assert list_versions(tmp_path) == [saved.version]
    assert np.isclose(saved.metrics["ndcg@10"], unsaved.metrics["ndcg@10"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "nope"}, NotFoundError, "unknown model 'nope'"),
        ({"model": "auto", "params": {"neighbors": 5}}, ConfigError, "named model"),
        ({"model": "auto", "budget_seconds": 0}, ConfigError, "budget"),
        ({"model": "auto", "max_trials": 0}, ConfigError, "max_trials"),
        ({"model": "itemknn", "params": {"neighbours": 5}}, ConfigError, "no parameter"),
        ({"model": "itemknn", "params": {"neighbors": -1}}, ConfigError, "neighbors"),
        ({"model": "itemknn", "protocol": "sideways"}, ConfigError, "protocol"),
    ],
)
def test_bad_requests_are_refused(
    store: Store, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    before = list_versions(store.folder)
    with pytest.raises(error, match=match):
        train(store, **kwargs)  # type: ignore[arg-type]
    assert list_versions(store.folder) == before


def test_auto_starts_ease_and_itemknn_from_plain_defaults() -> None:
    # The refinements (recency, dropout, damping) are searched, starting from "off", so a
    # shop where they do not help keeps the plain model.
    ease = training._defaults("ease")
    assert ease == {
        "regularization": 500.0,
        "dropout": 0.0,
        "popularity_damping": 0.0,
        "recency": 0.0,
        "recency_items": 10.0,
    }
    assert training._defaults("itemknn")["recency"] == 0.0
    assert make_model("ease", **ease).get_params() == make_model("ease").get_params()
