"""Top-K selection: hand examples, a naive full-sort reference, blocking and threading."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.typing import NDArray

from tailorcast.evaluation import blocked_top_k, top_k


def naive_top_k(
    scores: NDArray[Any],
    k: int,
    exclude: Any = None,
    allowed: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Full sort of every row in Python: score descending, then lower index first."""
    n_rows, n_items = scores.shape
    forbidden = np.zeros(scores.shape, dtype=bool)
    if exclude is not None:
        forbidden |= exclude.toarray() != 0
    if allowed is not None:
        forbidden |= ~allowed[None, :]
    items = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf)
    for row in range(n_rows):
        eligible = [j for j in range(n_items) if not forbidden[row, j] and scores[row, j] > -np.inf]
        best = sorted(eligible, key=lambda j: (-scores[row, j], j))[:k]
        items[row, : len(best)] = best
        values[row, : len(best)] = scores[row, best]
    return items, values


def test_orders_by_score_then_lower_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.3]], dtype=np.float32)
    items, values = top_k(scores, 3)
    # 0.9 twice (items 1 and 3: lower index first), then 0.5 (item 2).
    assert items.tolist() == [[1, 3, 2]]
    np.testing.assert_array_equal(values, np.array([[0.9, 0.9, 0.5]], dtype=np.float32))
    assert items.dtype == np.int64
    assert values.dtype == np.float32


def test_tie_straddling_the_cut_keeps_the_lowest_indices() -> None:
    # The 2nd place is a four-way tie at 0.5 among items 5, 2, 7, 3 (and 1 just below):
    # the lowest tied index, 2, must win the single remaining slot.
    scores = np.array([[0.0, 0.4, 0.5, 0.5, 1.0, 0.5, 0.0, 0.5]])
    for _ in range(3):
        items, values = top_k(scores, 2)
        assert items.tolist() == [[4, 2]]
        assert values.tolist() == [[1.0, 0.5]]
    items, _ = top_k(scores, 4)
    assert items.tolist() == [[4, 2, 3, 5]]


def test_all_equal_rows_pick_the_first_items() -> None:
    scores = np.zeros((3, 50))
    items, _ = top_k(scores, 5)
    assert items.tolist() == [[0, 1, 2, 3, 4]] * 3


def test_exclude_allowed_and_padding() -> None:
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6],
            [0.1, 0.2, 0.3, 0.4],
            [0.5, 0.5, 0.5, 0.5],
        ]
    )
    # Row 0 saw items 0 and 2; row 2 saw everything allowed; stored zero = not excluded.
    exclude = sp.csr_matrix(
        (
            np.array([1.0, 1.0, 0.0, 1.0, 1.0]),
            (np.array([0, 0, 1, 2, 2]), np.array([0, 2, 2, 0, 2])),
        ),
        shape=(3, 4),
    )
    allowed = np.array([True, True, True, False])
    original = scores.copy()
    items, values = top_k(scores, 3, exclude=exclude, allowed=allowed)
    # Row 0: items 0, 2 seen, 3 not allowed -> only item 1, then padding.
    # Row 1: item 3 not allowed; the stored zero at item 2 does not exclude it.
    # Row 2: 0, 2 seen, 3 not allowed -> only item 1.
    assert items.tolist() == [[1, -1, -1], [2, 1, 0], [1, -1, -1]]
    assert values[0].tolist() == [0.8, -np.inf, -np.inf]
    assert values[1].tolist() == [0.3, 0.2, 0.1]
    np.testing.assert_array_equal(scores, original)  # the caller's scores are untouched


def test_minus_infinity_scores_are_not_recommended_and_plus_infinity_is() -> None:
    scores = np.array([[-np.inf, 1.0, np.inf, -np.inf]])
    items, values = top_k(scores, 3)
    assert items.tolist() == [[2, 1, -1]]
    assert values.tolist() == [[np.inf, 1.0, -np.inf]]


def test_k_larger_than_catalog_pads() -> None:
    items, values = top_k(np.array([[1, 3, 2]]), 5)  # integer scores become float64
    assert items.tolist() == [[1, 2, 0, -1, -1]]
    assert values.dtype == np.float64
    assert values.tolist() == [[3.0, 2.0, 1.0, -np.inf, -np.inf]]


def test_empty_catalog_is_all_padding() -> None:
    items, values = top_k(np.zeros((2, 0)), 2)
    assert items.tolist() == [[-1, -1], [-1, -1]]
    assert np.isneginf(values).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 10, 29, 30, 31])
def test_matches_a_naive_full_sort(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values, so ties at the k-th place are everywhere.
    scores = rng.integers(0, 4, size=(40, 30)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    exclude = sp.random(40, 30, density=0.2, format="csr", random_state=seed)
    allowed = rng.random(30) < 0.8
    for kwargs in ({}, {"exclude": exclude}, {"allowed": allowed}):
        got = top_k(scores, k, **kwargs)
        want = naive_top_k(scores, k, **kwargs)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1].astype(np.float32))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="2-d"):
        top_k(np.zeros(3), 1)
    with pytest.raises(ValueError, match="exclude has shape"):
        top_k(np.zeros((2, 3)), 1, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match="boolean mask"):
        top_k(np.zeros((2, 3)), 1, allowed=np.array([1, 0, 1]))


def _factor_scores(seed: int, n_users: int = 103, n_items: int = 57) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, 4)).astype(np.float32)
    items = rng.normal(size=(n_items, 4)).astype(np.float32)
    scores = users @ items.T
    scores[:, ::5] = np.round(scores[:, ::5])  # some exact ties
    return scores


def test_blocked_equals_full_top_k_for_any_blocking_and_threads() -> None:
    full = _factor_scores(0)
    seen = sp.random(103, 57, density=0.1, format="csr", random_state=1)
    allowed = np.ones(57, dtype=bool)
    allowed[[3, 11]] = False
    rng = np.random.default_rng(2)
    user_idx = rng.permutation(103)[:80]  # a shuffled subset of customers
    want = top_k(full[user_idx], 7, exclude=seen[user_idx], allowed=allowed)
    calls: list[int] = []

    def score_fn(block: NDArray[np.int64]) -> NDArray[np.float32]:
        calls.append(block.size)
        return full[block] * 1.0  # fresh array, float32

    for block_size, n_threads in [(1, 1), (7, 1), (7, 4), (13, 3), (80, 2), (4096, None)]:
        calls.clear()
        got = blocked_top_k(
            score_fn,
            user_idx,
            7,
            exclude=seen,
            allowed=allowed,
            block_size=block_size,
            n_threads=n_threads,
        )
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert max(calls) <= block_size  # memory stays bounded by the block
        assert sum(calls) == 80


def test_blocked_runs_blocks_concurrently() -> None:
    # Two blocks must both be inside score_fn at once for the barrier to open;
    # run one after the other, the first would wait for the timeout and break it.
    barrier = threading.Barrier(2, timeout=10)
    full = _factor_scores(3, n_users=8)

    def score_fn(block: NDArray[np.int64]) -> NDArray[np.float32]:
        barrier.wait()
        return full[block]

    items, _ = blocked_top_k(score_fn, np.arange(8), 3, block_size=4, n_threads=2)
    np.testing.assert_array_equal(items, top_k(full, 3)[0])


def test_blocked_does_not_write_into_a_view_returned_by_score_fn() -> None:
    full = _factor_scores(4, n_users=10)
    original = full.copy()
    seen = sp.csr_matrix(np.eye(10, 57))

    def score_fn(block: NDArray[np.int64]) -> NDArray[np.float32]:
        return full[block[0] : block[-1] + 1]  # a view of the caller's matrix

    items, _ = blocked_top_k(score_fn, np.arange(10), 3, exclude=seen, block_size=5)
    np.testing.assert_array_equal(full, original)
    assert not (items == np.arange(10)[:, None]).any()  # each user's seen item is excluded


def test_blocked_edge_cases() -> None:
    empty_items, empty_scores = blocked_top_k(lambda b: np.zeros((b.size, 3)), np.array([], int), 2)
    assert empty_items.shape == (0, 2)
    assert empty_scores.shape == (0, 2)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        blocked_top_k(lambda b: np.zeros((b.size + 1, 3)), np.arange(4), 2)
    with pytest.raises(ValueError, match="item columns"):
        blocked_top_k(
            lambda b: np.zeros((b.size, 3)), np.arange(2), 2, exclude=sp.csr_matrix((2, 4))
        )
    with pytest.raises(ValueError, match="user_idx must lie"):
        blocked_top_k(
            lambda b: np.zeros((b.size, 3)), np.arange(3), 2, exclude=sp.csr_matrix((2, 3))
        )
    with pytest.raises(ValueError, match="block_size"):
        blocked_top_k(lambda b: np.zeros((b.size, 3)), np.arange(3), 2, block_size=0)
    with pytest.raises(ValueError, match="NaN"):
        blocked_top_k(lambda b: np.full((b.size, 3), np.nan), np.arange(3), 2, n_threads=2)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 10])
def test_wide_catalogs_are_pruned_exactly(seed: int, k: int) -> None:
    # Wide enough for the group pruning (>= 8 groups of 32 items per selected item), with a
    # ragged tail, many ties across groups, -inf cells and exclusions.
    rng = np.random.default_rng(seed)
    n_items = 32 * 8 * k + 13
    scores = rng.integers(0, 6, size=(37, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    scores[3] = -np.inf  # nothing eligible
    scores[4, :] = -np.inf
    scores[4, [5, n_items - 1]] = 1.0  # fewer eligible items than k, one in the tail
    scores[5] = rng.normal(size=n_items)  # no ties at all
    exclude = sp.random(37, n_items, density=0.1, format="csr", random_state=seed)
    allowed = rng.random(n_items) < 0.9
    for kwargs in ({}, {"exclude": exclude}, {"allowed": allowed}):
        got = top_k(scores, k, **kwargs)
        want = naive_top_k(scores, k, **kwargs)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1].astype(np.float32))


def test_wide_catalog_nan_is_refused_unless_forbidden() -> None:
    scores = np.random.default_rng(0).normal(size=(3, 2000))
    scores[2, 1500] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        top_k(scores, 5)
    with pytest.raises(ValueError, match="NaN"):
        top_k(scores[:, :1999], 5)  # the NaN outside the tail as well
    excluded = sp.csr_matrix(([1.0], ([2], [1500])), shape=scores.shape)
    items, _ = top_k(scores, 5, exclude=excluded)
    assert (items[2] != 1500).all()


def test_blocked_sizes_blocks_by_the_catalog_width() -> None:
    rng = np.random.default_rng(5)
    users = rng.normal(size=(300, 8)).astype(np.float32)
    items = rng.normal(size=(70_000, 8)).astype(np.float32)
    calls: list[int] = []

    def score_fn(block: NDArray[np.int64]) -> NDArray[np.float32]:
        calls.append(block.size)
        return users[block] @ items.T

    got = blocked_top_k(score_fn, np.arange(300), 10, n_threads=2)
    want = top_k(users @ items.T, 10)
    np.testing.assert_array_equal(got[0], want[0])
    assert calls[0] == 16  # a probe learns the width, then ~4M cells per block
    assert max(calls) == (1 << 22) // 70_000
    assert sum(calls) == 300


@pytest.mark.parametrize("n_items", [30, 32 * 8 * 10 + 7])
def test_tie_rank_equals_ranking_permuted_columns(n_items: int) -> None:
    # Breaking ties by tie_rank must give what permuting the columns into tie order, taking
    # the lower index and mapping back gives (the old way), on small and pruned catalogs.
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 3, size=(25, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    tie_rank = rng.permutation(n_items)
    order = np.argsort(tie_rank)
    exclude = sp.random(25, n_items, density=0.1, format="csr", random_state=3)
    allowed = rng.random(n_items) < 0.9
    permuted_excl = sp.csr_matrix(exclude[:, order])
    want_idx, want_vals = top_k(scores[:, order], 10, exclude=permuted_excl, allowed=allowed[order])
    want_idx = np.where(want_idx >= 0, order[np.maximum(want_idx, 0)], -1)
    got_idx, got_vals = top_k(scores, 10, exclude=exclude, allowed=allowed, tie_rank=tie_rank)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_vals, want_vals)
    blocked = blocked_top_k(
        lambda b: scores[b] * 1.0,
        np.arange(25),
        10,
        exclude=exclude,
        allowed=allowed,
        tie_rank=tie_rank,
        block_size=7,
        n_threads=2,
    )
    np.testing.assert_array_equal(blocked[0], want_idx)
    with pytest.raises(ValueError, match="permutation"):
        top_k(scores, 3, tie_rank=np.zeros(n_items, dtype=np.int64))
