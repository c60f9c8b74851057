"""Missing values in the users and items tables: opt-in imputation, one strategy per column.

Imputation is off unless configured (``default_strategies`` says ``"none"`` everywhere).
A TOML ingest config names a strategy per column, as a word or a table::

    [users.impute]
    age = "median"
    city = { strategy = "constant", value = "unknown" }
    income = "knn"

Missing means NaN, None, ``pd.NA`` or a string that is empty or only whitespace.

Strategies:

- ``none``: leave the column as it is (blank strings included).
- ``drop``: remove the row; it is returned in ``ImputationResult.dropped`` with a reason.
- ``mean`` / ``median``: numeric columns only.
- ``mode``: the most frequent value; ties go to the value seen first.
- ``constant``: the configured ``value``.
- ``knn``: numeric columns with scikit-learn's ``KNNImputer``, categorical columns with a
  ``KNeighborsClassifier``. The neighbours are found on the other numeric columns
  (standardised) plus a one-hot encoding of the categorical columns with at most
  20 distinct values. Without any such column it falls back to median / mode and the
  record says so (``"knn->median"``, ``"knn->mode"``).

Rows are dropped first; every statistic is then computed on the rows that are kept.

Dtypes are kept. One exception: a nullable integer column (``Int64``...) whose imputed
values are not all whole numbers becomes ``Float64``. A plain ``float64`` column stays
``float64`` even when it only holds whole numbers (as a CSV integer column with gaps does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import ValidationError

from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import ColumnImputation, Strategy

__all__ = [
    "STRATEGIES",
    "ColumnImputation",
    "ImputationRecord",
    "ImputationResult",
    "Strategy",
    "default_strategies",
    "impute",
]


#: Every strategy name, in documentation order.
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)

#: Categorical columns with more distinct values than this are not used as knn features.
_MAX_ONEHOT_CATEGORIES: Final = 20

_Kind = Literal["numeric", "categorical", "datetime"]


@dataclass(frozen=True)
class ImputationRecord:
    """What happened to one column.

    ``n_imputed`` counts filled cells (for ``drop``: rows dropped for this column).
    ``fill_value`` is the single value used (mean, median, mode, constant, or the
    fallback of knn), as text; ``None`` for ``knn`` and ``drop``.
    """

    table: str
    column: str
    strategy: str
    n_imputed: int
    fill_value: str | None


@dataclass(frozen=True)
class ImputationResult:
    """The cleaned frame (original index kept), one record per configured column, dropped rows.

    ``dropped`` holds the original rows removed by ``drop`` plus a ``reason`` column.
    """

    frame: pd.DataFrame
    records: list[ImputationRecord]
    dropped: pd.DataFrame


StrategySpec = Strategy | str | ColumnImputation | Mapping[str, Any]


def default_strategies(frame: pd.DataFrame, *, id_column: str) -> dict[str, Strategy]:
    """``"none"`` for every column but the id: imputation is opt-in.

    >>> default_strategies(pd.DataFrame({"user_id": [1], "age": [30]}), id_column="user_id")
    {'age': 'none'}
    """
    return {str(column): "none" for column in frame.columns if column != id_column}


def impute(
    frame: pd.DataFrame,
    strategies: Mapping[str, StrategySpec],
    *,
    table: str,
    id_column: str,
    knn_neighbors: int = 5,
) -> ImputationResult:
    """Fill or drop missing values column by column; the input frame is not changed.

    ``strategies`` maps a column to a strategy name (``"median"``) or a
    :class:`ColumnImputation` (a plain mapping such as ``{"strategy": "constant",
    "value": "unknown"}`` works too). Columns not named are left alone, and so is
    ``id_column``. ``table`` names the frame in records and messages.

    Raises :class:`ConfigError` for an unknown column or strategy, ``mean``/``median`` on a
    non-numeric column, ``constant`` without a usable value, and :class:`DataError` when a
    column to fill has no value at all to learn from.

    >>> users = pd.DataFrame({"user_id": [1, 2, 3], "age": [20.0, None, 40.0]})
    >>> impute(users, {"age": "mean"}, table="users", id_column="user_id").frame["age"].tolist()
    [20.0, 30.0, 40.0]
    """
    if id_column not in frame.columns:
        raise DataError("id column not found", source=table, column=id_column)
    if isinstance(knn_neighbors, bool) or not isinstance(knn_neighbors, int) or knn_neighbors < 1:
        raise ConfigError(f"impute {table}: knn_neighbors must be an integer >= 1")
    plan = _resolve(frame, strategies, table=table, id_column=id_column)
    kinds = {column: _kind(frame[column]) for column in plan}
    for column, spec in plan.items():
        _check_spec(frame[column], spec, kinds[column], table=table, column=column)

    missing = {column: _missing_mask(frame[column]) for column in plan}
    drop_columns = [column for column, spec in plan.items() if spec.strategy == "drop"]
    drop_rows = np.zeros(len(frame), dtype=bool)
    for column in drop_columns:
        drop_rows |= missing[column]
    keep = ~drop_rows
    kept = frame.iloc[np.flatnonzero(keep)]
    dropped = frame.iloc[np.flatnonzero(drop_rows)].copy()
    reasons = [
        "missing value in "
        + ", ".join(repr(column) for column in drop_columns if missing[column][row])
        + " (strategy drop)"
        for row in np.flatnonzero(drop_rows)
    ]
    dropped["reason"] = pd.Series(reasons, index=dropped.index, dtype=str)

    out = kept.copy()
    done: dict[str, ImputationRecord] = {}
    for column in drop_columns:
        done[column] = ImputationRecord(table, column, "drop", int(missing[column].sum()), None)

    fill_columns = [c for c, spec in plan.items() if spec.strategy not in ("none", "drop")]
    kept_missing = {column: missing[column][keep] for column in fill_columns}
    for column in fill_columns:
        if plan[column].strategy != "constant" and kept_missing[column].all() and len(kept):
            raise DataError(
                f"no value to impute from (strategy {plan[column].strategy})",
                source=table,
                column=column,
            )

    knn_columns = [column for column in fill_columns if plan[column].strategy == "knn"]
    knn_fills = (
        _knn_fills(kept, knn_columns, kinds, kept_missing, id_column=id_column, k=knn_neighbors)
        if knn_columns and len(kept)
        else {}
    )
    for column in fill_columns:
        mask = kept_missing[column]
        spec = plan[column]
        label: str = spec.strategy
        fill_value: str | None = None
        if column in knn_fills:
            values: Any = knn_fills[column]
        else:
            if spec.strategy == "knn":
                label = "knn->median" if kinds[column] == "numeric" else "knn->mode"
            statistic = label.removeprefix("knn->")
            values = _single_value(out[column], mask, statistic, spec.value, kinds[column])
            fill_value = None if values is None else str(values)
        if mask.any():
            out[column] = _fill(out[column], mask, values, kinds[column])
        done[column] = ImputationRecord(table, column, label, int(mask.sum()), fill_value)

    records = [done[column] for column in plan if column in done]
    return ImputationResult(frame=out, records=records, dropped=dropped)


def _resolve(
    frame: pd.DataFrame, strategies: Mapping[str, StrategySpec], *, table: str, id_column: str
) -> dict[str, ColumnImputation]:
    plan: dict[str, ColumnImputation] = {}
    for column, spec in strategies.items():
        where = f"impute {table}.{column}"
        if column not in frame.columns:
            known = ", ".join(str(c) for c in frame.columns)
            raise ConfigError(f"impute {table}: unknown column {column!r} (columns: {known})")
        if isinstance(spec, ColumnImputation):
            item = spec
        elif isinstance(spec, str):
            name = spec.strip().lower()
            if name not in STRATEGIES:
                raise ConfigError(
                    f"{where}: unknown strategy {spec!r}; expected one of {', '.join(STRATEGIES)}"
                )
            if name == "constant":
                raise ConfigError(
                    f"{where}: strategy 'constant' needs a value, "
                    'e.g. {strategy = "constant", value = "unknown"}'
                )
            item = ColumnImputation.model_validate({"strategy": name})
        elif isinstance(spec, Mapping):
            try:
                item = ColumnImputation.model_validate(dict(spec))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(part) for part in first["loc"])
                raise ConfigError(
                    f"{where}: {field + ': ' if field else ''}{first['msg']} (got {dict(spec)!r})"
                ) from None
        else:
            raise ConfigError(f"{where}: expected a strategy name or table, got {spec!r}")
        if column == id_column and item.strategy != "none":
            raise ConfigError(f"{where}: the id column {id_column!r} is never imputed")
        plan[column] = item
    return plan


def _kind(series: pd.Series) -> _Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "datetime"
    return "categorical"


def _check_spec(
    series: pd.Series, spec: ColumnImputation, kind: _Kind, *, table: str, column: str
) -> None:
    where = f"impute {table}.{column}"
    if spec.strategy in ("mean", "median") and kind != "numeric":
        raise ConfigError(
            f"{where}: strategy {spec.strategy!r} needs a numeric column, "
            f"this one is {series.dtype}; use 'mode' or 'constant'"
        )
    if spec.strategy == "knn" and kind == "datetime":
        raise ConfigError(f"{where}: strategy 'knn' does not apply to dates; use 'mode'")
    if spec.strategy != "constant":
        return
    value = spec.value
    if (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and not np.isfinite(value)
    ):
        raise ConfigError(f"{where}: the constant {value!r} would itself count as missing")
    if kind == "numeric" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{where}: the column is numeric, the constant {value!r} is not")
    if kind == "datetime":
        try:
            pd.Timestamp(str(value))
        except ValueError:
            raise ConfigError(f"{where}: the constant {value!r} is not a date") from None
    if isinstance(series.dtype, pd.BooleanDtype) and not isinstance(value, bool):
        raise ConfigError(f"{where}: the column is boolean, the constant {value!r} is not")


def _missing_mask(series: pd.Series) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """NaN/None/NA, plus blank strings in text-like columns."""
    mask: np.ndarray[Any, np.dtype[np.bool_]] = series.isna().to_numpy(dtype=bool)
    if _kind(series) != "categorical" or pd.api.types.is_bool_dtype(series.dtype):
        return mask
    if isinstance(series.dtype, pd.StringDtype):
        blank = series.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    else:
        values = series.to_numpy(dtype=object)
        blank = np.fromiter(
            (isinstance(v, str) and not v.strip() for v in values), dtype=bool, count=len(values)
        )
    return mask | blank


def _single_value(
    series: pd.Series, mask: np.ndarray[Any, Any], statistic: str, constant: object, kind: _Kind
) -> Any:
    if statistic == "constant":
        if kind == "datetime":
            return pd.Timestamp(str(constant))
        return constant
    observed = series[~mask]
    if observed.empty:
        return None
    if statistic == "mean":
        return float(observed.to_numpy(dtype=float).mean())
    if statistic == "median":
        return float(np.median(observed.to_numpy(dtype=float)))
    # mode: value_counts keeps first-seen order, idxmax picks the first of the largest.
    value = observed.value_counts(sort=False, dropna=True).idxmax()
    return value.item() if isinstance(value, np.generic) else value


def _fill(series: pd.Series, mask: np.ndarray[Any, Any], values: Any, kind: _Kind) -> pd.Series:
    """Return ``series`` with ``values`` (one value or one per masked row) put at ``mask``."""
    positions = np.flatnonzero(mask)
    dtype = series.dtype
    if kind == "numeric":
        fills = np.broadcast_to(np.asarray(values, dtype=float), positions.shape)
        target: Any = dtype
        if pd.api.types.is_integer_dtype(dtype) and not np.all(np.mod(fills, 1) == 0):
            extension = isinstance(dtype, pd.api.extensions.ExtensionDtype)
            target = pd.Float64Dtype() if extension else np.dtype(np.float64)
        result = series.astype(target)
        result.iloc[positions] = fills.astype(getattr(target, "numpy_dtype", target))
        return result
    if np.ndim(values) == 0:
        items: list[Any] = [values] * len(positions)
    else:
        items = list(values)
    if kind == "datetime":
        tz = getattr(dtype, "tz", None)
        stamps = [pd.Timestamp(v) for v in items]
        if tz is not None:
            stamps = [s.tz_localize(tz) if s.tzinfo is None else s.tz_convert(tz) for s in stamps]
        result = series.copy()
        result.iloc[positions] = stamps
        return result
    if isinstance(dtype, pd.StringDtype):
        items = [str(v) for v in items]
    result = series.copy()
    if isinstance(dtype, pd.CategoricalDtype):
        new = [v for v in dict.fromkeys(items) if v not in dtype.categories]
        if new:
            result = pd.Series(result.cat.add_categories(new))
    # Object arrays keep each value as it is (an int stays an int in an object column).
    fill_array = np.empty(len(items), dtype=object)
    fill_array[:] = items
    result.iloc[positions] = fill_array
    return result


def _knn_fills(
    kept: pd.DataFrame,
    columns: list[str],
    kinds: Mapping[str, _Kind],
    missing: Mapping[str, np.ndarray[Any, Any]],
    *,
    id_column: str,
    k: int,
) -> dict[str, np.ndarray[Any, Any]]:
    """Per-row fills for the knn columns that have at least one feature column."""
    from sklearn.impute import KNNImputer
    from sklearn.neighbors import KNeighborsClassifier

    numeric: dict[str, tuple[np.ndarray[Any, Any], float, float]] = {}
    onehot: dict[str, np.ndarray[Any, Any]] = {}
    for column in kept.columns:
        if column == id_column:
            continue
        series = kept[column]
        kind = _kind(series)
        if kind == "datetime":
            continue
        mask = missing[column] if column in missing else _missing_mask(series)
        if mask.all():
            continue
        if kind == "numeric":
            x = series.to_numpy(dtype=float, na_value=np.nan).copy()
            x[mask] = np.nan
            mean, std = float(x[~mask].mean()), float(x[~mask].std())
            std = std if std > 0 and np.isfinite(std) else 1.0
            numeric[column] = ((x - mean) / std, mean, std)
        else:
            observed_codes, uniques = pd.factorize(series.to_numpy(dtype=object)[~mask])
            if len(uniques) > _MAX_ONEHOT_CATEGORIES:
                continue
            block = np.zeros((len(series), len(uniques)))
            block[np.flatnonzero(~mask), observed_codes] = 1.0
            block[mask] = np.nan
            onehot[column] = block

    fills: dict[str, np.ndarray[Any, Any]] = {}
    numeric_targets = [
        c
        for c in columns
        if kinds[c] == "numeric" and (onehot or any(other != c for other in numeric))
    ]
    if numeric_targets:
        names = list(numeric)
        matrix = np.column_stack([numeric[c][0] for c in names] + list(onehot.values()))
        imputed = KNNImputer(n_neighbors=k, keep_empty_features=True).fit_transform(matrix)
        for column in numeric_targets:
            _, mean, std = numeric[column]
            fills[column] = imputed[missing[column], names.index(column)] * std + mean

    for column in columns:
        if kinds[column] != "categorical":
            continue
        blocks = [np.nan_to_num(scaled, nan=0.0)[:, None] for scaled, _, _ in numeric.values()]
        blocks += [np.nan_to_num(b, nan=0.0) for c, b in onehot.items() if c != column]
        if not blocks:
            continue
        features = np.hstack(blocks)
        mask = missing[column]
        labels, uniques = pd.factorize(kept[column].to_numpy(dtype=object)[~mask])
        if len(uniques) == 1:
            fills[column] = np.repeat(uniques, int(mask.sum()))
            continue
        model = KNeighborsClassifier(n_neighbors=min(k, int((~mask).sum())))
        model.fit(features[~mask], labels)
        fills[column] = np.asarray(uniques, dtype=object)[model.predict(features[mask])]
    return fills
