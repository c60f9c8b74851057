"""The training view every model reads (:class:`Interactions`) and its train/test splits.

Example::

    from tailorcast.data import Interactions, split_random

    inter = Interactions.from_store(store)
    train, test = split_random(inter, seed=7)
"""

from __future__ import annotations

from tailorcast.data.interactions import Interactions, InteractionsConfig
from tailorcast.data.splits import (
    PROTOCOLS,
    Protocol,
    Split,
    make_split,
    split_last,
    split_last_session,
    split_random,
    split_temporal,
    validation_split,
)

__all__ = [
    "PROTOCOLS",
    "Interactions",
    "InteractionsConfig",
    "Protocol",
    "Split",
    "make_split",
    "split_last",
    "split_last_session",
    "split_random",
    "split_temporal",
    "validation_split",
]
