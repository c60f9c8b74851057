"""A hybrid: a weighted blend of other recommenders, with the weights learned on held-out data.

Each component's scores are standardised per customer (z-scores over the catalogue: mean 0,
standard deviation 1; a component with constant scores for a customer adds nothing), so
scores of different scales blend. The blend weights lie on the simplex (non-negative,
summing to 1) and are chosen on a validation split carved from the training view
(:func:`tailorcast.data.validation_split`, the "unseen items" protocol):

1. fit every component on the validation-train part;
2. score every point of a grid on the simplex (step ``weight_step``) by NDCG@``metric_k`` of
   the blended top lists against the held-out items (at most ``max_validation_users``
   customers, a seeded sample), seen items excluded and ties broken by popularity as in
   ``recommend``;
3. keep the best point; among exactly equal ones (a component that does not change the
   ranking), the one putting most weight on the components that are best on their own;
4. refit the components on all the data.

Without a usable validation split (no customer has 2 distinct items) the weights stay equal.
The default components are ``cf+content+popularity``, where ``cf`` is EASE up to
:data:`CF_EASE_MAX_ITEMS` items and item-kNN above. A reason comes from the component
contributing most (weight x standardised score) to that item.

Saved as one ``config.json`` + ``state.npz``: each component's arrays are stored under the
key prefix ``<component>.``, so the hybrid needs nothing beyond the Recommender contract.

Example::

    HybridRecommender(components="itemknn+content+popularity").fit(inter).blend_
    # {'itemknn': 0.6, 'content': 0.3, 'popularity': 0.1}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from tailorcast.data.interactions import Interactions
from tailorcast.data.splits import validation_split
from tailorcast.errors import ConfigError
from tailorcast.evaluation import ranking_metrics, top_k
from tailorcast.models.base import COLD_START_REASON, Ids, Ints, Recommender, RecommenderConfig
from tailorcast.models.popularity import GLOBAL_REASON, PopularityRecommender

__all__ = ["CF_EASE_MAX_ITEMS", "HybridConfig", "HybridRecommender"]

logger = logging.getLogger(__name__)

#: ``cf`` means EASE up to this many items (its dense item matrix), item-kNN above.
CF_EASE_MAX_ITEMS: Final = 8_000
#: Most grid points searched; a finer step with many components is refused.
MAX_GRID_POINTS: Final = 20_000
#: Standardised validation scores held at once (components x customers x items), ~100 MB.
_VALIDATION_ENTRIES: Final = 25_000_000
#: Customers whose component reasons are worked out together.
_REASON_BLOCK: Final = 1024
_SEPARATOR: Final = "+"

ValidationProtocol = Literal["random", "temporal", "last", "last_session"]


class HybridConfig(RecommenderConfig):
    """Hyperparameters of :class:`HybridRecommender`."""

    components: str = "cf+content+popularity"
    """Registry names joined by ``+``; ``cf`` = ``ease`` or ``itemknn`` by catalogue size."""
    component_params: dict[str, dict[str, Any]] | None = None
    """Hyperparameters per component name, e.g. ``{"ease": {"regularization": 200.0}}``."""
    validation_protocol: ValidationProtocol = "random"
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share held out per customer (not used by ``last_session``)."""
    weight_step: float = Field(default=0.1, gt=0, le=1)
    """Grid resolution on the simplex; ``1 / weight_step`` must be a whole number."""
    metric_k: int = Field(default=10, ge=1)
    """The blend maximises NDCG at this cut-off."""
    max_validation_users: int = Field(default=5_000, ge=1)
    seed: int = Field(default=2026, ge=0)
    """Seeds the validation split and the customer sample."""


class HybridRecommender(Recommender[HybridConfig]):
    """Blends standardised component scores with validation-tuned weights."""

    name: ClassVar[str] = "hybrid"
    config_class: ClassVar[type[RecommenderConfig]] = HybridConfig
    places_new_items: ClassVar[bool] = False  # its content component places new items
    similar_reason: ClassVar[str] = "similar to "

    components_: dict[str, Recommender[Any]]
    """The fitted components by name, in blend order."""
    weights_: npt.NDArray[np.float64]
    """Blend weight of each component (same order), summing to 1."""
    validation_ndcg_: float
    """NDCG@metric_k of the chosen blend on the validation split (NaN: none was possible)."""
    component_ndcg_: npt.NDArray[np.float64]
    """NDCG@metric_k of each component alone on the validation split."""

    def __init__(
        self,
        *,
        components: str = "cf+content+popularity",
        component_params: dict[str, dict[str, Any]] | None = None,
        validation_protocol: ValidationProtocol = "random",
        validation_fraction: float = 0.2,
        weight_step: float = 0.1,
        metric_k: int = 10,
        max_validation_users: int = 5_000,
        seed: int = 2026,
    ) -> None:
        self.components = components
        self.component_params = component_params
        self.validation_protocol = validation_protocol
        self.validation_fraction = validation_fraction
        self.weight_step = weight_step
        self.metric_k = metric_k
        self.max_validation_users = max_validation_users
        self.seed = seed

    @property
    def blend_(self) -> dict[str, float]:
        """``{component: weight}``."""
        self._check_fitted()
        return {name: float(w) for name, w in zip(self.components_, self.weights_, strict=True)}

    # -- fitting ------------------------------------------------------------------------------
    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: HybridConfig
    ) -> dict[str, npt.NDArray[Any]]:
        names = _resolve(config.components, interactions.n_items, config.component_params)
        grid = _simplex_grid(len(names), config.weight_step)
        for name in names:  # parameter errors before any fitting
            _component(name, config)._validated_config()
        weights, best, solo = self._search(interactions, names, grid, config)
        state: dict[str, npt.NDArray[Any]] = {
            "component_names": np.asarray(names, dtype=str),
            "weights": weights,
            "validation_ndcg": np.asarray([best], dtype=np.float64),
            "component_ndcg": solo,
        }
        for name in names:
            model = _component(name, config).fit(interactions)
            for key, value in model._dump_state().items():
                state[f"{name}.{key}"] = value
        return state

    def _search(
        self,
        inter: Interactions,
        names: list[str],
        grid: npt.NDArray[np.float64],
        config: HybridConfig,
    ) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float64]]:
        """(weights, their validation NDCG, each component's own NDCG)."""
        equal = np.full(len(names), 1.0 / len(names))
        nothing = np.full(len(names), np.nan)
        if len(names) == 1:
            return equal, float("nan"), nothing
        options: dict[str, Any] = {}
        if config.validation_protocol != "last_session":
            options["test_fraction"] = config.validation_fraction
        train, valid = validation_split(
            inter, config.validation_protocol, seed=config.seed, **options
        )
        relevant = sp.csr_matrix(valid.matrix)
        if train.matrix.nnz == 0:
            return equal, float("nan"), nothing
        history = np.diff(train.matrix.indptr)
        users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (history > 0))
        if users.size == 0:
            logger.warning(
                "hybrid: no customer has an item to hold out for validation; blending "
                "%s with equal weights",
                ", ".join(names),
            )
            return equal, float("nan"), nothing
        cap = max(1, _VALIDATION_ENTRIES // (len(names) * max(inter.n_items, 1)))
        limit = min(config.max_validation_users, cap)
        if users.size > limit:
            rng = np.random.default_rng(config.seed)
            users = np.sort(rng.choice(users, size=limit, replace=False))
        # Columns in popularity order, as recommend() breaks ties (customers per item).
        popularity = np.bincount(train.matrix.indices, minlength=inter.n_items)
        order = np.argsort(-popularity, kind="stable")
        z = np.stack(
            [
                _standardise(np.asarray(_component(n, config).fit(train)._score(users)))[:, order]
                for n in names
            ]
        )
        seen = sp.csr_matrix(train.matrix[users][:, order])
        truth = sp.csr_matrix(relevant[users][:, order])
        k = min(config.metric_k, inter.n_items)
        metric = f"ndcg@{k}"
        scores = np.empty(len(grid))
        for row, point in enumerate(grid):
            blended = np.tensordot(point.astype(np.float32), z, axes=1)
            idx, _ = top_k(blended, k, exclude=seen)
            scores[row] = ranking_metrics(idx, truth, k=k, metrics=["ndcg"])[metric]
        vertices = [
            int(np.flatnonzero((grid == np.eye(len(names))[c]).all(axis=1))[0])
            for c in range(len(names))
        ]
        solo = scores[vertices]
        best = scores.max()
        tied = np.flatnonzero(scores >= best - 1e-12)
        # Among equal blends, lean on the components that are strongest alone.
        chosen = tied[np.argmax(grid[tied] @ solo)]
        return grid[chosen].copy(), float(best), solo

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        names = [str(n) for n in np.asarray(state["component_names"]).tolist()]
        weights = np.asarray(state["weights"], dtype=np.float64)
        if weights.shape != (len(names),):
            raise ValueError("one blend weight per component expected")
        components: dict[str, Recommender[Any]] = {}
        for name in names:
            model = _component(name, self.config_)
            prefix = f"{name}."
            own = {
                key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)
            }
            # The common arrays are shared; each component rebuilds its lookups from them.
            model._install(model._validated_config(), self.fingerprint_, {**state, **own})
            components[name] = model
        self.components_ = components
        self.weights_ = weights
        self.validation_ndcg_ = float(np.asarray(state["validation_ndcg"])[0])
        self.component_ndcg_ = np.asarray(state["component_ndcg"], dtype=np.float64)
        self._active = [
            (model, float(w))
            for model, w in zip(components.values(), weights, strict=True)
            if w > 0
        ]

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        state: dict[str, npt.NDArray[Any]] = {
            "component_names": np.asarray(list(self.components_), dtype=str),
            "weights": self.weights_,
            "validation_ndcg": np.asarray([self.validation_ndcg_], dtype=np.float64),
            "component_ndcg": self.component_ndcg_,
        }
        for name, model in self.components_.items():
            for key, value in model._dump_state().items():
                state[f"{name}.{key}"] = value
        return state

    # -- scoring ------------------------------------------------------------------------------
    def _blend(self, parts: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        out = np.zeros_like(parts[0])
        for (_, weight), part in zip(self._active, parts, strict=True):
            out += np.float32(weight) * part
        return out

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        return self._blend([_standardise(np.asarray(m._score(user_idx))) for m, _ in self._active])

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        return self._blend(
            [_standardise(np.asarray(m._item_scores(item_idx))) for m, _ in self._active]
        )

    # -- explaining ---------------------------------------------------------------------------
    def _reasons(self, users: Ints, items: Ints) -> Ids:
        """Each item's reason from the component with the largest weighted standardised
        score for it (the first listed on a tie)."""
        out = np.full(items.shape, None, dtype=object)
        for start in range(0, len(users), _REASON_BLOCK):
            rows = slice(start, start + _REASON_BLOCK)
            out[rows] = self._block_reasons(users[rows], items[rows])
        return out

    def _block_reasons(self, users: Ints, items: Ints) -> Ids:
        safe = np.maximum(items, 0)
        take = np.arange(len(users))[:, None]
        share = np.stack(
            [
                weight * _standardise(np.asarray(model._score(users)))[take, safe]
                for model, weight in self._active
            ]
        )
        winner = np.argmax(share, axis=0)
        out = np.full(items.shape, None, dtype=object)
        for c, (model, _) in enumerate(self._active):
            mine = (winner == c) & (items >= 0)
            if not mine.any():
                continue
            text = model._reasons(users, np.where(mine, items, -1))
            if model.name == PopularityRecommender.name:
                # A blend's "popular" is the shop-wide cold-start phrase (segment phrases stay).
                text = np.where(text == GLOBAL_REASON, COLD_START_REASON, text)
            out[mine] = text[mine]
        return out


# -- helpers ------------------------------------------------------------------------------------
def _resolve(text: str, n_items: int, params: dict[str, dict[str, Any]] | None) -> list[str]:
    """Registry names of the components, ``cf`` resolved; refuses unknown or repeated ones."""
    from tailorcast.models.registry import MODELS  # the registry imports this module

    raw = [part.strip() for part in text.split(_SEPARATOR)]
    if not text.strip() or any(not part for part in raw):
        raise ConfigError(f"components={text!r}: give registry names joined by '+'")
    cf = "ease" if n_items <= CF_EASE_MAX_ITEMS else "itemknn"
    names = [cf if part == "cf" else part for part in raw]
    known = sorted(set(MODELS) - {HybridRecommender.name})
    for name in names:
        if name == HybridRecommender.name:
            raise ConfigError("components: a hybrid cannot contain a hybrid")
        if name not in MODELS:
            raise ConfigError(f"components: unknown model {name!r}; known: cf, {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"components={text!r} names a model twice")
    extra = sorted(set(params or {}) - set(names) - ({"ease", "itemknn"} if "cf" in raw else set()))
    if extra:
        raise ConfigError(
            f"component_params for {', '.join(extra)}, which is not a component ({'+'.join(names)})"
        )
    return names


def _component(name: str, config: HybridConfig) -> Recommender[Any]:
    from tailorcast.models.registry import make_model

    params = (config.component_params or {}).get(name, {})
    if not isinstance(params, dict):
        raise ConfigError(f"component_params[{name!r}] must be a mapping of parameters")
    return make_model(name, **params)


def _simplex_grid(n: int, step: float) -> npt.NDArray[np.float64]:
    """Every weight vector of ``n`` multiples of ``step`` summing to 1, rows in lexical order."""
    parts = round(1.0 / step)
    if parts < 1 or abs(parts * step - 1.0) > 1e-9:
        raise ConfigError(f"weight_step={step}: 1 / weight_step must be a whole number")
    count = 1
    for i in range(1, n):  # number of compositions: C(parts + n - 1, n - 1)
        count = count * (parts + i) // i
    if count > MAX_GRID_POINTS:
        raise ConfigError(
            f"weight_step={step} gives {count:,} blends of {n} components "
            f"(at most {MAX_GRID_POINTS:,}): use a larger step"
        )
    return np.asarray(list(_compositions(parts, n)), dtype=np.float64) / parts


def _compositions(total: int, n: int) -> Iterator[tuple[int, ...]]:
    """Tuples of ``n`` non-negative ints summing to ``total``, largest first entry first."""
    if n == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, n - 1):
            yield (first, *rest)


def _standardise(scores: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Per-row z-scores (float32); a constant row becomes zeros."""
    s = np.asarray(scores, dtype=np.float64)
    mean = s.mean(axis=1, keepdims=True)
    std = s.std(axis=1, keepdims=True)
    z = np.divide(
        s - mean, std, out=np.zeros_like(s), where=std > 1e-12 * np.maximum(1.0, np.abs(mean))
    )
    out: npt.NDArray[np.float32] = z.astype(np.float32)
    return out
