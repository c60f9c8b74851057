"""Behavioural clusters on a demo shop: k by silhouette, reproducible, described."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ingest_demo_shop
from tailorcast.errors import ConfigError
from tailorcast.marketing import cluster_customers
from tailorcast.store import Store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_demo_shop(tmp_path_factory.mktemp("cluster-shop"))


def test_clusters_cover_customers_and_are_described(store_dir: Path) -> None:
    with Store.open(store_dir, read_only=True) as store:
        result = cluster_customers(store, seed=3)
        customers = store.con.execute(
            "SELECT count(DISTINCT user_id) FROM events e WHERE NOT EXISTS "
            "(SELECT 1 FROM user_flags f WHERE f.is_bot AND f.user_id = e.user_id)"
        ).fetchall()[0][0]
    assert 3 <= result.k <= 8
    assert result.silhouette[result.k] == max(result.silhouette.values())
    assert len(result.labels) == customers
    assert result.labels["user_id"].is_unique
    assert set(result.labels["cluster"]) == set(range(result.k))
    sizes = result.labels["cluster"].value_counts().sort_index().tolist()
    assert sizes == sorted(sizes, reverse=True)  # cluster 0 is the largest
    d = result.descriptions
    assert d["customers"].sum() == customers and len(d) == result.k
    assert all(len(x) == 3 for x in d["distinguishing"])
    assert all(("sd)" in text) for text in d["description"])
    assert list(result.profiles.columns) == result.features
    # Browsers who never bought stand apart from buyers in some cluster's profile.
    assert result.profiles["has_purchased"].min() < result.profiles["has_purchased"].max()


def test_same_seed_same_clusters_and_fixed_k(store_dir: Path) -> None:
    with Store.open(store_dir, read_only=True) as store:
        first = cluster_customers(store, k=4, seed=9)
        second = cluster_customers(store, k=4, seed=9)
        with pytest.raises(ConfigError):
            cluster_customers(store, k=1)
        with pytest.raises(ConfigError):
            cluster_customers(store, k=100_000)
    assert first.k == 4 and list(first.silhouette) == [4]
    assert first.labels.equals(second.labels)
