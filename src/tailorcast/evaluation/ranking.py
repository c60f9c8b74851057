"""Fast top-K selection over score matrices, blocked and multithreaded for big catalogs.

``top_k`` picks the best ``k`` items of every row of a dense score matrix; ``blocked_top_k``
asks a scoring function for one block of customers at a time, so memory stays bounded by
``block_size x n_items`` per worker thread however many customers are scored.

Big catalogs are pruned before selecting: the items are split into groups, and only the groups
whose best score reaches the ``k``-th best group maximum can hold a top-``k`` item, so one cheap
max-reduction pass over the block replaces a full ``argpartition``; the few hundred surviving
candidates are then ranked exactly. numpy has no top-k primitive, hence this hand-written
selection.

Both are deterministic: items are ordered by score (highest first) and equal scores by the
lower item index (or by a given ``tie_rank``, e.g. popularity), including ties that straddle
the k-th place. Items that cannot be recommended (excluded, not allowed, or scored ``-inf``)
never appear; rows with fewer than ``k`` eligible items are padded with item ``-1`` and score
``-inf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["blocked_top_k", "top_k"]

#: Rows whose k-th place is a tie are re-resolved in chunks of this many rows, so the
#: helper masks stay small next to the score block itself.
_TIE_CHUNK: Final = 256
#: Score cells per block when ``blocked_top_k`` sizes blocks itself: 4M float32 cells (16 MB),
#: so a block and its copies stay in cache-friendly sizes and memory is bounded per thread
#: whatever the catalog size (4096 customers x 100k items would be 1.6 GB per block).
_BLOCK_CELLS: Final = 1 << 22
#: Largest automatic block, and the rows scored first to learn the catalog width when neither
#: ``exclude`` nor ``allowed`` tells it.
_MAX_BLOCK: Final = 4096
_PROBE_ROWS: Final = 16
#: Items per group when pruning; pruning pays off once there are this many groups per
#: selected item (below that the exact partition is as fast).
_GROUP_WIDTH: Final = 32
_MIN_GROUPS_PER_ITEM: Final = 8


def top_k(
    scores: NDArray[Any],
    k: int,
    *,
    exclude: Any | None = None,
    allowed: NDArray[np.bool_] | None = None,
    tie_rank: NDArray[np.integer[Any]] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """The ``k`` best items of every row of ``scores``, best first.

    Args:
        scores: dense ``(n_rows, n_items)`` scores; higher is better. NaN is refused
            (except in cells that ``exclude`` or ``allowed`` forbid anyway).
        k: how many items per row (>= 1).
        exclude: optional sparse matrix of the same shape as ``scores``; a nonzero entry
            forbids that item for that row (e.g. items the customer already bought).
        allowed: optional boolean mask of length ``n_items``; ``False`` forbids the item
            for every row (e.g. out-of-stock items).
        tie_rank: optional permutation of ``range(n_items)``: equal scores go to the item
            with the lower ``tie_rank`` (e.g. the more popular one) instead of the lower index.

    Returns:
        ``(items, item_scores)``, both ``(n_rows, k)``: item indices (int64) sorted by
        score descending, equal scores by lower index (or ``tie_rank``); ``-1`` / ``-inf``
        pad rows with fewer than ``k`` eligible items. ``scores`` itself is never modified.

    Example:
        >>> items, s = top_k(np.array([[0.1, 0.9, 0.5, 0.9]]), 3)
        >>> items.tolist(), s.tolist()
        ([[1, 3, 2]], [[0.9, 0.9, 0.5]])
    """
    block = _as_score_block(scores, copy=exclude is not None or allowed is not None)
    ties = _check_tie_rank(tie_rank, block.shape[1])
    return _top_k_owned(block, k, exclude=exclude, allowed=allowed, ties=ties)


def blocked_top_k(
    score_fn: Callable[[NDArray[np.int64]], NDArray[Any]],
    user_idx: NDArray[np.integer[Any]],
    k: int,
    *,
    exclude: Any | None = None,
    allowed: NDArray[np.bool_] | None = None,
    block_size: int | None = None,
    n_threads: int | None = None,
    tie_rank: NDArray[np.integer[Any]] | None = None,
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
            ``block_size x n_items x 4 bytes`` per thread. Default: about 4M score cells
            per block (at most 4096 customers); when neither ``exclude`` nor ``allowed``
            gives the catalog width, the first 16 customers are scored alone to learn it.
        n_threads: worker threads (default: one per CPU, at most one per block). numpy
            releases the GIL in matmul and argpartition, so blocks overlap. When
            ``score_fn`` runs a multithreaded BLAS matmul, keep ``n_threads x BLAS
            threads`` near the core count to avoid oversubscription.
        tie_rank: as in :func:`top_k`; cheaper than permuting the score columns, since only
            the few candidates that survive pruning are ordered by it.

    Returns:
        ``(items, item_scores)`` of shape ``(len(user_idx), k)``, row ``i`` for customer
        ``user_idx[i]``, exactly as ``top_k`` would return on the full score matrix.
    """
    _check_k(k)
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be >= 1 or None, got {n_threads}")
    ties = None if tie_rank is None else _check_tie_rank(tie_rank, np.asarray(tie_rank).size)
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

    def run(
        block: NDArray[np.int64], raw_scores: NDArray[Any] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
        raw = np.asarray(score_fn(block) if raw_scores is None else raw_scores)
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
        if ties is not None and ties.rank.size != scores.shape[1]:
            raise ValueError(
                f"score_fn returned {scores.shape[1]} item columns but tie_rank has "
                f"{ties.rank.size}"
            )
        return _top_k_owned(
            scores,
            k,
            exclude=None if excl is None else _rows_of(excl, block),
            allowed=allowed,
            canonical=True,
            ties=ties,
        )

    parts: list[tuple[NDArray[np.int64], NDArray[np.floating[Any]]]] = []
    start = 0
    size = block_size
    if size is None:
        width = excl.shape[1] if excl is not None else None
        if width is None and allowed is not None:
            width = int(np.asarray(allowed).size)
        if width is None and ties is not None:
            width = int(ties.rank.size)
        if width is None:  # score a few customers first to learn the catalog width
            probe = users[:_PROBE_ROWS]
            first = np.asarray(score_fn(probe))
            width = int(first.shape[1]) if first.ndim == 2 else 1
            parts.append(run(probe, first))
            start = probe.size
        size = min(_MAX_BLOCK, max(1, _BLOCK_CELLS // max(1, width)))
    blocks = [users[i : i + size] for i in range(start, users.size, size)]
    workers = min(n_threads or os.cpu_count() or 1, max(1, len(blocks)))
    if workers == 1:
        parts.extend(run(block) for block in blocks)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="top_k") as pool:
            parts.extend(pool.map(run, blocks))
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
    """A CSR with no duplicates and no stored zeros, so indices mean 'nonzero': ``matrix``
    itself when it already is one (only read here, never changed), else a cleaned copy.

    Models pass the same cached seen-items matrix on every call; copying and re-sorting it
    each time cost 15-35 ms on a big shop, where the two checks are one pass each.
    """
    if not sp.issparse(matrix):
        raise TypeError(f"expected a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.format == "csr" and matrix.has_canonical_format and np.all(matrix.data != 0):
        return matrix
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _rows_of(matrix: Any, rows: NDArray[np.int64]) -> Any:
    """``matrix[rows]``, as a cheap slice when the rows are consecutive (the usual case:
    every customer in index order)."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size and (np.diff(rows) == 1).all():
        return matrix[int(rows[0]) : int(rows[-1]) + 1]
    return matrix[rows]


def _top_k_owned(
    scores: NDArray[np.floating[Any]],
    k: int,
    *,
    exclude: Any | None,
    allowed: NDArray[np.bool_] | None,
    canonical: bool = False,
    ties: _Ties | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """``top_k`` on a block this module owns: exclusions are written into ``scores``.
    ``canonical``: ``exclude`` is already a CSR without duplicates or stored zeros."""
    _check_k(k)
    n_rows, n_items = scores.shape
    if exclude is not None:
        excl = exclude if canonical else _canonical_csr(exclude)
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
    groups = n_items // _GROUP_WIDTH
    if kk > 0 and groups >= _MIN_GROUPS_PER_ITEM * kk:
        cand = _pruned_top(scores, kk, groups, ties)  # checks for NaN itself, in its one pass
    else:
        _refuse_nan(scores)
        # Small catalogs: rank in tie order (columns permuted), then map back.
        ranked = scores if ties is None else np.take(scores, ties.order, axis=1)
        if kk == 0:
            cand = np.empty((n_rows, 0), dtype=np.int64)
        elif kk == n_items:
            cand = np.argsort(-ranked, axis=1, kind="stable").astype(np.int64, copy=False)
        else:
            cand = _partition_top(ranked, kk)
        if ties is not None:
            cand = ties.order[cand]
    vals = np.take_along_axis(scores, cand, axis=1)
    # lexsort's last key is the primary one: score descending, then tie rank ascending.
    order = np.lexsort((cand if ties is None else ties.rank[cand], -vals), axis=1)
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


def _refuse_nan(scores: NDArray[np.floating[Any]]) -> None:
    if np.isnan(scores).any():
        row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
        raise ValueError(f"scores contain NaN (first in row {row}); a broken model?")


def _pruned_top(
    scores: NDArray[np.floating[Any]], kk: int, groups: int, ties: _Ties | None
) -> NDArray[np.int64]:
    """``_partition_top`` for wide rows, touching every score only once.

    Group ``g`` holds the columns ``g, g + groups, g + 2 groups, ...`` of the first
    ``groups x _GROUP_WIDTH`` columns (a strided view, so the max over the groups is an
    element-wise max of contiguous vectors); the remaining columns are always candidates.
    Let ``m`` be the ``kk``-th largest group maximum. A group whose maximum is below ``m``
    cannot hold a top-``kk`` item: each of ``kk`` other groups holds an item strictly above
    all of its items. So the ``kk`` best groups plus the tail hold the answer, unless more
    than ``kk`` groups reach ``m`` (a tie); such rows are resolved on the full row.
    NaN propagates through the maximum, which makes the same pass the NaN check.
    """
    n_rows, n_items = scores.shape
    width = _GROUP_WIDTH
    item = scores.itemsize
    strided = np.lib.stride_tricks.as_strided(
        scores,
        shape=(n_rows, width, groups),
        strides=(scores.strides[0], groups * item, item),
        writeable=False,
    )
    group_max = strided.max(axis=1)
    tail = np.arange(groups * width, n_items, dtype=np.int64)
    tail_vals = scores[:, groups * width :]
    if np.isnan(group_max).any() or np.isnan(tail_vals).any():
        _refuse_nan(scores)
    best = np.argpartition(group_max, groups - kk, axis=1)[:, groups - kk :]
    mth = np.take_along_axis(group_max, best, axis=1).min(axis=1)
    reach = np.count_nonzero(group_max >= mth[:, None], axis=1)
    cols = (best[:, :, None] + groups * np.arange(width, dtype=np.int64)).reshape(n_rows, -1)
    cols = np.concatenate([cols, np.broadcast_to(tail, (n_rows, tail.size))], axis=1)
    # Position order = tie order, which _partition_top's ties rely on.
    if ties is None:
        cols.sort(axis=1)
    else:
        ranks = ties.rank[cols]
        ranks.sort(axis=1)
        cols = ties.order[ranks]
    pos = _partition_top(np.take_along_axis(scores, cols, axis=1), kk)
    cand = np.take_along_axis(cols, pos, axis=1)
    tied = np.flatnonzero((reach > kk) & (mth > -np.inf))
    if tied.size:
        if ties is None:
            cand[tied] = _partition_top(scores[tied], kk)
        else:
            cand[tied] = ties.order[_partition_top(scores[tied][:, ties.order], kk)]
    return cand


@dataclass(frozen=True)
class _Ties:
    """A tie order: ``rank[item]`` is the item's place, ``order[place]`` the item there."""

    rank: NDArray[np.int64]
    order: NDArray[np.int64]


def _check_tie_rank(tie_rank: NDArray[np.integer[Any]] | None, n_items: int) -> _Ties | None:
    if tie_rank is None:
        return None
    rank = np.asarray(tie_rank)
    if rank.shape != (n_items,) or not np.issubdtype(rank.dtype, np.integer):
        raise ValueError(f"tie_rank must be {n_items} integers (one per item), got {rank.shape}")
    rank = rank.astype(np.int64, copy=False)
    order = np.full(n_items, -1, dtype=np.int64)
    if n_items and (rank.min() < 0 or rank.max() >= n_items):
        raise ValueError("tie_rank must be a permutation of range(n_items)")
    order[rank] = np.arange(n_items)
    if (order < 0).any():
        raise ValueError("tie_rank must be a permutation of range(n_items)")
    return _Ties(rank=rank, order=order)
