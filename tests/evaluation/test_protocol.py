"""evaluate() on synthetic block-structured shops, model specs, and the paired comparison."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tailorcast.data import Interactions, make_split
from tailorcast.errors import ConfigError, DataError, NotFoundError
from tailorcast.evaluation import (
    ALL_ACCURACY,
    EvaluationResult,
    beyond_accuracy,
    evaluate,
    paired_comparison,
    ranking_metrics,
)
from tailorcast.evaluation.protocol import parse_model_list, parse_model_spec
from tailorcast.models import ItemKNNRecommender, make_model

N_BLOCKS, ITEMS_PER_BLOCK, USERS_PER_BLOCK, PER_USER = 4, 12, 30, 6


def block_events(seed: int = 0, *, sessions: bool = False) -> pd.DataFrame:
    """Customers of block b view PER_USER random items of block b, plus one random item
    anywhere; one event per day, so later items come later in time."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    start = pd.Timestamp("2025-01-01")
    for block in range(N_BLOCKS):
        for u in range(USERS_PER_BLOCK):
            user = f"u{block}-{u:02d}"
            own = (
                rng.choice(ITEMS_PER_BLOCK, size=PER_USER, replace=False) + block * ITEMS_PER_BLOCK
            )
            noise = rng.integers(N_BLOCKS * ITEMS_PER_BLOCK)
            items = [*own.tolist(), int(noise)]
            for day, item in enumerate(dict.fromkeys(items)):
                rows.append(
                    {
                        "user_id": user,
                        "item_id": f"i{item:02d}",
                        "event_type": "view" if day % 3 else "purchase",
                        "timestamp": start + pd.Timedelta(days=day, hours=int(rng.integers(24))),
                        **({"session_id": f"{user}-s{day // 2}"} if sessions else {}),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def inter() -> Interactions:
    return Interactions.from_events(block_events())


@pytest.fixture(scope="module")
def result(inter: Interactions) -> EvaluationResult:
    return evaluate(inter, ["popularity", "itemknn"], k=10, seed=7)


def test_the_model_that_sees_the_blocks_wins(result: EvaluationResult) -> None:
    pop, knn = result.models["popularity"].metrics, result.models["itemknn"].metrics
    # Popular items spread over all 4 blocks; item-kNN stays in the customer's block.
    assert knn["ndcg@10"] > pop["ndcg@10"] + 0.2
    assert knn["recall@10"] > pop["recall@10"]
    assert knn["hit@10"] > pop["hit@10"]
    assert result.best() == "itemknn"
    c = result.compare("itemknn", "popularity")
    assert c.metric == "ndcg@10"
    assert c.mean_diff == pytest.approx(knn["ndcg@10"] - pop["ndcg@10"])
    assert 0 < c.ci_low < c.mean_diff < c.ci_high
    assert c.p_value < 1e-6
    back = result.compare("popularity", "itemknn", "recall@5")
    assert back.mean_diff < 0 and back.ci_high < 0


def test_metrics_equal_a_direct_computation_on_the_same_split(
    inter: Interactions, result: EvaluationResult
) -> None:
    train, test = make_split(inter, "random", seed=7)
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    assert result.n_test_users == users.size
    assert result.n_train_events == len(train.events)
    assert result.n_test_events == len(test.events)
    model = ItemKNNRecommender().fit(train)
    recs = model.recommend(inter.user_ids[users], k=20, exclude_seen=True)
    recommended = inter.item_index(recs.item_ids.ravel()).reshape(recs.item_ids.shape)
    assert (recommended >= 0).all()  # 48 items, at most 7 seen: no padding here
    relevant = test.matrix[users]
    got = result.models["itemknn"]
    assert result.ks == (1, 5, 10, 20)
    for k in result.ks:
        direct = ranking_metrics(recommended, relevant, k=k)
        assert direct.pop("n_users") == users.size
        for key, value in direct.items():
            assert got.metrics[key] == pytest.approx(value, abs=1e-12), key
    for key, value in beyond_accuracy(recommended, train.matrix, k=10).items():
        assert got.metrics[key] == pytest.approx(value, abs=1e-12), key
    # Per-customer rows line up with the test customers, for every model.
    assert got.per_user.index.tolist() == inter.user_ids[users].tolist()
    assert got.per_user["n_relevant"].tolist() == np.diff(relevant.indptr).tolist()
    assert result.models["popularity"].per_user.index.equals(got.per_user.index)
    assert got.per_user["mrr@20"].mean() == pytest.approx(got.metrics["mrr@20"])


def test_same_seed_same_result_other_seed_other_split(inter: Interactions) -> None:
    def stable(res: EvaluationResult) -> dict[str, Any]:
        data = res.to_dict()
        for model in data["models"].values():
            del model["fit_seconds"], model["recommend_seconds"]
        return data

    a = evaluate(inter, ["popularity", "ease"], seed=11)
    b = evaluate(inter, ["popularity", "ease"], seed=11)
    c = evaluate(inter, ["popularity", "ease"], seed=12)
    assert stable(a) == stable(b)
    pd.testing.assert_frame_equal(a.models["ease"].per_user, b.models["ease"].per_user)
    assert a.compare("ease", "popularity") == b.compare("ease", "popularity")
    assert stable(a)["models"] != stable(c)["models"]
    assert a.fingerprint == c.fingerprint == inter.fingerprint()


def test_table_and_json(result: EvaluationResult) -> None:
    table = result.table()
    assert table.index.tolist() == ["popularity", "itemknn"]
    assert table.columns.tolist() == [
        *(f"{m}@10" for m in ALL_ACCURACY),
        "coverage@10",
        "novelty@10",
        "diversity@10",
    ]
    assert table.loc["itemknn", "ndcg@10"] == result.models["itemknn"].metrics["ndcg@10"]
    assert result.table(5).columns.tolist() == [f"{m}@5" for m in ALL_ACCURACY]
    with pytest.raises(ConfigError, match="k=3 was not evaluated"):
        result.table(3)

    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["protocol"] == "random" and data["seed"] == 7 and data["k"] == 10
    assert data["ks"] == [1, 5, 10, 20]
    assert data["fingerprint"] == result.fingerprint
    assert data["n_test_users"] == result.n_test_users > 0
    knn = data["models"]["itemknn"]
    assert knn["model"] == "itemknn" and knn["params"]["neighbors"] == 100
    assert {f"{m}@{k}" for m in ALL_ACCURACY for k in (1, 5, 10, 20)} <= set(knn["metrics"])
    assert knn["fit_seconds"] >= 0 and knn["recommend_seconds"] >= 0


def test_undefined_diversity_at_k1_is_null_in_json(inter: Interactions) -> None:
    res = evaluate(inter, ["popularity"], k=1, ks=(1, 3))
    assert res.ks == (1, 3)
    assert math.isnan(res.models["popularity"].metrics["diversity@1"])
    assert (
        json.loads(json.dumps(res.to_dict(), allow_nan=False))["models"]["popularity"]["metrics"][
            "diversity@1"
        ]
        is None
    )


def test_k_is_added_to_the_cutoffs(inter: Interactions) -> None:
    res = evaluate(inter, "popularity", k=7, ks=(5, 1, 5))
    assert res.ks == (1, 5, 7)
    assert "ndcg@7" in res.models["popularity"].metrics
    assert "coverage@7" in res.models["popularity"].metrics


def test_other_protocols(inter: Interactions, result: EvaluationResult) -> None:
    last = evaluate(inter, ["itemknn"], protocol="last")
    assert last.protocol == "last"
    # Each customer's last item is their off-block one: one test event each, and far harder
    # to find than a random held-out item.
    assert last.n_test_users == last.n_test_events == N_BLOCKS * USERS_PER_BLOCK
    knn_random = result.models["itemknn"].metrics["ndcg@10"]
    assert last.models["itemknn"].metrics["ndcg@10"] < knn_random / 2

    temporal = evaluate(inter, ["popularity"], protocol="temporal", test_fraction=0.3)
    train, test = make_split(inter, "temporal", test_fraction=0.3)
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    cold = int((np.diff(train.matrix.indptr)[users] == 0).sum())
    assert temporal.split_options == {"test_fraction": 0.3}
    assert (temporal.n_test_users, temporal.n_cold_test_users) == (users.size, cold)

    with_sessions = Interactions.from_events(block_events(sessions=True))
    session = evaluate(with_sessions, ["itemknn"], protocol="session")
    assert session.protocol == "last_session"
    assert session.n_test_users == N_BLOCKS * USERS_PER_BLOCK


def test_model_specs_are_typed() -> None:
    spec = parse_model_spec(" itemknn:neighbors=5, similarity=bm25 ")
    assert spec.label == "itemknn:neighbors=5, similarity=bm25"
    assert spec.name == "itemknn"
    assert spec.params == {"neighbors": 5, "similarity": "bm25"}
    assert isinstance(spec.params["neighbors"], int)
    assert parse_model_spec("ease:regularization=300").params == {"regularization": 300.0}
    assert parse_model_spec("popularity:half_life_days=none").params == {"half_life_days": None}
    assert parse_model_list("popularity, itemknn:neighbors=50,shrinkage=10 ,ease") == [
        "popularity",
        "itemknn:neighbors=50,shrinkage=10",
        "ease",
    ]


def test_evaluate_uses_the_spec_params(inter: Interactions) -> None:
    res = evaluate(inter, "itemknn:neighbors=2,itemknn", seed=3)
    assert res.labels == ["itemknn:neighbors=2", "itemknn"]
    assert res.models["itemknn:neighbors=2"].params["neighbors"] == 2
    narrow = res.models["itemknn:neighbors=2"].metrics
    assert narrow != res.models["itemknn"].metrics
    same = evaluate(inter, {"knn2": ItemKNNRecommender(neighbors=2)}, seed=3)
    assert same.models["knn2"].metrics == narrow


def test_a_given_model_is_copied_not_fitted(inter: Interactions) -> None:
    given = ItemKNNRecommender(neighbors=3)
    res = evaluate(inter, {"knn3": given, "pop": make_model("popularity")})
    assert not given.is_fitted
    assert res.models["knn3"].model == "itemknn"
    assert res.models["knn3"].params["neighbors"] == 3


@pytest.mark.parametrize(
    ("models", "kwargs", "error", "message"),
    [
        (["nope"], {}, NotFoundError, "unknown model 'nope'"),
        (["itemknn:depth=3"], {}, ConfigError, "no parameter 'depth'"),
        (["itemknn:neighbors=abc"], {}, ConfigError, "neighbors='abc'"),
        (["itemknn:neighbors=0"], {}, ConfigError, "greater than or equal to 1"),
        (["itemknn:neighbors"], {}, ConfigError, "expected param=value"),
        (["ease", "ease"], {}, ConfigError, "listed twice"),
        ("neighbors=5,ease", {}, ConfigError, "parameter without a model"),
        ([], {}, ConfigError, "no model to evaluate"),
        (["ease"], {"protocol": "shuffle"}, ConfigError, "unknown protocol 'shuffle'"),
        (["ease"], {"k": 0}, ConfigError, "k must be an integer >= 1"),
        (["ease"], {"ks": (5, -1)}, ConfigError, "every K in ks"),
    ],
)
def test_bad_input_is_refused_before_any_work(
    inter: Interactions, models: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    calls: list[str] = []
    with pytest.raises(error, match=message):
        evaluate(inter, models, progress=lambda what, done, total: calls.append(what), **kwargs)
    assert calls == []


def test_progress_is_reported(inter: Interactions) -> None:
    calls: list[tuple[str, int, int]] = []
    evaluate(inter, ["popularity", "ease"], progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [
        "splitting (random)",
        "fitting popularity",
        "recommending with popularity",
        "fitting ease",
        "recommending with ease",
        "done",
    ]
    assert [c[1] for c in calls] == [0, 1, 2, 3, 4, 5] and {c[2] for c in calls} == {5}


def test_a_split_without_test_customers_is_a_data_error() -> None:
    one_each = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "item_id": ["x", "y", "x"],
            "event_type": "view",
            "timestamp": pd.date_range("2025-01-01", periods=3, freq="D"),
        }
    )
    with pytest.raises(DataError, match="no customer with a test item"):
        evaluate(Interactions.from_events(one_each), ["popularity"])


def test_compare_refuses_unknown_names_and_list_metrics(result: EvaluationResult) -> None:
    with pytest.raises(ConfigError, match="no model 'ease'"):
        result.compare("ease", "itemknn")
    with pytest.raises(ConfigError, match="cannot compare on 'coverage@10'"):
        result.compare("itemknn", "popularity", "coverage@10")
    with pytest.raises(ConfigError, match="cannot compare on 'n_relevant'"):
        result.compare("itemknn", "popularity", "n_relevant")


# -- the paired comparison on constructed per-customer data -----------------------------------
def test_ci_contains_the_true_difference_and_p_is_small() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 4000)
    true_diff = 0.05
    a = base + true_diff + rng.normal(0, 0.2, base.size)
    c = paired_comparison(a, base, a="a", b="b", metric="m", n_boot=4000, seed=5)
    assert c.ci_low < true_diff < c.ci_high
    assert c.ci_low < c.mean_diff < c.ci_high
    assert c.p_value < 1e-10
    # The percentile CI matches the normal-theory interval at this size.
    se = (a - base).std(ddof=1) / math.sqrt(base.size)
    assert c.ci_low == pytest.approx(c.mean_diff - 1.96 * se, abs=0.3 * se)
    assert c.ci_high == pytest.approx(c.mean_diff + 1.96 * se, abs=0.3 * se)
    assert c.mean_a == pytest.approx(a.mean()) and c.mean_b == pytest.approx(base.mean())


def test_ci_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    true_diff, n, reps = 0.1, 120, 300
    covered = 0
    for rep in range(reps):
        b = rng.uniform(0, 1, n)
        a = b + true_diff + rng.normal(0, 0.3, n)
        c = paired_comparison(a, b, n_boot=1000, seed=rep)
        covered += c.ci_low <= true_diff <= c.ci_high
    assert 0.90 <= covered / reps <= 0.98


def test_p_value_is_the_paired_t_test() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 0.2, 50), rng.normal(0.28, 0.2, 50)
    c = paired_comparison(a, b, n_boot=200)
    assert c.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert c.p_value > 0.05  # no real difference planted


def test_degenerate_comparisons() -> None:
    same = np.array([0.2, 0.5, 1.0, 0.0])
    c = paired_comparison(same, same)
    assert (c.mean_diff, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_comparison(same + 0.25, same)
    assert shifted.p_value == 0.0
    assert shifted.ci_low == pytest.approx(0.25) and shifted.ci_high == pytest.approx(0.25)
    assert math.isnan(paired_comparison([1.0], [0.0]).p_value)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="confidence"):
        paired_comparison(same, same, confidence=1.5)


def test_bootstrap_is_seeded_and_chunked_the_same_way() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 1, 3000), rng.uniform(0, 1, 3000)
    one = paired_comparison(a, b, n_boot=2000, seed=9)
    assert one == paired_comparison(a, b, n_boot=2000, seed=9)
    assert one != paired_comparison(a, b, n_boot=2000, seed=10)
