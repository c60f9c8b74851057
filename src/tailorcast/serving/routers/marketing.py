"""Marketing reads: a customer's RFM segment and predicted lifetime value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from tailorcast.serving.deps import ReadKey, context
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import SegmentsOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["marketing"])

CustomerId = Annotated[str, Path(min_length=1, max_length=256)]


@router.get(
    "/customers/{customer_id}/segments",
    response_model=SegmentsOut,
    responses=ERRORS,
    summary="A customer's RFM segment and lifetime value",
)
def segments(customer_id: CustomerId, request: Request, _key: ReadKey) -> SegmentsOut:
    """RFM scores (1-5) and segment, and expected purchases, spend and probability of being
    still active over the next 365 days (BG/NBD + Gamma-Gamma). A customer without orders
    gets ``null`` for both, not a 404. The shop-wide tables are cached for ten minutes; the
    first call computes them (seconds), in the thread pool, off the event loop."""
    return SegmentsOut(customer_id=customer_id, **context(request).segments.lookup(customer_id))
