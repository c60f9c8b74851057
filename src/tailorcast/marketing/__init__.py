"""Marketing models on the store: RFM segments, behavioural clusters, customer lifetime value
(BG/NBD + Gamma-Gamma) and purchase propensity.

Every function reads the store through :mod:`tailorcast.marketing._data` (bots left out,
outlier amounts replaced by price x quantity, only events up to ``as_of``) and returns
customers by the store's pseudonyms; :func:`with_shop_ids` swaps in the shop's own IDs with
the store's keys.

Example::

    from tailorcast.marketing import fit_clv, rfm_segments
    from tailorcast.store import Store

    with Store.open("tailorcast-store", read_only=True) as store:
        segments = rfm_segments(store)
        clv = fit_clv(store, as_of="2026-06-01").predict(horizon_days=90)
"""

from __future__ import annotations

from tailorcast.marketing._data import with_shop_ids
from tailorcast.marketing.clusters import ClusterResult, cluster_customers
from tailorcast.marketing.clv import (
    BGNBDParams,
    CLVEvaluation,
    CLVModel,
    GammaGammaParams,
    clv_evaluation,
    fit_clv,
)
from tailorcast.marketing.propensity import (
    PropensityModels,
    load_propensity,
    propensity_folder,
    train_propensity,
)
from tailorcast.marketing.rfm import SEGMENTS, rfm_segments

__all__ = [
    "SEGMENTS",
    "BGNBDParams",
    "CLVEvaluation",
    "CLVModel",
    "ClusterResult",
    "GammaGammaParams",
    "PropensityModels",
    "cluster_customers",
    "clv_evaluation",
    "fit_clv",
    "load_propensity",
    "propensity_folder",
    "rfm_segments",
    "train_propensity",
    "with_shop_ids",
]
