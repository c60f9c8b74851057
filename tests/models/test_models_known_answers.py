"""Known answers: a checkerboard where the right item is obvious, exact popularity counts,
EASE and item-kNN against straightforward numpy references, and a MovieLens sanity check."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / implicit load

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from implicit.nearest_neighbours import bm25_weight, tfidf_weight

from tailorcast.data import Interactions, InteractionsConfig, split_random
from tailorcast.datasets import load_movielens
from tailorcast.errors import ConfigError
from tailorcast.evaluation import ranking_metrics
from tailorcast.models import (
    EASERecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    make_model,
)

MOVIELENS = Path("/work/shared/data/ml-100k")
T0 = 1_700_000_000  # a Unix time in seconds
DAY = 86_400


def from_cells(cells: list[tuple[str, str, float]], **frames: Any) -> Interactions:
    """A view whose matrix holds exactly the given (customer, item, weight) cells."""
    events = pd.DataFrame(cells, columns=["user_id", "item_id", "rating"])
    events["event_type"] = "purchase"
    events["timestamp"] = T0
    return Interactions.from_events(
        events, config=InteractionsConfig(rating_column="rating"), **frames
    )


def from_dense(x: np.ndarray) -> Interactions:
    cells = [
        (f"u{u:03d}", f"i{i}", float(x[u, i]))
        for u in range(x.shape[0])
        for i in range(x.shape[1])
        if x[u, i] != 0
    ]
    inter = from_cells(cells)
    assert inter.user_ids.tolist() == [f"u{u:03d}" for u in range(x.shape[0])]
    return inter


# -- checkerboard --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkerboard() -> Interactions:
    """Customers u00-u09 chose items i00-i09, u10-u19 chose i10-i19; customer uNN misses iNN."""
    cells = [
        (f"u{u:02d}", f"i{i:02d}", 1.0)
        for u in range(20)
        for i in range(10 * (u // 10), 10 * (u // 10) + 10)
        if i != u
    ]
    return from_cells(cells)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("itemknn", {"similarity": "cosine"}),
        # Every in-group pair is equally similar, so keep all 9 neighbours of an item.
        ("itemknn", {"similarity": "bm25", "neighbors": 9}),
        ("itemknn", {"similarity": "tfidf", "shrinkage": 2.0}),
        ("ease", {"regularization": 1.0}),
        ("ease", {"regularization": 500.0}),
        # One factor per group: the structure is rank 2.
        ("als", {"factors": 2, "regularization": 0.1, "iterations": 20, "num_threads": 1}),
        ("bpr", {"factors": 8, "learning_rate": 0.05, "iterations": 100}),
    ],
)
def test_checkerboard_missing_item_first(
    checkerboard: Interactions, name: str, params: dict[str, Any]
) -> None:
    model = make_model(name, **params).fit(checkerboard)
    users = checkerboard.user_ids.tolist()
    recs = model.recommend(users, k=3)
    expected = [u.replace("u", "i") for u in users]
    assert recs.item_ids[:, 0].tolist() == expected
    # The reason names items of the customer's own group only.
    for row, user in enumerate(users):
        group = int(user[1:]) // 10
        named = recs.reasons[row, 0].removeprefix("because you bought ").split(" and ")
        assert recs.reasons[row, 0].startswith("because you bought ")
        assert all(int(item[1:]) // 10 == group and item != expected[row] for item in named)
    # And similar items stay in the group.
    sims = model.similar_items(["i03", "i14"], k=5)
    assert all(int(x[1:]) < 10 for x in sims.item_ids[0])
    assert all(int(x[1:]) >= 10 for x in sims.item_ids[1])


def test_checkerboard_popularity_is_not_personal(checkerboard: Interactions) -> None:
    model = PopularityRecommender().fit(checkerboard)
    recs = model.recommend(["u00"], k=20)
    # Every item has 9 customers: ties go to the lower index; u00's own items are excluded.
    assert recs.item_ids[0, :11].tolist() == ["i00", *[f"i{i}" for i in range(10, 20)]]
    assert recs.reasons[0, 0] == "popular with all customers"


# -- popularity ----------------------------------------------------------------------------------
def test_popularity_ranks_by_counts_exactly() -> None:
    # Item iK is chosen by K + 1 customers, item i9 by none (catalogue only).
    cells = [(f"u{u}", f"i{k}", 1.0) for k in range(9) for u in range(k + 1)]
    inter = from_cells(cells, items=pd.DataFrame({"item_id": [f"i{k}" for k in range(10)]}))
    model = PopularityRecommender().fit(inter)
    recs = model.recommend(["stranger"], k=10)
    assert recs.item_ids[0].tolist() == [f"i{k}" for k in range(8, -1, -1)] + ["i9"]
    np.testing.assert_array_equal(recs.scores[0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert recs.reasons[0, 0] == "popular right now"
    # u8 chose only i8: the rest in count order, with the global reason.
    recs = model.recommend(["u8"], k=3)
    assert recs.item_ids[0].tolist() == ["i7", "i6", "i5"]
    assert recs.reasons[0].tolist() == ["popular with all customers"] * 3


def test_popularity_measures_and_trending() -> None:
    t = T0 + 100 * DAY
    events = pd.DataFrame(
        [
            # a: 1 customer, 3 old views; b: 2 customers, one recent purchase each.
            ("u1", "a", "view", t - 20 * DAY),
            ("u1", "a", "view", t - 20 * DAY),
            ("u1", "a", "view", t - 20 * DAY),
            ("u1", "b", "purchase", t - 10 * DAY),
            ("u2", "b", "purchase", t),
            ("u2", "c", "view", t - 10 * DAY),
        ],
        columns=["user_id", "item_id", "event_type", "timestamp"],
    )
    inter = Interactions.from_events(events)

    def scores(**params: Any) -> dict[str, float]:
        recs = PopularityRecommender(**params).fit(inter).recommend(["x"], k=3)
        return dict(zip(recs.item_ids[0].tolist(), recs.scores[0].tolist(), strict=True))

    assert scores() == {"b": 2.0, "a": 1.0, "c": 1.0}
    assert scores(measure="events") == {"a": 3.0, "b": 2.0, "c": 1.0}
    assert scores(measure="weight") == {"b": 10.0, "a": 3.0, "c": 1.0}
    trending = scores(measure="events", half_life_days=10.0)
    assert trending == pytest.approx({"b": 1.5, "a": 0.75, "c": 0.5})
    assert list(trending) == ["b", "a", "c"]


def test_popularity_by_segment() -> None:
    cells = [("u1", "a", 1.0), ("u2", "a", 1.0), ("u3", "b", 1.0), ("u4", "b", 1.0)]
    cells += [("u5", "b", 1.0), ("u6", "c", 1.0)]
    users = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3", "u4", "u5", "u6"], "city": ["X", "X", "Y", "Y", "Y", None]}
    )
    inter = from_cells(cells, users=users)
    model = PopularityRecommender(by="city").fit(inter)
    recs = model.recommend(["u1", "u3", "u6", "ghost"], k=3, exclude_seen=False)
    assert recs.item_ids[0].tolist()[:1] == ["a"]  # city X chose a
    assert recs.scores[0].tolist() == [2.0, 0.0, 0.0]
    assert recs.reasons[0, 0] == "popular with customers like you (city: X)"
    assert recs.item_ids[1].tolist()[:1] == ["b"]
    assert recs.item_ids[2].tolist() == ["b", "a", "c"]  # no city: global counts 3, 2, 1
    assert recs.reasons[2, 0] == "popular with all customers"
    assert recs.reasons[3, 0] == "popular right now"
    with pytest.raises(ConfigError, match="'country' is not a customer attribute"):
        PopularityRecommender(by="country").fit(inter)


# -- EASE ---------------------------------------------------------------------------------------
def ease_reference(x: np.ndarray, lam: float) -> np.ndarray:
    x = x / x[x > 0].mean()  # EASE's penalty is scale-free: weights divided by their mean
    g = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_matches_numpy_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(9, 6)).astype(float) * (rng.random((9, 6)) < 0.6)
    x[:, 0] += 1.0  # every customer has at least one item
    inter = from_dense(x)
    model = EASERecommender(regularization=3.0).fit(inter)
    b = ease_reference(inter.matrix.toarray().astype(float), 3.0)
    assert model.item_weights_.dtype == np.float32
    np.testing.assert_allclose(model.item_weights_, b, rtol=1e-5, atol=1e-6)
    recs = model.recommend(inter.user_ids.tolist(), k=6, exclude_seen=False)
    expected = x @ b
    for u in range(x.shape[0]):
        cols = inter.item_index(recs.item_ids[u])
        np.testing.assert_allclose(recs.scores[u], expected[u, cols], rtol=1e-5, atol=1e-6)
        assert (np.diff(recs.scores[u]) <= 0).all()


def test_ease_reason_names_the_strongest_contributions() -> None:
    x = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0], [1, 0, 1, 1]])
    inter = from_dense(x)
    model = EASERecommender(regularization=0.5).fit(inter)
    b = ease_reference(x, 0.5)
    recs = model.recommend(["u000"], k=1)
    target = int(inter.item_index(recs.item_ids[0])[0])
    contributions = x[0] * b[:, target]
    order = [j for j in np.argsort(-contributions) if contributions[j] > 0]
    names = [f"i{j}" for j in order[:2]]
    assert recs.reasons[0, 0] == "because you bought " + " and ".join(names)


def test_ease_refuses_big_catalogs() -> None:
    inter = from_dense(np.eye(6) + np.eye(6, k=1))
    with pytest.raises(ConfigError, match=r"6 items, more than max_items=5"):
        EASERecommender(max_items=5).fit(inter)
    assert EASERecommender(max_items=6).fit(inter).is_fitted


# -- item-kNN -----------------------------------------------------------------------------------
# Item vectors over customers: i0 = (1, 3, 0), i1 = (2, 0, 1), i2 = (0, 1, 1).
HAND = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 1.0, 1.0]])


def test_itemknn_cosine_by_hand() -> None:
    s01 = 2 / np.sqrt(10 * 5)  # <i0, i1> = 2
    s02 = 3 / np.sqrt(10 * 2)  # <i0, i2> = 3
    s12 = 1 / np.sqrt(5 * 2)  # <i1, i2> = 1
    expected = np.array([[0, s01, s02], [s01, 0, s12], [s02, s12, 0]])
    model = ItemKNNRecommender(similarity="cosine").fit(from_dense(HAND))
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # Shrinkage in the denominator.
    shrunk = ItemKNNRecommender(shrinkage=2.0).fit(from_dense(HAND))
    assert shrunk.similarity_[0, 1] == pytest.approx(2 / (np.sqrt(50) + 2), rel=1e-6)
    # One neighbour per item: i0 -> i2, i1 -> i2 (0.316 > 0.283), i2 -> i0.
    top1 = ItemKNNRecommender(neighbors=1).fit(from_dense(HAND)).similarity_.toarray()
    np.testing.assert_allclose(top1, [[0, 0, s02], [0, 0, s12], [s02, 0, 0]], rtol=1e-6)
    # Scores are history @ S: u002 holds (0, 1, 1).
    recs = model.recommend(["u002"], k=1)
    assert recs.item_ids[0, 0] == "i0"
    assert recs.scores[0, 0] == pytest.approx(s01 + s02, rel=1e-6)
    assert recs.reasons[0, 0] == "because you bought i2 and i1"  # 1 * s02 > 1 * s01


@pytest.mark.parametrize("weighting", ["tfidf", "bm25"])
def test_itemknn_weighted_cosine_matches_reference(weighting: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, size=(12, 7)).astype(float)
    x[:, 0] += 1.0
    inter = from_dense(x)
    items = inter.matrix.T.tocsr().astype(np.float64)
    w = tfidf_weight(items) if weighting == "tfidf" else bm25_weight(items, K1=1.2, B=0.75)
    w = w.toarray()
    norms = np.linalg.norm(w, axis=1)
    expected = (w @ w.T) / np.outer(norms, norms)
    np.fill_diagonal(expected, 0.0)
    expected[expected < 0] = 0.0
    model = ItemKNNRecommender(similarity=weighting).fit(inter)  # type: ignore[arg-type]
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-5, atol=1e-7)


# -- MovieLens -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not MOVIELENS.is_dir(), reason="MovieLens 100K not available")
def test_movielens_ease_beats_popularity() -> None:
    ml = load_movielens(MOVIELENS)
    inter = Interactions.from_events(ml.events, items=ml.items, users=ml.users)
    train, test = split_random(inter, test_fraction=0.2, seed=7)
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)

    def ndcg(model: Recommender[Any]) -> float:
        recs = model.fit(train).recommend(train.user_ids[users], k=10)
        idx = inter.item_index(recs.item_ids.ravel()).reshape(recs.item_ids.shape)
        return ranking_metrics(idx, test.matrix[users], k=10, metrics=["ndcg"])["ndcg@10"]

    popular = ndcg(PopularityRecommender())
    ease = ndcg(EASERecommender(regularization=500.0))
    # Measured: popularity 0.216, EASE 0.372 (seed 7).
    assert 0.15 < popular < 0.30
    assert ease > popular + 0.10
