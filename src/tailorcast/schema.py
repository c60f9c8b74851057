"""Canonical columns, event types and default weights: what every reader maps into."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_EVENT_SYNONYMS",
    "DEFAULT_EVENT_WEIGHTS",
    "DEFAULT_PII_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "ITEM_ID",
    "OPTIONAL_EVENT_COLUMNS",
    "REQUIRED_EVENT_COLUMNS",
    "USER_ID",
]

USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"

#: The canonical event types, in funnel order.
EVENT_TYPES: Final[tuple[str, ...]] = ("view", "favorite", "cart", "purchase")

#: Columns an events source must provide after mapping (event_type may be given by flag).
REQUIRED_EVENT_COLUMNS: Final[tuple[str, ...]] = ("user_id", "item_id", "event_type", "timestamp")
OPTIONAL_EVENT_COLUMNS: Final[tuple[str, ...]] = ("amount", "quantity", "session_id", "event_id")
EVENT_COLUMNS: Final[tuple[str, ...]] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS

#: Default interaction strength per event type (purchase > cart > favorite > view).
DEFAULT_EVENT_WEIGHTS: Final[dict[str, float]] = {
    "view": 1.0,
    "favorite": 2.0,
    "cart": 3.0,
    "purchase": 5.0,
}

#: Names shops use for the canonical event types (matched case-insensitively, trimmed).
DEFAULT_EVENT_SYNONYMS: Final[dict[str, str]] = {
    "view": "view",
    "views": "view",
    "click": "view",
    "pv": "view",
    "detail": "view",
    "page_view": "view",
    "pageview": "view",
    "product_view": "view",
    "favorite": "favorite",
    "favourite": "favorite",
    "fav": "favorite",
    "wishlist": "favorite",
    "add_to_wishlist": "favorite",
    "like": "favorite",
    "cart": "cart",
    "add_to_cart": "cart",
    "addtocart": "cart",
    "add-to-cart": "cart",
    "basket": "cart",
    "add_to_basket": "cart",
    "purchase": "purchase",
    "buy": "purchase",
    "order": "purchase",
    "checkout": "purchase",
    "transaction": "purchase",
    "sale": "purchase",
}

#: Users-table columns treated as personal data and encrypted at rest by default.
DEFAULT_PII_COLUMNS: Final[tuple[str, ...]] = (
    "email",
    "phone",
    "name",
    "first_name",
    "last_name",
    "address",
)
