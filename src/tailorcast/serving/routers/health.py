"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tailorcast.serving.deps import ReadKey, context
from tailorcast.serving.metrics import CONTENT_TYPE
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import ErrorOut, HealthOut, ReadyOut

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness (no key needed)")
async def healthz() -> HealthOut:
    """200 while the process answers at all."""
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={**ERRORS, 503: {"model": ReadyOut, "description": "No model loaded yet."}},
    summary="Readiness: a model is loaded",
)
async def readyz(request: Request, _key: ReadKey) -> Response:
    """200 when a model is loaded and recommendations can be served, else 503."""
    engine = context(request).engine
    ready = engine.ready
    body = ReadyOut(ready=ready, model_version=engine.model_info.get("version") if ready else None)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        429: {"model": ErrorOut},
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request, _key: ReadKey) -> Response:
    """Requests, latencies, model version, events ingested and rejected, in Prometheus text."""
    ctx = context(request)
    ctx.metrics.set_model(ctx.engine.ready, ctx.engine.model_info)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
