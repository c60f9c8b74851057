"""Data sets to try tailorcast on: a generated demo shop and the MovieLens 100K loader."""

from __future__ import annotations

from tailorcast.datasets.campaign_response import CampaignResponse, simulate_campaign_response
from tailorcast.datasets.demo_shop import (
    DIRT_KINDS,
    DemoFiles,
    DemoShop,
    DemoTruth,
    demo_shop,
    write_events_csv,
)
from tailorcast.datasets.movielens import MovieLens, load_movielens

__all__ = [
    "DIRT_KINDS",
    "CampaignResponse",
    "DemoFiles",
    "DemoShop",
    "DemoTruth",
    "MovieLens",
    "demo_shop",
    "load_movielens",
    "simulate_campaign_response",
    "write_events_csv",
]
