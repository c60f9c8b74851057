"""A/B tests of recommenders: deterministic assignment, served lists recorded with their
variant, and per-variant KPIs from the events that follow, with significance.

- *Assignment* hashes ``"<experiment salt>:<customer>"`` with SHA-256 into a number in
  [0, 1) and cuts that range by the variants' weights. The same customer always sees the
  same variant of an experiment, on every server and in every batch, with no state to
  share; different experiments (salts) assign independently of each other.
- *Serving* (:func:`serve_experiment`) asks each variant's model for its customers' lists
  and writes every served list with its variant into ``experiment_served``, so the
  measurement compares what was really shown. The HTTP server does the same per request
  (``tailorcast serve --experiment NAME``, :mod:`tailorcast.serving.experiments`): it spools
  the served lists and :func:`merge_served` adds them to ``experiment_served`` at the next
  merge.
- *Measuring* (:func:`measure_experiment`) follows each served customer for
  ``window_days`` after their first served list: conversion (any purchase), hit rate
  (bought an item they were shown) and revenue per customer. Each variant is compared with
  the control variant (the first): two-proportion z-tests for the rates and Welch's t-test
  for revenue, plus a chi-square test across all variants for conversion.

Example::

    exp = create_experiment(store, "ease-vs-als", {"control": "2026...-a1", "ease": "2026...-b2"})
    frame = serve_experiment(store, exp, {"control": als, "ease": ease}, user_ids, k=10)
    report = measure_experiment(store, "ease-vs-als", window_days=14)
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy import stats

from tailorcast.errors import ConfigError, NotFoundError, UserError
from tailorcast.marketing._data import read_events
from tailorcast.models.base import Recommender
from tailorcast.store import Store

__all__ = [
    "EXPERIMENT_SCHEMA",
    "Assigner",
    "Experiment",
    "ExperimentReport",
    "Variant",
    "VariantResult",
    "assign_variants",
    "check_experiment",
    "create_experiment",
    "get_experiment",
    "measure_experiment",
    "merge_served",
    "record_served",
    "serve_experiment",
]

EXPERIMENT_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS experiment_info (
    name VARCHAR, created_at TIMESTAMP, salt VARCHAR, variants JSON);
CREATE TABLE IF NOT EXISTS experiment_served (
    experiment VARCHAR, variant VARCHAR, user_id VARCHAR, served_at TIMESTAMP,
    items VARCHAR[]);
CREATE TABLE IF NOT EXISTS experiment_merges (source VARCHAR, merged_at TIMESTAMP, lists BIGINT);
"""
_NAME: Final = re.compile(r"^[\w.\-]{1,100}$")
_SCALE: Final = float(2**64)


class Variant(BaseModel):
    """One arm: a name, its share of traffic (relative weight) and the model version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[\w.\-]{1,50}$")
    weight: float = Field(default=1.0, gt=0)
    model_version: str | None = None


class Experiment(BaseModel):
    """An A/B test; the first variant is the control."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    variants: tuple[Variant, ...]
    salt: str

    @field_validator("variants")
    @classmethod
    def _distinct(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [v.name for v in value]
        if len(value) < 2 or len(set(names)) != len(names):
            raise ValueError("an experiment needs at least two variants with distinct names")
        return value

    @property
    def control(self) -> str:
        return self.variants[0].name

    def assign(self, user_ids: Sequence[str] | npt.ArrayLike) -> npt.NDArray[np.object_]:
        """The variant of each customer (deterministic; see :func:`assign_variants`)."""
        return assign_variants(
            self.salt, user_ids, [v.name for v in self.variants], [v.weight for v in self.variants]
        )


def assign_variants(
    salt: str,
    user_ids: Sequence[str] | npt.ArrayLike,
    variants: Sequence[str],
    weights: Sequence[float] | None = None,
) -> npt.NDArray[np.object_]:
    """Deterministic variant per customer: SHA-256 of ``salt:user_id`` cut by ``weights``.

    No library hashes strings into stable uniform numbers across processes and versions
    (Python's ``hash`` is salted per process, DuckDB's ``hash`` may change between
    releases), so this uses hashlib: one C call per customer.
    """
    ids = [str(u) for u in np.asarray(user_ids, dtype=object).ravel()]
    w = np.ones(len(variants)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(variants) or len(variants) == 0 or (w <= 0).any():
        raise ConfigError("give one positive weight per variant")
    prefix = f"{salt}:".encode()
    sha = hashlib.sha256
    draws = np.fromiter(
        (int.from_bytes(sha(prefix + u.encode()).digest()[:8], "big") for u in ids),
        dtype=np.float64,
        count=len(ids),
    )
    cuts = np.cumsum(w) / w.sum()
    slot = np.searchsorted(cuts, draws / _SCALE, side="right")
    return np.asarray(variants, dtype=object)[np.minimum(slot, len(variants) - 1)]


class Assigner:
    """One customer's variant at a time, as :func:`assign_variants` draws it, without numpy:
    the per-request form for the HTTP server (a hash and a bisection, about a microsecond).

    Example::

        variant_of = Assigner(experiment)
        variant_of("p_3f9c...")          # the same answer as experiment.assign(["p_3f9c..."])[0]
    """

    def __init__(self, experiment: Experiment) -> None:
        weights = np.asarray([v.weight for v in experiment.variants], dtype=float)
        # The same float operations as assign_variants, so both agree on every boundary.
        self._cuts: list[float] = (np.cumsum(weights) / weights.sum()).tolist()
        self._names = [v.name for v in experiment.variants]
        self._prefix = f"{experiment.salt}:".encode()

    def __call__(self, user_id: str) -> str:
        digest = hashlib.sha256(self._prefix + str(user_id).encode()).digest()
        draw = float(int.from_bytes(digest[:8], "big")) / _SCALE
        slot = bisect.bisect_right(self._cuts, draw)
        return self._names[min(slot, len(self._names) - 1)]


def create_experiment(
    store: Store,
    name: str,
    variants: Mapping[str, str | None] | Sequence[Variant],
    *,
    weights: Mapping[str, float] | None = None,
    salt: str | None = None,
) -> Experiment:
    """Store a new experiment (the first variant is the control).

    Raises:
        ConfigError: a bad name or variants; UserError: the name is taken.
    """
    if not _NAME.match(name):
        raise ConfigError(f"experiment name {name!r} must be 1-100 letters, digits, '.', '_', '-'")
    try:
        if isinstance(variants, Mapping):
            arms = [
                Variant(name=k, model_version=v, weight=(weights or {}).get(k, 1.0))
                for k, v in variants.items()
            ]
        else:
            arms = list(variants)
        experiment = Experiment(name=name, variants=tuple(arms), salt=salt or name)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'variants'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"experiment {name!r}: {problems}") from None
    with store.transaction() as con:
        con.execute(EXPERIMENT_SCHEMA)
        taken = con.execute("SELECT count(*) FROM experiment_info WHERE name = ?", [name])
        if taken.fetchall()[0][0]:
            raise UserError(f"an experiment named {name!r} exists already")
        con.execute(
            "INSERT INTO experiment_info VALUES (?, ?, ?, ?)",
            [
                name,
                _now().to_pydatetime(),
                experiment.salt,
                json.dumps([v.model_dump() for v in experiment.variants]),
            ],
        )
    return experiment


def get_experiment(store: Store, name: str) -> Experiment:
    """A stored experiment. Raises NotFoundError when there is none of that name."""
    rows = (
        store.con.execute(
            "SELECT salt, variants FROM experiment_info WHERE name = ?", [name]
        ).fetchall()
        if store.columns("experiment_info")
        else []
    )
    if not rows:
        raise NotFoundError(f"no experiment {name!r}")
    salt, variants = rows[0]
    return Experiment(
        name=name,
        salt=str(salt),
        variants=tuple(Variant(**v) for v in json.loads(variants)),
    )


def check_experiment(store_dir: str | Path, name: str) -> Experiment:
    """The experiment ``name`` of the store in ``store_dir``, after checking that every pinned
    model version is saved (for ``tailorcast serve --experiment``, before starting workers).

    Raises:
        NotFoundError: no such experiment, or a variant's model version is missing.
    """
    from tailorcast.artifacts import list_versions  # lazy: artifacts imports every model

    with Store.open(store_dir, read_only=True) as store:
        experiment = get_experiment(store, name)
    saved = set(list_versions(store_dir))
    for variant in experiment.variants:
        if variant.model_version is not None and variant.model_version not in saved:
            raise NotFoundError(
                f"experiment {name!r}: variant {variant.name!r} needs model version "
                f"{variant.model_version!r}, which is not saved in {store_dir}"
            )
    return experiment


def serve_experiment(
    store: Store,
    experiment: Experiment,
    models: Mapping[str, Recommender[Any]],
    user_ids: Sequence[str] | npt.ArrayLike,
    k: int = 10,
    *,
    at: pd.Timestamp | None = None,
    record: bool = True,
) -> pd.DataFrame:
    """Each customer's list from their variant's model, recorded with the variant.

    Returns ``user_id, variant, item_id, rank, score, reason``.

    Raises:
        ConfigError: a variant without a model.
    """
    missing = [v.name for v in experiment.variants if v.name not in models]
    if missing:
        raise ConfigError(f"no model for variant(s) {', '.join(missing)}")
    ids = np.asarray(pd.unique(pd.Series(np.asarray(user_ids, dtype=object).ravel())))
    arm = experiment.assign(ids)
    parts = []
    for variant in experiment.variants:  # one batched call per variant
        mine = ids[arm == variant.name]
        if len(mine):
            frame = models[variant.name].recommend(mine, k).to_frame()
            parts.append(frame.assign(variant=variant.name))
    cols = ["user_id", "variant", "item_id", "rank", "score", "reason"]
    served = pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
    if record:
        record_served(store, experiment.name, served, at=at)
    return served


def record_served(
    store: Store, experiment: str, served: pd.DataFrame, *, at: pd.Timestamp | None = None
) -> int:
    """Append served lists (``user_id, variant, item_id, rank``) as one row per list."""
    if served.empty:
        return 0
    when = (at if at is not None else _now()).to_pydatetime()
    lists = (
        served.sort_values(["user_id", "rank"], kind="stable")
        .groupby(["user_id", "variant"], sort=False)["item_id"]
        .agg(list)
        .reset_index()
    )
    lists.insert(0, "experiment", experiment)
    lists["served_at"] = when
    with store.transaction() as con:
        con.execute(EXPERIMENT_SCHEMA)
        con.register("_served", lists)
        try:
            con.execute(
                "INSERT INTO experiment_served SELECT experiment, variant, user_id, served_at, "
                "CAST(item_id AS VARCHAR[]) FROM _served"
            )
        finally:
            con.unregister("_served")
    return len(lists)


def merge_served(store: Store, rows: Sequence[Mapping[str, Any]], source: str) -> int:
    """Add served lists recorded outside the store (the HTTP server spools them) to
    ``experiment_served``, once: ``source`` labels the group, and a label already merged
    (a replay after a crash between the commit and the spool's clean-up) adds nothing.

    Each row: ``experiment``, ``variant``, ``user_id`` (as stored: the pseudonym),
    ``served_at`` (epoch seconds, UTC) and ``items`` (the list, best first). Returns the
    number of lists added.
    """
    if not rows:
        return 0
    lists = pd.DataFrame(
        {
            "experiment": [str(r["experiment"]) for r in rows],
            "variant": [str(r["variant"]) for r in rows],
            "user_id": [str(r["user_id"]) for r in rows],
            "served_at": pd.to_datetime([float(r["served_at"]) for r in rows], unit="s"),
            "items": [[str(i) for i in r["items"]] for r in rows],
        }
    )
    with store.transaction() as con:
        con.execute(EXPERIMENT_SCHEMA)
        done = con.execute("SELECT count(*) FROM experiment_merges WHERE source = ?", [source])
        if done.fetchall()[0][0]:
            return 0
        con.register("_served", lists)
        try:
            con.execute(
                "INSERT INTO experiment_served SELECT experiment, variant, user_id, served_at, "
                "CAST(items AS VARCHAR[]) FROM _served"
            )
        finally:
            con.unregister("_served")
        con.execute(
            "INSERT INTO experiment_merges VALUES (?, ?, ?)",
            [source, _now().to_pydatetime(), len(lists)],
        )
    return len(lists)


@dataclass(frozen=True)
class VariantResult:
    """KPIs of one variant and its comparison with the control."""

    variant: str
    customers: int
    conversion: float
    hit_rate: float
    revenue_per_customer: float
    conversion_lift: float
    conversion_ci: tuple[float, float]
    conversion_p: float
    hit_rate_lift: float
    hit_rate_p: float
    revenue_lift: float
    revenue_p: float


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    control: str
    window_days: float
    variants: tuple[VariantResult, ...]
    conversion_chi2_p: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(v) for v in self.variants])


def measure_experiment(
    store: Store, name: str, *, window_days: float = 14.0, confidence: float = 0.95
) -> ExperimentReport:
    """Per-variant KPIs over ``window_days`` after each customer's first served list.

    Raises:
        NotFoundError: unknown experiment, or nothing served yet.
    """
    experiment = get_experiment(store, name)
    first = store.con.execute(
        "SELECT user_id, arg_min(variant, served_at) AS variant, min(served_at) AS served_at, "
        "flatten(list(items)) AS items FROM experiment_served WHERE experiment = ? "
        "GROUP BY user_id",
        [name],
    ).df()
    if first.empty:
        raise NotFoundError(f"experiment {name!r} has served no lists yet")
    window = pd.Timedelta(days=window_days)
    start = pd.Timestamp(first["served_at"].min())
    buys = read_events(
        store, pd.Timestamp(first["served_at"].max()) + window, since=start, purchases_only=True
    )
    buys = buys.merge(first[["user_id", "served_at"]], on="user_id")
    buys = buys[
        (buys["timestamp"] > buys["served_at"]) & (buys["timestamp"] <= buys["served_at"] + window)
    ]
    shown = first[["user_id", "items"]].explode("items").rename(columns={"items": "item_id"})
    hits = set(buys.merge(shown, on=["user_id", "item_id"])["user_id"])
    per = buys.groupby("user_id")["amount"].agg(["size", "sum"])
    first["converted"] = first["user_id"].map(per["size"]).fillna(0).to_numpy() > 0
    first["revenue"] = first["user_id"].map(per["sum"]).fillna(0.0).astype(float)
    first["hit"] = first["user_id"].isin(hits)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    base = first[first["variant"] == experiment.control]
    results = []
    for variant in experiment.variants:
        mine = first[first["variant"] == variant.name]
        conv = _two_proportions(mine["converted"], base["converted"], z)
        hit = _two_proportions(mine["hit"], base["hit"], z)
        if len(mine) > 1 and len(base) > 1 and variant.name != experiment.control:
            welch = stats.ttest_ind(mine["revenue"], base["revenue"], equal_var=False)
            rev_p = float(welch.pvalue) if np.isfinite(welch.pvalue) else 1.0
        else:
            rev_p = 1.0
        results.append(
            VariantResult(
                variant=variant.name,
                customers=len(mine),
                conversion=_mean(mine["converted"]),
                hit_rate=_mean(mine["hit"]),
                revenue_per_customer=_mean(mine["revenue"]),
                conversion_lift=conv[0],
                conversion_ci=(conv[1], conv[2]),
                conversion_p=conv[3],
                hit_rate_lift=hit[0],
                hit_rate_p=hit[3],
                revenue_lift=_mean(mine["revenue"]) - _mean(base["revenue"]),
                revenue_p=rev_p,
            )
        )
    table = pd.crosstab(first["variant"], first["converted"])
    chi_p = (
        float(stats.chi2_contingency(table.to_numpy()).pvalue)
        if table.shape[0] > 1 and table.shape[1] > 1
        else 1.0
    )
    return ExperimentReport(
        name=name,
        control=experiment.control,
        window_days=window_days,
        variants=tuple(results),
        conversion_chi2_p=chi_p,
        method="two-proportion z-test (normal approximation) for rates, Welch's t-test for "
        "revenue, chi-square across variants for conversion",
    )


def _two_proportions(a: pd.Series, b: pd.Series, z: float) -> tuple[float, float, float, float]:
    """Difference of rates ``a - b``, its Wald interval and the pooled z-test p-value."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, 0.0, 0.0, 1.0
    pa, pb = float(a.mean()), float(b.mean())
    diff = pa - pb
    se = np.sqrt(pa * (1 - pa) / len(a) + pb * (1 - pb) / len(b))
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    p = float(2 * stats.norm.sf(abs(diff) / se0)) if se0 > 0 else 1.0
    return diff, float(diff - z * se), float(diff + z * se), p


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else 0.0


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)
