"""``POST /v1/events``: one event or a batch, stored durably before the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Discriminator, Tag

from tailorcast.serving.deps import EngineDep, WriteKey, context
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import EventBatch, EventIn, EventsOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"])


def _shape(value: Any) -> str:
    # A batch is recognised by its one field; errors then name the fields of the shape the
    # client meant instead of listing every union member's complaints.
    return "batch" if isinstance(value, dict) and "events" in value else "event"


EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_shape),
]


@router.post("/events", response_model=EventsOut, responses=ERRORS, summary="Record events")
def post_events(body: EventsBody, request: Request, engine: EngineDep, _key: WriteKey) -> EventsOut:
    """Validate and store events (one object, or ``{"events": [...]}``, at most 1000).

    Rows that fail validation are answered in ``rejects`` (with their index) and the rest
    are stored; an ``event_id`` seen before is ignored (counted in ``duplicates``). The
    answer comes after the events are on disk, and the customers' next recommendations
    reflect them.
    """
    events = body.events if isinstance(body, EventBatch) else [body]
    report = engine.add_events([e.model_dump(exclude_none=True) for e in events])
    context(request).metrics.record_events(report)
    return EventsOut.model_validate(report)
