"""Ranking metrics on hand-computed cases and against a plain loop reference."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.typing import NDArray

from tailorcast.evaluation import ALL_ACCURACY, beyond_accuracy, per_user, ranking_metrics
from tailorcast.evaluation import metrics as metrics_module


def relevant_matrix(rows: list[set[int]], n_items: int) -> Any:
    data = np.zeros((len(rows), n_items), dtype=np.float32)
    for row, items in enumerate(rows):
        data[row, sorted(items)] = 1.0
    return sp.csr_matrix(data)


def one_user(rec: list[int], test: set[int], k: int, n_items: int = 8) -> dict[str, float]:
    frame = per_user(np.array([rec]), relevant_matrix([test], n_items), k=k)
    assert frame.index.tolist() == [0]
    return {str(key): float(value) for key, value in frame.iloc[0].items()}


def test_two_hits_in_top_three() -> None:
    # Test items {a=0, c=2}, list [a, b, c]: hits at ranks 1 and 3.
    got = one_user([0, 1, 2], {0, 2}, k=3)
    assert got["precision@3"] == pytest.approx(2 / 3)  # 2 hits / K=3
    assert got["recall@3"] == pytest.approx(1.0)  # 2 hits / 2 test items
    # DCG = 1/log2(2) + 1/log2(4); ideal: 2 hits at ranks 1, 2 = 1 + 1/log2(3).
    assert got["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    # precision@1 = 1/1, precision@3 = 2/3, divided by min(2, 3) = 2.
    assert got["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["mrr@3"] == 1.0
    assert got["hit@3"] == 1.0
    assert got["n_relevant"] == 2


def test_many_test_items_ideal_dcg_stops_at_k() -> None:
    # 5 test items, K=2 (the third column is ignored), list [5, 3]: one hit at rank 2.
    got = one_user([5, 3, 0], {0, 1, 2, 3, 4}, k=2)
    assert got["precision@2"] == pytest.approx(1 / 2)
    assert got["recall@2"] == pytest.approx(1 / 5)
    # Ideal DCG over min(5, 2) = 2 positions: 1 + 1/log2(3); DCG = 1/log2(3).
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # precision@2 = 1/2 at the one hit, divided by min(5, 2) = 2.
    assert got["map@2"] == pytest.approx(1 / 4)
    assert got["mrr@2"] == pytest.approx(1 / 2)
    assert got["hit@2"] == 1.0


def test_no_hit_scores_zero_everywhere() -> None:
    got = one_user([0, 1, 2], {4}, k=3)
    assert all(got[f"{name}@3"] == 0.0 for name in ALL_ACCURACY)


def test_padding_is_never_a_hit_but_counts_in_precision() -> None:
    # Test items {1, 6}; list [6, -1, -1]: one hit at rank 1, K stays 3.
    got = one_user([6, -1, -1], {1, 6}, k=3)
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(1 / 2)
    assert got["ndcg@3"] == pytest.approx(1 / (1 + 1 / math.log2(3)))  # ideal: 2 hits
    assert got["map@3"] == pytest.approx(1 / 2)  # precision@1 = 1, over min(2, 3)
    assert got["mrr@3"] == 1.0
    # A list narrower than k is treated as padded: [6] at k=3 is the same list.
    assert one_user([6], {1, 6}, k=3) == got


def test_users_without_test_items_are_left_out_of_means() -> None:
    rec = np.array([[0, 1, 2], [3, 4, 5], [5, 3, 0], [0, 1, 2]])
    # Customer 1 has no test item; customer 3's only test entry is a stored zero.
    relevant = sp.csr_matrix(
        (np.array([1, 1, 1, 1, 1, 1, 1, 0]), ([0, 0, 2, 2, 2, 2, 2, 3], [0, 2, 0, 1, 2, 3, 4, 1])),
        shape=(4, 8),
    )
    result = ranking_metrics(rec, relevant, k=2)
    assert result["n_users"] == 2.0
    # Customer 0 at k=2: [0, 1] vs {0, 2}: P=1/2, R=1/2, MRR=1.
    # Customer 2 at k=2: [5, 3] vs {0..4}: P=1/2, R=1/5, MRR=1/2.
    assert result["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert result["recall@2"] == pytest.approx((1 / 2 + 1 / 5) / 2)
    assert result["mrr@2"] == pytest.approx((1 + 1 / 2) / 2)
    assert list(result) == [f"{name}@2" for name in ALL_ACCURACY] + ["n_users"]
    frame = per_user(rec, relevant, k=2)
    assert frame.index.tolist() == [0, 2]
    assert frame["n_relevant"].tolist() == [2, 5]


def test_metric_selection_and_duplicate_entries() -> None:
    # A duplicated (row, column) entry in the test matrix is one relevant item, not two.
    relevant = sp.csr_matrix((np.ones(3), (np.array([0, 0, 0]), np.array([2, 2, 4]))), shape=(1, 5))
    result = ranking_metrics(np.array([[2, 0]]), relevant, k=2, metrics=["recall", "mrr"])
    assert result == {"recall@2": 0.5, "mrr@2": 1.0, "n_users": 1.0}


def test_rejects_bad_input() -> None:
    rel = relevant_matrix([{0}, {1}], 4)
    with pytest.raises(ValueError, match="unknown metrics"):
        ranking_metrics(np.array([[0], [1]]), rel, k=1, metrics=["auc"])
    with pytest.raises(ValueError, match="3 rows but relevant has 2"):
        ranking_metrics(np.array([[0, 1], [1, 2], [2, 3]]), rel, k=2)
    with pytest.raises(ValueError, match="outside"):
        ranking_metrics(np.array([[0], [4]]), rel, k=1)
    with pytest.raises(ValueError, match="outside"):
        ranking_metrics(np.array([[0], [-2]]), rel, k=1)
    with pytest.raises(ValueError, match="row 1 lists the same item twice"):
        ranking_metrics(np.array([[0, 1], [2, 2]]), rel, k=2)
    with pytest.raises(ValueError, match="integer item indices"):
        ranking_metrics(np.array([[0.0], [1.0]]), rel, k=1)
    with pytest.raises(ValueError, match="k must be"):
        ranking_metrics(np.array([[0], [1]]), rel, k=0)
    with pytest.raises(ValueError, match="no customer has a test item"):
        ranking_metrics(np.array([[0], [1]]), sp.csr_matrix((2, 4)), k=1)
    with pytest.raises(TypeError, match="scipy sparse"):
        ranking_metrics(np.array([[0], [1]]), rel.toarray(), k=1)


def reference_per_user(rec: NDArray[np.int64], rel: Any, k: int) -> pd.DataFrame:
    """Textbook definitions, one customer and one rank at a time."""
    dense = rel.toarray() != 0
    rows = {}
    for u in range(rec.shape[0]):
        test = set(np.flatnonzero(dense[u]).tolist())
        if not test:
            continue
        ranked = [int(i) for i in rec[u, :k]]
        ranked += [-1] * (k - len(ranked))
        hit_ranks = [r for r, item in enumerate(ranked, start=1) if item in test]
        dcg = sum(1 / math.log2(r + 1) for r in hit_ranks)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(test), k) + 1))
        ap = sum(sum(1 for h in hit_ranks if h <= r) / r for r in hit_ranks)
        rows[u] = {
            f"precision@{k}": len(hit_ranks) / k,
            f"recall@{k}": len(hit_ranks) / len(test),
            f"ndcg@{k}": dcg / idcg,
            f"map@{k}": ap / min(len(test), k),
            f"mrr@{k}": 1 / hit_ranks[0] if hit_ranks else 0.0,
            f"hit@{k}": float(bool(hit_ranks)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_matches_loop_reference_on_random_data(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 60, 25, 10
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.15] = -1  # padding, also in the middle of lists
    relevant = sp.random(n_users, n_items, density=0.15, format="csr", random_state=seed)
    relevant.data[:] = 1.0
    want = reference_per_user(rec, relevant, k)
    got = per_user(rec, relevant, k=k)
    assert got.index.tolist() == want.index.tolist()
    pd.testing.assert_frame_equal(
        got.drop(columns="n_relevant"), want, check_names=False, check_index_type=False
    )
    summary = ranking_metrics(rec, relevant, k=k)
    assert summary["n_users"] == len(want)
    for column in want.columns:
        assert summary[column] == pytest.approx(want[column].mean())


def test_beyond_accuracy_hand_example() -> None:
    # 4 training customers, 5 items; item columns: 0 -> 4 customers, 1 -> 2, 2 -> 1,
    # 3 -> 0, 4 -> 1 (stored with weight 3.0: weights do not change popularity).
    train = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0],
                [1, 1, 1, 0, 0],
                [1, 0, 0, 0, 0],
                [1, 0, 0, 0, 3],
            ],
            dtype=np.float32,
        )
    )
    rec = np.array([[0, 1, 3], [2, -1, -1], [-1, -1, -1]])
    result = beyond_accuracy(rec, train, k=3)
    assert result["coverage@3"] == pytest.approx(4 / 5)  # items 0, 1, 2, 3 of 5
    # Self-information: item 0: -log2(4/4) = 0; item 1: -log2(2/4) = 1; item 2: 2;
    # item 3 never seen: floored at half a customer, -log2(0.5/4) = 3.
    # Customer 0: (0 + 1 + 3) / 3; customer 1: 2; customer 2 has an empty list.
    assert result["novelty@3"] == pytest.approx((4 / 3 + 2) / 2)
    # Diversity from train columns: v0 = (1,1,1,1), v1 = (1,1,0,0), v3 = 0.
    # cos(v0, v1) = 2 / (2 * sqrt(2)) = 1/sqrt(2); v3 is orthogonal to everything.
    # Only customer 0 has >= 2 items: mean of (1 - 1/sqrt(2), 1, 1).
    assert result["diversity@3"] == pytest.approx((1 - 1 / math.sqrt(2) + 2) / 3)


def test_diversity_with_item_vectors() -> None:
    train = sp.csr_matrix(np.ones((2, 3)))
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])  # 0 and 1 point the same way
    rec = np.array([[0, 1, 2], [0, 1, -1]])
    # Customer 0: pairs (0,1) -> 0, (0,2) -> 1, (1,2) -> 1: mean 2/3. Customer 1: 0.
    want = (2 / 3 + 0) / 2
    assert beyond_accuracy(rec, train, k=3, item_vectors=vectors)["diversity@3"] == pytest.approx(
        want
    )
    sparse = beyond_accuracy(rec, train, k=3, item_vectors=sp.csr_matrix(vectors))
    assert sparse["diversity@3"] == pytest.approx(want)
    # k=1 leaves no pairs: diversity is undefined.
    assert math.isnan(beyond_accuracy(rec, train, k=1)["diversity@1"])
    with pytest.raises(ValueError, match="item_vectors has 2 rows"):
        beyond_accuracy(rec, train, k=3, item_vectors=vectors[:2])


def reference_diversity(rec: NDArray[np.int64], vectors: NDArray[np.float64]) -> float:
    per_list = []
    for row in rec:
        items = [int(i) for i in row if i >= 0]
        if len(items) < 2:
            continue
        distances = []
        for a, b in itertools.combinations(items, 2):
            na, nb = np.linalg.norm(vectors[a]), np.linalg.norm(vectors[b])
            cos = vectors[a] @ vectors[b] / (na * nb) if na > 0 and nb > 0 else 0.0
            distances.append(1 - cos)
        per_list.append(np.mean(distances))
    return float(np.mean(per_list))


@pytest.mark.parametrize("budget", [1, 50, 10**9])
def test_diversity_matches_loop_reference_in_any_batching(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "_DIVERSITY_BUDGET", budget)
    rng = np.random.default_rng(7)
    n_users, n_items = 40, 30
    train = sp.random(50, n_items, density=0.1, format="csr", random_state=7)
    features = rng.normal(size=(n_items, 6))
    features[3] = 0.0  # an item without features
    rec = np.stack([rng.permutation(n_items)[:6] for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.2] = -1
    from_train = beyond_accuracy(rec, train, k=6)["diversity@6"]
    assert from_train == pytest.approx(reference_diversity(rec, train.T.toarray()))
    dense = beyond_accuracy(rec, train, k=6, item_vectors=features)["diversity@6"]
    assert dense == pytest.approx(reference_diversity(rec, features))
    sparse = beyond_accuracy(rec, train, k=6, item_vectors=sp.csr_matrix(features))
    assert sparse["diversity@6"] == pytest.approx(dense)
