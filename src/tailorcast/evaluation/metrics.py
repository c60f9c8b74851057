"""Top-K ranking metrics, vectorised over customers.

Accuracy metrics follow RecBole's definitions (https://recbole.io, ``recbole.evaluator``),
for customer ``u`` with test items ``T_u`` and top-K list ``L_u``, ranks starting at 1:

- ``precision@K`` = hits / K
- ``recall@K`` = hits / |T_u|
- ``ndcg@K`` = DCG / IDCG with binary relevance, DCG = sum over hit ranks r of
  1 / log2(r + 1), IDCG the DCG of min(|T_u|, K) hits at ranks 1, 2, ...
- ``map@K`` = (1 / min(|T_u|, K)) * sum over hit ranks r of precision@r
- ``mrr@K`` = 1 / rank of the first hit, 0 without a hit
- ``hit@K`` = 1 if any hit, else 0

Each is averaged over the customers with at least one test item; the others are left out,
and ``n_users`` says how many were evaluated. Recommendation lists use item ``-1`` as
padding (fewer than K items): padding is never a hit but still counts in precision's K.

``beyond_accuracy`` measures catalog coverage, novelty and intra-list diversity.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["ALL_ACCURACY", "beyond_accuracy", "per_user", "ranking_metrics"]

#: Accuracy metric names understood by ``ranking_metrics`` and ``per_user``.
ALL_ACCURACY: Final[tuple[str, ...]] = ("precision", "recall", "ndcg", "map", "mrr", "hit")

#: Upper bound on the entries of one intermediate batch in ``beyond_accuracy``'s
#: diversity computation (customers x vector dimensions), about 64 MB of float64.
_DIVERSITY_BUDGET: Final = 8_000_000

FloatArray = NDArray[np.float64]


def ranking_metrics(
    recommended: NDArray[np.integer[Any]],
    relevant: Any,
    *,
    k: int,
    metrics: Sequence[str] = ALL_ACCURACY,
) -> dict[str, float]:
    """Mean accuracy metrics at ``k`` over the customers who have test items.

    Args:
        recommended: ``(n_users, >= k)`` item indices in rank order, ``-1`` = padding;
            only the first ``k`` columns count. Fewer than ``k`` columns count as padded.
        relevant: sparse ``(n_users, n_items)`` test matrix, rows aligned with
            ``recommended``; a nonzero entry marks a relevant (held-out) item.
        k: cut-off.
        metrics: names from ``ALL_ACCURACY``.

    Returns:
        ``{"ndcg@10": ..., ...}`` in the order of ``metrics``, plus ``"n_users"``, the
        number of customers evaluated (as a float, so the dict stays ``dict[str, float]``).

    Raises:
        ValueError: bad shapes, item indices outside the catalog, a repeated item in one
            list, an unknown metric name, or no customer with a test item.

    Example:
        >>> rel = sp.csr_matrix(np.array([[1, 0, 1, 0]]))
        >>> ranking_metrics(np.array([[0, 1, 2]]), rel, k=3, metrics=["recall", "mrr"])
        {'recall@3': 1.0, 'mrr@3': 1.0, 'n_users': 1.0}
    """
    users, _, table = _per_user_arrays(recommended, relevant, k=k, metrics=metrics)
    out = {f"{name}@{k}": float(values.mean()) for name, values in table.items()}
    out["n_users"] = float(users.size)
    return out


def per_user(
    recommended: NDArray[np.integer[Any]],
    relevant: Any,
    *,
    k: int,
    metrics: Sequence[str] = ALL_ACCURACY,
) -> pd.DataFrame:
    """One row per evaluated customer (those with test items), for significance tests.

    The index ``user`` is the row position in ``recommended`` / ``relevant``, so two
    models evaluated on the same split line up row by row. Columns ``"<metric>@<k>"``
    plus ``n_relevant`` (the customer's number of test items). The column means equal
    ``ranking_metrics``.
    """
    users, n_relevant, table = _per_user_arrays(recommended, relevant, k=k, metrics=metrics)
    frame = pd.DataFrame(
        {f"{name}@{k}": values for name, values in table.items()},
        index=pd.Index(users, name="user"),
    )
    frame["n_relevant"] = n_relevant
    return frame


def beyond_accuracy(
    recommended: NDArray[np.integer[Any]],
    train: Any,
    *,
    k: int,
    item_vectors: Any | None = None,
) -> dict[str, float]:
    """Catalog coverage, novelty and intra-list diversity of top-``k`` lists.

    - ``coverage@k``: distinct recommended items / number of items in the catalog.
    - ``novelty@k``: mean self-information ``-log2(p_i)`` of recommended items, ``p_i`` the
      share of training customers who interacted with item ``i`` (column nonzeros of
      ``train`` / its rows). Items no one interacted with get half a customer
      (``p = 0.5 / n_users``), one bit more than an item seen once, instead of infinity.
      Averaged within each list, then over customers with a non-empty list.
    - ``diversity@k``: mean over all pairs of a list of ``1 - cosine(v_i, v_j)``, then
      averaged over customers with at least 2 items (NaN if there are none, e.g. k=1).
      Vectors are ``item_vectors`` rows (dense or sparse, one row per item) or else the
      item columns of ``train``; an all-zero vector has cosine 0 with everything.

    Args:
        recommended: ``(n_users, >= k)`` item indices, ``-1`` = padding; lists must not
            repeat an item.
        train: sparse ``(n_train_users, n_items)`` training matrix; defines the catalog.
        k: cut-off.
        item_vectors: optional ``(n_items, n_features)`` item features.
    """
    train_csr = _canonical_csr(train, "train")
    n_train_users, n_items = train_csr.shape
    rec = _top_columns(recommended, k=k, n_items=n_items)
    valid = rec >= 0
    safe = np.where(valid, rec, 0)
    n_listed = valid.sum(axis=1)

    coverage = np.unique(rec[valid]).size / n_items if n_items else float("nan")

    counts = np.bincount(train_csr.indices, minlength=n_items).astype(np.float64)
    share = np.maximum(counts, 0.5) / max(n_train_users, 1)
    information = -np.log2(share)
    listed = n_listed > 0
    info_sum = np.where(valid, information[safe], 0.0).sum(axis=1)
    novelty = float((info_sum[listed] / n_listed[listed]).mean()) if listed.any() else np.nan

    vectors = train_csr.T if item_vectors is None else item_vectors
    diversity = _intra_list_diversity(rec, valid, *_unit_rows(vectors, n_items))
    return {
        f"coverage@{k}": float(coverage),
        f"novelty@{k}": novelty,
        f"diversity@{k}": diversity,
    }


def _per_user_arrays(
    recommended: NDArray[np.integer[Any]],
    relevant: Any,
    *,
    k: int,
    metrics: Sequence[str],
) -> tuple[NDArray[np.int64], NDArray[np.int64], dict[str, FloatArray]]:
    """``(users, n_relevant, {metric: values})`` for the customers with test items."""
    names = list(metrics)
    unknown = [name for name in names if name not in ALL_ACCURACY]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_ACCURACY)}")
    rel = _canonical_csr(relevant, "relevant")
    rec = _top_columns(recommended, k=k, n_items=rel.shape[1])
    if rec.shape[0] != rel.shape[0]:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {rel.shape[0]}; "
            "they must hold one row per customer, aligned"
        )
    n_relevant = np.diff(rel.indptr)
    users = np.flatnonzero(n_relevant > 0)
    if users.size == 0:
        raise ValueError("no customer has a test item in relevant; nothing to evaluate")

    hits = _hit_matrix(rec, rel)[users].astype(np.float64)
    n_rel = n_relevant[users].astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    n_hits = hits.sum(axis=1)
    ideal_len = np.minimum(n_rel, k).astype(np.int64)

    out: dict[str, FloatArray] = {}
    for name in names:
        if name == "precision":
            out[name] = n_hits / k
        elif name == "recall":
            out[name] = n_hits / n_rel
        elif name == "ndcg":
            discount = 1.0 / np.log2(ranks + 1.0)
            out[name] = (hits @ discount) / np.cumsum(discount)[ideal_len - 1]
        elif name == "map":
            precision_at = np.cumsum(hits, axis=1) / ranks
            out[name] = (precision_at * hits).sum(axis=1) / ideal_len
        elif name == "mrr":
            first = np.argmax(hits, axis=1)
            out[name] = np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0)
        else:  # "hit"
            out[name] = (n_hits > 0).astype(np.float64)
    return users.astype(np.int64), n_relevant[users].astype(np.int64), out


def _canonical_csr(matrix: Any, what: str) -> Any:
    """CSR copy with sorted indices, no duplicates and no stored zeros."""
    if not sp.issparse(matrix):
        raise TypeError(f"{what} must be a scipy sparse matrix, got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _top_columns(recommended: NDArray[np.integer[Any]], *, k: int, n_items: int) -> Any:
    """The first ``k`` columns as int64, padded with -1 if narrower, after checks."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-d (n_users, K), got shape {rec.shape}")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got {rec.dtype}")
    rec = rec[:, :k].astype(np.int64)
    if rec.shape[1] < k:
        rec = np.pad(rec, ((0, 0), (0, k - rec.shape[1])), constant_values=-1)
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(
            f"recommended holds item indices outside [-1, {n_items}); -1 is the only padding"
        )
    ordered = np.sort(rec, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"recommended row {row} lists the same item twice")
    return rec


def _hit_matrix(rec: NDArray[np.int64], rel: Any) -> NDArray[np.bool_]:
    """``hits[u, j]`` = item ``rec[u, j]`` is relevant to customer ``u`` (one searchsorted).

    A canonical CSR's (row, column) pairs, flattened to ``row * n_items + column``, are
    already sorted, so all lookups are a single binary search.
    """
    n_users, n_items = rel.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    queries = np.arange(n_users, dtype=np.int64)[:, None] * n_items + rec
    if keys.size == 0:
        return np.zeros(rec.shape, dtype=np.bool_)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    hits: NDArray[np.bool_] = (rec >= 0) & (keys[pos] == queries)
    return hits


def _unit_rows(vectors: Any, n_items: int) -> tuple[Any, FloatArray]:
    """Rows scaled to unit L2 norm, float64, CSR or dense; and 1.0 where a row is nonzero
    (all-zero rows stay zero)."""
    if sp.issparse(vectors):
        mat = sp.csr_matrix(vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    else:
        mat = np.asarray(vectors, dtype=np.float64)
        if mat.ndim != 2:
            raise ValueError(f"item_vectors must be 2-d (n_items, n_features), got {mat.shape}")
        norms = np.linalg.norm(mat, axis=1)
    if mat.shape[0] != n_items:
        raise ValueError(f"item_vectors has {mat.shape[0]} rows; the catalog has {n_items} items")
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    nonzero = (norms > 0).astype(np.float64)
    if sp.issparse(mat):
        return sp.csr_matrix(sp.diags(scale) @ mat), nonzero
    return mat * scale[:, None], nonzero


def _intra_list_diversity(
    rec: NDArray[np.int64], valid: NDArray[np.bool_], unit: Any, nonzero: FloatArray
) -> float:
    """Mean pairwise cosine distance within each list, averaged over lists of >= 2 items.

    With unit vectors, the sum of cosines over the pairs of a list is
    ``(||sum of its vectors||^2 - number of nonzero vectors) / 2``, so one sparse product
    ``selection @ unit`` per batch of customers replaces the m^2 pairwise products.
    """
    n_items = unit.shape[0]
    m = valid.sum(axis=1)
    users = np.flatnonzero(m >= 2)
    if users.size == 0:
        return float("nan")
    sparse = sp.issparse(unit)
    item_cost = np.diff(unit.indptr) if sparse else np.full(n_items, unit.shape[1])
    safe = np.where(valid, rec, 0)
    # Entries of a batch's product are bounded by the vector entries it sums; cut the
    # customers into consecutive batches under the budget (a single heavy list alone).
    cost = np.where(valid, item_cost[safe], 0).sum(axis=1)[users]
    batch_of = np.cumsum(cost) // _DIVERSITY_BUDGET
    starts = np.flatnonzero(np.r_[True, batch_of[1:] != batch_of[:-1]])
    bounds = np.r_[starts, users.size]
    distances = np.empty(users.size, dtype=np.float64)
    for lo, hi in itertools.pairwise(bounds):
        batch = users[lo:hi]
        b_valid = valid[batch]
        selection = sp.csr_matrix(
            (
                np.ones(int(b_valid.sum())),
                (np.repeat(np.arange(batch.size), b_valid.sum(axis=1)), rec[batch][b_valid]),
            ),
            shape=(batch.size, n_items),
        )
        summed = selection @ unit
        if sp.issparse(summed):
            squared = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
        else:
            squared = np.einsum("ij,ij->i", summed, summed)
        pair_cos = (squared - selection @ nonzero) / 2.0
        pairs = m[batch] * (m[batch] - 1) / 2.0
        distances[lo:hi] = 1.0 - pair_cos / pairs
    # Floating-point cancellation can leave values a hair outside the metric's range.
    return float(np.clip(distances, 0.0, 2.0).mean())
