"""Recommenders behind one contract (see :mod:`tailorcast.models.base`).

Example::

    from tailorcast.models import make_model, Recommender

    model = make_model("ease").fit(train)
    model.recommend(["u1"], k=10).to_frame()
    model.save("models/ease")
    Recommender.load("models/ease")
"""

from __future__ import annotations

import os

# implicit asks for single-threaded OpenBLAS (its own OpenMP pool does the parallel work).
# This only takes effect when numpy is not loaded yet; the factor models also hold BLAS to
# one thread with threadpoolctl while implicit fits, which works either way.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from tailorcast.models.base import (
    COLD_START_REASON,
    Recommendations,
    Recommender,
    RecommenderConfig,
)
from tailorcast.models.content import ContentConfig, ContentRecommender
from tailorcast.models.ease import EASEConfig, EASERecommender
from tailorcast.models.factorization import (
    ALSConfig,
    ALSRecommender,
    BPRConfig,
    BPRRecommender,
)
from tailorcast.models.hybrid import HybridConfig, HybridRecommender
from tailorcast.models.itemknn import ItemKNNConfig, ItemKNNRecommender
from tailorcast.models.popularity import PopularityConfig, PopularityRecommender
from tailorcast.models.registry import MODELS, make_model
from tailorcast.models.repeat import (
    RepeatConfig,
    RepeatRecommender,
    allows_repurchase,
    repeat_share,
)

__all__ = [
    "COLD_START_REASON",
    "MODELS",
    "ALSConfig",
    "ALSRecommender",
    "BPRConfig",
    "BPRRecommender",
    "ContentConfig",
    "ContentRecommender",
    "EASEConfig",
    "EASERecommender",
    "HybridConfig",
    "HybridRecommender",
    "ItemKNNConfig",
    "ItemKNNRecommender",
    "PopularityConfig",
    "PopularityRecommender",
    "Recommendations",
    "Recommender",
    "RecommenderConfig",
    "RepeatConfig",
    "RepeatRecommender",
    "allows_repurchase",
    "make_model",
    "repeat_share",
]
