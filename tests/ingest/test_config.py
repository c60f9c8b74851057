"""Ingest configuration: TOML sections, flag overrides, errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorcast.errors import ConfigError
from tailorcast.ingest.config import ColumnImputation, IngestConfig, parse_mapping

FULL_TOML = """
[events]
columns = { customer_id = "user_id", product_id = "item_id", ts = "timestamp" }
event_type = "purchase"
timestamp_format = "%Y%m%d"

[event_types]
"Add-To-Basket" = "cart"
kauf = "purchase"

[cleaning]
dedupe = false
near_duplicate_seconds = 5
outliers = "cap"
outlier_method = "iqr"
outlier_threshold = 3.0
session_gap_minutes = 45
bot_detection = false
bot_min_events = 50
bot_rate_factor = 10
max_future_seconds = 0
min_timestamp = "2000-01-01"
max_id_length = 64

[privacy]
pseudonymize = false
pii_columns = ["email", "mobile"]

[users]
columns = { cust = "user_id" }

[users.impute]
age = "median"
city = { strategy = "constant", value = "unknown" }

[items]
columns = { sku = "item_id" }

[items.impute]
price = "mean"
"""


def _write(tmp_path: Path, text: str, name: str = "ingest.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    cfg = IngestConfig.load()
    assert cfg == IngestConfig()
    assert cfg.cleaning.near_duplicate_seconds == 2.0
    assert cfg.cleaning.session_gap_minutes == 30.0
    assert cfg.cleaning.outliers == "flag" and cfg.cleaning.outlier_method == "mad"
    assert cfg.privacy.pseudonymize is True
    assert "email" in cfg.privacy.pii_columns
    assert cfg.events.event_type is None and cfg.events.timestamp_format is None


def test_load_every_section_from_toml(tmp_path: Path) -> None:
    cfg = IngestConfig.load(_write(tmp_path, FULL_TOML))
    assert cfg.events.columns == {
        "customer_id": "user_id",
        "product_id": "item_id",
        "ts": "timestamp",
    }
    assert cfg.events.event_type == "purchase"
    assert cfg.events.timestamp_format == "%Y%m%d"
    assert cfg.event_types == {"Add-To-Basket": "cart", "kauf": "purchase"}
    syn = cfg.synonyms()
    assert syn["add-to-basket"] == "cart" and syn["kauf"] == "purchase"
    assert syn["buy"] == "purchase"  # the defaults stay
    c = cfg.cleaning
    assert (c.dedupe, c.near_duplicate_seconds, c.outliers, c.outlier_method) == (
        False,
        5.0,
        "cap",
        "iqr",
    )
    assert (c.outlier_threshold, c.session_gap_minutes, c.bot_detection) == (3.0, 45.0, False)
    assert (c.bot_min_events, c.bot_rate_factor, c.max_future_seconds) == (50, 10.0, 0.0)
    assert (c.min_timestamp, c.max_id_length) == ("2000-01-01", 64)
    assert cfg.privacy.pseudonymize is False
    assert cfg.privacy.pii_columns == ("email", "mobile")
    assert cfg.users.columns == {"cust": "user_id"}
    assert cfg.users.impute == {
        "age": "median",
        "city": ColumnImputation(strategy="constant", value="unknown"),
    }
    assert cfg.items.columns == {"sku": "item_id"}
    assert cfg.items.impute == {"price": "mean"}


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = IngestConfig.load(
        _write(tmp_path, FULL_TOML),
        mapping={"kunde": "user_id", "ts": "event_time"},
        event_type="view",
        timestamp_format="%d.%m.%Y",
    )
    assert cfg.events.columns == {
        "customer_id": "user_id",
        "product_id": "item_id",
        "ts": "event_time",
        "kunde": "user_id",
    }
    assert cfg.events.event_type == "view"
    assert cfg.events.timestamp_format == "%d.%m.%Y"
    # --map serves the customers and products files as well
    assert cfg.users.columns == {"cust": "user_id", "kunde": "user_id", "ts": "event_time"}
    assert cfg.items.columns == {"sku": "item_id", "kunde": "user_id", "ts": "event_time"}
    # what the flags do not touch stays as the file says
    assert cfg.cleaning.session_gap_minutes == 45.0
    assert cfg.users.impute["age"] == "median"


def test_event_type_flag_accepts_a_synonym_and_refuses_unknown_types(tmp_path: Path) -> None:
    assert IngestConfig.load(event_type="BUY").events.event_type == "BUY"
    cfg = IngestConfig.load(
        _write(tmp_path, '[event_types]\nkauf = "purchase"\n'), event_type="Kauf"
    )
    assert cfg.events.event_type == "Kauf"
    with pytest.raises(ConfigError, match="teleport"):
        IngestConfig.load(event_type="teleport")


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "[evnts]\nevent_type = 'view'\n")
    with pytest.raises(ConfigError) as info:
        IngestConfig.load(path)
    assert "evnts" in str(info.value) and str(path) in str(info.value)


def test_unknown_nested_key_is_named_with_its_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cleaning\.near_dup_seconds"):
        IngestConfig.load(_write(tmp_path, "[cleaning]\nnear_dup_seconds = 3\n"))
    with pytest.raises(ConfigError, match=r"users\.impute"):
        IngestConfig.load(_write(tmp_path, "[users]\nimpute = { age = 'average' }\n"))


def test_every_unknown_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "evnts = 1\n[cleaning]\nnear_dup_seconds = 3\n")
    with pytest.raises(ConfigError) as info:
        IngestConfig.load(path)
    assert "evnts" in str(info.value)
    assert "near_dup_seconds" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[cleaning]\noutliers = 'delete'\n", "cleaning.outliers"),
        ("[cleaning]\nnear_duplicate_seconds = -1\n", "cleaning.near_duplicate_seconds"),
        ("[cleaning]\nsession_gap_minutes = 0\n", "cleaning.session_gap_minutes"),
        ("[event_types]\nadd = 'basket'\n", "basket"),
    ],
)
def test_invalid_values_are_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        IngestConfig.load(_write(tmp_path, text))


def test_invalid_imputation_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"users\.impute\.city"):
        IngestConfig.load(_write(tmp_path, "[users.impute]\ncity = { strategy = 'constant' }\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[users.impute]\ncity = { strategy = 'constant' }\n", "needs a value"),
        ("[users.impute]\ncity = { strategy = 'constant', value = 'x', colour = 1 }\n", "colour"),
    ],
)
def test_imputation_table_errors_say_what_is_wrong(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        IngestConfig.load(_write(tmp_path, text))


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cleaning\nnear_duplicate_seconds = 3\n", "broken.toml")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        IngestConfig.load(path)
    assert "broken.toml" in str(info.value)
    assert "line 1" in str(info.value)


def test_missing_and_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        IngestConfig.load(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[events]\nevent_type = '\xe9'\n")
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        IngestConfig.load(bad)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["customer_id=user_id"], {"customer_id": "user_id"}),
        (["customer_id->user_id"], {"customer_id": "user_id"}),
        ([" a = b ", "c -> d"], {"a": "b", "c": "d"}),
        (["a=b", "a=b"], {"a": "b"}),
        (["order-date->timestamp"], {"order-date": "timestamp"}),
        ([], {}),
    ],
)
def test_parse_mapping_accepts(pairs: list[str], expected: dict[str, str]) -> None:
    assert parse_mapping(pairs) == expected


@pytest.mark.parametrize("bad", ["=b", "a=", "a", "->b", "a->", " = ", ""])
def test_parse_mapping_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="SOURCE=TARGET"):
        parse_mapping([bad])


def test_parse_mapping_refuses_a_column_mapped_twice() -> None:
    with pytest.raises(ConfigError, match="mapped twice"):
        parse_mapping(["a=user_id", "a=item_id"])
