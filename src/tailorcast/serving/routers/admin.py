"""Admin routes: the model being served, and a background retrain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tailorcast.serving.audit import append_audit
from tailorcast.serving.deps import AdminKey, EngineDep, context
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import RetrainIn, RetrainOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/model", response_model=dict[str, Any], responses=ERRORS, summary="Model info")
def model_info(engine: EngineDep, _key: AdminKey) -> dict[str, Any]:
    """Version, model name, training time and validation metrics of the served model."""
    return {"ready": engine.ready, **engine.model_info}


@router.post(
    "/model/retrain",
    response_model=RetrainOut,
    status_code=202,
    responses=ERRORS,
    summary="Retrain in the background",
)
def retrain(
    request: Request, engine: EngineDep, key: AdminKey, body: RetrainIn | None = None
) -> RetrainOut:
    """Start a retrain; the new model replaces the served one atomically when it is done."""
    body = body or RetrainIn()
    job = engine.retrain(model=body.model, budget_s=body.budget_s)
    append_audit(
        context(request).settings.store,
        "model.retrain",
        {"model": body.model, "budget_s": body.budget_s, "job": job},
        actor=f"api-key:{key.id}",
    )
    return RetrainOut(job=job)
