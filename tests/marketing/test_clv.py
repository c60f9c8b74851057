"""BG/NBD and Gamma-Gamma: likelihoods against hand-computed values, parameter recovery on
data simulated from the models, predictions against simulated futures, and the store path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.cli.ingest_cmd import run_ingest
from tailorcast.datasets import demo_shop
from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import IngestConfig
from tailorcast.marketing import BGNBDParams, GammaGammaParams, clv_evaluation, fit_clv
from tailorcast.marketing.clv import (
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    gamma_gamma_mean,
    simulate_bgnbd,
    simulate_gamma_gamma,
)
from tailorcast.store import Store


def _bgnbd_by_hand(
    r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float
) -> float:
    """Equation 6 of Fader, Hardie & Lee (2005), term by term with math.gamma."""
    beta = math.gamma(a) * math.gamma(b) / math.gamma(a + b)

    def beta_fn(p: float, q: float) -> float:
        return math.gamma(p) * math.gamma(q) / math.gamma(p + q)

    front = math.gamma(r + x) * alpha**r / math.gamma(r)
    alive = beta_fn(a, b + x) / beta * front / (alpha + T) ** (r + x)
    dropped = beta_fn(a + 1, b + x - 1) / beta * front / (alpha + t_x) ** (r + x) if x else 0.0
    return alive + dropped


def test_bgnbd_likelihood_matches_hand_computed_values() -> None:
    # x = 0: (alpha / (alpha + T))^r = 1/2; x = 1 with a = b = 1: 1/2 * 1/16 + 1/2 * 1/4.
    ll = bgnbd_log_likelihood(BGNBDParams(1.0, 1.0, 1.0, 1.0), [0, 1], [0.0, 1.0], [1.0, 3.0])
    assert np.exp(ll) == pytest.approx([0.5, 0.15625], rel=1e-12)
    params = (0.5, 2.0, 0.8, 2.5)
    cases = [(0, 0.0, 20.0), (3, 10.0, 20.0), (7, 33.5, 40.0)]
    got = np.exp(
        bgnbd_log_likelihood(
            BGNBDParams(*params), *(np.array(c, dtype=float) for c in zip(*cases, strict=True))
        )
    )
    expected = [_bgnbd_by_hand(*params, *case) for case in cases]
    assert got == pytest.approx(expected, rel=1e-10)


def test_gamma_gamma_likelihood_matches_hand_computed_values() -> None:
    # p=1, q=2, gamma=1, x=1, m=1: G(3)/(G(1)G(2)) * 1 * 1 * 1 / 2^3 = 0.25.
    assert np.exp(gamma_gamma_log_likelihood(GammaGammaParams(1.0, 2.0, 1.0), [1], [1.0])) == (
        pytest.approx([0.25])
    )
    p, q, g, x, m = 2.5, 3.0, 10.0, 4, 7.0
    by_hand = (
        math.gamma(p * x + q)
        / (math.gamma(p * x) * math.gamma(q))
        * g**q
        * m ** (p * x - 1)
        * x ** (p * x)
        / (g + m * x) ** (p * x + q)
    )
    got = np.exp(gamma_gamma_log_likelihood(GammaGammaParams(p, q, g), [x], [m]))
    assert got == pytest.approx([by_hand], rel=1e-10)


def test_p_alive_and_expected_value_by_hand() -> None:
    params = BGNBDParams(1.0, 1.0, 1.0, 1.0)
    # 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)) = 1 / (1 + (4/2)^2)
    assert bgnbd_p_alive(params, [1, 0], [1.0, 0.0], [3.0, 3.0]) == pytest.approx([0.2, 1.0])
    gg = GammaGammaParams(2.0, 3.0, 10.0)
    # (gamma + m x) p / (p x + q - 1) = (10 + 8*2) * 2 / (4 + 2); population p g/(q-1) = 10.
    assert gamma_gamma_mean(gg, [2, 0], [8.0, 0.0]) == pytest.approx([26 * 2 / 6, 10.0])


def test_expected_purchases_for_a_new_customer_is_the_nbd_mean_without_dropout() -> None:
    # With almost no dropout (a tiny, b huge) BG/NBD becomes the NBD: E = (r+x)/(alpha+T) t.
    params = BGNBDParams(2.0, 10.0, 1e-4, 1e6)
    got = bgnbd_expected_purchases(params, 30.0, [0, 4], [0.0, 15.0], [20.0, 20.0])
    assert got == pytest.approx([2 / 30 * 30, 6 / 30 * 30], rel=1e-3)


def test_fit_recovers_bgnbd_parameters_from_simulated_customers() -> None:
    rng = np.random.default_rng(1)
    true = BGNBDParams(0.8, 30.0, 0.7, 3.0)
    x, t_x, T = simulate_bgnbd(true, rng.uniform(30, 365, 20_000), rng)
    fitted, ll = fit_bgnbd(x, t_x, T)
    assert fitted.r == pytest.approx(true.r, rel=0.1)
    assert fitted.alpha == pytest.approx(true.alpha, rel=0.1)
    assert fitted.a == pytest.approx(true.a, rel=0.2)
    assert fitted.b == pytest.approx(true.b, rel=0.2)
    assert ll >= bgnbd_log_likelihood(true, x, t_x, T).sum()  # the optimum beats the truth


def test_fit_recovers_gamma_gamma_parameters_from_simulated_customers() -> None:
    rng = np.random.default_rng(2)
    true = GammaGammaParams(6.0, 4.0, 15.0)
    x = rng.integers(1, 12, 8_000).astype(float)
    m = simulate_gamma_gamma(true, x, rng)
    fitted, _ = fit_gamma_gamma(x, m)
    assert fitted.p == pytest.approx(true.p, rel=0.15)
    assert fitted.q == pytest.approx(true.q, rel=0.15)
    assert fitted.gamma == pytest.approx(true.gamma, rel=0.15)


def _simulate_future(
    params: BGNBDParams, n: int, T: float, horizon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole purchase histories from BG/NBD: (x, t_x) in (0, T], purchases in (T, T+h]."""
    rate = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):  # a test-side reference simulation; clarity over speed
        t, k = 0.0, 0
        while True:
            t += rng.exponential(1 / rate[i])
            if t > T + horizon:
                break
            if t <= T:
                k += 1
                x[i], t_x[i] = k, t
            else:
                future[i] += 1
            if rng.random() < p[i]:
                break
    return x, t_x, np.full(n, T), future


def test_expected_purchases_match_simulated_holdout() -> None:
    rng = np.random.default_rng(3)
    true = BGNBDParams(1.2, 20.0, 0.9, 4.0)
    x, t_x, T, future = _simulate_future(true, 6000, 180.0, 90.0, rng)
    predicted = bgnbd_expected_purchases(true, 90.0, x, t_x, T)
    assert predicted.sum() == pytest.approx(future.sum(), rel=0.06)
    # Customers the model thinks are gone buy less than those it thinks are alive.
    alive = bgnbd_p_alive(true, x, t_x, T)
    repeaters = x > 0
    low, high = alive[repeaters] < 0.5, alive[repeaters] > 0.9
    assert future[repeaters][low].mean() < 0.3 * future[repeaters][high].mean()


@pytest.fixture(scope="module")
def churn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clv-shop")
    shop = demo_shop(n_customers=800, n_items=80, days=200, seed=11, mean_lifetime_days=120)
    files = shop.write(root / "data")
    run_ingest(
        root / "store",
        IngestConfig(),
        events=files.events,
        users=files.customers,
        items=files.items,
        insecure_dev=True,
        show_progress=False,
    )
    return root / "store"


def test_fit_clv_covers_every_buyer_up_to_as_of_and_nothing_later(churn_store: Path) -> None:
    as_of = pd.Timestamp("2026-05-01")
    with Store.open(churn_store, read_only=True) as store:
        model = fit_clv(store, as_of)
        table = model.predict(60)
        buyers = {
            row[0]
            for row in store.con.execute(
                "SELECT DISTINCT e.user_id FROM events e WHERE event_type = 'purchase' "
                'AND "timestamp" <= ? AND NOT EXISTS (SELECT 1 FROM user_flags f '
                "WHERE f.is_bot AND f.user_id = e.user_id)",
                [as_of.to_pydatetime()],
            ).fetchall()
        }
    assert list(table.columns) == ["user_id", "expected_purchases", "expected_spend", "p_alive"]
    assert set(table["user_id"]) == buyers
    assert (table["expected_purchases"] >= 0).all() and (table["expected_spend"] >= 0).all()
    assert table["p_alive"].between(0, 1).all()
    assert (model.summary["T"] >= model.summary["t_x"]).all()
    assert model.summary["T"].max() <= (as_of - pd.Timestamp("2026-01-05")).days + 1


def test_clv_beats_the_naive_baseline_on_a_shop_with_churn(churn_store: Path) -> None:
    with Store.open(churn_store, read_only=True) as store:
        result = clv_evaluation(store, "2026-05-01", "2026-07-20")
    f = result.figures
    assert f["customers"] == len(result.customers) > 100
    assert f["bgnbd"]["mae"] < f["naive"]["mae"]
    assert f["bgnbd"]["correlation"] > 0.5
    assert f["bgnbd"]["actual_total"] == result.customers["actual"].sum() > 0


def test_clv_refuses_bad_input(churn_store: Path) -> None:
    with Store.open(churn_store, read_only=True) as store:
        with pytest.raises(ConfigError):
            clv_evaluation(store, "2026-05-01", "2026-04-01")
        with pytest.raises(DataError):
            fit_clv(store, "2020-01-01")
        with pytest.raises(ConfigError):
            fit_clv(store, "2026-05-01").predict(0)
        with pytest.raises(ConfigError):
            fit_clv(store, "not a date")
