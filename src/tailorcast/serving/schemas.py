"""Request and response bodies of the HTTP API (pydantic, strict, unknown fields refused).

Strict means no silent coercion: ``"3"`` is not a quantity and ``1`` is not ``true``; a
body with a misspelt field is a 422 naming it instead of a request that quietly ignores
half of what the client meant. Limits (string lengths, list sizes) keep one request's
work bounded; the server's body-size limit is the second fence.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from tailorcast.marketing.audiences import AudienceTarget
from tailorcast.rules import Rules

__all__ = [
    "MAX_BATCH",
    "AudienceIn",
    "AudienceMember",
    "AudienceOut",
    "CampaignIn",
    "CustomerIn",
    "DeleteOut",
    "ErrorOut",
    "EventBatch",
    "EventIn",
    "EventsOut",
    "HealthOut",
    "ItemIn",
    "RankIn",
    "RankOut",
    "ReadyOut",
    "RecommendIn",
    "RecommendQuery",
    "Recommendation",
    "RecommendationsOut",
    "RejectOut",
    "RetrainIn",
    "RetrainOut",
    "SegmentsOut",
    "SimilarOut",
    "UpsertOut",
    "ValidationErrorOut",
]

#: Most events in one POST, most candidates in one ranking.
MAX_BATCH: Final = 1000

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Text = Annotated[str, StringConstraints(max_length=1000)]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
AttributeValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_STORE_COLUMNS: Final = frozenset({"batch_id", "updated_at"})
_CUSTOMER_FIELDS: Final = _STORE_COLUMNS | {"user_id"}
_ITEM_FIELDS: Final = _STORE_COLUMNS | {"item_id", "category", "price", "available", "title"}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# -- requests --------------------------------------------------------------------------------
class EventIn(_Strict):
    """One customer event, with the columns of an events file (see the ingest docs)."""

    user_id: Id = Field(description="The shop's customer ID.")
    item_id: Id
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="view, favorite, cart, purchase (or a configured synonym)."
    )
    timestamp: Annotated[str, StringConstraints(min_length=1, max_length=64)] | float = Field(
        description="ISO-8601 text or Unix seconds."
    )
    amount: Price | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    session_id: Id | None = None
    event_id: Id | None = Field(
        default=None, description="Idempotency key; derived from the event when absent."
    )


class EventBatch(_Strict):
    """Several events in one request (stored together, all-or-nothing)."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class RankIn(_Strict):
    """Candidates to order for one customer (e.g. a category page's products)."""

    items: list[Id] = Field(min_length=1, max_length=MAX_BATCH)
    explain: bool = True


def _check_names(attributes: dict[str, Any], reserved: frozenset[str]) -> dict[str, Any]:
    # Column names are case-insensitive in the store: "Price" would be the item's price
    # column, and "city" and "City" one column with two values.
    folded = [name.casefold() for name in attributes]
    clash = sorted({n for n in folded if n in reserved})
    if clash:
        raise ValueError(f"{', '.join(clash)} cannot be an attribute (a field of its own)")
    if len(set(folded)) != len(folded):
        raise ValueError("attribute names must differ in more than upper/lower case")
    return attributes


class CustomerIn(_Strict):
    """A customer's attributes; personal ones (email, phone, name, address) are encrypted."""

    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict, max_length=64)

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_names(value, _CUSTOMER_FIELDS)


class ItemIn(_Strict):
    """A catalog entry; ``available: false`` keeps it out of recommendations."""

    category: Annotated[str, StringConstraints(max_length=256)] | None = None
    price: Price | None = None
    available: bool = True
    title: Text | None = None
    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict, max_length=64)

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_names(value, _ITEM_FIELDS)


class RecommendIn(_Strict):
    """A recommendation request with business rules (see :class:`tailorcast.rules.Rules`)."""

    k: int = Field(default=10, ge=1, le=100)
    explain: bool = True
    rules: Rules | None = None


class AudienceIn(_Strict):
    """Who to target: ``target`` is exactly one of ``item``, ``category``, ``segment``."""

    target: AudienceTarget
    size: int = Field(default=1000, ge=1, le=100_000)
    value_weighted: bool = False
    min_size: int = Field(default=50, ge=1, le=100_000)
    recent_days: float = Field(default=30.0, ge=0, le=3650)


class CampaignIn(AudienceIn):
    """A campaign: an audience, a control share, offers per member, optional rules."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    size: int | None = Field(default=None, ge=1, le=1_000_000)  # type: ignore[assignment]
    holdout: float = Field(default=0.1, gt=0, lt=1)
    items_per_customer: int = Field(default=3, ge=1, le=50)
    seed: int = Field(default=0, ge=0, le=2**31)
    send_date: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    rules: Rules | None = None


class RetrainIn(_Strict):
    """A background retrain: ``auto`` searches models within ``budget_s`` seconds."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "auto"
    budget_s: float = Field(default=60.0, gt=0, le=86_400)


# -- responses -------------------------------------------------------------------------------
class RecommendQuery(BaseModel):
    """The query parameters of ``GET .../recommendations`` (not strict: they arrive as
    text). Validated in one pass by the route (see its module for why)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    k: int = Field(default=10, ge=1, le=100, description="How many items.")
    explain: bool = Field(default=True, description="Say why each item is recommended.")
    category: list[str] | None = Field(
        default=None, max_length=100, description="Only these categories. Repeatable."
    )
    exclude_category: list[str] | None = Field(
        default=None, max_length=100, description="Not these categories. Repeatable."
    )
    exclude_item: list[str] | None = Field(
        default=None, max_length=100, description="Not these items. Repeatable."
    )
    min_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    exclude_seen: bool | None = Field(
        default=None, description="Leave out items the customer interacted with."
    )
    max_per_category: int | None = Field(default=None, ge=1, le=100)


class Recommendation(BaseModel):
    item_id: str
    rank: int
    score: float | None
    reason: str | None = None


class RecommendationsOut(BaseModel):
    customer_id: str
    model_version: str | None
    items: list[Recommendation]
    variant: str | None = Field(
        default=None, description="The customer's A/B test variant, when the server runs one."
    )


class RankOut(BaseModel):
    customer_id: str
    items: list[Recommendation]


class SimilarOut(BaseModel):
    item_id: str
    items: list[Recommendation]


class RejectOut(BaseModel):
    index: int
    reason: str


class EventsOut(BaseModel):
    rows_read: int
    accepted: int
    rejected: int
    duplicates: int
    rejected_by_reason: dict[str, int]
    rejects: list[RejectOut]


class UpsertOut(BaseModel):
    updated: int


class DeleteOut(BaseModel):
    deleted: bool


class RetrainOut(BaseModel):
    job: str
    status: Literal["started"] = "started"


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None = None


class RfmOut(BaseModel):
    recency_days: float | None
    frequency: int
    monetary: float | None
    r: int
    f: int
    m: int
    segment: str


class ClvOut(BaseModel):
    horizon_days: int
    expected_purchases: float | None
    expected_spend: float | None
    p_alive: float | None


class SegmentsOut(BaseModel):
    customer_id: str
    as_of: str | None
    rfm: RfmOut | None
    clv: ClvOut | None
    clv_note: str | None = None


class AudienceMember(BaseModel):
    customer_id: str | None
    rank: int
    score: float
    segment: str


class AudienceOut(BaseModel):
    target: dict[str, str]
    as_of: str
    size: int
    value_weighted: bool
    excluded: dict[str, int]
    members: list[AudienceMember]


class ErrorOut(BaseModel):
    detail: str


class ValidationErrorOut(BaseModel):
    detail: str
    errors: list[dict[str, Any]]
