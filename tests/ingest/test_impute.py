"""Imputation of the users/items tables: every strategy on hand-checked data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.impute import (
    ColumnImputation,
    ImputationRecord,
    default_strategies,
    impute,
)


def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "age": pd.array([20, None, 40, 30, None], dtype="Int64"),
            "income": [1.0, 3.0, np.nan, 8.0, 4.0],
            "city": ["rome", "  ", "oslo", None, "rome"],
        }
    )


def test_mean_fills_with_the_mean_of_observed_values() -> None:
    result = impute(_users(), {"income": "mean"}, table="users", id_column="user_id")
    assert result.frame["income"].tolist() == [1.0, 3.0, 4.0, 8.0, 4.0]
    assert result.records == [ImputationRecord("users", "income", "mean", 1, "4.0")]
    assert result.dropped.empty


def test_median_on_nullable_int_keeps_int_when_the_median_is_whole() -> None:
    result = impute(_users(), {"age": "median"}, table="users", id_column="user_id")
    assert str(result.frame["age"].dtype) == "Int64"
    assert result.frame["age"].tolist() == [20, 30, 40, 30, 30]
    assert result.records[0].n_imputed == 2
    assert result.records[0].fill_value == "30.0"


def test_fractional_fill_turns_nullable_int_into_float() -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3], "age": pd.array([1, None, 2], dtype="Int64")})
    result = impute(frame, {"age": "mean"}, table="users", id_column="user_id")
    assert str(result.frame["age"].dtype) == "Float64"
    assert result.frame["age"].tolist() == [1.0, 1.5, 2.0]


def test_mode_treats_blank_strings_as_missing() -> None:
    result = impute(_users(), {"city": "mode"}, table="users", id_column="user_id")
    assert result.frame["city"].tolist() == ["rome", "rome", "oslo", "rome", "rome"]
    assert result.records == [ImputationRecord("users", "city", "mode", 2, "rome")]


def test_mode_ties_go_to_the_value_seen_first() -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3, 4, 5], "c": ["b", "a", None, "a", "b"]})
    result = impute(frame, {"c": "mode"}, table="users", id_column="user_id")
    assert result.frame["c"].tolist() == ["b", "a", "b", "a", "b"]


def test_constant_from_model_and_from_a_toml_like_mapping() -> None:
    spec = ColumnImputation(strategy="constant", value="unknown")
    by_model = impute(_users(), {"city": spec}, table="users", id_column="user_id")
    by_dict = impute(
        _users(),
        {
            "city": {"strategy": "constant", "value": "unknown"},
            "income": ColumnImputation(strategy="constant", value=0),
        },
        table="users",
        id_column="user_id",
    )
    expected = ["rome", "unknown", "oslo", "unknown", "rome"]
    assert by_model.frame["city"].tolist() == expected
    assert by_dict.frame["city"].tolist() == expected
    assert by_dict.frame["income"].tolist() == [1.0, 3.0, 0.0, 8.0, 4.0]
    assert by_dict.records[0] == ImputationRecord("users", "city", "constant", 2, "unknown")


def test_constant_adds_a_category_to_categorical_columns() -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "seg": pd.Categorical(["a", None])})
    result = impute(
        frame, {"seg": {"strategy": "constant", "value": "z"}}, table="t", id_column="user_id"
    )
    assert isinstance(result.frame["seg"].dtype, pd.CategoricalDtype)
    assert result.frame["seg"].tolist() == ["a", "z"]


def test_dates_take_mode_and_constant() -> None:
    signup = pd.to_datetime(pd.Series(["2024-01-02", None, "2024-01-02", "2024-03-01"]))
    frame = pd.DataFrame({"user_id": [1, 2, 3, 4], "signup": signup})
    by_mode = impute(frame, {"signup": "mode"}, table="users", id_column="user_id")
    assert by_mode.frame["signup"].iloc[1] == pd.Timestamp("2024-01-02")
    assert pd.api.types.is_datetime64_any_dtype(by_mode.frame["signup"].dtype)
    by_value = impute(
        frame,
        {"signup": {"strategy": "constant", "value": "2000-01-01"}},
        table="users",
        id_column="user_id",
    )
    assert by_value.frame["signup"].iloc[1] == pd.Timestamp("2000-01-01")


def test_drop_removes_rows_and_says_why() -> None:
    result = impute(
        _users(), {"city": "drop", "income": "drop"}, table="users", id_column="user_id"
    )
    assert result.frame.index.tolist() == [0, 4]
    assert result.dropped.index.tolist() == [1, 2, 3]
    assert result.dropped["reason"].tolist() == [
        "missing value in 'city' (strategy drop)",
        "missing value in 'income' (strategy drop)",
        "missing value in 'city' (strategy drop)",
    ]
    assert result.dropped["user_id"].tolist() == ["u2", "u3", "u4"]
    assert [(r.column, r.strategy, r.n_imputed, r.fill_value) for r in result.records] == [
        ("city", "drop", 2, None),
        ("income", "drop", 1, None),
    ]


def test_statistics_come_from_the_rows_that_are_kept() -> None:
    # Dropping u3 (income missing) leaves ages 20, NA(u2), 30, NA(u5): mean 25.
    result = impute(_users(), {"income": "drop", "age": "mean"}, table="users", id_column="user_id")
    assert result.frame["age"].tolist() == [20.0, 25.0, 30.0, 25.0]


def test_none_leaves_the_column_alone_and_records_nothing() -> None:
    result = impute(_users(), {"city": "none"}, table="users", id_column="user_id")
    pd.testing.assert_frame_equal(result.frame, _users())
    assert result.records == []


def test_input_frame_is_not_mutated() -> None:
    frame = _users()
    before = frame.copy(deep=True)
    impute(
        frame,
        {"age": "median", "income": "knn", "city": "mode"},
        table="users",
        id_column="user_id",
    )
    impute(frame, {"city": "drop"}, table="users", id_column="user_id")
    pd.testing.assert_frame_equal(frame, before)


def _clusters() -> pd.DataFrame:
    # Two obvious groups: small x with y ~ 1 in the north, large x with y ~ 50 in the south.
    return pd.DataFrame(
        {
            "user_id": list(range(8)),
            "x": [0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 0.15, 10.05],
            "y": [1.0, 1.0, 1.0, 50.0, 50.0, 50.0, np.nan, np.nan],
            "city": ["north", "north", "north", "south", "south", "south", None, ""],
        }
    )


def test_knn_numeric_uses_the_nearest_rows() -> None:
    result = impute(_clusters(), {"y": "knn"}, table="users", id_column="user_id", knn_neighbors=3)
    assert result.frame["y"].tolist()[6:] == [1.0, 50.0]
    assert result.records == [ImputationRecord("users", "y", "knn", 2, None)]


def test_knn_numeric_uses_one_hot_categoricals_as_features() -> None:
    frame = pd.DataFrame(
        {
            "user_id": list(range(7)),
            "seg": ["a", "a", "a", "b", "b", "b", "b"],
            "y": [1.0, 1.0, 1.0, 50.0, 50.0, 50.0, np.nan],
        }
    )
    result = impute(frame, {"y": "knn"}, table="users", id_column="user_id", knn_neighbors=3)
    assert result.frame["y"].iloc[6] == 50.0
    assert result.records[0].strategy == "knn"


def test_knn_categorical_uses_a_classifier_on_the_numeric_columns() -> None:
    frame = _clusters().drop(columns="y")
    result = impute(frame, {"city": "knn"}, table="users", id_column="user_id", knn_neighbors=3)
    assert result.frame["city"].tolist()[6:] == ["north", "south"]
    assert result.records == [ImputationRecord("users", "city", "knn", 2, None)]


def test_knn_without_features_falls_back_and_ignores_the_id_column() -> None:
    # The id is numeric and would separate the rows, but must never be a feature.
    numeric = pd.DataFrame({"user_id": [1, 2, 3, 4], "y": [1.0, 2.0, 10.0, np.nan]})
    result = impute(numeric, {"y": "knn"}, table="users", id_column="user_id")
    assert result.frame["y"].iloc[3] == 2.0
    assert result.records == [ImputationRecord("users", "y", "knn->median", 1, "2.0")]
    text = pd.DataFrame({"user_id": [1, 2, 3, 4], "c": ["a", "b", "b", None]})
    result = impute(text, {"c": "knn"}, table="users", id_column="user_id")
    assert result.frame["c"].iloc[3] == "b"
    assert result.records == [ImputationRecord("users", "c", "knn->mode", 1, "b")]


def test_id_column_is_never_touched() -> None:
    frame = pd.DataFrame({"user_id": ["a", None, ""], "x": [1.0, np.nan, 3.0]})
    result = impute(frame, {"x": "mean"}, table="users", id_column="user_id")
    assert result.frame["user_id"].tolist()[:1] == ["a"]
    assert pd.isna(result.frame["user_id"].iloc[1])
    assert result.frame["user_id"].iloc[2] == ""
    with pytest.raises(ConfigError, match="never imputed"):
        impute(frame, {"user_id": "mode"}, table="users", id_column="user_id")


@pytest.mark.parametrize(
    ("strategies", "match"),
    [
        ({"nope": "mean"}, "unknown column 'nope'"),
        ({"age": "average"}, "unknown strategy 'average'"),
        ({"city": "mean"}, "numeric"),
        ({"city": "median"}, "numeric"),
        ({"city": "constant"}, "needs a value"),
        ({"city": {"strategy": "constant"}}, "needs a value"),
        ({"city": {"strategy": "guess"}}, "strategy"),
        ({"income": {"strategy": "constant", "value": "n/a"}}, "numeric"),
        ({"city": {"strategy": "constant", "value": " "}}, "missing"),
    ],
)
def test_bad_config_raises_config_error(strategies: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        impute(_users(), strategies, table="users", id_column="user_id")  # type: ignore[arg-type]


def test_knn_neighbors_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="knn_neighbors"):
        impute(_users(), {"age": "knn"}, table="users", id_column="user_id", knn_neighbors=0)


def test_a_column_without_any_value_raises_data_error() -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "x": [np.nan, np.nan]})
    with pytest.raises(DataError, match="no value to impute from"):
        impute(frame, {"x": "median"}, table="users", id_column="user_id")


def test_missing_id_column_raises_data_error() -> None:
    with pytest.raises(DataError, match="id column"):
        impute(_users(), {}, table="users", id_column="customer_id")


def test_column_imputation_validates_like_the_toml_config() -> None:
    assert ColumnImputation.model_validate({"strategy": "median"}).value is None
    with pytest.raises(ValidationError):
        ColumnImputation.model_validate({"strategy": "constant"})
    with pytest.raises(ValidationError):
        ColumnImputation.model_validate({"strategy": "mean", "colour": "red"})


def test_default_strategies_are_none_for_all_but_the_id() -> None:
    assert default_strategies(_users(), id_column="user_id") == {
        "age": "none",
        "income": "none",
        "city": "none",
    }
