"""Fast top-K selection over score matrices, blocked and multithreaded for big catalogs.

``top_k`` picks the best ``k`` items of every row of a dense score matrix; ``blocked_top_k``
asks a scoring function for one block of customers at a time, so memory stays bounded by
``block_size x n_items`` per worker thread however many customers are scored.

Both are deterministic: items are ordered by score (highest first) and equal scores by the
lower item index, including ties that straddle the k-th place. Items that cannot be
recommended (excluded, not allowed, or scored ``-inf``) never appear; rows with fewer than
``k`` eligible items are padded with item ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["blocked_top_k", "top_k"]

#: Rows whose k-th place is a tie are re-resolved in chunks of this many rows, so the
#: helper masks stay small next to the score block itself.
_TIE_CHUNK: Final = 256


def top_k(
    scores: NDArray[Any],
    k: int,
    *,
    exclude: Any | None = None,
    allowed: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """The ``k`` best items of every row of ``scores``, best first.

    Args:
        scores: dense ``(n_rows, n_items)`` scores; higher is better. NaN is refused.
        k: how many items per row (>= 1).
        exclude: optional sparse matrix of the same shape as ``scores``; a nonzero entry
            forbids that item for that row (e.g. items the customer already bought).
        allowed: optional boolean mask of length ``n_items``; ``False`` forbids the item
            for every row (e.g. out-of-stock items).

    Returns:
        ``(items, item_scores)``, both ``(n_rows, k)``: item indices (int64) sorted by
        score descending, equal scores by lower index; ``-1`` / ``-inf`` pad rows with
        fewer than ``k`` eligible items. ``scores`` itself is never modified.

    Example:
        >>> items, s = top_k(np.array([[0.1, 0.9, 0.5, 0.9]]), 3)
        >>> items.tolist(), s.tolist()
        ([[1, 3, 2]], [[0.9, 0.9, 0.5]])
    """
    block = _as_score_block(scores, copy=exclude is not None or allowed is not None)
    return _top_k_owned(block, k, exclude=exclude, allowed=allowed)


def blocked_top_k(
    score_fn: Callable[[NDArray[np.int64]], NDArray[Any]],
    user_idx: NDArray[np.integer[Any]],
    k: int,
    *,
    exclude: Any | None = None,
    allowed: NDArray[np.bool_] | None = None,
    block_size: int = 4096,
    n_threads: int | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """Top ``k`` items for many customers, scoring ``block_size`` customers at a time.

    Args:
        score_fn: ``score_fn(block_user_idx)`` returns dense ``(len(block), n_items)``
            scores (float32 is enough) for those customers. It is called from worker
            threads, so it must be thread-safe (pure numpy code is). The returned array
            belongs to ``blocked_top_k`` afterwards and may be overwritten, unless it is a
            view or read-only, in which case it is copied first.
        user_idx: customer row indices to score, in output order.
        k: items per customer (>= 1).
        exclude: optional sparse ``(n_users, n_items)`` matrix indexed by customer *index*
            (row ``u`` applies to customer ``u``, wherever ``u`` sits in ``user_idx``);
            nonzero entries are forbidden. Pass the training matrix to hide seen items.
        allowed: optional boolean item mask, ``False`` = never recommend.
        block_size: customers per ``score_fn`` call; memory is about
            ``block_size x n_items x 4 bytes`` per thread.
        n_threads: worker threads (default: one per CPU, at most one per block). numpy
            releases the GIL in matmul and argpartition, so blocks overlap. When
            ``score_fn`` runs a multithreaded BLAS matmul, keep ``n_threads x BLAS
            threads`` near the core count to avoid oversubscription.

    Returns:
        ``(items, item_scores)`` of shape ``(len(user_idx), k)``, row ``i`` for customer
        ``user_idx[i]``, exactly as ``top_k`` would return on the full score matrix.
    """
    _check_k(k)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be >= 1 or None, got {n_threads}")
    users = np.asarray(user_idx)
    if users.ndim != 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
        raise ValueError("user_idx must be a 1-d array of integer customer indices")
    users = users.astype(np.int64, copy=False)
    excl = None
    if exclude is not None:
        excl = _canonical_csr(exclude)
        if users.size and (users.min() < 0 or users.max() >= excl.shape[0]):
            raise ValueError(
                f"user_idx must lie in [0, {excl.shape[0]}) to index the {excl.shape[0]} "
                "rows of exclude"
            )
    if users.size == 0:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)

    blocks = [users[start : start + block_size] for start in range(0, users.size, block_size)]

    def run(block: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
        raw = np.asarray(score_fn(block))
        if raw.ndim != 2 or raw.shape[0] != block.size:
            raise ValueError(
                f"score_fn returned shape {raw.shape} for a block of {block.size} customers; "
                f"expected ({block.size}, n_items)"
            )
        if excl is not None and raw.shape[1] != excl.shape[1]:
            raise ValueError(
                f"score_fn returned {raw.shape[1]} item columns but exclude has {excl.shape[1]}"
            )
        owned = raw.base is None and raw.flags.writeable and raw.flags.c_contiguous
        scores = _as_score_block(raw, copy=not owned)
        return _top_k_owned(
            scores, k, exclude=None if excl is None else excl[block], allowed=allowed
        )

    workers = min(n_threads or os.cpu_count() or 1, len(blocks))
    if workers == 1:
        parts = [run(block) for block in blocks]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="top_k") as pool:
            parts = list(pool.map(run, blocks))
    widths = {part[0].shape[1] for part in parts}
    if len(widths) != 1:  # pragma: no cover - top_k always returns k columns
        raise AssertionError(f"blocks returned different widths {widths}")
    return (
        np.concatenate([part[0] for part in parts]),
        np.concatenate([part[1] for part in parts]),
    )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _as_score_block(scores: NDArray[Any], *, copy: bool) -> NDArray[np.floating[Any]]:
    """A 2-d C-contiguous floating array (copied when asked, or when a cast is needed)."""
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores must be a 2-d (n_rows, n_items) array, got shape {arr.shape}")
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    if copy:
        return np.array(arr, dtype=dtype, order="C", copy=True)
    return np.ascontiguousarray(arr, dtype=dtype)


def _canonical_csr(matrix: Any) -> Any:
    """CSR copy with no duplicates and no stored zeros, so indices mean 'nonzero'."""
    if not sp.issparse(matrix):
        raise TypeError(f"expected a scipy sparse matrix, got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _top_k_owned(
    scores: NDArray[np.floating[Any]],
    k: int,
    *,
    exclude: Any | None,
    allowed: NDArray[np.bool_] | None,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """``top_k`` on a block this module owns: exclusions are written into ``scores``."""
    _check_k(k)
    n_rows, n_items = scores.shape
    if np.isnan(scores).any():
        row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
        raise ValueError(f"scores contain NaN (first in row {row}); a broken model?")
    if exclude is not None:
        excl = _canonical_csr(exclude)
        if excl.shape != scores.shape:
            raise ValueError(f"exclude has shape {excl.shape}, scores have {scores.shape}")
        rows = np.repeat(np.arange(n_rows), np.diff(excl.indptr))
        scores[rows, excl.indices] = -np.inf
    if allowed is not None:
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (n_items,):
            raise ValueError(
                f"allowed must be a boolean mask of shape ({n_items},), "
                f"got {mask.dtype} {mask.shape}"
            )
        scores[:, ~mask] = -np.inf

    kk = min(k, n_items)
    if kk == 0:
        cand = np.empty((n_rows, 0), dtype=np.int64)
    elif kk == n_items:
        cand = np.argsort(-scores, axis=1, kind="stable").astype(np.int64, copy=False)
    else:
        cand = _partition_top(scores, kk)
    vals = np.take_along_axis(scores, cand, axis=1)
    # lexsort's last key is the primary one: score descending, then item index ascending.
    order = np.lexsort((cand, -vals), axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    cand[np.isneginf(vals)] = -1
    if kk < k:
        cand = np.pad(cand, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return cand, vals


def _partition_top(scores: NDArray[np.floating[Any]], kk: int) -> NDArray[np.int64]:
    """Indices of the ``kk`` best items per row (unordered), ties at the cut by lower index.

    argpartition alone picks an arbitrary subset of the items tied at the k-th place.
    A row has such a straddling tie when more items equal its k-th best score than the
    partition kept; only those rows are re-resolved exactly. (One equality pass over the
    block is several times cheaper than partitioning at both the k-th and (k+1)-th place.)
    """
    n_items = scores.shape[1]
    cut = n_items - kk  # positions cut..n_items-1 hold the kk largest after partitioning
    # A copy, so the full (n_rows, n_items) index array is freed right away.
    cand = np.array(np.argpartition(scores, cut, axis=1)[:, cut:], dtype=np.int64)
    top = np.take_along_axis(scores, cand, axis=1)
    kth = top.min(axis=1)
    kept = np.count_nonzero(top == kth[:, None], axis=1)
    everywhere = np.count_nonzero(scores == kth[:, None], axis=1)
    # A tie among -inf only decides which padding is dropped, so it needs no fixing.
    tied = np.flatnonzero((everywhere > kept) & (kth > -np.inf))
    for start in range(0, tied.size, _TIE_CHUNK):
        rows = tied[start : start + _TIE_CHUNK]
        block = scores[rows]
        threshold = kth[rows, None]
        greater = block > threshold
        equal = block == threshold
        need = kk - greater.sum(axis=1, keepdims=True)
        take = greater | (equal & (np.cumsum(equal, axis=1, dtype=np.int32) <= need))
        cand[rows] = np.nonzero(take)[1].reshape(rows.size, kk)
    return cand
