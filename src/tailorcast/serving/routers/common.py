"""OpenAPI descriptions of the error answers every keyed route can give."""

from __future__ import annotations

from typing import Any, Final

from tailorcast.serving.schemas import ErrorOut, ValidationErrorOut

__all__ = ["ERRORS"]

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorOut, "description": "No API key, or an invalid or revoked one."},
    403: {"model": ErrorOut, "description": "The API key lacks the route's scope."},
    404: {"model": ErrorOut, "description": "Unknown item (or customer, for deletes)."},
    413: {"model": ErrorOut, "description": "Request body too large."},
    422: {"model": ValidationErrorOut, "description": "Invalid input; names the field."},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After."},
    503: {"model": ErrorOut, "description": "No model trained yet: run `tailorcast train`."},
}
