"""Feature tables for customers and items, built from canonical events and items frames.

``user_features`` gives one row per customer (RFM, funnel counts, activity, category
shares), ``item_features`` one row per item (category one-hot, scaled price, popularity,
TF-IDF tokens of the title and tags), and ``select_features`` prunes a feature table.
Everything is vectorised (groupby, sparse text), so a million events take seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Final

import numpy as np
import pandas as pd

from tailorcast.errors import ConfigError, DataError
from tailorcast.schema import DEFAULT_EVENT_WEIGHTS, EVENT_TYPES, ITEM_ID, USER_ID

__all__ = ["USER_FEATURE_COLUMNS", "item_features", "select_features", "user_features"]

#: Columns of ``user_features`` before the ``cat_share_<category>`` columns.
USER_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "recency_days",
    "has_purchased",
    "frequency",
    "monetary",
    "avg_order_value",
    "n_view",
    "n_favorite",
    "n_cart",
    "n_purchase",
    "n_sessions",
    "days_active",
    "tenure_days",
    "view_to_purchase_rate",
    "avg_basket_size",
)

_DAY: Final = pd.Timedelta(days=1)


def user_features(
    events: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    as_of: datetime | pd.Timestamp | None = None,
    top_categories: int = 10,
) -> pd.DataFrame:
    """One row per customer (index ``user_id``) from the events up to ``as_of``.

    Only events with ``timestamp <= as_of`` count (default: the latest timestamp), and
    only customers with such an event get a row. Columns:

    - ``recency_days``: days from the last purchase to ``as_of``. A customer who never
      bought gets the whole observed window plus one day (``as_of`` minus the first
      event in the data, + 1), longer than any real recency, and ``has_purchased`` = 0.
    - ``has_purchased``: 1 if the customer bought at least once, else 0.
    - ``frequency``: orders, i.e. distinct ``order_id`` of purchase rows; a purchase
      without an order id counts by its ``session_id``, and without either by its day.
    - ``monetary``: sum of purchase ``amount`` (the line total). Where the amount is
      missing and ``items`` has a ``price``, price x quantity is used instead.
    - ``avg_order_value`` = monetary / frequency, ``avg_basket_size`` = units bought /
      frequency (``quantity``, 1 when absent); both 0 without orders.
    - ``n_view``, ``n_favorite``, ``n_cart``, ``n_purchase``: events of each type.
    - ``n_sessions``: distinct ``session_id`` (distinct active days without that column).
    - ``days_active``: distinct calendar days with an event.
    - ``tenure_days``: days from the first event to ``as_of``.
    - ``view_to_purchase_rate`` = n_purchase / n_view, 0 when the customer has no view.
    - ``cat_share_<category>`` (needs ``items`` with ``category``): share of the customer's
      events on items of each of the ``top_categories`` most frequent categories.

    >>> events = pd.DataFrame({
    ...     "user_id": ["u1", "u1"], "item_id": ["i1", "i1"],
    ...     "event_type": ["view", "purchase"],
    ...     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03"]),
    ...     "amount": [float("nan"), 20.0], "quantity": [1, 2], "session_id": ["s1", "s2"]})
    >>> user_features(events, as_of=pd.Timestamp("2024-01-10")).loc["u1", "recency_days"]
    np.float64(7.0)
    """
    _require(events, (USER_ID, "event_type", "timestamp"), source="events")
    if top_categories < 0:
        raise ConfigError(f"top_categories must be >= 0, got {top_categories}")
    timestamps = events["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(timestamps.dtype):
        raise DataError(
            f"expected datetimes, got {timestamps.dtype}", source="events", column="timestamp"
        )
    cutoff = timestamps.max() if as_of is None else _cutoff(as_of, timestamps.dtype)
    if pd.isna(cutoff):
        return _empty_user_features()
    wanted = (USER_ID, ITEM_ID, "event_type", "timestamp", "amount", "quantity", "session_id")
    needed = [c for c in (*wanted, "order_id") if c in events.columns]
    # A fresh RangeIndex keeps the index-aligned groupbys below safe from repeated labels.
    ev = events.loc[timestamps <= cutoff, needed].reset_index(drop=True)
    if ev.empty:
        return _empty_user_features()

    by_user = ev.groupby(USER_ID, sort=True, observed=True)
    first_seen = by_user["timestamp"].min()
    users = first_seen.index
    day = ev["timestamp"].dt.normalize()
    out = pd.DataFrame(index=users)

    counts = (
        ev.groupby([USER_ID, "event_type"], observed=True)
        .size()
        .unstack(fill_value=0)
        .reindex(index=users, columns=list(EVENT_TYPES), fill_value=0)
        .astype(np.int64)
    )

    is_purchase = ev["event_type"].eq("purchase").to_numpy(dtype=bool, na_value=False)
    purchases = ev.loc[is_purchase]
    last_purchase = purchases.groupby(USER_ID, observed=True)["timestamp"].max().reindex(users)
    window_days = (cutoff - ev["timestamp"].min()) / _DAY
    recency = _days(cutoff - last_purchase)
    out["recency_days"] = recency.fillna(window_days + 1.0).astype(float)
    out["has_purchased"] = last_purchase.notna().astype(np.int64)

    orders = _order_counts(purchases, day[is_purchase]).reindex(users, fill_value=0)
    out["frequency"] = orders.astype(np.int64)
    units = _quantity(purchases).groupby(purchases[USER_ID], observed=True).sum()
    line_value = _line_value(purchases, items)
    monetary = line_value.groupby(purchases[USER_ID], observed=True).sum()
    out["monetary"] = monetary.reindex(users, fill_value=0.0).astype(float)
    out["avg_order_value"] = _ratio(out["monetary"], orders)

    for event_type in EVENT_TYPES:
        out[f"n_{event_type}"] = counts[event_type]
    if "session_id" in ev.columns:
        sessions = by_user["session_id"].nunique()
    else:
        sessions = day.groupby(ev[USER_ID], observed=True).nunique()
    out["n_sessions"] = sessions.reindex(users, fill_value=0).astype(np.int64)
    out["days_active"] = day.groupby(ev[USER_ID], observed=True).nunique().astype(np.int64)
    out["tenure_days"] = _days(cutoff - first_seen)
    out["view_to_purchase_rate"] = _ratio(counts["purchase"], counts["view"])
    out["avg_basket_size"] = _ratio(units.reindex(users, fill_value=0.0), orders)

    if items is not None and top_categories > 0 and ITEM_ID in ev.columns:
        shares = _category_shares(ev, items, users, top_categories)
        out = pd.concat([out, shares], axis=1)
    out.index.name = USER_ID
    return out


def item_features(
    items: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    text_columns: Sequence[str] = ("title", "tags"),
    max_tokens: int = 200,
) -> pd.DataFrame:
    """One row per item (index ``item_id``; the last row wins for a repeated id).

    Columns, each group only when its input exists:

    - ``cat_<category>``: one-hot of ``category`` (a missing category is all zeros).
    - ``price_scaled``: ``log1p(price)`` (negative prices count as 0, missing ones as the
      median), centred on the median and divided by the interquartile range.
    - ``tok_<token>``: TF-IDF weights of the ``max_tokens`` most frequent tokens of the
      ``text_columns`` present (list-valued tags are joined).
    - ``pop_<event_type>`` and ``popularity`` (with ``events``): events per type, and their
      sum weighted by :data:`tailorcast.schema.DEFAULT_EVENT_WEIGHTS`.

    >>> items = pd.DataFrame({"item_id": ["a", "b"], "category": ["shoes", "hats"],
    ...                       "price": [10.0, 30.0]})
    >>> list(item_features(items).columns)
    ['cat_hats', 'cat_shoes', 'price_scaled']
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler

    _require(items, (ITEM_ID,), source="items")
    if max_tokens < 1:
        raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
    table = items.drop_duplicates(ITEM_ID, keep="last")
    index = pd.Index(table[ITEM_ID], name=ITEM_ID)
    inputs: dict[str, pd.Series] = {}
    transformers: list[tuple[str, Any, Any]] = []

    if "category" in table.columns:
        category = table["category"].to_numpy(dtype=object)
        present = ~pd.isna(category)
        labels = np.full(len(table), "\0missing", dtype=object)
        labels[present] = [str(c) for c in category[present]]
        known = sorted(set(labels[present]))
        if known:
            inputs["category"] = pd.Series(labels, dtype=object)
            encoder = OneHotEncoder(
                categories=[known],
                handle_unknown="ignore",
                sparse_output=False,
                feature_name_combiner=_category_name,
            )
            transformers.append(("cat", encoder, ["category"]))

    if "price" in table.columns:
        if not pd.api.types.is_numeric_dtype(table["price"].dtype):
            raise DataError(f"expected numbers, got {table['price'].dtype}", source="items")
        price = table["price"].to_numpy(dtype=float, na_value=np.nan)
        if np.isfinite(price).any():
            inputs["price"] = pd.Series(price)
            pipeline = Pipeline(
                [
                    ("fill", SimpleImputer(strategy="median")),
                    ("log", FunctionTransformer(_log1p_price, feature_names_out=_price_name)),
                    ("scale", RobustScaler()),
                ]
            )
            transformers.append(("price", pipeline, ["price"]))

    texts = [table[c] for c in text_columns if c in table.columns]
    if texts:
        documents = [" ".join(parts) for parts in zip(*(_texts(s) for s in texts), strict=True)]
        vectorizer = TfidfVectorizer(max_features=max_tokens)
        analyze = vectorizer.build_analyzer()
        # An empty vocabulary makes TfidfVectorizer raise; skip the text block instead.
        if any(analyze(doc) for doc in documents):
            inputs["text"] = pd.Series(documents, dtype=object)
            transformers.append(("tok", vectorizer, "text"))

    out = pd.DataFrame(index=index)
    if transformers and len(table):
        frame = pd.DataFrame(inputs)
        transformer = ColumnTransformer(transformers, sparse_threshold=0.0)
        matrix = np.asarray(transformer.fit_transform(frame), dtype=float)
        names = [_rename(str(n)) for n in transformer.get_feature_names_out()]
        out = pd.DataFrame(matrix, index=index, columns=names)

    if events is not None:
        _require(events, (ITEM_ID, "event_type"), source="events")
        counts = (
            events.loc[events[ITEM_ID].isin(index), [ITEM_ID, "event_type"]]
            .groupby([ITEM_ID, "event_type"], observed=True)
            .size()
            .unstack(fill_value=0)
            .reindex(index=index, columns=list(EVENT_TYPES), fill_value=0)
            .astype(np.int64)
        )
        weights = np.array([DEFAULT_EVENT_WEIGHTS[t] for t in EVENT_TYPES])
        for event_type in EVENT_TYPES:
            out[f"pop_{event_type}"] = counts[event_type].to_numpy()
        out["popularity"] = counts.to_numpy(dtype=float) @ weights
    return out


def select_features(
    features: pd.DataFrame,
    target: pd.Series | None = None,
    *,
    k: int | None = None,
    min_variance: float = 0.0,
) -> list[str]:
    """Names of the columns worth keeping, in their original order.

    Columns whose variance is not above ``min_variance`` go first (with 0, the constant
    ones). With a ``target`` and ``k``, the ``k`` columns with the highest mutual
    information with the target stay: ``mutual_info_classif`` for a binary or
    non-numeric target, ``mutual_info_regression`` for any other numeric one. The target
    is aligned on the features' index. A ``target`` without ``k`` only checks variance.

    >>> frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 1.0]})
    >>> select_features(frame)
    ['a']
    """
    from sklearn.feature_selection import (
        SelectKBest,
        VarianceThreshold,
        mutual_info_classif,
        mutual_info_regression,
    )

    if min_variance < 0:
        raise ConfigError(f"min_variance must be >= 0, got {min_variance}")
    if k is not None and k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if k is not None and target is None:
        raise ConfigError("k needs a target to rank features against")
    for column in features.columns:
        dtype = features[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype):
            raise DataError(f"expected numbers, got {dtype}", source="features", column=column)
    if features.shape[0] == 0 or features.shape[1] == 0:
        return []
    matrix = features.to_numpy(dtype=float, na_value=np.nan)
    variance = VarianceThreshold(threshold=min_variance)
    try:
        variance.fit(matrix)
    except ValueError as exc:
        if "No feature in X meets the variance threshold" in str(exc):
            return []
        raise
    keep = variance.get_support()
    if target is None or k is None:
        return [str(c) for c, kept in zip(features.columns, keep, strict=True) if kept]

    y = _aligned_target(features.index, target)
    subset = matrix[:, keep]
    if np.isnan(subset).any():
        raise DataError("missing values in the features; impute them first", source="features")
    binary = y.nunique(dropna=True) <= 2
    if binary or not pd.api.types.is_numeric_dtype(y.dtype):
        codes, _ = pd.factorize(y)
        score: Any = partial(mutual_info_classif, random_state=0)
        labels: np.ndarray[Any, Any] = codes
    else:
        score = partial(mutual_info_regression, random_state=0)
        labels = y.to_numpy(dtype=float)
    selector = SelectKBest(score_func=score, k=min(k, subset.shape[1]))
    selector.fit(subset, labels)
    chosen = iter(selector.get_support())
    return [str(c) for c, kept in zip(features.columns, keep, strict=True) if kept and next(chosen)]


def _require(frame: pd.DataFrame, columns: Iterable[str], *, source: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError("required column not found", source=source, column=column)


def _cutoff(as_of: datetime | pd.Timestamp, dtype: Any) -> pd.Timestamp:
    """``as_of`` made comparable with the timestamp column (naive UTC unless it has a tz)."""
    cutoff = pd.Timestamp(as_of)
    column_tz = getattr(dtype, "tz", None)
    if column_tz is None and cutoff.tzinfo is not None:
        return cutoff.tz_convert("UTC").tz_localize(None)
    if column_tz is not None and cutoff.tzinfo is None:
        return cutoff.tz_localize("UTC")
    return cutoff


def _days(delta: Any) -> pd.Series:
    """A timedelta Series in (fractional) days."""
    return pd.Series(delta / _DAY, dtype=float)


def _empty_user_features() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype=float) for c in USER_FEATURE_COLUMNS})
    out.index.name = USER_ID
    return out


def _order_counts(purchases: pd.DataFrame, day: pd.Series) -> pd.Series:
    """Orders per customer: order id, else session id, else the day of the purchase."""
    total = pd.Series(0, index=pd.Index([], name=USER_ID), dtype=np.int64)
    remaining = np.ones(len(purchases), dtype=bool)
    keys: list[pd.Series] = [purchases[c] for c in ("order_id", "session_id") if c in purchases]
    for key in [*keys, day]:
        usable = remaining & key.notna().to_numpy(dtype=bool)
        counted = key[usable].groupby(purchases[USER_ID][usable], observed=True).nunique()
        total = total.add(counted, fill_value=0)
        remaining &= ~usable
    return total.astype(np.int64)


def _quantity(purchases: pd.DataFrame) -> pd.Series:
    if "quantity" not in purchases.columns:
        return pd.Series(1.0, index=purchases.index)
    return purchases["quantity"].astype(float).fillna(1.0)


def _line_value(purchases: pd.DataFrame, items: pd.DataFrame | None) -> pd.Series:
    """The money of each purchase row: its amount, else item price x quantity."""
    if "amount" in purchases.columns:
        value = purchases["amount"].astype(float)
    else:
        value = pd.Series(np.nan, index=purchases.index)
    usable = items is not None and {ITEM_ID, "price"} <= set(items.columns)
    if usable and items is not None and ITEM_ID in purchases.columns and value.isna().any():
        price = items.drop_duplicates(ITEM_ID, keep="last").set_index(ITEM_ID)["price"]
        estimate = purchases[ITEM_ID].map(price).astype(float) * _quantity(purchases)
        value = value.fillna(estimate)
    return value


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, 0 where the denominator is 0."""
    num = numerator.to_numpy(dtype=float)
    den = denominator.reindex(numerator.index).to_numpy(dtype=float)
    result = np.zeros(len(num))
    np.divide(num, den, out=result, where=den > 0)
    return pd.Series(result, index=numerator.index)


def _category_shares(
    ev: pd.DataFrame, items: pd.DataFrame, users: pd.Index, top: int
) -> pd.DataFrame:
    _require(items, (ITEM_ID, "category"), source="items")
    category_of = items.drop_duplicates(ITEM_ID, keep="last").set_index(ITEM_ID)["category"]
    category = ev[ITEM_ID].map(category_of).to_numpy(dtype=object)
    known = ~pd.isna(category)
    labels = pd.Series([str(c) for c in category[known]], dtype=object)
    counts = labels.value_counts()
    # Most frequent first; ties in name order so the columns do not depend on row order.
    ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    chosen = [str(name) for name, _ in ranked[:top]]
    selected = labels.isin(chosen).to_numpy(dtype=bool)
    pairs = pd.DataFrame(
        {
            USER_ID: ev[USER_ID].to_numpy()[known][selected],
            "category": labels.to_numpy()[selected],
        }
    )
    per_user = (
        pairs.groupby([USER_ID, "category"], observed=True)
        .size()
        .unstack(fill_value=0)
        .reindex(index=users, columns=chosen, fill_value=0)
    )
    totals = ev.groupby(USER_ID, observed=True).size().reindex(users).to_numpy(dtype=float)
    shares = per_user.to_numpy(dtype=float) / totals[:, None]
    return pd.DataFrame(shares, index=users, columns=[f"cat_share_{c}" for c in chosen])


def _category_name(_feature: str, category: object) -> str:
    return f"cat_{category}"


def _log1p_price(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    logged: np.ndarray[Any, Any] = np.log1p(np.clip(np.asarray(x, dtype=float), 0.0, None))
    return logged


def _price_name(_transformer: object, _names: object) -> list[str]:
    return ["price_scaled"]


def _rename(name: str) -> str:
    """ColumnTransformer's ``block__feature`` -> ``cat_x`` / ``price_scaled`` / ``tok_x``."""
    block, _, feature = name.partition("__")
    return f"tok_{feature}" if block == "tok" else feature


def _texts(series: pd.Series) -> list[str]:
    """One string per row; list-like values (tags) are joined, missing ones are empty."""
    out: list[str] = []
    for value in series.to_numpy(dtype=object):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list | tuple | set | np.ndarray):
            out.append(" ".join(str(v) for v in value))
        elif value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            out.append("")
        else:
            out.append(str(value))
    return out


def _aligned_target(index: pd.Index, target: pd.Series) -> pd.Series:
    if target.index.equals(index):
        aligned = target
    elif set(index) <= set(target.index) and target.index.is_unique:
        aligned = target.reindex(index)
    else:
        raise DataError("the target must have a value for every row of the features (by index)")
    if aligned.isna().any():
        raise DataError("the target has missing values")
    return aligned
