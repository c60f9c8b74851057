"""Treated-vs-control differences with normal-approximation confidence intervals.

Lift is the treated minus control difference, with a normal-approximation (Wald /
Welch) confidence interval: for a rate the two-proportion interval, for money per member the
difference of means with unequal variances. Customers are independent units and audiences
are at least 50 customers, so the normal approximation is adequate; with very few
conversions the interval is too narrow, which :class:`CampaignMeasurement` reports as a note.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["CampaignMeasurement", "Lift", "mean_lift", "proportion_lift"]


@dataclass(frozen=True)
class Lift:
    """Treated minus control, with its interval and two-sided p-value."""

    treated: float
    control: float
    difference: float
    low: float
    high: float
    p_value: float
    relative: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CampaignMeasurement:
    """Outcome of a campaign over ``window_days`` after the send date."""

    name: str
    send_date: str
    window_end: str
    complete: bool
    n_treated: int
    n_control: int
    conversion: Lift
    revenue_per_member: Lift
    offer_conversion: Lift
    incremental_revenue: float
    confidence: float
    method: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def proportion_lift(success: np.ndarray[Any, Any], treated: np.ndarray[Any, Any], z: float) -> Lift:
    a, b = success[treated].astype(float), success[~treated].astype(float)
    pt, pc = float(a.mean()), float(b.mean())
    se = float(np.sqrt(pt * (1 - pt) / len(a) + pc * (1 - pc) / len(b)))
    return _lift(pt, pc, se, z)


def mean_lift(values: np.ndarray[Any, Any], treated: np.ndarray[Any, Any], z: float) -> Lift:
    a, b = values[treated], values[~treated]
    va = float(a.var(ddof=1)) if len(a) > 1 else 0.0
    vb = float(b.var(ddof=1)) if len(b) > 1 else 0.0
    se = float(np.sqrt(va / len(a) + vb / len(b)))
    return _lift(float(a.mean()), float(b.mean()), se, z)


def _lift(treated: float, control: float, se: float, z: float) -> Lift:
    diff = treated - control
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return Lift(
        treated=treated,
        control=control,
        difference=diff,
        low=diff - z * se,
        high=diff + z * se,
        p_value=p,
        relative=diff / control if control > 0 else None,
    )
