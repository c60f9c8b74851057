"""Matrix factorisation with ``implicit`` (CPU): ALS and BPR.

Both learn a vector per customer and per item; a customer's scores are
``user_factors[u] @ item_factors.T``. Reasons name the customer's history items closest to the
recommended item in factor space (cosine), and ``similar_items`` uses the same cosine.

Threads: implicit runs its own OpenMP pool, so BLAS is held to one thread while it fits
(``OPENBLAS_NUM_THREADS=1`` is what implicit asks for; ``threadpoolctl`` enforces it even
when numpy was loaded first). ALS is deterministic for a given ``random_state`` whatever
``num_threads``; BPR's parallel SGD is not, so BPR defaults to one thread.

Example::

    ALSRecommender(factors=64, alpha=10, iterations=15).fit(inter)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import implicit.cpu.als
import implicit.cpu.bpr
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError
from tailorcast.evaluation.ranking import blocked_top_k
from tailorcast.models.base import C, Floats, Ints, Recommender, RecommenderConfig, ScoreFn

__all__ = ["ALSConfig", "ALSRecommender", "BPRConfig", "BPRRecommender"]


class ALSConfig(RecommenderConfig):
    """Hyperparameters of :class:`ALSRecommender` (implicit's AlternatingLeastSquares)."""

    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=0.01, ge=0, allow_inf_nan=False)
    iterations: int = Field(default=15, ge=1)
    alpha: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Confidence scaling: the matrix is multiplied by ``alpha`` (confidence ``1 + alpha x``)."""
    random_state: int = Field(default=42, ge=0)
    num_threads: int = Field(default=0, ge=0)
    """Fitting threads; 0 = one per core."""


class BPRConfig(RecommenderConfig):
    """Hyperparameters of :class:`BPRRecommender` (implicit's BayesianPersonalizedRanking)."""

    factors: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    regularization: float = Field(default=0.01, ge=0, allow_inf_nan=False)
    iterations: int = Field(default=100, ge=1)
    random_state: int = Field(default=42, ge=0)
    num_threads: int = Field(default=1, ge=0)
    """Fitting threads; 0 = one per core. Only 1 gives reproducible factors."""
    verify_negative_samples: bool = True


class _FactorRecommender(Recommender[C]):
    """Shared scoring, explaining and persistence of factor models."""

    similar_reason: ClassVar[str] = "similar to "
    #: Trailing factor columns that are not taste dimensions (BPR's item bias).
    _bias_columns: ClassVar[int] = 0

    user_factors_: npt.NDArray[np.float32]
    item_factors_: npt.NDArray[np.float32]

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        users = np.ascontiguousarray(state["user_factors"], dtype=np.float32)
        items = np.ascontiguousarray(state["item_factors"], dtype=np.float32)
        if users.shape[0] != len(self.user_ids_) or items.shape[0] != len(self.item_ids_):
            raise ValueError("factor rows do not match the vocabularies")
        if users.shape[1] != items.shape[1]:
            raise ValueError("customer and item factors differ in width")
        self.user_factors_ = users
        self.item_factors_ = items
        taste = items[:, : items.shape[1] - self._bias_columns].astype(np.float64)
        norms = np.linalg.norm(taste, axis=1, keepdims=True)
        self._unit_items = (taste / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        return self._unit_items[item_idx] @ self._unit_items.T

    def _rank(
        self,
        score_fn: ScoreFn,
        rows: Ints,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        allowed: npt.NDArray[np.bool_] | None,
    ) -> tuple[Ints, Floats]:
        """The base ranking without permuting every score block into popularity order.

        The base class gathers each block's columns into popularity order (``np.take``) so
        that the lower-index tie-break becomes a popularity tie-break; on a 100k-item catalog
        that gather costs more than the factor product itself. ``blocked_top_k`` can break
        ties by a rank instead, ordering only the few candidates that survive its pruning.
        ``exclude`` comes in popularity column order for all customers; only the asked rows
        go back to item order (one pass over their nonzeros), so a call for a few customers
        does not copy the whole matrix. Same results as the base.
        """
        excl = None
        if exclude is not None:
            asked = sp.csr_matrix(exclude[rows])
            excl = sp.csr_matrix(
                (asked.data, self._tie_order[asked.indices], asked.indptr), shape=asked.shape
            )
        idx, scores = blocked_top_k(
            lambda block: score_fn(rows[block]),
            np.arange(len(rows), dtype=np.int64),
            k,
            exclude=excl,
            allowed=allowed,
            tie_rank=self._tie_rank,
        )
        return idx.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        unit = self._unit_items
        return np.asarray(np.einsum("ij,ij->i", unit[history], unit[items]), dtype=np.float64)

    def _pair_cost(self) -> int:
        return int(self._unit_items.shape[1])

    @staticmethod
    def _factors(model: Any, kind: str) -> dict[str, npt.NDArray[Any]]:
        users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        if not (np.isfinite(users).all() and np.isfinite(items).all()):
            hint = "lower learning_rate" if kind == "BPR" else "lower alpha"
            raise ConfigError(
                f"{kind} training diverged (non-finite factors): {hint} or raise regularization"
            )
        return {"user_factors": users, "item_factors": items}


class ALSRecommender(_FactorRecommender[ALSConfig]):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with the conjugate-gradient solver."""

    name: ClassVar[str] = "als"
    config_class: ClassVar[type[RecommenderConfig]] = ALSConfig

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        random_state: int = 42,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state
        self.num_threads = num_threads

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: ALSConfig
    ) -> dict[str, npt.NDArray[Any]]:
        with threadpool_limits(limits=1, user_api="blas"):
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=config.factors,
                regularization=config.regularization,
                alpha=config.alpha,
                dtype=np.float32,
                iterations=config.iterations,
                num_threads=config.num_threads,
                random_state=config.random_state,
            )
            model.fit(matrix, show_progress=False)
        return self._factors(model, "ALS")


class BPRRecommender(_FactorRecommender[BPRConfig]):
    """Bayesian Personalised Ranking (Rendle et al. 2009), SGD on sampled item pairs."""

    name: ClassVar[str] = "bpr"
    config_class: ClassVar[type[RecommenderConfig]] = BPRConfig
    _bias_columns: ClassVar[int] = 1  # implicit appends an item bias (user column of ones)

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
        num_threads: int = 1,
        verify_negative_samples: bool = True,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.verify_negative_samples = verify_negative_samples

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: BPRConfig
    ) -> dict[str, npt.NDArray[Any]]:
        with threadpool_limits(limits=1, user_api="blas"):
            model = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=config.factors,
                learning_rate=config.learning_rate,
                regularization=config.regularization,
                dtype=np.float32,
                iterations=config.iterations,
                num_threads=config.num_threads,
                verify_negative_samples=config.verify_negative_samples,
                random_state=config.random_state,
            )
            model.fit(matrix, show_progress=False)
        return self._factors(model, "BPR")
