"""Validation of events posted to the server: the ingest's rules, per row, in microseconds.

The ingest (:mod:`tailorcast.ingest.events`) judges files in DuckDB SQL, built for millions of
rows; a request of a hundred rows would spend its time on statement overhead (hundreds of
ms). So the server judges posted rows here, in Python, by the same rules and with the same
reason texts, and the merge later runs the real ingest on the accepted rows anyway (which
stays the authority: a row it refuses is recorded in ``rejects`` like any other).
``tests/serving/test_engine_validation.py`` runs both on the same hostile batch, so the two
cannot drift apart unnoticed.

Rules, in the order the ingest applies them: customer ID (missing, too long, NUL byte), item
ID (same), event type (missing, unknown; synonyms as configured), timestamp (missing,
unparseable, more than ``max_future_seconds`` ahead, before ``min_timestamp``; ISO-8601 with
or without offset, or Unix seconds or milliseconds), amount (not a number, not finite,
negative), quantity (not a whole number from 1 to 1,000,000).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tailorcast.ingest.config import IngestConfig
from tailorcast.privacy import Keys

__all__ = ["EventCheck", "EventValidator", "event_id_key"]

_MAX_QUANTITY: Final = 1_000_000
_MAX_EPOCH_MS: Final = 1e14
_EPOCH: Final = datetime(1970, 1, 1)


def event_id_key(event_id: str) -> int:
    """The low 64 bits of the store's ``event_key`` of an event with a shop ``event_id``
    (``md5_number('id|' || event_id)`` in the ingest), so known IDs can be looked up."""
    digest = hashlib.md5(("id|" + event_id).encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass
class EventCheck:
    """The verdict on one posted batch, one entry per row (``reasons[i]`` None: valid)."""

    reasons: list[str | None]
    columns: list[str | None]
    pseudonyms: list[str | None]
    item_ids: list[str | None]
    event_types: list[str | None]
    timestamps_ns: npt.NDArray[np.int64]
    keys: list[int | None]
    """``event_id_key`` of rows with an event_id; None for the others."""
    fingerprints: list[tuple[Any, ...] | None]
    """The canonical values of valid rows: equal fingerprints are the same event."""


class EventValidator:
    """Judges batches of posted events; stateless apart from its settings (thread-safe)."""

    def __init__(self, config: IngestConfig, keys: Keys | None) -> None:
        self.config = config
        self.pseudonymizer = keys.pseudonymizer() if config.privacy.pseudonymize and keys else None
        self.synonyms = config.synonyms()
        fallback = config.events.event_type
        self.fallback = None if fallback is None else self.synonyms.get(fallback.strip().lower())

    def check(self, rows: list[dict[str, Any]]) -> EventCheck:
        cfg = self.config.cleaning
        now = datetime.now(UTC).replace(tzinfo=None)
        max_ts = now + timedelta(seconds=cfg.max_future_seconds)
        min_ts = datetime.fromisoformat(cfg.min_timestamp)
        out = EventCheck([], [], [], [], [], np.zeros(len(rows), np.int64), [], [])
        for i, row in enumerate(rows):
            reason, column, values = self._row(row, max_ts, min_ts)
            out.reasons.append(reason)
            out.columns.append(column)
            if values is None:
                out.pseudonyms.append(None)
                out.item_ids.append(None)
                out.event_types.append(None)
                out.keys.append(None)
                out.fingerprints.append(None)
                continue
            user, item, etype, ts, amount, quantity, session, event_id = values
            pseudonym = self.pseudonymizer.one(user) if self.pseudonymizer else user
            out.pseudonyms.append(pseudonym)
            out.item_ids.append(item)
            out.event_types.append(etype)
            out.timestamps_ns[i] = int((ts - _EPOCH) / timedelta(microseconds=1)) * 1000
            out.keys.append(None if event_id is None else event_id_key(event_id))
            out.fingerprints.append(
                ("id", event_id)
                if event_id is not None
                else (pseudonym, item, etype, ts, amount, quantity, session)
            )
        return out

    def _row(
        self, row: dict[str, Any], max_ts: datetime, min_ts: datetime
    ) -> tuple[str | None, str | None, tuple[Any, ...] | None]:
        max_id = self.config.cleaning.max_id_length
        user = _text(row.get("user_id"))
        if user is None:
            return "missing user_id", "user_id", None
        if len(user) > max_id:
            return "user_id too long", "user_id", None
        if "\x00" in user:
            return "user_id contains a NUL byte", "user_id", None
        item = _text(row.get("item_id"))
        if item is None:
            return "missing item_id", "item_id", None
        if len(item) > max_id:
            return "item_id too long", "item_id", None
        if "\x00" in item:
            return "item_id contains a NUL byte", "item_id", None
        raw_type = row.get("event_type")
        name = "" if raw_type is None else str(raw_type).strip().lower()
        etype = self.synonyms.get(name) if name else self.fallback
        if etype is None:
            return ("unknown event type" if name else "missing event_type"), "event_type", None
        ts_text = _text(row.get("timestamp"))
        if ts_text is None:
            return "missing timestamp", "timestamp", None
        ts = _timestamp(row.get("timestamp"), ts_text)
        if ts is None:
            return "unparseable timestamp", "timestamp", None
        if ts > max_ts:
            return "timestamp in the future", "timestamp", None
        if ts < min_ts:
            return "timestamp too old", "timestamp", None
        amount_text = _text(row.get("amount"))
        amount = None
        if amount_text is not None:
            amount = _number(row.get("amount"), amount_text)
            if amount is None:
                return "amount is not a number", "amount", None
            if not math.isfinite(amount):
                return "amount is not finite", "amount", None
            if amount < 0:
                return "negative amount", "amount", None
        quantity_text = _text(row.get("quantity"))
        quantity = 1
        if quantity_text is not None:
            number = _number(row.get("quantity"), quantity_text)
            if number is None:
                return "quantity is not a number", "quantity", None
            if not (1 <= number <= _MAX_QUANTITY) or number != math.floor(number):
                return "quantity is not a whole number >= 1", "quantity", None
            quantity = int(number)
        session = _text(row.get("session_id"))
        event_id = _text(row.get("event_id"))
        return None, None, (user, item, etype, ts, amount, quantity, session, event_id)


def _text(value: Any) -> str | None:
    """Trimmed text, None when missing or blank (as the ingest's ``NULLIF(trim(x), '')``)."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value).strip()
    return text or None


def _number(value: Any, text: str) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if "_" in text:  # Python reads 1_000 as a number, DuckDB does not
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _timestamp(value: Any, text: str) -> datetime | None:
    """ISO-8601 (an offset is applied, the result is naive UTC), or Unix seconds / ms."""
    if len(text) > 4 and text[4] == "-":
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    number = _number(value, text)
    if number is None or not math.isfinite(number) or abs(number) >= _MAX_EPOCH_MS:
        return None
    seconds = number / 1000.0 if abs(number) >= 1e11 else number
    try:
        # Microseconds as integers, like the ingest's make_timestamp(CAST(x * 1e6 AS BIGINT)).
        return _EPOCH + timedelta(microseconds=round(seconds * 1_000_000))
    except OverflowError:
        return None
