"""Behavioural clusters: k-means on the engineered customer features, k chosen by silhouette.

The features are :func:`tailorcast.features.user_features` (RFM, funnel counts, activity,
category shares) of every customer with an event up to ``as_of`` (bots left out). Counts,
money and day spans are heavy-tailed, so they enter as ``log1p``; then every column is
standardised, so that no feature weighs more because of its unit. k-means (scikit-learn)
runs for each k in ``k_range`` and the k with the best silhouette (on a seeded sample, as
the full silhouette is quadratic) wins, unless ``k`` is given. The range starts at 3: with 2,
the silhouette nearly always splits buyers from browsers, which RFM already tells apart.

Each cluster is described by its most distinguishing features: the ones whose cluster mean
lies furthest from the overall mean, in standard deviations of the transformed feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from tailorcast.errors import ConfigError, DataError
from tailorcast.features import select_features, user_features
from tailorcast.marketing._data import AsOf, read_events, read_items, resolve_as_of
from tailorcast.store import Store

__all__ = ["ClusterResult", "cluster_customers", "cluster_features"]

_SILHOUETTE_SAMPLE: Final = 4000
_UNLOGGED_PREFIXES: Final = ("cat_share_", "has_purchased")


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """Clusters of customers.

    Attributes:
        labels: ``user_id`` (pseudonym), ``cluster`` (0..k-1, largest cluster first).
        descriptions: per cluster ``cluster, customers, share, description`` (the top
            distinguishing features in words) and ``distinguishing`` (feature -> z-score).
        profiles: per cluster the median of each raw feature (index ``cluster``).
        k: the number of clusters.
        silhouette: silhouette score per k tried.
        features: the feature columns used.
    """

    labels: pd.DataFrame
    descriptions: pd.DataFrame
    profiles: pd.DataFrame
    k: int
    silhouette: dict[int, float]
    features: list[str]


def cluster_features(store: Store, as_of: AsOf | None = None) -> pd.DataFrame:
    """The raw customer features clusters are built on (index ``user_id``)."""
    cutoff = resolve_as_of(store, as_of)
    events = read_events(store, cutoff)
    if events.empty:
        raise DataError(f"no customer events up to {cutoff.isoformat()} to cluster")
    return user_features(events, read_items(store), as_of=cutoff)


def _transform(raw: pd.DataFrame) -> pd.DataFrame:
    from sklearn.preprocessing import StandardScaler

    logged = raw.copy()
    for column in logged.columns:
        if not str(column).startswith(_UNLOGGED_PREFIXES):
            logged[column] = np.log1p(logged[column].clip(lower=0.0))
    scaled = StandardScaler().fit_transform(logged.to_numpy(dtype=float))
    return pd.DataFrame(scaled, index=raw.index, columns=raw.columns)


def _describe(
    z: pd.DataFrame, labels: np.ndarray[tuple[int], np.dtype[np.int64]], top: int
) -> pd.DataFrame:
    means = z.groupby(labels).mean()  # the overall mean of a standardised column is 0
    rows = []
    for cluster, row in means.iterrows():
        order = row.abs().sort_values(ascending=False).index[:top]
        parts = [f"{'high' if row[c] > 0 else 'low'} {c} ({row[c]:+.1f} sd)" for c in order]
        count = int((labels == cluster).sum())
        rows.append(
            {
                "cluster": int(str(cluster)),
                "customers": count,
                "share": count / len(labels),
                "description": ", ".join(parts),
                "distinguishing": {str(c): round(float(row[c]), 3) for c in order},
            }
        )
    return pd.DataFrame(rows)


def cluster_customers(
    store: Store,
    k: int | None = None,
    seed: int = 2026,
    *,
    as_of: AsOf | None = None,
    k_range: tuple[int, int] = (3, 8),
    top_features: int = 3,
) -> ClusterResult:
    """Cluster the customers with an event up to ``as_of`` by behaviour.

    Args:
        store: an open store.
        k: the number of clusters; None picks the best silhouette in ``k_range``.
        seed: seeds k-means and the silhouette sample (same seed, same clusters).
        as_of: only events up to it (default: the latest event).
        k_range: smallest and largest k tried when ``k`` is None.
        top_features: distinguishing features named per cluster.

    Raises:
        ConfigError: ``k`` below 2, or more clusters than customers.
        DataError: no events.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    raw = cluster_features(store, as_of)
    keep = select_features(raw)
    if not keep:
        raise DataError("every customer feature is constant; nothing to cluster on")
    raw = raw.loc[:, keep]
    n = len(raw)
    low, high = (k, k) if k is not None else k_range
    if low < 2 or high < low:
        raise ConfigError(f"k must be at least 2 (got {low if k is not None else k_range})")
    if low >= n:
        raise ConfigError(f"{low} clusters need more than {n} customers")
    high = min(high, n - 1)
    z = _transform(raw)
    matrix = z.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, min(n, _SILHOUETTE_SAMPLE), replace=False)
    scores: dict[int, float] = {}
    fitted: dict[int, np.ndarray[tuple[int], np.dtype[np.int64]]] = {}
    for candidate in range(low, high + 1):
        model = KMeans(n_clusters=candidate, n_init=4, random_state=seed).fit(matrix)
        labels = np.asarray(model.labels_, dtype=np.int64)
        fitted[candidate] = labels
        if len(np.unique(labels[sample])) > 1:
            scores[candidate] = float(silhouette_score(matrix[sample], labels[sample]))
        else:
            scores[candidate] = -1.0
    best = max(scores, key=lambda c: (scores[c], -c))
    labels = fitted[best]
    # Number clusters by size, largest first, so cluster 0 means the same across seeds.
    sizes = np.bincount(labels, minlength=best)
    rank = np.empty(best, dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(best)
    labels = rank[labels]
    frame = pd.DataFrame({"user_id": raw.index.astype(str), "cluster": labels})
    profiles = raw.groupby(labels).median()
    profiles.index.name = "cluster"
    return ClusterResult(
        labels=frame,
        descriptions=_describe(z, labels, top_features),
        profiles=profiles,
        k=best,
        silhouette=scores,
        features=list(raw.columns),
    )
