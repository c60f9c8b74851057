"""Ingest configuration: column mapping, event-type synonyms, cleaning and privacy options.

It comes from a TOML file (``--config``), overridden by command-line flags::

    [events]
    columns = { customer_id = "user_id", product_id = "item_id", ts = "timestamp" }
    event_type = "purchase"            # for files without an event_type column
    timestamp_format = "%Y%m%d"        # strftime; default: ISO-8601 or Unix s/ms

    [event_types]                      # extra synonyms -> canonical type
    "add-to-basket" = "cart"

    [cleaning]
    near_duplicate_seconds = 2
    outliers = "cap"                   # flag | cap | off

    [privacy]
    pseudonymize = true
    pii_columns = ["email", "phone", "name", "address"]

    [users.impute]
    age = "median"
    city = { strategy = "constant", value = "unknown" }
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tailorcast.errors import ConfigError
from tailorcast.schema import DEFAULT_EVENT_SYNONYMS, DEFAULT_PII_COLUMNS, EVENT_TYPES

__all__ = [
    "CleaningConfig",
    "ColumnImputation",
    "EventsConfig",
    "IngestConfig",
    "PrivacyConfig",
    "Strategy",
    "TableConfig",
    "parse_mapping",
]


Strategy = Literal["none", "drop", "mean", "median", "mode", "constant", "knn"]


class ColumnImputation(BaseModel):
    """How to fill one column: a strategy and, for ``"constant"``, the value.

    >>> ColumnImputation(strategy="constant", value="unknown").value
    'unknown'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Strategy
    value: str | float | int | bool | None = None

    @model_validator(mode="after")
    def _constant_needs_value(self) -> ColumnImputation:
        if self.strategy == "constant" and self.value is None:
            raise ValueError(
                'strategy \'constant\' needs a value, e.g. {strategy = "constant", value = "x"}'
            )
        return self


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CleaningConfig(_Strict):
    """Cleaning steps applied to events, each reported in the ingest summary."""

    dedupe: bool = True
    near_duplicate_seconds: float = Field(
        default=2.0, ge=0, description="Same customer, item and type within this gap: dropped."
    )
    outliers: Literal["flag", "cap", "off"] = "flag"
    outlier_method: Literal["mad", "iqr"] = "mad"
    outlier_threshold: float = Field(
        default=5.0, gt=0, description="Robust z-score (mad) or IQR multiple (iqr), log scale."
    )
    session_gap_minutes: float = Field(default=30.0, gt=0)
    bot_detection: bool = True
    bot_min_events: int = Field(default=300, ge=1)
    bot_rate_factor: float = Field(
        default=20.0, gt=1, description="Events per active hour this many times the median."
    )
    max_future_seconds: float = Field(default=86_400.0, ge=0)
    min_timestamp: str = "1990-01-01"
    max_id_length: int = Field(default=256, ge=1)


class PrivacyConfig(_Strict):
    pseudonymize: bool = True
    pii_columns: tuple[str, ...] = DEFAULT_PII_COLUMNS


class EventsConfig(_Strict):
    columns: dict[str, str] = Field(default_factory=dict)
    event_type: str | None = None
    timestamp_format: str | None = None


class TableConfig(_Strict):
    columns: dict[str, str] = Field(default_factory=dict)
    impute: dict[str, Strategy | ColumnImputation] = Field(default_factory=dict)


class IngestConfig(_Strict):
    """Everything that steers one ingest. Build with :meth:`load` or directly."""

    events: EventsConfig = EventsConfig()
    event_types: dict[str, str] = Field(default_factory=dict)
    cleaning: CleaningConfig = CleaningConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    users: TableConfig = TableConfig()
    items: TableConfig = TableConfig()

    @field_validator("event_types")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for src, dst in value.items():
            if dst not in EVENT_TYPES:
                raise ValueError(
                    f"event type synonym {src!r} maps to {dst!r}, which is not one of "
                    f"{', '.join(EVENT_TYPES)}"
                )
        return value

    def synonyms(self) -> dict[str, str]:
        """Lower-cased source name -> canonical event type (defaults plus configured)."""
        merged = dict(DEFAULT_EVENT_SYNONYMS)
        merged.update({k.strip().lower(): v for k, v in self.event_types.items()})
        return merged

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        mapping: Mapping[str, str] | None = None,
        event_type: str | None = None,
        timestamp_format: str | None = None,
    ) -> IngestConfig:
        """Read a TOML file (optional) and apply flag overrides on top.

        ``mapping`` (from ``--map SRC=DST``) applies to the events, users and items files.
        """
        data: dict[str, object] = {}
        if path is not None:
            p = Path(path)
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"{p}: config file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{p}: cannot read config file ({exc})") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p}: invalid TOML ({exc})") from None
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path or 'config'}: {_describe(exc)}") from None
        if event_type is not None:
            canonical = config.synonyms().get(event_type.strip().lower())
            if canonical is None:
                raise ConfigError(
                    f"--event-type {event_type!r} is not a known event type "
                    f"({', '.join(EVENT_TYPES)} or a configured synonym)"
                )
        updates: dict[str, object] = {}
        if mapping or event_type is not None or timestamp_format is not None:
            ev = config.events.model_copy(
                update={
                    "columns": {**config.events.columns, **(mapping or {})},
                    "event_type": event_type
                    if event_type is not None
                    else config.events.event_type,
                    "timestamp_format": timestamp_format or config.events.timestamp_format,
                }
            )
            updates["events"] = ev
        if mapping:
            updates["users"] = config.users.model_copy(
                update={"columns": {**config.users.columns, **mapping}}
            )
            updates["items"] = config.items.model_copy(
                update={"columns": {**config.items.columns, **mapping}}
            )
        return config.model_copy(update=updates) if updates else config


def _describe(exc: ValidationError) -> str:
    """Every problem, once, with its dotted location.

    A union (an imputation is a word or a table) fails in each branch; only the branch that
    matches what was written (a table, or a word) is worth showing.
    """
    problems: list[str] = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        branch = next((x for x in loc if x.startswith("literal[") or x == "ColumnImputation"), None)
        if branch is not None:
            wrote_table = isinstance(err.get("input"), dict) or "ColumnImputation" in loc
            if branch.startswith("literal[") and wrote_table:
                continue
            loc = [x for x in loc if x != branch]
        text = f"{'.'.join(loc)}: {err['msg']}" if loc else str(err["msg"])
        if err["type"] == "extra_forbidden":
            text = f"{'.'.join(loc)}: unknown setting"
        if text not in problems:
            problems.append(text)
    return "; ".join(problems)


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """``["customer_id=user_id", ...]`` -> ``{"customer_id": "user_id"}``; ``->`` works too."""
    out: dict[str, str] = {}
    for pair in pairs:
        sep = "->" if "->" in pair else "="
        src, _, dst = pair.partition(sep)
        src, dst = src.strip(), dst.strip()
        if not src or not dst:
            raise ConfigError(f"--map {pair!r}: expected SOURCE=TARGET, e.g. customer_id=user_id")
        if src in out and out[src] != dst:
            raise ConfigError(f"--map: column {src!r} is mapped twice")
        out[src] = dst
    return out
