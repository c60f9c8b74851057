"""Item-kNN: items chosen by the same customers are similar; recommend neighbours of the
customer's history.

Each item is a vector over customers (its column of the weighted matrix), optionally
re-weighted with TF-IDF or BM25 (``implicit.nearest_neighbours`` helpers, which damp heavy
customers). Similarity is the shrunk cosine of those vectors,
``s(i, j) = <w_i, w_j> / (|w_i| |w_j| + shrinkage)``, kept for the ``neighbors`` most similar
items of every item (a sparse item x item matrix ``S``). A customer's scores are ``x_u @ S``,
with the history optionally weighted up where the customer reached it recently (``recency``,
``recency_items``: the same weighting as :mod:`tailorcast.models.ease`).

Example::

    ItemKNNRecommender(similarity="bm25", neighbors=50, shrinkage=10).fit(inter)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight, tfidf_weight
from pydantic import Field

from tailorcast.data.interactions import Interactions
from tailorcast.models.base import Floats, Ints, Recommender, RecommenderConfig
from tailorcast.models.ease import recency_ranks, recency_weighted

__all__ = ["ItemKNNConfig", "ItemKNNRecommender"]

#: Similarity rows are computed for blocks of items holding at most this many candidate
#: entries (rows x catalog), so memory stays bounded on big catalogs.
_BLOCK_ENTRIES: Final = 8_000_000

Similarity = Literal["cosine", "bm25", "tfidf"]


class ItemKNNConfig(RecommenderConfig):
    """Hyperparameters of :class:`ItemKNNRecommender`."""

    similarity: Similarity = "cosine"
    """Item vector weighting before the cosine: raw weights, BM25 or TF-IDF."""
    neighbors: int = Field(default=100, ge=1)
    """Most similar items kept per item."""
    shrinkage: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """Added to the cosine's denominator: damps similarities resting on few customers."""
    bm25_k1: float = Field(default=1.2, gt=0, allow_inf_nan=False)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    recency: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    """Share of a history item's weight that decays with how many of the customer's items
    came after it (0: history weighs as in the matrix)."""
    recency_items: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """Decay scale in distinct items (see :class:`~tailorcast.models.ease.EASEConfig`)."""


class ItemKNNRecommender(Recommender[ItemKNNConfig]):
    """Item-based collaborative filtering with a sparse top-N similarity matrix."""

    name: ClassVar[str] = "itemknn"
    config_class: ClassVar[type[RecommenderConfig]] = ItemKNNConfig

    similarity_: sp.csr_matrix
    """Item x item similarities (float32 CSR), row ``j``: the neighbours of item ``j``."""

    def __init__(
        self,
        *,
        similarity: Similarity = "cosine",
        neighbors: int = 100,
        shrinkage: float = 0.0,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        recency: float = 0.0,
        recency_items: float = 10.0,
    ) -> None:
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrinkage = shrinkage
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.recency = recency
        self.recency_items = recency_items

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: ItemKNNConfig
    ) -> dict[str, npt.NDArray[Any]]:
        sim = item_similarity(matrix, config)
        return {
            "similarity_indptr": sim.indptr.astype(np.int64),
            "similarity_indices": sim.indices.astype(np.int32),
            "similarity_data": sim.data.astype(np.float32),
            "recency_rank": recency_ranks(interactions, matrix),
        }

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        n = len(self.item_ids_)
        self.similarity_ = sp.csr_matrix(
            (
                np.asarray(state["similarity_data"], dtype=np.float32),
                np.asarray(state["similarity_indices"], dtype=np.int32),
                np.asarray(state["similarity_indptr"], dtype=np.int64),
            ),
            shape=(n, n),
        )
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.similarity_.indptr))
        # Sorted (row, column) keys for vectorised S[j, i] look-ups when explaining.
        self._keys = rows * n + self.similarity_.indices
        self.recency_rank_ = np.asarray(state["recency_rank"], dtype=np.int32)
        self._scoring_items = recency_weighted(
            self.user_items_, self.recency_rank_, self.config_.recency, self.config_.recency_items
        )

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        s = self.similarity_
        return {
            "similarity_indptr": s.indptr.astype(np.int64),
            "similarity_indices": s.indices.astype(np.int32),
            "similarity_data": s.data.astype(np.float32),
            "recency_rank": self.recency_rank_,
        }

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        scores = (self._scoring_items[user_idx] @ self.similarity_).toarray()
        return np.asarray(scores, dtype=np.float32)

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        return np.asarray(self.similarity_[item_idx].toarray(), dtype=np.float32)

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        n = len(self.item_ids_)
        wanted = history * n + items
        pos = np.searchsorted(self._keys, wanted)
        found = pos < len(self._keys)
        found[found] = self._keys[pos[found]] == wanted[found]
        sim = np.zeros(len(wanted), dtype=np.float64)
        sim[found] = self.similarity_.data[pos[found]]
        return weights.astype(np.float64) * sim


def item_similarity(matrix: sp.csr_matrix, config: ItemKNNConfig) -> sp.csr_matrix:
    """The pruned item x item similarity matrix (canonical float32 CSR, zero diagonal, only
    positive entries) of a customer x item matrix."""
    n_items = matrix.shape[1]
    by_item = sp.csr_matrix(matrix.T, dtype=np.float64)  # items x customers
    if config.similarity == "tfidf":
        by_item = sp.csr_matrix(tfidf_weight(by_item), dtype=np.float64)
    elif config.similarity == "bm25":
        by_item = sp.csr_matrix(
            bm25_weight(by_item, K1=config.bm25_k1, B=config.bm25_b), dtype=np.float64
        )
    by_item.eliminate_zeros()
    norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(axis=1)).ravel())
    other = sp.csr_matrix(by_item.T)
    block = max(1, _BLOCK_ENTRIES // max(n_items, 1))
    rows_out: list[Ints] = []
    cols_out: list[Ints] = []
    vals_out: list[npt.NDArray[np.float64]] = []
    for start in range(0, n_items, block):  # blocks of items, not customers
        stop = min(start + block, n_items)
        gram = sp.csr_matrix(by_item[start:stop] @ other)
        gram.sum_duplicates()
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(gram.indptr))
        cols = gram.indices.astype(np.int64)
        vals = gram.data / (norms[rows] * norms[cols] + config.shrinkage)
        keep = (rows != cols) & np.isfinite(vals) & (vals > 0)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        # The `neighbors` best per row: best first, ties to the lower item index.
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        index = np.arange(len(rows))
        rank = index - np.maximum.accumulate(np.where(first, index, 0))
        top = rank < config.neighbors
        rows_out.append(rows[top])
        cols_out.append(cols[top])
        vals_out.append(vals[top])
    sim = sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    sim.sum_duplicates()
    sim.sort_indices()
    return sim
