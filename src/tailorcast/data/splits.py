"""Train/test splits of an :class:`~tailorcast.data.Interactions` view, reproducible by seed.

Every split returns ``Split(train, test)``: two views over the *same* vocabularies (a test
customer or item is never missing from train's index, it may just have no train events), and
every event goes to at most one side.

The "unseen items" protocol applies to all of them: a test event whose (customer, item) pair
also has an event in train is dropped, so a model is only asked to find items the customer
had not interacted with in training (a customer who viewed an item before the cutoff and
bought it after does not count the purchase as a test hit). Those events are in neither side.

- :func:`split_random`: per customer, a random share of their distinct items (all events of
  a held-out pair go to test, so the answer never leaks through a view of the same item);
- :func:`split_temporal`: one global cut in time;
- :func:`split_last`: per customer, the items they reached last;
- :func:`split_last_session`: per customer, their last session;
- :func:`validation_split`: the same protocol again inside a train view, for tuning.

Example::

    train, test = split_random(inter, test_fraction=0.2, seed=7)
    fit_train, valid = validation_split(train, "random", seed=7)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Split",
    "make_split",
    "split_last",
    "split_last_session",
    "split_random",
    "split_temporal",
    "validation_split",
]

Protocol = Literal["random", "temporal", "last", "last_session"]
PROTOCOLS: Final[tuple[str, ...]] = ("random", "temporal", "last", "last_session")

_DAY_NS: Final = 86_400 * 10**9
_EPOCH: Final = datetime(1970, 1, 1)
Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


class Split(NamedTuple):
    """A train and a test view with identical vocabularies; unpacks as ``train, test``."""

    train: Interactions
    test: Interactions


def split_random(
    inter: Interactions,
    test_fraction: float = 0.2,
    seed: int = 2026,
    min_user_events: int = 2,
) -> Split:
    """Hold out a random ``test_fraction`` of each customer's distinct items.

    A customer with ``n >= min_user_events`` distinct items gets ``round(test_fraction * n)``
    of them in test, at least one, and at least one stays in train when ``n >= 2``; customers
    with fewer items keep everything in train. All events of a held-out (customer, item) pair
    go to test.
    """
    _check_fraction(test_fraction)
    _check_minimum(min_user_events, "min_user_events")
    keys = _pair_keys(inter)
    pairs, inverse = _unique(keys)
    pair_user = pairs // inter.n_items
    per_user = np.bincount(pair_user, minlength=inter.n_users)
    n_test = _n_test(per_user, test_fraction, min_user_events)
    rng = np.random.default_rng(seed)
    rank = _rank_within(pair_user, rng.random(len(pairs)))
    return _finish(inter, (rank < n_test[pair_user])[inverse], inverse)


def split_temporal(
    inter: Interactions, cutoff: datetime | None = None, test_fraction: float = 0.2
) -> Split:
    """Events after ``cutoff`` go to test, the others to train.

    ``cutoff`` (naive = UTC) defaults to the time that leaves about ``test_fraction`` of the
    events after it (fewer when many events share that exact time). Customers whose events all
    come after the cutoff have no train events: they test the cold-start path.

    The train view's ``config.as_of`` is the cutoff, so models that measure time from it
    ("days since the last purchase", trending) see the world as it was at the cut. Event
    weights are not recomputed: a time decay's reference only scales them all alike.
    """
    ts = _timestamps(inter)
    if cutoff is None:
        _check_fraction(test_fraction)
        if len(ts) == 0:
            return _finish(inter, np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))
        k = min(max(int(np.ceil((1.0 - test_fraction) * len(ts))) - 1, 0), len(ts) - 1)
        cut = int(np.partition(ts, k)[k])
    else:
        cut = _ns(cutoff)
    train, test = _finish(inter, ts > cut, _unique(_pair_keys(inter), sort=False)[1])
    as_of = _EPOCH + timedelta(microseconds=cut // 1000)
    if inter.config.as_of is None or as_of < inter.config.as_of:
        train = replace(train, config=train.config.model_copy(update={"as_of": as_of}))
    return Split(train, test)


def split_last(inter: Interactions, test_fraction: float = 0.2, min_user_events: int = 2) -> Split:
    """Per customer, the last ``test_fraction`` of their distinct items go to test.

    Items are ordered by the customer's first interaction with them (ties by item ID order);
    the counts follow :func:`split_random`, and all events of a test pair go to test.
    """
    _check_fraction(test_fraction)
    _check_minimum(min_user_events, "min_user_events")
    keys = _pair_keys(inter)
    pairs, inverse = _unique(keys)
    first = np.full(len(pairs), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, _timestamps(inter))
    pair_user = pairs // inter.n_items
    per_user = np.bincount(pair_user, minlength=inter.n_users)
    n_test = _n_test(per_user, test_fraction, min_user_events)
    rank = _rank_within(pair_user, first)  # pairs are in item order: ties go by item
    test_pair = rank >= (per_user - n_test)[pair_user]
    return _finish(inter, test_pair[inverse], inverse)


def split_last_session(inter: Interactions, min_sessions: int = 2) -> Split:
    """Per customer, the events of their last session go to test.

    Sessions are ``session_id`` values; events without one are grouped by calendar day (UTC).
    The last session is the one with the latest event (ties by session ID order). Customers
    with fewer than ``min_sessions`` sessions keep everything in train.
    """
    _check_minimum(min_sessions, "min_sessions")
    events = inter.events
    ts = _timestamps(inter)
    users = events["user_idx"].to_numpy().astype(np.int64)
    if "session_id" in events.columns:
        codes, uniques = pd.factorize(events["session_id"], sort=True)
        codes = np.asarray(codes, dtype=np.int64)
        n_named = len(uniques)
    else:
        codes, n_named = np.full(len(events), -1, dtype=np.int64), 0
    day = ts // _DAY_NS
    day_code = n_named + day - (day.min() if len(day) else 0)
    session = np.where(codes >= 0, codes, day_code)
    width = int(session.max()) + 1 if len(session) else 1
    sessions, inverse = _unique(users * width + session)
    last = np.full(len(sessions), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inverse, ts)
    session_user = sessions // width
    per_user = np.bincount(session_user, minlength=inter.n_users)
    rank = _rank_within(session_user, last)  # sessions are in ID order: ties go by ID
    is_last = (rank == per_user[session_user] - 1) & (per_user[session_user] >= min_sessions)
    return _finish(inter, is_last[inverse], _unique(_pair_keys(inter), sort=False)[1])


def make_split(
    inter: Interactions, protocol: str = "random", *, seed: int = 2026, **options: Any
) -> Split:
    """Split by protocol name (one of :data:`PROTOCOLS`); ``options`` go to the split function
    (``test_fraction``, ``min_user_events``, ``cutoff``, ``min_sessions``). Only the random
    split uses ``seed``; the others are deterministic."""
    if protocol == "random":
        return split_random(inter, seed=seed, **options)
    if protocol == "temporal":
        return split_temporal(inter, **options)
    if protocol == "last":
        return split_last(inter, **options)
    if protocol == "last_session":
        return split_last_session(inter, **options)
    raise ConfigError(f"unknown split protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def validation_split(
    train: Interactions, protocol: str = "random", seed: int = 2026, **options: Any
) -> Split:
    """The same split applied again inside ``train`` (pass ``split.train``), for tuning
    hyperparameters without ever looking at the test events."""
    return make_split(train, protocol, seed=seed, **options)


# -- helpers ------------------------------------------------------------------------------------
def _check_fraction(value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1 (got {value})")


def _check_minimum(value: int, name: str) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 (got {value})")


def _pair_keys(inter: Interactions) -> Ints:
    """One int64 per event naming its (customer, item) pair; ordered by customer, then item."""
    users = inter.events["user_idx"].to_numpy().astype(np.int64)
    items = inter.events["item_idx"].to_numpy().astype(np.int64)
    keys: Ints = users * inter.n_items + items
    return keys


def _timestamps(inter: Interactions) -> Ints:
    return np.asarray(inter.events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64))


def _ns(value: datetime) -> int:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return int(np.datetime64(value, "ns").astype(np.int64))


def _n_test(per_user: Ints, fraction: float, minimum: int) -> Ints:
    """Test items per customer: round(fraction * n), at least 1, leaving 1 in train if n >= 2."""
    wanted = np.floor(fraction * per_user + 0.5).astype(np.int64)
    n_test = np.minimum(np.maximum(wanted, 1), np.maximum(per_user - 1, 1))
    return np.where(per_user >= minimum, n_test, 0)


def _unique(keys: Ints, *, sort: bool = True) -> tuple[Ints, Ints]:
    """Distinct keys (sorted, with ``sort``) and, per element, the position of its key."""
    codes, uniques = pd.factorize(keys, sort=sort)
    return np.asarray(uniques, dtype=np.int64), np.asarray(codes, dtype=np.int64)


def _rank_within(group: Ints, values: npt.NDArray[Any]) -> Ints:
    """0-based rank of each element inside its group by ascending ``values``; equal values
    rank in the order the elements come in."""
    ranks = pd.Series(values).groupby(group, sort=False).rank(method="first")
    return ranks.to_numpy(np.int64) - 1


def _finish(inter: Interactions, test: Mask, pair: Ints) -> Split:
    """Train = the rest; drop test events of pairs (``pair``: a pair code per event) that the
    customer already has in train."""
    train = ~test
    in_train = np.zeros(int(pair.max()) + 1 if len(pair) else 0, dtype=bool)
    in_train[pair[train]] = True
    test = test & ~in_train[pair]
    return Split(inter.with_events(train), inter.with_events(test))
