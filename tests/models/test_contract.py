"""One battery of contract checks run against every registered recommender."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / implicit load

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorcast.data import Interactions
from tailorcast.errors import ConfigError, NotFittedError, NotFoundError
from tailorcast.models import (
    COLD_START_REASON,
    MODELS,
    EASERecommender,
    PopularityRecommender,
    Recommendations,
    Recommender,
    make_model,
)

#: Small, fast settings per model (single-threaded factor models: reproducible and quick).
SMALL: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"neighbors": 20, "shrinkage": 1.0},
    "ease": {"regularization": 10.0},
    "als": {"factors": 8, "iterations": 5, "num_threads": 1},
    "bpr": {"factors": 8, "iterations": 20, "num_threads": 1},
    "content": {},
    "hybrid": {"component_params": {"ease": {"regularization": 10.0}}},
    "repeat": {},
}
#: One out-of-range value per model: accepted by __init__, refused by fit.
BAD: dict[str, tuple[str, Any]] = {
    "popularity": ("half_life_days", -1.0),
    "itemknn": ("neighbors", 0),
    "ease": ("regularization", -5.0),
    "als": ("factors", 0),
    "bpr": ("learning_rate", 0.0),
    "content": ("price_weight", -1.0),
    "hybrid": ("validation_fraction", 1.5),
    "repeat": ("horizon_days", 0.0),
}
NAMES = sorted(MODELS)
EVENT_TYPES = ["view", "favorite", "cart", "purchase"]


def shop(n_users: int, n_items: int, n_events: int, seed: int) -> Interactions:
    """A random shop: customers u0.., items i0.. (two extra catalogue items without events)."""
    rng = np.random.default_rng(seed)
    # Skewed item choice so popularity has a clear order.
    p = 1.0 / np.arange(1, n_items + 1)
    events = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, n_users, n_events)],
            "item_id": [f"i{x}" for x in rng.choice(n_items, n_events, p=p / p.sum())],
            "event_type": rng.choice(EVENT_TYPES, n_events),
            "timestamp": 1_700_000_000 + rng.integers(0, 30 * 86_400, n_events),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{x}" for x in range(n_items + 2)],
            "category": [["shoes", "bags", "hats"][x % 3] for x in range(n_items + 2)],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in range(n_users)],
            "city": [["Berlin", "Paris", None][x % 3] for x in range(n_users)],
        }
    )
    return Interactions.from_events(events, items=items, users=users)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return shop(n_users=40, n_items=30, n_events=400, seed=1)


@pytest.fixture(scope="module")
def other() -> Interactions:
    return shop(n_users=25, n_items=18, n_events=150, seed=2)


@pytest.fixture(scope="module", params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fitted(name: str, inter: Interactions, **extra: Any) -> Recommender[Any]:
    return make_model(name, **{**SMALL[name], **extra}).fit(inter)


@pytest.fixture(scope="module")
def model(name: str, data: Interactions) -> Recommender[Any]:
    return fitted(name, data)


def seen_ids(inter: Interactions, user: str) -> set[str]:
    row = inter.seen(inter.user_index([user]))
    return set(inter.item_ids[row.indices].tolist())


def assert_same(a: Recommendations, b: Recommendations) -> None:
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.reasons, b.reasons)


# -- parameters -----------------------------------------------------------------------------
def test_registry_names_every_family() -> None:
    assert set(MODELS) == {
        "popularity",
        "itemknn",
        "ease",
        "als",
        "bpr",
        "content",
        "hybrid",
        "repeat",
    }
    for key, cls in MODELS.items():
        assert cls.name == key
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        make_model("nope")
    with pytest.raises(ConfigError, match="no parameter 'factorz'"):
        make_model("als", factorz=3)


def test_init_defaults_match_config(name: str) -> None:
    cls = MODELS[name]
    assert cls().get_params() == cls.config_class().model_dump()


def test_init_stores_and_fit_validates(name: str, data: Interactions) -> None:
    param, value = BAD[name]
    model = make_model(name, **{param: value})  # no validation in __init__
    assert model.get_params()[param] == value
    with pytest.raises(ConfigError, match=param):
        model.fit(data)
    assert not model.is_fitted


def test_set_params_round_trip(name: str) -> None:
    model = make_model(name)
    params = model.get_params()
    assert model.set_params(**params) is model
    assert model.get_params() == params
    with pytest.raises(ConfigError, match="has no parameter 'bogus'"):
        model.set_params(bogus=1)
    assert repr(model).startswith(type(model).__name__ + "(")


# -- fitting -----------------------------------------------------------------------------------
def test_fit_returns_self(name: str, data: Interactions) -> None:
    model = make_model(name, **SMALL[name])
    assert model.fit(data) is model
    assert model.is_fitted
    assert model.n_users == data.n_users and model.n_items == data.n_items
    assert model.fingerprint_ == data.fingerprint()


def test_refit_replaces_state(name: str, data: Interactions, other: Interactions) -> None:
    model = fitted(name, data)
    model.fit(other)
    assert model.n_items == other.n_items != data.n_items
    assert model.fingerprint_ == other.fingerprint()
    users = ["u0", "u3", "u7", "nobody"]
    recs = model.recommend(users, k=5)
    assert set(recs.to_frame()["item_id"]) <= set(other.item_ids.tolist())
    # Nothing of the first fit survives: identical to a fresh model fitted on `other` only.
    assert_same(recs, fitted(name, other).recommend(users, k=5))


def test_unfitted_use_raises(name: str, tmp_path: Path) -> None:
    model = make_model(name)
    message = f"{type(model).__name__} is not fitted yet: call fit\\(interactions\\) first"
    with pytest.raises(NotFittedError, match=message):
        model.recommend(["u1"])
    with pytest.raises(NotFittedError, match=message):
        model.similar_items(["i1"])
    with pytest.raises(NotFittedError, match=message):
        model.save(tmp_path / "m")


def test_deterministic_with_seed(name: str, data: Interactions) -> None:
    users = data.user_ids.tolist()
    first = fitted(name, data).recommend(users, k=8)
    assert_same(first, fitted(name, data).recommend(users, k=8))


# -- recommending ------------------------------------------------------------------------------
def test_unknown_user_gets_cold_start(model: Recommender[Any], data: Interactions) -> None:
    recs = model.recommend(["ghost-1", "u1", "ghost-2"], k=5)
    customers = np.bincount(data.seen(np.arange(data.n_users)).indices, minlength=data.n_items)
    most = data.item_ids[np.argsort(-customers, kind="stable")[:5]].tolist()
    for row in (0, 2):
        assert recs.reasons[row].tolist() == [COLD_START_REASON] * 5
        assert recs.item_ids[row].tolist() == most
    # A known customer takes the personal path (its reasons are not all the cold-start one).
    assert set(recs.reasons[1].tolist()) != {COLD_START_REASON}


def test_customer_without_history_is_cold(name: str, data: Interactions) -> None:
    # u5 stays in the vocabulary but loses every event (as in a split).
    without = data.with_events(data.events["user_idx"].to_numpy() != data.user_index(["u5"])[0])
    model = fitted(name, without)
    recs = model.recommend(["u5"], k=4)
    assert recs.reasons[0].tolist() == [COLD_START_REASON] * 4


def test_no_seen_items(model: Recommender[Any], data: Interactions) -> None:
    users = data.user_ids.tolist()
    recs = model.recommend(users, k=10)
    for row, user in enumerate(users):
        assert not set(recs.item_ids[row].tolist()) & seen_ids(data, user)
    # Without the exclusion every item is eligible: a full-length list of distinct items.
    full = model.recommend(users[:5], k=data.n_items, exclude_seen=False)
    for row in range(5):
        assert sorted(full.item_ids[row].tolist()) == sorted(data.item_ids.tolist())


def test_candidate_restriction(model: Recommender[Any], data: Interactions) -> None:
    allowed = ["i0", "i2", "i4", "i6", "i8", "not-in-catalog"]
    recs = model.recommend(["u1", "u2", "ghost"], k=3, items=allowed, exclude_seen=False)
    assert set(recs.to_frame()["item_id"]) <= set(allowed)
    assert (recs.item_ids != None).all()  # noqa: E711 - object array, element-wise
    banned = ["i0", "i1", "i2"]
    recs = model.recommend(["u1", "ghost"], k=data.n_items, exclude_items=banned)
    assert not set(recs.to_frame()["item_id"]) & set(banned)


def test_k_beyond_eligible_items_pads(model: Recommender[Any], data: Interactions) -> None:
    users = ["u0", "u1", "ghost"]
    k = data.n_items + 5
    recs = model.recommend(users, k=k)
    assert recs.item_ids.shape == (3, k) and recs.k == k
    for row, user in enumerate(users):
        eligible = data.n_items - len(seen_ids(data, user)) if user != "ghost" else data.n_items
        filled = recs.item_ids[row] != None  # noqa: E711
        assert filled.sum() == eligible
        assert filled[:eligible].all()  # padding only at the end
        assert np.isnan(recs.scores[row, eligible:]).all()
        assert (recs.reasons[row, eligible:] == None).all()  # noqa: E711
        assert len(set(recs.item_ids[row, :eligible].tolist())) == eligible
    assert len(recs.to_frame()) == int((recs.item_ids != None).sum())  # noqa: E711


def test_to_frame(model: Recommender[Any], data: Interactions) -> None:
    recs = model.recommend(["u1", "u2", "ghost"], k=4)
    frame = recs.to_frame()
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score", "reason"]
    assert len(frame) == 12
    for _, group in frame.groupby("user_id"):
        assert group["rank"].tolist() == [1, 2, 3, 4]
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
    assert len(recs) == 3


def test_every_row_has_a_reason(model: Recommender[Any], data: Interactions) -> None:
    users = data.user_ids.tolist()
    recs = model.recommend([*users, "ghost"], k=6)
    for row, user in enumerate([*users, "ghost"]):
        for item, reason in zip(recs.item_ids[row], recs.reasons[row], strict=True):
            assert item is not None and isinstance(reason, str) and reason
            if model.name == "popularity" or user == "ghost":
                continue
            if reason.startswith("because you"):
                # The named items are the customer's own history, and not the item itself.
                named = set(re.findall(r"\bi\d+\b", reason))
                assert named and named <= seen_ids(data, user) and item not in named
            else:
                assert reason == COLD_START_REASON


def test_batch_equals_one_by_one(model: Recommender[Any], data: Interactions) -> None:
    users = ["u3", "ghost", "u0", "u3", "u9"]
    batch = model.recommend(users, k=5)
    for row, user in enumerate(users):
        single = model.recommend([user], k=5)
        np.testing.assert_array_equal(single.item_ids[0], batch.item_ids[row])
        # BLAS may pick another kernel for one row than for a block: equal up to rounding.
        np.testing.assert_allclose(single.scores[0], batch.scores[row], rtol=1e-5)
        np.testing.assert_array_equal(single.reasons[0], batch.reasons[row])


def test_bad_arguments(model: Recommender[Any]) -> None:
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        model.recommend(["u1"], k=0)
    with pytest.raises(TypeError, match="not a single string"):
        model.recommend("u1")
    empty = model.recommend([], k=3)
    assert empty.item_ids.shape == (0, 3) and len(empty.to_frame()) == 0


# -- similar items ---------------------------------------------------------------------------
def test_similar_items(model: Recommender[Any], data: Interactions) -> None:
    query = ["i0", "i3", "i29"]
    sims = model.similar_items(query, k=data.n_items)
    assert sims.item_ids.shape == (3, data.n_items)
    for row, item in enumerate(query):
        got = sims.item_ids[row].tolist()
        assert item not in got
        assert sorted(x for x in got if x is not None) == sorted(set(data.item_ids) - {item})
    frame = sims.to_frame()
    assert list(frame.columns) == ["source_item_id", "item_id", "rank", "score", "reason"]
    assert frame["reason"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    with pytest.raises(NotFoundError, match="'no-such-item'"):
        model.similar_items(["i1", "no-such-item"])


# -- persistence -----------------------------------------------------------------------------
def test_save_load_round_trip(model: Recommender[Any], data: Interactions, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "model")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model"] == model.name
    assert meta["params"] == model.get_params()
    assert meta["fingerprint"] == data.fingerprint()
    assert meta["tailorcast_version"]
    with np.load(folder / "state.npz", allow_pickle=False) as npz:  # arrays only, no pickle
        assert all(npz[key].dtype != object for key in npz.files)
    loaded = Recommender.load(folder)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert loaded.fingerprint_ == model.fingerprint_
    users = [*data.user_ids.tolist(), "ghost"]
    for kwargs in ({}, {"exclude_seen": False}, {"items": ["i1", "i2", "i3", "i4"]}):
        assert_same(loaded.recommend(users, k=7, **kwargs), model.recommend(users, k=7, **kwargs))
    assert_same(loaded.similar_items(["i0", "i5"], k=4), model.similar_items(["i0", "i5"], k=4))
    # The class's own load works too, and refuses another family's folder.
    assert type(type(model).load(folder)) is type(model)
    wrong = PopularityRecommender if model.name != "popularity" else EASERecommender
    with pytest.raises(ConfigError, match="holds a"):
        wrong.load(folder)


def test_load_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no saved model"):
        Recommender.load(tmp_path / "nothing")
