"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A dense item x item weight matrix in closed form: with ``P = (X^T X + lambda I)^-1``,
``B = I - P / diag(P)`` (column ``j`` divided by ``P_jj``), so ``diag(B) = 0``. Scores are
``x_u @ B``. Strong on small and mid-sized catalogs; the dense matrix costs
``n_items^2 x 4`` bytes, so catalogs over ``max_items`` are refused.

Example::

    EASERecommender(regularization=500.0).fit(inter)
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

__all__ = ["EASEConfig", "EASERecommender", "ease_weights"]

#: Up to this many items the Gram matrix is inverted in float64 (at most 128 MB); above, in
#: float32 to halve the memory of the largest step.
_FLOAT64_ITEMS: Final = 4096


class EASEConfig(RecommenderConfig):
    """Hyperparameters of :class:`EASERecommender`."""

    regularization: float = Field(default=500.0, gt=0, allow_inf_nan=False)
    """The L2 penalty lambda on ``B``; larger for denser data."""
    max_items: int = Field(default=20_000, ge=1)
    """Refuse catalogs with more items (memory grows with the square of the item count)."""


class EASERecommender(Recommender[EASEConfig]):
    """Linear item-item autoencoder with a closed-form solution."""

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type[RecommenderConfig]] = EASEConfig

    item_weights_: npt.NDArray[np.float32]
    """``B``: dense float32 ``(n_items, n_items)``, zero diagonal."""

    def __init__(self, *, regularization: float = 500.0, max_items: int = 20_000) -> None:
        self.regularization = regularization
        self.max_items = max_items

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
        return {"item_weights": ease_weights(matrix, config.regularization)}

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        weights = np.asarray(state["item_weights"], dtype=np.float32)
        n = len(self.item_ids_)
        if weights.shape != (n, n):
            raise ValueError(f"item_weights has shape {weights.shape}, expected {(n, n)}")
        self.item_weights_ = weights

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_weights": self.item_weights_}

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        return np.asarray(self.user_items_[user_idx] @ self.item_weights_, dtype=np.float32)

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        # Row j of B: how much having item j raises every other item's score.
        return self.item_weights_[item_idx]

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        return weights.astype(np.float64) * self.item_weights_[history, items]


def ease_weights(matrix: sp.spmatrix, regularization: float) -> npt.NDArray[np.float32]:
    """``B = I - P / diag(P)``, ``P = (X^T X + regularization I)^-1``, as float32.

    The Gram matrix is positive definite for ``regularization > 0``, so it is inverted through
    its Cholesky factor (LAPACK potrf + potri, in place).

    Raises:
        ConfigError: the factorisation failed numerically (raise ``regularization``).
    """
    x = sp.csr_matrix(matrix)
    n_items = x.shape[1]
    dtype = np.float64 if n_items <= _FLOAT64_ITEMS else np.float32
    x = sp.csr_matrix(x, dtype=dtype)
    gram: npt.NDArray[Any] = np.asarray((x.T @ x).toarray(), dtype=dtype, order="F")
    gram[np.diag_indices(n_items)] += regularization
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
