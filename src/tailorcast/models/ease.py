"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A dense item x item weight matrix in closed form: with ``P = (X^T X + lambda I)^-1``,
``B = I - P / diag(P)`` (column ``j`` divided by ``P_jj``), so ``diag(B) = 0``. Scores are
``x_u @ B``. Strong on small and mid-sized catalogs; the dense matrix costs
``n_items^2 x 4`` bytes, so catalogs over ``max_items`` are refused.

The Gram matrix is built from ``X`` divided by its mean nonzero weight, so ``regularization``
means the same whatever the event weights' scale (purchase = 5 or 1 give the same model);
without that, a view of 5-weighted purchases needs a 25x larger penalty.

Three optional refinements, all off by default and tuned by ``auto`` on validation data:

- ``dropout`` ``p`` adds ``p / (1 - p) * diag(X^T X)`` to the penalty (Steck 2020, "Autoencoders
  that don't overfit towards the identity"): popular items are held back more than a flat
  ``lambda`` holds them;
- ``user_damping`` ``a`` weighs each customer's row by ``n_u^-a`` (``n_u`` their items,
  rescaled to keep the total) in the Gram matrix, so a few heavy customers do not dictate
  every item pair;
- ``popularity_damping`` ``b`` divides scores by ``(1 + customers of the item)^b``.

Recency (``recency > 0``): when scoring, a customer's history weighs more where they reached
the item recently, relative to their *own* latest items (their distinct items ranked by last
event, newest = 0): ``w = x_ui * ((1 - recency) + recency * exp(-rank / recency_items))``.
What a customer does next follows what they did last (a season, a project, a burst of
ratings); collaborative filtering alone treats their whole history alike. ``auto`` tunes
both on validation data, so a shop where order carries nothing keeps ``recency = 0``.

Example::

    EASERecommender(regularization=500.0).fit(inter)
    EASERecommender(recency=0.8, recency_items=10).fit(inter)   # last items count most
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field
from scipy.linalg import get_lapack_funcs

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError
from tailorcast.models.base import Floats, Ints, Recommender, RecommenderConfig

__all__ = ["EASEConfig", "EASERecommender", "ease_weights", "recency_ranks", "recency_weighted"]

#: Up to this many items the Gram matrix is inverted in float64 (at most 128 MB); above, in
#: float32 to halve the memory of the largest step.
_FLOAT64_ITEMS: Final = 4096


class EASEConfig(RecommenderConfig):
    """Hyperparameters of :class:`EASERecommender`."""

    regularization: float = Field(default=500.0, gt=0, allow_inf_nan=False)
    """The L2 penalty lambda on ``B``; larger for denser data."""
    max_items: int = Field(default=20_000, ge=1)
    """Refuse catalogs with more items (memory grows with the square of the item count)."""
    dropout: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    """Extra penalty ``dropout / (1 - dropout)`` times each item's own Gram diagonal."""
    user_damping: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    """Row weight ``n_u^-user_damping`` of a customer with ``n_u`` items in the Gram matrix."""
    popularity_damping: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    """Scores divided by ``(1 + customers of the item)^popularity_damping``."""
    recency: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    """Share of a history item's weight that decays with how many of the customer's items
    came after it (0: history weighs as in the matrix)."""
    recency_items: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """Decay scale in distinct items: the item reached this many items before the latest
    keeps ``1/e`` of the decaying share."""


class EASERecommender(Recommender[EASEConfig]):
    """Linear item-item autoencoder with a closed-form solution."""

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type[RecommenderConfig]] = EASEConfig

    item_weights_: npt.NDArray[np.float32]
    """``B``: dense float32 ``(n_items, n_items)``, zero diagonal."""

    def __init__(
        self,
        *,
        regularization: float = 500.0,
        max_items: int = 20_000,
        dropout: float = 0.0,
        user_damping: float = 0.0,
        popularity_damping: float = 0.0,
        recency: float = 0.0,
        recency_items: float = 10.0,
    ) -> None:
        self.regularization = regularization
        self.max_items = max_items
        self.dropout = dropout
        self.user_damping = user_damping
        self.popularity_damping = popularity_damping
        self.recency = recency
        self.recency_items = recency_items

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: EASEConfig
    ) -> dict[str, npt.NDArray[Any]]:
        n_items = matrix.shape[1]
        if n_items > config.max_items:
            gib = n_items**2 * 4 / 2**30
            raise ConfigError(
                f"EASE needs a dense {n_items} x {n_items} item matrix (about {gib:.1f} GiB) "
                f"and this catalog has {n_items} items, more than max_items={config.max_items}; "
                "use itemknn or als, or raise max_items if the memory is there"
            )
        return {
            "item_weights": ease_weights(
                matrix,
                config.regularization,
                dropout=config.dropout,
                user_damping=config.user_damping,
            ),
            "recency_rank": recency_ranks(interactions, matrix),
        }

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        weights = np.asarray(state["item_weights"], dtype=np.float32)
        n = len(self.item_ids_)
        if weights.shape != (n, n):
            raise ValueError(f"item_weights has shape {weights.shape}, expected {(n, n)}")
        self.item_weights_ = weights
        self.recency_rank_ = np.asarray(state["recency_rank"], dtype=np.int32)
        self._scoring_items = recency_weighted(
            self.user_items_, self.recency_rank_, self.config_.recency, self.config_.recency_items
        )
        damping = self.config_.popularity_damping
        self._item_scale: npt.NDArray[np.float32] | None = None
        if damping > 0:
            scale = (1.0 + self.item_popularity_.astype(np.float64)) ** -damping
            self._item_scale = scale.astype(np.float32)

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_weights": self.item_weights_, "recency_rank": self.recency_rank_}

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        scores = np.asarray(self._scoring_items[user_idx] @ self.item_weights_, dtype=np.float32)
        if self._item_scale is not None:
            scores *= self._item_scale[None, :]
        return scores

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        # Row j of B: how much having item j raises every other item's score.
        return self.item_weights_[item_idx]

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        return weights.astype(np.float64) * self.item_weights_[history, items]


def ease_weights(
    matrix: sp.spmatrix,
    regularization: float,
    *,
    dropout: float = 0.0,
    user_damping: float = 0.0,
) -> npt.NDArray[np.float32]:
    """``B = I - P / diag(P)``, ``P = (X^T D X + regularization I + dropout / (1 - dropout)
    diag(X^T D X))^-1``, as float32, with ``X`` the matrix divided by its mean nonzero weight
    and ``D`` the customers' row weights ``n_u^-user_damping`` (identity by default).

    The Gram matrix is positive definite for ``regularization > 0``, so it is inverted through
    its Cholesky factor (LAPACK potrf + potri, in place).

    Raises:
        ConfigError: the factorisation failed numerically (raise ``regularization``).
    """
    x = sp.csr_matrix(matrix)
    n_items = x.shape[1]
    dtype = np.float64 if n_items <= _FLOAT64_ITEMS else np.float32
    x = sp.csr_matrix(x, dtype=dtype, copy=True)
    if x.nnz:  # scale-free penalty: the mean nonzero weight becomes 1
        scale = float(np.abs(x.data).mean())
        if scale > 0:
            x.data /= scale
    if user_damping > 0:
        counts = np.diff(x.indptr).astype(np.float64)
        rows = np.where(counts > 0, np.maximum(counts, 1.0) ** -user_damping, 0.0)
        rows *= counts.sum() / max(float(rows @ counts), 1e-300)  # keep the total mass
        x = sp.csr_matrix(sp.diags(np.sqrt(rows).astype(dtype)) @ x)
    gram: npt.NDArray[Any] = np.asarray((x.T @ x).toarray(), dtype=dtype, order="F")
    diagonal = np.diag(gram).copy()
    gram[np.diag_indices(n_items)] += regularization + dropout / (1.0 - dropout) * diagonal
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (gram,))
    inverse: npt.NDArray[Any]
    inverse, info = potrf(gram, lower=False, overwrite_a=True, clean=True)
    if info == 0:
        inverse, info = potri(inverse, lower=False, overwrite_c=True)
    if info != 0:
        raise ConfigError(
            f"EASE could not invert the item Gram matrix (LAPACK info {info}); raise regularization"
        )
    # potri fills the upper triangle only (the lower one is zero after potrf's clean).
    diag = np.diag(inverse).copy()
    inverse += inverse.T
    inverse[np.diag_indices(n_items)] = diag
    weights = inverse.T  # symmetric, and the transpose of a Fortran array is C-ordered
    weights /= -diag[None, :]
    weights[np.diag_indices(n_items)] = 0.0
    if not np.isfinite(weights).all():
        raise ConfigError("EASE weights are not finite; raise regularization")
    return np.ascontiguousarray(weights, dtype=np.float32)


def recency_ranks(interactions: Interactions, matrix: sp.csr_matrix) -> npt.NDArray[np.int32]:
    """Per stored cell of ``matrix`` (canonical CSR of ``interactions``): how many of the
    customer's other items they reached later (0 = their latest item), by each item's last
    event; equal times rank by item index."""
    n_users, n_items = matrix.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
    cell_keys = rows * n_items + matrix.indices.astype(np.int64)
    events = interactions.events
    keys = events["user_idx"].to_numpy(np.int64) * n_items + events["item_idx"].to_numpy(np.int64)
    ts = np.asarray(events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64))
    last = np.full(len(cell_keys), np.iinfo(np.int64).min, dtype=np.int64)
    pos = np.searchsorted(cell_keys, keys)
    hit = pos < len(cell_keys)
    hit[hit] = cell_keys[pos[hit]] == keys[hit]
    np.maximum.at(last, pos[hit], ts[hit])
    # Newest first within each customer; the start of each row gives the rank.
    order = np.lexsort((matrix.indices, -last, rows))
    ranks = np.empty(len(cell_keys), dtype=np.int64)
    ranks[order] = np.arange(len(cell_keys)) - matrix.indptr[rows[order]]
    return ranks.astype(np.int32)


def recency_weighted(
    matrix: sp.csr_matrix, ranks: npt.NDArray[np.int32], share: float, scale: float
) -> sp.csr_matrix:
    """``matrix`` with each cell times ``(1 - share) + share * exp(-rank / scale)``."""
    if share <= 0:
        return matrix
    if ranks.shape != matrix.data.shape:
        raise ValueError("recency_rank must have one entry per stored history cell")
    factor = (1.0 - share) + share * np.exp(-ranks.astype(np.float64) / scale)
    out = sp.csr_matrix(matrix, copy=True)
    out.data = (out.data * factor).astype(np.float32)
    return out
