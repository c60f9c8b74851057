"""Training: one named model, or ``auto``, a time-boxed search over models and hyperparameters.

Both carve a validation split out of the training data (:func:`~tailorcast.data.validation_split`:
the split's train part is fitted, its held-out part scores the recommendations), pick by
validation NDCG@10, refit the chosen configuration on *all* the data and save it as a new
version in the store (:mod:`tailorcast.artifacts`).

``auto`` runs one Optuna study (seeded TPE) per model family over :data:`SEARCH_SPACES`, all
sharing one time budget:

1. every family's default configuration first, cheapest families first;
2. then :data:`EXPLORE_TRIALS` more trials per family, so that a family with poor defaults
   (ALS with ``alpha=1``) still gets a look; EASE's and item-kNN's first one is their
   default with recency on (a customer's latest items weigh most), the rest come from TPE;
3. then the rest of the budget, round robin, to the :data:`EXPLOIT_MODELS` families with the
   best validation NDCG@10 so far; a family that has not improved for 25 trials (or keeps
   proposing parameters it already tried) stops, so a small shop can finish early.

The last family, ``hybrid``, blends :data:`HYBRID_COMPONENTS` (EASE + ALS; blend weights
learned inside the fit on a split of the same protocol). It searches both components' spaces
at once, and whenever a component's own family finds better parameters, its next trial tries
them: the blend starts from what each component does best alone.

The budget counts from the call (loading the data included). A trial only starts when it is
expected to end inside the budget (by that family's mean trial time) with the final refit's
time set aside too, so the whole call takes about ``budget_seconds``. Trials are whole fits: a
started one is never cut, and every family's first trial runs unless the budget is already
spent (the first family's always runs).
The number of trials depends on the machine's speed; pass ``max_trials`` for a fixed count.

Example::

    with Store.open("tailorcast-store", read_only=True) as store:
        result = train(store, "auto", budget_seconds=60)
    result.name, result.metrics["ndcg@10"], result.version
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import optuna
from optuna.samplers import TPESampler
from optuna.trial import TrialState

from tailorcast.artifacts import TrialRecord, save_model
from tailorcast.data.interactions import Interactions, InteractionsConfig
from tailorcast.data.splits import PROTOCOLS, Split, validation_split
from tailorcast.errors import ConfigError, DataError, NotFoundError
from tailorcast.evaluation.metrics import ALL_ACCURACY, ranking_metrics
from tailorcast.models.base import Recommender
from tailorcast.models.registry import MODELS, make_model
from tailorcast.store import Store

__all__ = [
    "AUTO",
    "HYBRID_COMPONENTS",
    "SEARCH_SPACES",
    "SELECTION_METRIC",
    "TrainProgress",
    "TrainResult",
    "train",
    "validation_metrics",
]

AUTO: Final = "auto"
#: Cut-off of the validation metrics; the search maximises NDCG at it.
K: Final = 10
SELECTION_METRIC: Final = f"ndcg@{K}"
#: Catalogues larger than this leave EASE out of ``auto``: its dense item x item inverse
#: (n_items^3 work, n_items^2 x 8 bytes) would eat the budget of the other families.
AUTO_EASE_MAX_ITEMS: Final = 8_000
#: Validation scores at most this many customers (a seeded sample), so a trial on a shop with
#: millions of customers costs about what fitting costs.
MAX_VALIDATION_USERS: Final = 20_000
EXPLORE_TRIALS: Final = 2
EXPLOIT_MODELS: Final = 2
#: A family whose search proposes already-tried parameters this many times in a row is done
#: (small categorical spaces such as popularity's).
_MAX_REPEATS: Final = 3
#: A family whose best has not improved for this many fitted trials is done: more trials on
#: a converged search mostly fit the validation noise (and waste the shop's machine).
_PATIENCE: Final = 25
_TPE_STARTUP: Final = 5
#: Trials queued right after a family's defaults: the same model with recency on, so a shop
#: where the latest items predict the next ones finds it early even on a short budget.
_SECOND_STARTS: Final[dict[str, dict[str, Any]]] = {
    "ease": {"recency": 0.8, "recency_items": 10.0},
    "itemknn": {"recency": 0.8, "recency_items": 10.0},
}

SearchSpace = Callable[[optuna.Trial], dict[str, Any]]
ProgressFn = Callable[["TrainProgress"], None]


def _popularity_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"measure": trial.suggest_categorical("measure", ["customers", "events", "weight"])}


def _itemknn_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "similarity": trial.suggest_categorical("similarity", ["cosine", "bm25", "tfidf"]),
        "neighbors": trial.suggest_int("neighbors", 20, 500, log=True),
        "shrinkage": trial.suggest_float("shrinkage", 0.0, 100.0),
        "recency": trial.suggest_float("recency", 0.0, 1.0),
        "recency_items": trial.suggest_float("recency_items", 2.0, 100.0, log=True),
    }


def _ease_space(trial: optuna.Trial) -> dict[str, Any]:
    # EASE's penalty is scale-free (its matrix is divided by the mean weight), so one range
    # fits every event-weight scheme. Recency lets the search weigh a customer's latest items
    # up where the validation data says what comes next follows what came last.
    return {
        "regularization": trial.suggest_float("regularization", 10.0, 5000.0, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "popularity_damping": trial.suggest_float("popularity_damping", 0.0, 0.3),
        "recency": trial.suggest_float("recency", 0.0, 1.0),
        "recency_items": trial.suggest_float("recency_items", 2.0, 100.0, log=True),
    }


def _als_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 128, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
        "iterations": trial.suggest_int("iterations", 10, 30),
        "alpha": trial.suggest_float("alpha", 1.0, 40.0, log=True),
    }


def _bpr_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 128, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 50, 300, log=True),
    }


#: The families ``auto``'s hybrid blends: EASE's item-item weights and ALS's low-rank factors
#: make different mistakes (on MovieLens 100K the blend validates ~2% above either alone).
HYBRID_COMPONENTS: Final = ("ease", "als")
_COMPONENT_SPACES: Final[dict[str, SearchSpace]] = {"ease": _ease_space, "als": _als_space}


def _hybrid_space(trial: optuna.Trial) -> dict[str, Any]:
    # Each component is searched over its own family's space (names prefixed "ease.", "als."),
    # so a family's best parameters can be handed to the hybrid as they are (_Search._seed).
    return {
        "component_params": {
            name: _COMPONENT_SPACES[name](_PrefixedTrial(trial, f"{name}."))  # type: ignore[arg-type]
            for name in HYBRID_COMPONENTS
        }
    }


#: Hyperparameter space per model family searched by ``auto``, in the order the families get
#: their first (default) trial: cheapest first. Families without a space are not searched.
SEARCH_SPACES: Final[dict[str, SearchSpace]] = {
    "popularity": _popularity_space,
    "itemknn": _itemknn_space,
    "ease": _ease_space,
    "als": _als_space,
    "bpr": _bpr_space,
    "hybrid": _hybrid_space,
}


@dataclass(frozen=True)
class TrainProgress:
    """A progress report: after loading the data, after every trial, at refit and save."""

    phase: str
    """``data``, ``search``, ``refit``, ``save`` or ``done``."""
    message: str
    elapsed: float
    """Seconds since :func:`train` was called."""
    budget: float | None
    """The search budget in seconds; None when training one named model."""
    trials: int
    best_model: str | None = None
    best_ndcg: float | None = None


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train` chose and saved."""

    model: Recommender[Any]
    """The chosen configuration, fitted on all the data."""
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    """Validation metrics of the chosen configuration (fitted on the validation train part)."""
    trials: list[TrialRecord]
    skipped: dict[str, str]
    fingerprint: str
    n_events: int
    seconds: float
    version: str | None = None
    """The saved version; None when not saved."""
    path: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``--json`` of ``tailorcast train``)."""
        return {
            "model": self.name,
            "params": self.params,
            "validation": self.metrics,
            "version": self.version,
            "path": None if self.path is None else str(self.path),
            "fingerprint": self.fingerprint,
            "n_events": self.n_events,
            "seconds": round(self.seconds, 3),
            "trials": [t.model_dump(mode="json", by_alias=True) for t in self.trials],
            "skipped": self.skipped,
        }


def train(
    source: Store | Interactions,
    model: str = AUTO,
    *,
    budget_seconds: float = 60.0,
    protocol: str = "random",
    seed: int = 2026,
    params: Mapping[str, Any] | None = None,
    max_trials: int | None = None,
    interactions_config: InteractionsConfig | None = None,
    store_dir: str | Path | None = None,
    save: bool = True,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``model`` (a registry name, or ``"auto"`` to search) and save it as a new version.

    Args:
        source: a store (its events are read with ``interactions_config``; the model is
            saved into its folder) or a ready training view.
        model: ``"auto"`` or a name from :data:`~tailorcast.models.MODELS`.
        budget_seconds: ``auto``'s time box, counted from the call: loading the data, the
            search and the final refit (ignored for a named model).
        protocol: validation split protocol (``random``, ``temporal``, ``last``,
            ``last_session``).
        seed: seeds the validation split and the samplers.
        params: hyperparameters of a named model (``auto`` searches them itself).
        max_trials: ``auto`` stops after this many fitted trials even with budget left.
        store_dir: where to save (default: the store's folder; required to save a view).
        save: write a model version (default); otherwise only return the result.
        progress: called with a :class:`TrainProgress` after each step.

    Raises:
        NotFoundError: an unknown model name.
        ConfigError: bad budget, protocol, parameters; or no model could be fitted.
        DataError: no events, or too little history to hold out a validation part.
    """
    started = time.monotonic()
    if store_dir is None and isinstance(source, Store):
        store_dir = source.folder
    if save and store_dir is None:
        raise ConfigError("pass store_dir to save a model trained on an Interactions view")
    if model != AUTO and model not in MODELS:
        raise NotFoundError(f"unknown model {model!r}; choose auto or one of: {', '.join(MODELS)}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown split protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if model == AUTO:
        if params:
            raise ConfigError("params apply to a named model; --model auto searches them itself")
        if not (isinstance(budget_seconds, int | float) and math.isfinite(budget_seconds)):
            raise ConfigError(f"budget must be a number of seconds, got {budget_seconds!r}")
        if budget_seconds <= 0:
            raise ConfigError(f"budget must be more than 0 seconds, got {budget_seconds}")
        if max_trials is not None and max_trials < 1:
            raise ConfigError(f"max_trials must be at least 1, got {max_trials}")
    inter = _training_view(source, interactions_config)
    split = validation_split(inter, protocol, seed=seed)
    validator = _Validator(split, seed)
    report = progress or (lambda _: None)
    budget = float(budget_seconds) if model == AUTO else None
    report(
        TrainProgress(
            "data",
            f"{len(inter.events):,} events, {inter.n_users:,} customers, {inter.n_items:,} "
            f"items; validating on {validator.n_users:,} customers",
            time.monotonic() - started,
            budget,
            0,
        )
    )
    if model == AUTO:
        with _quiet_optuna():
            search = _Search(
                _auto_families(inter),
                split.train,
                validator,
                budget=float(budget_seconds),
                seed=seed,
                fixed=_fixed_params(protocol, seed),
                max_trials=max_trials,
                refit_scale=len(inter.events) / max(len(split.train.events), 1),
                report=report,
                started=started,
            )
            search.run()
        name, chosen, metrics = search.best()
        trials, skipped = search.records, search.skipped
    else:
        name, chosen = model, dict(params or {})
        t0 = time.perf_counter()
        fitted = make_model(name, **chosen).fit(split.train)
        metrics = validator(fitted)
        trials = [
            TrialRecord(
                model=name,
                params=fitted.config_.model_dump(mode="json"),
                ndcg_at_10=metrics[SELECTION_METRIC],
                seconds=round(time.perf_counter() - t0, 4),
            )
        ]
        skipped = {}

    report(_note("refit", f"refitting {name} on all the data", started, budget, trials))
    final = make_model(name, **chosen).fit(inter)
    training = {
        "mode": "auto" if model == AUTO else "named",
        "protocol": protocol,
        "seed": seed,
        "budget_seconds": float(budget_seconds) if model == AUTO else None,
        "max_trials": max_trials,
        "validation_users": validator.n_users,
        "k": K,
        "selection_metric": SELECTION_METRIC,
        "interactions": inter.config.model_dump(mode="json"),
    }
    version: str | None = None
    path: Path | None = None
    if save and store_dir is not None:
        report(_note("save", "saving the model", started, budget, trials))
        training["seconds"] = round(time.monotonic() - started, 3)
        artifact = save_model(
            store_dir,
            final,
            metrics=metrics,
            n_events=len(inter.events),
            trials=trials,
            skipped=skipped,
            training=training,
        )
        version, path = artifact.version, artifact.path
    seconds = time.monotonic() - started
    result = TrainResult(
        model=final,
        name=name,
        params=final.config_.model_dump(mode="json"),
        metrics=metrics,
        trials=trials,
        skipped=skipped,
        fingerprint=final.fingerprint_,
        n_events=len(inter.events),
        seconds=seconds,
        version=version,
        path=path,
        training=training,
    )
    done = f"{name}: {SELECTION_METRIC} {metrics.get(SELECTION_METRIC, float('nan')):.4f}"
    report(_note("done", done, started, budget, trials))
    return result


def validation_metrics(
    model: Recommender[Any], split: Split, *, seed: int = 2026
) -> dict[str, float]:
    """Accuracy metrics at 10 (``ndcg@10``, ``recall@10``...) of a model fitted on
    ``split.train``, against ``split.test``, seen items excluded."""
    return _Validator(split, seed)(model)


# -- internals ----------------------------------------------------------------------------------
def _training_view(source: Store | Interactions, config: InteractionsConfig | None) -> Interactions:
    if isinstance(source, Interactions):
        if config is not None:
            raise ConfigError("interactions_config applies when training from a store")
        return source
    if isinstance(source, Store):
        return Interactions.from_store(source, config=config)
    raise TypeError(f"train expects a Store or an Interactions view, got {type(source).__name__}")


def _auto_families(inter: Interactions) -> dict[str, str | None]:
    """Family -> None when searched, or the reason it is left out."""
    out: dict[str, str | None] = {}
    for name in SEARCH_SPACES:
        if name not in MODELS:  # pragma: no cover - a space without a model
            continue
        if name in ("ease", "hybrid") and inter.n_items > AUTO_EASE_MAX_ITEMS:
            out[name] = (
                f"{inter.n_items:,} items: EASE's dense item matrix is left out of auto above "
                f"{AUTO_EASE_MAX_ITEMS:,} items (train it by name if the memory is there)"
            )
        else:
            out[name] = None
    return out


def _fixed_params(protocol: str, seed: int) -> dict[str, dict[str, Any]]:
    """Parameters ``auto`` sets rather than searches, per family: the hybrid learns its blend
    weights on a split of the same protocol as the one ``auto`` validates on (a blend tuned
    on random holdouts would mis-weigh what matters for "what comes next")."""
    return {
        "hybrid": {
            "components": "+".join(HYBRID_COMPONENTS),
            "weight_step": 0.05,
            "validation_protocol": protocol,
            "seed": seed,
        }
    }


class _Validator:
    """Scores a fitted model on the held-out part of a validation split."""

    def __init__(self, split: Split, seed: int) -> None:
        relevant = split.test.matrix.tocsr()
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        if users.size == 0:
            raise DataError(
                "too little history to validate: no customer has an item to hold out "
                "(a validation split needs customers with at least 2 distinct items)"
            )
        if users.size > MAX_VALIDATION_USERS:
            rng = np.random.default_rng(seed)
            users = np.sort(rng.choice(users, MAX_VALIDATION_USERS, replace=False))
        self.train = split.train
        self.user_ids = split.train.user_ids[users]
        self.relevant = relevant[users]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def __call__(self, model: Recommender[Any]) -> dict[str, float]:
        recs = model.recommend(self.user_ids, k=K, exclude_seen=True)
        padded = np.asarray(recs.item_ids == None)  # noqa: E711 - element-wise
        idx = self.train.item_index(np.where(padded, "", recs.item_ids).ravel())
        idx = idx.reshape(recs.item_ids.shape)
        idx[padded] = -1
        metrics = ranking_metrics(idx, self.relevant, k=K, metrics=ALL_ACCURACY)
        metrics.pop("n_users", None)
        return metrics


@dataclass
class _Family:
    """One model family's study and its running tally."""

    name: str
    study: optuna.Study
    space: SearchSpace
    trial_seconds: list[float] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    seen: dict[str, float | None] = field(default_factory=dict)
    repeats: int = 0
    since_best: int = 0
    best_score: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_trial: int = -1

    @property
    def exhausted(self) -> bool:
        return self.repeats >= _MAX_REPEATS or self.since_best >= _PATIENCE

    def expected_seconds(self) -> float:
        return float(np.mean(self.trial_seconds)) if self.trial_seconds else 0.0


class _Search:
    """The budgeted search of ``auto``; see the module docstring for the schedule."""

    def __init__(
        self,
        families: Mapping[str, str | None],
        train: Interactions,
        validator: _Validator,
        *,
        budget: float,
        seed: int,
        fixed: Mapping[str, Mapping[str, Any]] | None = None,
        max_trials: int | None,
        refit_scale: float,
        report: ProgressFn,
        started: float,
    ) -> None:
        self.train = train
        self.validator = validator
        self.budget = budget
        self.max_trials = max_trials
        self.refit_scale = refit_scale
        self.report = report
        self.records: list[TrialRecord] = []
        self.fixed = {name: dict(values) for name, values in (fixed or {}).items()}
        self.skipped = {name: why for name, why in families.items() if why is not None}
        #: The component parameters the hybrid was last seeded with (see _seed_hybrid).
        self._seeded: dict[str, dict[str, Any]] | None = None
        self.families: dict[str, _Family] = {}
        for offset, name in enumerate(n for n, why in families.items() if why is None):
            study = optuna.create_study(
                direction="maximize",
                sampler=TPESampler(seed=seed + offset, n_startup_trials=_TPE_STARTUP),
            )
            if name != "hybrid":  # the hybrid starts from its components' bests instead
                study.enqueue_trial(_defaults(name))
            if name in _SECOND_STARTS:
                study.enqueue_trial({**_defaults(name), **_SECOND_STARTS[name]})
            self.families[name] = _Family(name, study, SEARCH_SPACES[name])
        self.started = started
        self.fitted = 0

    # -- schedule ---------------------------------------------------------------------------
    def run(self) -> None:
        for family in self.families.values():  # 1. defaults, cheapest family first
            if self.fitted and not self._fits(family):
                self.skipped[family.name] = "time budget spent before its first trial"
                continue
            if self._capped():
                self.skipped[family.name] = "max_trials reached before its first trial"
                continue
            self._step(family)
        tried = [f for f in self.families.values() if f.trial_seconds]
        for _ in range(EXPLORE_TRIALS):  # 2. a look at every family beyond its defaults
            for family in tried:
                if not family.exhausted and self._fits(family) and not self._capped():
                    self._step(family)
        out: set[str] = set()
        while not self._capped():  # 3. the rest to the leaders
            ranked = sorted(
                (f for f in tried if f.best_score is not None and f.name not in out),
                key=lambda f: (-(f.best_score or 0.0), f.best_trial),
            )
            leaders = [f for f in ranked if not f.exhausted][:EXPLOIT_MODELS]
            if not leaders:
                break
            for family in leaders:
                if self._capped():
                    break
                if self._fits(family):
                    self._step(family)
                else:  # time only runs out: it will not fit later either
                    out.add(family.name)

    def best(self) -> tuple[str, dict[str, Any], dict[str, float]]:
        scored = [f for f in self.families.values() if f.best_score is not None]
        if not scored:
            failures = "; ".join(f"{r.model}: {r.error}" for r in self.records if r.error)
            raise ConfigError(f"no model could be fitted ({failures or 'no trial ran'})")
        top = min(scored, key=lambda f: (-(f.best_score or 0.0), f.best_trial))
        return top.name, dict(top.best_params), dict(top.best_metrics)

    # -- helpers ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _capped(self) -> bool:
        return self.max_trials is not None and self.fitted >= self.max_trials

    def _refit_reserve(self) -> float:
        scored = [f for f in self.families.values() if f.best_score is not None and f.fit_seconds]
        if not scored:
            return 0.0
        top = min(scored, key=lambda f: (-(f.best_score or 0.0), f.best_trial))
        return float(np.mean(top.fit_seconds)) * self.refit_scale

    def _fits(self, family: _Family) -> bool:
        expected = self._elapsed() + family.expected_seconds() + self._refit_reserve()
        return expected <= self.budget

    def _seed_hybrid(self, family: _Family) -> None:
        """Queue a hybrid trial from the component families' best parameters so far (their
        defaults where a family has none) whenever those changed: the blend is searched
        around what each component does best alone. A component whose best has not changed
        keeps the hybrid's own best parameters for it (a blend may want another optimum)."""
        current: dict[str, dict[str, Any]] = {}
        for name in HYBRID_COMPONENTS:
            component = self.families.get(name)
            best = component.best_params if component is not None else {}
            current[name] = dict(best) if best else _defaults(name)
        if current == self._seeded:
            return
        own = family.best_params.get("component_params", {})
        queued: dict[str, Any] = {}
        for name, part in current.items():
            changed = self._seeded is None or self._seeded[name] != part
            chosen = part if changed or name not in own else own[name]
            queued.update({f"{name}.{key}": value for key, value in chosen.items()})
        self._seeded = current
        family.study.enqueue_trial(queued)

    def _step(self, family: _Family) -> None:
        if family.name == "hybrid":
            self._seed_hybrid(family)
        trial = family.study.ask()
        params = {**self.fixed.get(family.name, {}), **family.space(trial)}
        key = repr(sorted(params.items()))
        if key in family.seen:
            family.repeats += 1
            value = family.seen[key]
            if value is None:
                family.study.tell(trial, state=TrialState.FAIL)
            else:
                family.study.tell(trial, value)
            return
        family.repeats = 0
        t0 = time.perf_counter()
        error: str | None = None
        metrics: dict[str, float] | None = None
        try:
            fitted = make_model(family.name, **params).fit(self.train)
        except ConfigError as exc:  # diverged factors, a failed inversion: a failed trial
            error = str(exc)
            fit_s = time.perf_counter() - t0
        else:
            fit_s = time.perf_counter() - t0
            metrics = self.validator(fitted)
        seconds = time.perf_counter() - t0
        self.fitted += 1
        family.trial_seconds.append(seconds)
        family.fit_seconds.append(fit_s)
        score = None if metrics is None else metrics[SELECTION_METRIC]
        family.seen[key] = score
        if score is None:
            family.study.tell(trial, state=TrialState.FAIL)
        else:
            family.study.tell(trial, score)
        number = len(self.records)
        if (
            score is not None
            and metrics is not None
            and (family.best_score is None or score > family.best_score)
        ):
            family.best_score, family.best_params = score, params
            family.best_metrics, family.best_trial = metrics, number
            family.since_best = 0
        else:
            family.since_best += 1
        self.records.append(
            TrialRecord(
                model=family.name,
                params=params,
                ndcg_at_10=score,
                seconds=round(seconds, 4),
                state="complete" if error is None else "failed",
                error=error,
            )
        )
        name, best = self._leader()
        outcome = f"{SELECTION_METRIC} {score:.4f}" if score is not None else "failed"
        self.report(
            TrainProgress(
                "search",
                f"trial {number + 1}: {family.name} {outcome}",
                self._elapsed(),
                self.budget,
                len(self.records),
                name,
                best,
            )
        )

    def _leader(self) -> tuple[str | None, float | None]:
        scored = [f for f in self.families.values() if f.best_score is not None]
        if not scored:
            return None, None
        top = min(scored, key=lambda f: (-(f.best_score or 0.0), f.best_trial))
        return top.name, top.best_score


def _defaults(name: str) -> dict[str, Any]:
    """The family's default values of the parameters its search space covers."""
    fields = MODELS[name].config_class.model_fields
    return {key: fields[key].default for key in _space_names(name)}


def _space_names(name: str) -> Sequence[str]:
    """Parameter names of a family's search space (by asking it once with a recording trial)."""
    recorder = _RecordingTrial()
    SEARCH_SPACES[name](recorder)  # type: ignore[arg-type]
    return recorder.names


class _PrefixedTrial:
    """Passes a family's suggestions to an Optuna trial under ``prefix + name``, so one study
    can search several families' spaces side by side (the hybrid's components)."""

    def __init__(self, trial: optuna.Trial, prefix: str) -> None:
        self.trial = trial
        self.prefix = prefix

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(self.prefix + name, choices)

    def suggest_int(self, name: str, low: int, high: int, **options: Any) -> int:
        return self.trial.suggest_int(self.prefix + name, low, high, **options)

    def suggest_float(self, name: str, low: float, high: float, **options: Any) -> float:
        return self.trial.suggest_float(self.prefix + name, low, high, **options)


class _RecordingTrial:
    """Stands in for an Optuna trial to learn which parameters a space suggests."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.names.append(name)
        return choices[0]

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        self.names.append(name)
        return low

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        self.names.append(name)
        return low


def _note(
    phase: str, message: str, started: float, budget: float | None, trials: Sequence[TrialRecord]
) -> TrainProgress:
    return TrainProgress(phase, message, time.monotonic() - started, budget, len(trials))


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO; the CLI shows its own progress line."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
