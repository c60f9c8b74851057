"""Customer lifetime value: BG/NBD for how often a customer buys, Gamma-Gamma for how much.

Both models are the ones of Fader, Hardie and Lee ("Counting your customers the easy way",
2005; "RFM and CLV: using iso-value curves", 2005). The likelihoods are written here with
``scipy.special`` and fitted by maximum likelihood with ``scipy.optimize`` on the logarithms
of the parameters (so they stay positive without constraints). Why by hand: ``lifetimes``,
the library that implemented them, is unmaintained (no release since 2020, broken on current
pandas/scipy), and its successor (PyMC-Marketing) pulls in PyMC and a compiler toolchain for
what are four and three parameter likelihoods of a few lines each.

The unit of time is the day; a *transaction* is a day with at least one order (several
orders on one day are one visit of the buying process, as the models assume). Per customer
with an order up to ``as_of``: ``x`` = repeat transactions (after the first), ``t_x`` = days
from the first to the last transaction, ``T`` = days from the first transaction to
``as_of``, ``m`` = the mean value of the repeat transactions (Gamma-Gamma leaves the first
one out, as in the paper).

Example::

    model = fit_clv(store, as_of="2026-06-01")
    table = model.predict(horizon_days=90)   # user_id, expected_purchases, expected_spend, p_alive
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import optimize, special

from tailorcast.errors import ConfigError, DataError
from tailorcast.marketing._data import DAY, AsOf, read_orders, resolve_as_of, to_timestamp
from tailorcast.store import Store

__all__ = [
    "CLV_COLUMNS",
    "BGNBDParams",
    "CLVEvaluation",
    "CLVModel",
    "GammaGammaParams",
    "bgnbd_expected_purchases",
    "bgnbd_log_likelihood",
    "bgnbd_p_alive",
    "clv_evaluation",
    "clv_summary",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "gamma_gamma_mean",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
]

_SECONDS_PER_DAY: Final = 86_400.0
CLV_COLUMNS: Final = ("user_id", "expected_purchases", "expected_spend", "p_alive")
Floats = np.ndarray[tuple[int], np.dtype[np.float64]]


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD: purchase rates ~ Gamma(shape ``r``, rate ``alpha``), dropout probability after
    each purchase ~ Beta(``a``, ``b``). ``alpha`` is in days."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: a transaction's value ~ Gamma(shape ``p``, rate ``nu``), the customer's
    ``nu`` ~ Gamma(shape ``q``, rate ``gamma``); mean value of a customer p*nu^-1."""

    p: float
    q: float
    gamma: float


def _arrays(*values: Any) -> list[Floats]:
    return [np.asarray(v, dtype=float) for v in values]


def bgnbd_log_likelihood(params: BGNBDParams, x: Any, t_x: Any, T: Any) -> Floats:
    """Log-likelihood of each customer's (x, t_x, T) under BG/NBD (equation 6 of the paper).

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))
    """
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    alive = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    # B(a+1, b+x-1) is undefined for x = 0 (b-1 may be <= 0); that term is absent there.
    dropped = np.where(
        repeat,
        special.betaln(a + 1, np.where(repeat, b + x - 1, 1.0))
        - special.betaln(a, b)
        - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    out: Floats = common + np.logaddexp(alive, dropped)
    return out


def bgnbd_p_alive(params: BGNBDParams, x: Any, t_x: Any, T: Any) -> Floats:
    """P(the customer is still active at T | x, t_x, T); 1 without a repeat purchase."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    log_odds = np.where(
        repeat,
        np.log(a)
        - np.log(np.where(repeat, b + x - 1, 1.0))
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
        -np.inf,
    )
    out: Floats = np.exp(-np.logaddexp(0.0, log_odds))
    return out


def bgnbd_expected_purchases(params: BGNBDParams, t: float, x: Any, t_x: Any, T: Any) -> Floats:
    """E[transactions in (T, T+t] | x, t_x, T] (equation 10 of the paper)."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < 1e-9:  # the closed form divides by a - 1; step off the removable point
        a = 1.0 + 1e-9
    z = t / (alpha + T + t)
    ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    hyper = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1.0 - ratio * hyper)
    out: Floats = numerator * bgnbd_p_alive(params, x, t_x, T)
    return np.maximum(out, 0.0)


def gamma_gamma_log_likelihood(params: GammaGammaParams, x: Any, m: Any) -> Floats:
    """Log-likelihood of each customer's mean value ``m`` over ``x`` >= 1 transactions.

    L = G(px+q) / (G(px) G(q)) * gamma^q * m^(px-1) * x^(px) / (gamma + m x)^(px+q)
    """
    x, m = _arrays(x, m)
    p, q, g = params.p, params.q, params.gamma
    px = p * x
    out: Floats = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + m * x)
    )
    return out


def gamma_gamma_mean(params: GammaGammaParams, x: Any, m: Any) -> Floats:
    """E[a customer's mean transaction value | x, m]: a weighted mean of the population mean
    and the customer's own ``m``. Customers with x = 0 get the population mean."""
    x, m = _arrays(x, m)
    p, q, g = params.p, params.q, params.gamma
    if q <= 1.0:
        raise DataError("the Gamma-Gamma fit has an infinite mean value (q <= 1)")
    population = p * g / (q - 1.0)
    own = np.where(x > 0, m, 0.0)
    out: Floats = np.where(x > 0, (g + own * x) * p / (p * x + q - 1.0), population)
    return out


def _maximize(neg_ll: Any, start: Floats, *, what: str) -> tuple[Floats, float]:
    """Minimize ``neg_ll`` over log-parameters: L-BFGS-B, Nelder-Mead if that fails."""
    bounds = [(-15.0, 15.0)] * len(start)
    best = optimize.minimize(neg_ll, start, method="L-BFGS-B", bounds=bounds)
    if not best.success or not np.isfinite(best.fun):
        alt = optimize.minimize(
            neg_ll, start, method="Nelder-Mead", options={"maxiter": 5000, "xatol": 1e-6}
        )
        if np.isfinite(alt.fun) and (not np.isfinite(best.fun) or alt.fun < best.fun):
            best = alt
    if not np.isfinite(best.fun):
        raise DataError(f"the {what} fit did not converge (non-finite likelihood)")
    return np.asarray(best.x, dtype=float), float(-best.fun)


def fit_bgnbd(x: Any, t_x: Any, T: Any, *, penalizer: float = 0.0) -> tuple[BGNBDParams, float]:
    """Maximum-likelihood BG/NBD parameters and the log-likelihood reached.

    ``penalizer`` adds ``penalizer * sum(params**2)`` to the negative log-likelihood, which
    keeps ``a`` and ``b`` finite on data with almost no dropout.
    """
    x, t_x, T = _arrays(x, t_x, T)
    if len(x) == 0:
        raise DataError("no customers with purchases to fit BG/NBD on")
    rate = max(float(x.sum() / max(T.sum(), 1e-9)), 1e-6)
    start = np.log(np.array([1.0, 1.0 / rate, 1.0, 3.0]))

    def neg_ll(theta: Floats) -> float:
        r, alpha, a, b = np.exp(theta)
        ll = bgnbd_log_likelihood(BGNBDParams(r, alpha, a, b), x, t_x, T).sum()
        penalty = penalizer * float(np.sum(np.exp(theta) ** 2))
        value = -float(ll) + penalty
        return value if np.isfinite(value) else 1e300

    theta, ll = _maximize(neg_ll, start, what="BG/NBD")
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BGNBDParams(r, alpha, a, b), ll


def fit_gamma_gamma(x: Any, m: Any, *, penalizer: float = 0.0) -> tuple[GammaGammaParams, float]:
    """Maximum-likelihood Gamma-Gamma parameters on customers with x >= 1 and m > 0."""
    x, m = _arrays(x, m)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if len(x) < 2:
        raise DataError("fewer than 2 customers with repeat purchases to fit Gamma-Gamma on")
    mean = float(m.mean())
    # p = 2, q = 3 and gamma = the mean start at a population mean p*gamma/(q-1) = the data's.
    start = np.log(np.array([2.0, 3.0, mean]))

    def neg_ll(theta: Floats) -> float:
        p, q, g = np.exp(theta)
        ll = gamma_gamma_log_likelihood(GammaGammaParams(p, q, g), x, m).sum()
        value = -float(ll) + penalizer * float(np.sum(np.exp(theta) ** 2))
        return value if np.isfinite(value) else 1e300

    theta, ll = _maximize(neg_ll, start, what="Gamma-Gamma")
    p, q, g = (float(v) for v in np.exp(theta))
    return GammaGammaParams(p, q, g), ll


def clv_summary(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer ``x, t_x, T, m`` (and ``first_value``) from orders up to ``as_of``.

    Index ``user_id``. Orders of one calendar day are one transaction (values summed).
    """
    if orders.empty:
        empty = pd.DataFrame(columns=["x", "t_x", "T", "m", "first_value"], dtype=float)
        empty.index.name = "user_id"
        return empty
    daily = (
        orders.assign(day=orders["timestamp"].dt.normalize())
        .groupby(["user_id", "day"], observed=True, sort=True)["value"]
        .sum()
        .reset_index()
    )
    grouped = daily.groupby("user_id", observed=True, sort=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    count = grouped.size()
    total = grouped["value"].sum()
    first_value = grouped["value"].first()
    x = (count - 1).astype(float)
    repeat_total = total - first_value
    m = np.where(x > 0, repeat_total / x.where(x > 0, 1.0), 0.0)
    out = pd.DataFrame(
        {
            "x": x,
            "t_x": (last - first).dt.total_seconds() / _SECONDS_PER_DAY,
            "T": (as_of - first).dt.total_seconds() / _SECONDS_PER_DAY,
            "m": m,
            "first_value": first_value.astype(float),
        }
    )
    out.index = out.index.astype(str)
    out.index.name = "user_id"
    return out


@dataclass(frozen=True, eq=False)
class CLVModel:
    """A fitted BG/NBD + Gamma-Gamma pair and the customers it was fitted on.

    Attributes:
        as_of: the end of the data used.
        bgnbd, gamma_gamma: the fitted parameters.
        summary: per customer ``x, t_x, T, m`` (index ``user_id``, pseudonyms).
        log_likelihood: of each fit, at its optimum.
    """

    as_of: pd.Timestamp
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    summary: pd.DataFrame
    log_likelihood: dict[str, float] = field(default_factory=dict)

    def predict(self, horizon_days: float) -> pd.DataFrame:
        """Expected transactions and spend over the next ``horizon_days`` after ``as_of``.

        Returns:
            ``user_id, expected_purchases, expected_spend, p_alive`` for every customer with
            an order up to ``as_of``, sorted by ``user_id``. ``expected_spend`` =
            expected purchases x the Gamma-Gamma expected value of a purchase (undiscounted).
        """
        if not horizon_days > 0:
            raise ConfigError(f"the horizon must be a positive number of days, got {horizon_days}")
        s = self.summary
        x, t_x, T, m = (s[c].to_numpy(dtype=float) for c in ("x", "t_x", "T", "m"))
        purchases = bgnbd_expected_purchases(self.bgnbd, float(horizon_days), x, t_x, T)
        value = gamma_gamma_mean(self.gamma_gamma, x, m)
        return pd.DataFrame(
            {
                "user_id": s.index.to_numpy(dtype=object),
                "expected_purchases": purchases,
                "expected_spend": purchases * value,
                "p_alive": bgnbd_p_alive(self.bgnbd, x, t_x, T),
            }
        )

    def parameters(self) -> dict[str, Any]:
        """The fitted parameters and likelihoods as plain JSON-ready values."""
        return {
            "as_of": self.as_of.isoformat(),
            "customers": len(self.summary),
            "bgnbd": vars(self.bgnbd).copy(),
            "gamma_gamma": vars(self.gamma_gamma).copy(),
            "log_likelihood": dict(self.log_likelihood),
        }


def fit_clv(store: Store, as_of: AsOf | None, *, penalizer: float = 0.0) -> CLVModel:
    """Fit BG/NBD and Gamma-Gamma on the orders up to ``as_of`` (None: the latest event).

    Raises:
        DataError: no customers with orders, or too few repeat buyers for Gamma-Gamma.
    """
    cutoff = resolve_as_of(store, as_of)
    summary = clv_summary(read_orders(store, cutoff), cutoff)
    if summary.empty:
        raise DataError(f"no orders up to {cutoff.isoformat()} to fit lifetime value on")
    x, t_x, T, m = (summary[c].to_numpy(dtype=float) for c in ("x", "t_x", "T", "m"))
    bgnbd, ll_bg = fit_bgnbd(x, t_x, T, penalizer=penalizer)
    gg, ll_gg = fit_gamma_gamma(x, m, penalizer=penalizer)
    return CLVModel(cutoff, bgnbd, gg, summary, {"bgnbd": ll_bg, "gamma_gamma": ll_gg})


@dataclass(frozen=True, eq=False)
class CLVEvaluation:
    """Calibration/holdout check of :func:`fit_clv` against the naive run-rate baseline.

    ``customers`` holds per customer ``actual`` (transactions in the holdout), ``predicted``
    (BG/NBD), ``naive`` (x / T x holdout days) and the calibration ``x`` and ``T``;
    ``figures`` the summary numbers.
    """

    customers: pd.DataFrame
    figures: dict[str, Any]


def _scores(actual: Floats, predicted: Floats) -> dict[str, float]:
    corr = float(np.corrcoef(actual, predicted)[0, 1]) if np.std(predicted) > 0 else 0.0
    return {
        "mae": float(np.mean(np.abs(actual - predicted))),
        "rmse": float(np.sqrt(np.mean((actual - predicted) ** 2))),
        "correlation": corr,
        "predicted_total": float(predicted.sum()),
        "actual_total": float(actual.sum()),
    }


def clv_evaluation(
    store: Store, calibration_end: AsOf, holdout_end: AsOf, *, penalizer: float = 0.0
) -> CLVEvaluation:
    """Fit on orders up to ``calibration_end``; compare with transactions in the holdout.

    For every customer with an order in the calibration period: the expected repeat
    transactions (days with an order) in ``(calibration_end, holdout_end]`` from BG/NBD, the
    naive baseline (the customer's calibration rate of repeat transactions per day since
    the first one, ``x / T``, times the holdout length) and what happened. Figures: MAE,
    RMSE and correlation per customer, predicted and actual totals, and the MAE reduction
    of the model against the baseline (``1 - mae_model / mae_naive``).
    """
    start, end = to_timestamp(calibration_end), to_timestamp(holdout_end, what="holdout_end")
    if end <= start:
        raise ConfigError("the holdout must end after the calibration period")
    model = fit_clv(store, start, penalizer=penalizer)
    horizon = float((end - start) / DAY)
    predicted = model.predict(horizon).set_index("user_id")
    holdout = read_orders(store, end, since=start)
    days = holdout.assign(day=holdout["timestamp"].dt.normalize()).drop_duplicates(
        ["user_id", "day"]
    )
    actual = days.groupby("user_id").size().reindex(model.summary.index, fill_value=0)
    s = model.summary
    naive = s["x"] / s["T"].clip(lower=1.0) * horizon
    frame = pd.DataFrame(
        {
            "actual": actual.to_numpy(dtype=float),
            "predicted": predicted["expected_purchases"].reindex(s.index).to_numpy(dtype=float),
            "naive": naive.to_numpy(dtype=float),
            "x": s["x"].to_numpy(dtype=float),
            "T": s["T"].to_numpy(dtype=float),
        },
        index=s.index,
    )
    a = frame["actual"].to_numpy(dtype=float)
    bg, nv = _scores(a, frame["predicted"].to_numpy()), _scores(a, frame["naive"].to_numpy())
    figures = {
        "calibration_end": start.isoformat(),
        "holdout_end": end.isoformat(),
        "holdout_days": horizon,
        "customers": len(frame),
        "parameters": model.parameters(),
        "bgnbd": bg,
        "naive": nv,
        "mae_reduction": 1.0 - bg["mae"] / nv["mae"] if nv["mae"] > 0 else 0.0,
    }
    return CLVEvaluation(frame, figures)


def simulate_bgnbd(
    params: BGNBDParams, T: Any, rng: np.random.Generator
) -> tuple[Floats, Floats, Floats]:
    """Draw (x, t_x, T) for customers observed for ``T`` days after their first purchase.

    Each customer's rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b); they would make
    Geometric(p) repeat purchases before dropping out, and make Poisson(rate T) in [0, T]
    while alive. Given n purchases in [0, T], the k-th falls at T x Beta(k, n - k + 1).
    """
    T = np.asarray(T, dtype=float)
    n = len(T)
    rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    lifetime_purchases = rng.geometric(p)
    in_window = rng.poisson(rate * T)
    x = np.minimum(in_window, lifetime_purchases)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(in_window - x + 1, 1)), 0.0)
    return x.astype(float), t_x, T


def simulate_gamma_gamma(params: GammaGammaParams, x: Any, rng: np.random.Generator) -> Floats:
    """Mean value of ``x`` transactions per customer: nu ~ Gamma(q, gamma); the mean of x
    Gamma(p, nu) values is Gamma(p x, nu x)."""
    x = np.asarray(x, dtype=float)
    nu = rng.gamma(params.q, 1.0 / params.gamma, len(x))
    shape = params.p * np.maximum(x, 1.0)
    out: Floats = rng.gamma(shape, 1.0 / (nu * np.maximum(x, 1.0)))
    return out
