"""Offline evaluation of recommenders on one train/test split, with paired significance tests.

:func:`evaluate` splits the training view once (so every model sees the same split), fits a
fresh instance of each model on train, asks it for the top ``max(ks)`` items of every test
customer in one batch call (``exclude_seen=True``: every item the customer did not touch in
train is a candidate; no sampled negatives), and scores the lists with
:func:`~tailorcast.evaluation.ranking_metrics` at every K and
:func:`~tailorcast.evaluation.beyond_accuracy` at ``k``. Test customers are those with at
least one held-out item; customers without train history take the model's cold-start path.

Models are named like the CLI's ``--models``: a registry name (``"ease"``) or a name with
hyperparameters, ``"itemknn:neighbors=50,similarity=bm25"``; values are converted to the
types of the model's config. A mapping of label -> unfitted model works too.

Example::

    result = evaluate(inter, ["popularity", "itemknn:neighbors=50"], protocol="last", k=10)
    result.table()                                    # models x metrics@10
    result.compare("itemknn:neighbors=50", "popularity", "ndcg@10").p_value
    json.dumps(result.to_dict())
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import ValidationError

from tailorcast.data.interactions import Interactions
from tailorcast.data.splits import PROTOCOLS, make_split
from tailorcast.errors import ConfigError, DataError
from tailorcast.evaluation.metrics import ALL_ACCURACY, beyond_accuracy, per_user

if TYPE_CHECKING:  # the models package imports tailorcast.evaluation: no runtime import here
    from tailorcast.models.base import Recommender

__all__ = [
    "BEYOND_ACCURACY",
    "DEFAULT_KS",
    "Comparison",
    "EvaluationResult",
    "ModelResult",
    "ModelSpec",
    "evaluate",
    "paired_comparison",
    "parse_model_list",
    "parse_model_spec",
]

#: Cut-offs evaluated by default (``k`` is always added).
DEFAULT_KS: Final[tuple[int, ...]] = (1, 5, 10, 20)
#: Beyond-accuracy metric names, measured at ``k`` only.
BEYOND_ACCURACY: Final[tuple[str, ...]] = ("coverage", "novelty", "diversity")
#: Other names accepted for a protocol of :data:`~tailorcast.data.PROTOCOLS`.
PROTOCOL_ALIASES: Final[Mapping[str, str]] = {"session": "last_session"}
#: Bootstrap resamples drawn at once are bounded to this many (customer) entries (~16 MB).
_BOOT_BUDGET: Final = 2_000_000
_NULL_WORDS: Final = frozenset({"none", "null"})

Progress = Callable[[str, int, int], None]
"""``progress(description, steps_done, steps_total)``, called as the evaluation advances."""
Floats = npt.NDArray[np.float64]


# -- model specs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: ``label`` (as written), registry ``name`` and typed ``params``."""

    label: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Recommender[Any]:
        """A new, unfitted model."""
        from tailorcast.models.registry import make_model

        return make_model(self.name, **self.params)


def parse_model_spec(text: str) -> ModelSpec:
    """``"name"`` or ``"name:param=value,param=value"`` -> :class:`ModelSpec`.

    Values are converted to the type of the model's config field (``"50"`` -> 50 for an int,
    ``"none"`` -> None); their ranges are checked here too, so a bad value fails before any
    model is fitted.

    >>> parse_model_spec("itemknn:neighbors=50,similarity=bm25").params
    {'neighbors': 50, 'similarity': 'bm25'}

    Raises:
        NotFoundError: no model of that name.
        ConfigError: malformed text, or a parameter the model lacks or a value it refuses.
    """
    from tailorcast.models.registry import MODELS, make_model

    label = text.strip()
    name, sep, rest = label.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"model spec {text!r} has no model name (known: {', '.join(MODELS)})")
    raw: dict[str, str] = {}
    for part in rest.split(",") if sep else []:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(
                f"model spec {label!r}: expected param=value after ':', got {part.strip()!r}"
            )
        if key in raw:
            raise ConfigError(f"model spec {label!r} sets {key!r} twice")
        raw[key] = value.strip()
    make_model(name, **raw)  # unknown name or parameter: the registry's own message
    config_class = MODELS[name].config_class
    typed_input: dict[str, Any] = {
        key: None if value.lower() in _NULL_WORDS else value for key, value in raw.items()
    }
    try:
        config = config_class.model_validate(typed_input)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"model spec {label!r}: {problems}") from None
    return ModelSpec(label=label, name=name, params={key: getattr(config, key) for key in raw})


def parse_model_list(text: str) -> list[str]:
    """Split a comma list of model specs; a ``param=value`` part belongs to the spec before.

    >>> parse_model_list("popularity, itemknn:neighbors=50,shrinkage=10 ,ease")
    ['popularity', 'itemknn:neighbors=50,shrinkage=10', 'ease']
    """
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part:
            if not specs or ":" not in specs[-1]:
                raise ConfigError(
                    f"{part!r} in {text!r} is a parameter without a model "
                    "(write name:param=value,param=value)"
                )
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ModelResult:
    """One model's scores on the split.

    Attributes:
        label: the name it is reported under.
        model: registry name of its family.
        params: its validated hyperparameters (JSON-ready).
        metrics: ``{"ndcg@10": ...}``: accuracy metrics at every K, beyond-accuracy at ``k``.
        fit_seconds / recommend_seconds: wall time of ``fit`` and of the one ``recommend``.
        per_user: one row per test customer (index ``user_id``, in the same order for every
            model), columns ``"<metric>@<K>"`` for every accuracy metric and K, and
            ``n_relevant``; column means equal ``metrics``.
    """

    label: str
    model: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    recommend_seconds: float
    per_user: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": self.params,
            "metrics": {key: _json_float(value) for key, value in self.metrics.items()},
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
        }


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of two models on one per-customer metric: ``a`` minus ``b``.

    ``ci_low`` / ``ci_high`` bound the mean difference (percentile paired bootstrap at
    ``confidence``); ``p_value`` is the two-sided paired t-test of a zero mean difference.
    """

    a: str
    b: str
    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        return {key: _json_float(value) for key, value in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """What :func:`evaluate` measured; see :meth:`table`, :meth:`to_dict`, :meth:`compare`.

    Attributes:
        protocol: split protocol (a name of :data:`~tailorcast.data.PROTOCOLS`).
        split_options: extra options given to the split (``test_fraction``...).
        seed: seed of the split (random protocol) and of the bootstrap.
        k: headline cut-off (beyond-accuracy metrics are measured there).
        ks: every cut-off of the accuracy metrics, ascending, ``k`` included.
        n_users / n_items: size of the training view's vocabularies.
        n_train_events / n_test_events: events on each side of the split.
        n_test_users: customers evaluated (with at least one held-out item).
        n_cold_test_users: of those, customers without train events (cold start).
        fingerprint: :meth:`Interactions.fingerprint` of the data that was split.
        models: label -> :class:`ModelResult`, in the order given.
    """

    protocol: str
    split_options: dict[str, Any]
    seed: int
    k: int
    ks: tuple[int, ...]
    n_users: int
    n_items: int
    n_train_events: int
    n_test_events: int
    n_test_users: int
    n_cold_test_users: int
    fingerprint: str
    models: dict[str, ModelResult]

    @property
    def labels(self) -> list[str]:
        return list(self.models)

    def table(self, k: int | None = None) -> pd.DataFrame:
        """Rows = models, columns = the accuracy metrics at ``k`` (default: the headline
        ``k``, then followed by coverage, novelty and diversity)."""
        k = self.k if k is None else k
        if k not in self.ks:
            raise ConfigError(f"k={k} was not evaluated; choose from {list(self.ks)}")
        names = [*ALL_ACCURACY, *(BEYOND_ACCURACY if k == self.k else ())]
        columns = [f"{name}@{k}" for name in names]
        rows = [[m.metrics[c] for c in columns] for m in self.models.values()]
        return pd.DataFrame(rows, index=pd.Index(self.labels, name="model"), columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the protocol and data summary, per-model metrics at every K (NaN as
        null) and timings."""
        return {
            "protocol": self.protocol,
            "split_options": {key: _json_value(v) for key, v in self.split_options.items()},
            "seed": self.seed,
            "k": self.k,
            "ks": list(self.ks),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_train_events": self.n_train_events,
            "n_test_events": self.n_test_events,
            "n_test_users": self.n_test_users,
            "n_cold_test_users": self.n_cold_test_users,
            "fingerprint": self.fingerprint,
            "models": {label: m.to_dict() for label, m in self.models.items()},
        }

    def best(self, metric: str | None = None) -> str:
        """Label of the model with the highest ``metric`` (default ``ndcg@k``); ties go to
        the model listed first."""
        metric = metric or f"ndcg@{self.k}"
        values = {label: m.metrics.get(metric, math.nan) for label, m in self.models.items()}
        if metric not in next(iter(self.models.values())).metrics:
            raise ConfigError(f"no metric {metric!r}; known: {', '.join(self._metric_names())}")
        finite = {label: v for label, v in values.items() if math.isfinite(v)}
        if not finite:
            raise ConfigError(f"{metric} is undefined for every model")
        return max(finite, key=lambda label: finite[label])

    def compare(
        self,
        a: str,
        b: str,
        metric: str | None = None,
        *,
        n_boot: int = 10_000,
        confidence: float = 0.95,
        seed: int | None = None,
    ) -> Comparison:
        """Is model ``a`` better than ``b`` on ``metric`` (default ``ndcg@k``)?

        Pairs each test customer's value under both models (see :func:`paired_comparison`;
        the bootstrap seed defaults to the evaluation's). Only per-customer accuracy metrics
        can be compared; coverage, novelty and diversity are not per customer here.
        """
        metric = metric or f"ndcg@{self.k}"
        for label in (a, b):
            if label not in self.models:
                raise ConfigError(f"no model {label!r} in this evaluation; have {self.labels}")
        if metric not in self.models[a].per_user.columns or metric == "n_relevant":
            raise ConfigError(
                f"cannot compare on {metric!r}: per-customer metrics are "
                f"{', '.join(c for c in self.models[a].per_user.columns if c != 'n_relevant')}"
            )
        return paired_comparison(
            self.models[a].per_user[metric].to_numpy(np.float64),
            self.models[b].per_user[metric].to_numpy(np.float64),
            a=a,
            b=b,
            metric=metric,
            n_boot=n_boot,
            confidence=confidence,
            seed=self.seed if seed is None else seed,
        )

    def _metric_names(self) -> list[str]:
        return list(next(iter(self.models.values())).metrics)


def paired_comparison(
    values_a: npt.ArrayLike,
    values_b: npt.ArrayLike,
    *,
    a: str = "a",
    b: str = "b",
    metric: str = "",
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 2026,
) -> Comparison:
    """Mean of ``values_a - values_b`` (paired per customer) with a bootstrap CI and p-value.

    The CI resamples customers with replacement ``n_boot`` times (vectorised, in chunks of
    bounded memory, seeded) and takes the percentiles of the resampled mean differences. The
    p-value is the two-sided paired t-test (``scipy.stats.ttest_rel``'s statistic): 1.0 when
    every difference is 0, 0.0 when every difference is the same nonzero value, NaN with
    fewer than 2 customers.

    >>> paired_comparison([1, 1, 0, 1], [0, 1, 0, 0]).mean_diff
    0.5
    """
    from scipy import stats

    x = np.asarray(values_a, dtype=np.float64).ravel()
    y = np.asarray(values_b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        raise ValueError("no paired values to compare")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired values must be finite")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
    if isinstance(n_boot, bool) or n_boot < 1:
        raise ConfigError(f"n_boot must be an integer >= 1 (got {n_boot!r})")
    diff = x - y
    n = diff.size
    mean = float(diff.mean())

    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _BOOT_BUDGET // n)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        boot[start : start + rows] = diff[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])

    # The t statistic by hand: ttest_rel warns (an error under strict test settings) on
    # nearly constant differences, and is undefined on exactly constant ones.
    if n < 2:
        p_value = math.nan
    else:
        spread = float(diff.std(ddof=1))
        if spread == 0.0 or not math.isfinite(spread):
            p_value = 1.0 if mean == 0.0 else 0.0
        else:
            t = mean / (spread / math.sqrt(n))
            p_value = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    return Comparison(
        a=a,
        b=b,
        metric=metric,
        n_users=n,
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_diff=mean,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p_value,
        confidence=confidence,
        n_boot=n_boot,
    )


# -- the evaluation ---------------------------------------------------------------------------
def evaluate(
    inter: Interactions,
    models: Mapping[str, Recommender[Any]] | Sequence[str] | str,
    *,
    protocol: str = "random",
    k: int = 10,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 2026,
    progress: Progress | None = None,
    **split_options: Any,
) -> EvaluationResult:
    """Fit and score every model on one split of ``inter``.

    Args:
        inter: the full training view; it is split here.
        models: model specs (``["popularity", "ease:regularization=300"]``, or one comma
            string like the CLI's ``--models``), or a mapping label -> model whose
            hyperparameters are copied into a fresh instance (the given object is not fitted).
        protocol: ``random``, ``temporal``, ``last`` or ``last_session`` (alias ``session``).
        k: headline cut-off; beyond-accuracy metrics are measured at ``k``.
        ks: cut-offs for the accuracy metrics (``k`` is added); lists of ``max(ks)`` items
            are asked for once and cut.
        seed: seed of the random split; kept for the bootstrap of :meth:`~EvaluationResult.compare`.
        progress: optional callback, see :data:`Progress`.
        split_options: passed to the split (``test_fraction``, ``min_user_events``, ``cutoff``,
            ``min_sessions``).

    Raises:
        NotFoundError: an unknown model name.
        ConfigError: a bad protocol, cut-off, model parameter or duplicate label.
        DataError: the split leaves no train events or no customer with a test item.
    """
    canonical = PROTOCOL_ALIASES.get(protocol, protocol)
    if canonical not in PROTOCOLS:
        known = ", ".join([*PROTOCOLS, *PROTOCOL_ALIASES])
        raise ConfigError(f"unknown protocol {protocol!r}; known: {known}")
    cutoffs = _cutoffs(k, ks)
    factories = _factories(models)
    if not isinstance(inter, Interactions):
        raise TypeError(f"evaluate expects an Interactions view, got {type(inter).__name__}")

    total = 1 + 2 * len(factories)
    _report(progress, f"splitting ({canonical})", 0, total)
    train, test = make_split(inter, canonical, seed=seed, **split_options)
    if train.matrix.nnz == 0:
        raise DataError(f"the {canonical} split left no train events; nothing to learn from")
    test_users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    if test_users.size == 0:
        raise DataError(
            f"the {canonical} split left no customer with a test item "
            f"({inter.n_users} customers, {len(inter.events)} events): need more history"
        )
    relevant = sp.csr_matrix(test.matrix[test_users])
    user_ids = inter.user_ids[test_users]
    n_cold = int((np.diff(train.matrix.indptr)[test_users] == 0).sum())
    k_max = cutoffs[-1]

    results: dict[str, ModelResult] = {}
    for i, (label, factory) in enumerate(factories.items()):
        model = factory()
        _report(progress, f"fitting {label}", 1 + 2 * i, total)
        started = time.perf_counter()
        model.fit(train)
        fit_seconds = time.perf_counter() - started
        _report(progress, f"recommending with {label}", 2 + 2 * i, total)
        started = time.perf_counter()
        recs = model.recommend(user_ids, k=k_max, exclude_seen=True)
        recommend_seconds = time.perf_counter() - started
        recommended = _item_indices(inter, recs.item_ids, label)
        table = pd.concat(
            [per_user(recommended, relevant, k=cut).drop(columns="n_relevant") for cut in cutoffs],
            axis=1,
        )
        table["n_relevant"] = np.diff(relevant.indptr)
        table.index = pd.Index(user_ids, dtype=object, name="user_id")
        metrics = {column: float(table[column].mean()) for column in table.columns if "@" in column}
        metrics.update(beyond_accuracy(recommended, train.matrix, k=k))
        results[label] = ModelResult(
            label=label,
            model=model.name,
            params=model.config_.model_dump(mode="json"),
            metrics=metrics,
            fit_seconds=fit_seconds,
            recommend_seconds=recommend_seconds,
            per_user=table,
        )
    _report(progress, "done", total, total)
    return EvaluationResult(
        protocol=canonical,
        split_options=dict(split_options),
        seed=seed,
        k=k,
        ks=cutoffs,
        n_users=inter.n_users,
        n_items=inter.n_items,
        n_train_events=len(train.events),
        n_test_events=len(test.events),
        n_test_users=int(test_users.size),
        n_cold_test_users=n_cold,
        fingerprint=inter.fingerprint(),
        models=results,
    )


# -- helpers ----------------------------------------------------------------------------------
def _report(progress: Progress | None, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)


def _is_count(value: Any) -> bool:
    return bool(not isinstance(value, bool) and isinstance(value, int | np.integer) and value >= 1)


def _cutoffs(k: int, ks: Sequence[int]) -> tuple[int, ...]:
    if not _is_count(k):
        raise ConfigError(f"k must be an integer >= 1 (got {k!r})")
    values = list(ks)
    bad = [value for value in values if not _is_count(value)]
    if bad:
        raise ConfigError(f"every K in ks must be an integer >= 1 (got {bad})")
    return tuple(sorted({int(value) for value in values} | {int(k)}))


def _factories(
    models: Mapping[str, Recommender[Any]] | Sequence[str] | str,
) -> dict[str, Callable[[], Recommender[Any]]]:
    """Label -> a function making a fresh, unfitted model; all names checked up front."""
    from tailorcast.models.base import Recommender

    factories: dict[str, Callable[[], Recommender[Any]]] = {}
    if isinstance(models, Mapping):
        for label, given in models.items():
            if not isinstance(given, Recommender):
                raise TypeError(f"model {label!r} is a {type(given).__name__}, not a Recommender")
            factories[str(label)] = _cloner(given)
    else:
        texts = parse_model_list(models) if isinstance(models, str) else list(models)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"model specs must be strings, got {type(text).__name__}")
            spec = parse_model_spec(text)
            if spec.label in factories:
                raise ConfigError(f"model {spec.label!r} is listed twice")
            factories[spec.label] = spec.build
    if not factories:
        raise ConfigError("no model to evaluate")
    return factories


def _cloner(model: Recommender[Any]) -> Callable[[], Recommender[Any]]:
    params = model.get_params()
    cls = type(model)
    return lambda: cls(**params)


def _item_indices(inter: Interactions, item_ids: npt.NDArray[Any], label: str) -> Any:
    """Recommended item IDs (``None`` = padding) -> column indices of ``inter`` (-1)."""
    flat = item_ids.ravel()
    padded = np.asarray(pd.isna(flat), dtype=bool)
    idx = np.full(flat.shape, -1, dtype=np.int64)
    idx[~padded] = inter.item_index(flat[~padded])
    if (idx[~padded] < 0).any():  # a model with another catalog than its training view
        raise ValueError(f"model {label!r} recommended items outside the evaluated catalog")
    return idx.reshape(item_ids.shape)


def _json_float(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        return _json_float(value)
    return str(value)
