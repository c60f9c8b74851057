"""EASE's tuning options (a scale-free penalty, dropout, customer damping, popularity damping,
recency) and item-kNN's recency, each against a numpy reference or a case where the right
answer is obvious."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / implicit load

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.data import Interactions, InteractionsConfig
from tailorcast.errors import ConfigError
from tailorcast.models import EASERecommender, ItemKNNRecommender, Recommender
from tailorcast.models.ease import recency_ranks

T0 = 1_700_000_000
DAY = 86_400


def dense_view(x: np.ndarray) -> Interactions:
    """A view whose matrix is ``x`` (weights through a rating column), all at one time."""
    rows = [
        (f"u{u:03d}", f"i{i}", float(x[u, i]))
        for u in range(x.shape[0])
        for i in range(x.shape[1])
        if x[u, i] != 0
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    events["event_type"] = "purchase"
    events["timestamp"] = T0
    return Interactions.from_events(events, config=InteractionsConfig(rating_column="rating"))


def reference(x: np.ndarray, lam: float, dropout: float = 0.0, damping: float = 0.0) -> np.ndarray:
    x = x / x[x > 0].mean()
    n = (x > 0).sum(axis=1).astype(float)
    d = n**-damping
    d *= n.sum() / (d @ n)
    g = x.T @ (d[:, None] * x)
    g += np.diag(lam + dropout / (1 - dropout) * np.diag(g))
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.integers(1, 4, size=(12, 7)).astype(float) * (rng.random((12, 7)) < 0.5)
    x[:, 0] += 1.0  # every customer has an item
    return x


def test_penalty_is_scale_free(matrix: np.ndarray) -> None:
    one = EASERecommender(regularization=2.0).fit(dense_view(matrix))
    five = EASERecommender(regularization=2.0).fit(dense_view(5.0 * matrix))
    np.testing.assert_allclose(one.item_weights_, five.item_weights_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("dropout", "damping"), [(0.3, 0.0), (0.0, 0.5), (0.25, 1.0)])
def test_dropout_and_customer_damping_match_reference(
    matrix: np.ndarray, dropout: float, damping: float
) -> None:
    model = EASERecommender(regularization=1.5, dropout=dropout, user_damping=damping)
    model.fit(dense_view(matrix))
    expected = reference(matrix, 1.5, dropout, damping)
    np.testing.assert_allclose(model.item_weights_, expected, rtol=1e-4, atol=1e-5)
    plain = EASERecommender(regularization=1.5).fit(dense_view(matrix))
    assert not np.allclose(model.item_weights_, plain.item_weights_)


def test_popularity_damping_divides_scores(matrix: np.ndarray) -> None:
    inter = dense_view(matrix)
    plain = EASERecommender(regularization=1.5).fit(inter)
    damped = EASERecommender(regularization=1.5, popularity_damping=0.5).fit(inter)
    users = np.arange(inter.n_users)
    customers = (matrix > 0).sum(axis=0)
    np.testing.assert_allclose(
        damped._score(users), plain._score(users) / np.sqrt(1.0 + customers), rtol=1e-5, atol=1e-6
    )


def sequence_shop() -> Interactions:
    """Items come in pairs (a0, a1), (b0, b1): whoever has one of a pair has the other. The
    target customer bought b0 twice long ago and a0 once, last."""
    rows = []
    for u in range(30):
        first, second = ("a0", "a1") if u % 2 else ("b0", "b1")
        rows += [(f"c{u}", first, T0 + u * DAY), (f"c{u}", second, T0 + u * DAY + 60)]
    rows += [("target", "b0", T0), ("target", "b0", T0 + 10), ("target", "x", T0 + DAY)]
    rows += [("target", "a0", T0 + 40 * DAY)]  # b0 weighs twice a0, but a0 came last
    rows += [("other", "x", T0), ("other", "b1", T0 + DAY), ("other", "a1", T0 + 2 * DAY)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    events["event_type"] = "purchase"
    # b pairs get one extra customer, so without recency b1 wins the tie-free race
    extra = pd.DataFrame(
        [("c99", "b0", T0, "purchase"), ("c99", "b1", T0 + 60, "purchase")],
        columns=["user_id", "item_id", "timestamp", "event_type"],
    )
    return Interactions.from_events(pd.concat([events, extra], ignore_index=True))


def test_recency_ranks_count_later_items() -> None:
    inter = sequence_shop()
    model = EASERecommender().fit(inter)
    ranks = recency_ranks(inter, model.user_items_)
    row = int(inter.user_index(["target"])[0])
    cells = slice(model.user_items_.indptr[row], model.user_items_.indptr[row + 1])
    items = inter.item_ids[model.user_items_.indices[cells]].tolist()
    assert dict(zip(items, ranks[cells].tolist(), strict=True)) == {"a0": 0, "x": 1, "b0": 2}


def test_recency_puts_the_latest_items_neighbours_first() -> None:
    inter = sequence_shop()
    plain = EASERecommender(regularization=1.0).fit(inter)
    recent = EASERecommender(regularization=1.0, recency=1.0, recency_items=1.0).fit(inter)
    assert plain.recommend(["target"], k=1).item_ids[0, 0] == "b1"
    assert recent.recommend(["target"], k=1).item_ids[0, 0] == "a1"


def test_options_survive_save_and_load(tmp_path: Path) -> None:
    inter = sequence_shop()
    model = EASERecommender(
        regularization=2.0, dropout=0.2, user_damping=0.3, popularity_damping=0.1, recency=0.7
    ).fit(inter)
    same = Recommender.load(model.save(tmp_path / "ease"))
    users = inter.user_ids.tolist()
    a, b = model.recommend(users, k=3), same.recommend(users, k=3)
    assert a.item_ids.tolist() == b.item_ids.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize(
    "params", [{"dropout": 1.0}, {"recency": 1.5}, {"recency_items": 0.0}, {"user_damping": -1}]
)
def test_bad_options_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        EASERecommender(**params).fit(sequence_shop())  # type: ignore[arg-type]


def test_itemknn_recency_puts_the_latest_items_neighbours_first(tmp_path: Path) -> None:
    inter = sequence_shop()
    plain = ItemKNNRecommender(neighbors=5).fit(inter)
    recent = ItemKNNRecommender(neighbors=5, recency=1.0, recency_items=1.0).fit(inter)
    assert plain.recommend(["target"], k=1).item_ids[0, 0] == "b1"
    assert recent.recommend(["target"], k=1).item_ids[0, 0] == "a1"
    same = Recommender.load(recent.save(tmp_path / "knn"))
    np.testing.assert_array_equal(
        same.recommend(["target"], k=3).scores, recent.recommend(["target"], k=3).scores
    )
