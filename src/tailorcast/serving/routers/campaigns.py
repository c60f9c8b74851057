"""Admin marketing routes: audiences, and campaigns (create, export, measure).

They run the same library functions as ``tailorcast audience`` and ``tailorcast campaign``,
on short visits to the store (read-only, or read-write for a campaign's creation), because
the server does not keep the store's DuckDB file open. While a CLI job holds the file the
answer is 503 with ``Retry-After``. Plain ``def`` routes: this is seconds of work, in the
thread pool.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from tailorcast.artifacts import load_artifact
from tailorcast.errors import NoModelError
from tailorcast.marketing.audiences import build_audience
from tailorcast.marketing.campaigns import create_campaign, export_campaign, measure_campaign
from tailorcast.models.base import Recommender
from tailorcast.serving.audit import append_audit
from tailorcast.serving.deps import AdminKey, EngineDep, context
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import AudienceIn, AudienceOut, CampaignIn
from tailorcast.serving.segments import store_visit

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["marketing"])

CampaignName = Annotated[str, PathParam(min_length=1, max_length=100)]


def _model(engine: ServingEngine, folder: Path) -> tuple[Recommender[Any], str]:
    version = engine.model_info.get("version")
    if not engine.ready or not version:
        raise NoModelError("no model trained yet: run `tailorcast train`")
    return load_artifact(folder, str(version)).model, str(version)


@router.post("/audiences", response_model=AudienceOut, responses=ERRORS, summary="Audience")
def audience(body: AudienceIn, request: Request, engine: EngineDep, _key: AdminKey) -> AudienceOut:
    """The customers most likely to buy an item or a category, or an RFM segment's most
    valuable, best first, with shop customer IDs (at most ``size``, default 1000)."""
    folder = context(request).settings.store
    model = None if body.target.segment is not None else _model(engine, folder)[0]
    with store_visit(engine) as store:
        built = build_audience(
            store,
            body.target,
            model=model,
            size=body.size,
            value_weighted=body.value_weighted,
            min_size=body.min_size,
            recent_days=body.recent_days,
        )
        members = built.members
        pseudonyms = members["user_id"].astype(str).tolist()
        ids: list[str | None] = (
            store.reidentify(pseudonyms, engine.keys) if engine.keys else list(pseudonyms)
        )
    rows = members.assign(customer_id=pd.Series(ids, index=members.index, dtype=object))
    rows = rows[["customer_id", "rank", "score", "segment"]]
    return AudienceOut(**built.summary(), members=rows.to_dict(orient="records"))


@router.post(
    "/campaigns",
    status_code=201,
    response_model=dict[str, Any],
    responses=ERRORS,
    summary="Create a campaign",
)
def campaign(
    body: CampaignIn, request: Request, engine: EngineDep, key: AdminKey
) -> dict[str, Any]:
    """Store a campaign: its audience, a seeded control group, each member's offers."""
    folder = context(request).settings.store
    model, version = _model(engine, folder)
    with store_visit(engine, write=True) as store:
        summary = create_campaign(
            store,
            body.name,
            body.target,
            model=model,
            model_version=version,
            holdout=body.holdout,
            items_per_customer=body.items_per_customer,
            seed=body.seed,
            size=body.size,
            value_weighted=body.value_weighted,
            min_size=body.min_size,
            recent_days=body.recent_days,
            send_date=body.send_date,
            rules=body.rules,
        )
    append_audit(
        folder,
        "campaign.create",
        {"name": summary.name, "members": summary.members},
        actor=f"api-key:{key.id}",
    )
    return summary.to_dict()


@router.get(
    "/campaigns/{name}/measure",
    response_model=dict[str, Any],
    responses=ERRORS,
    summary="Measure a campaign",
)
def measure(
    name: CampaignName,
    engine: EngineDep,
    _key: AdminKey,
    window_days: Annotated[float, Query(gt=0, le=3650)] = 28.0,
    confidence: Annotated[float, Query(ge=0.5, lt=1.0)] = 0.95,
) -> dict[str, Any]:
    """Conversion and revenue of the treated members against the control group."""
    with store_visit(engine) as store:
        result = measure_campaign(store, name, window_days=window_days, confidence=confidence)
    return result.to_dict()


@router.get(
    "/campaigns/{name}/export",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    summary="Export a campaign's send list (CSV)",
)
def export(
    name: CampaignName,
    request: Request,
    engine: EngineDep,
    key: AdminKey,
    contacts: Annotated[
        bool, Query(description="Decrypted contact fields; else pseudonyms.")
    ] = True,
) -> Response:
    """The treated members with their offers, for the shop's mail or push tool. Audited."""
    folder = context(request).settings.store
    with tempfile.TemporaryDirectory() as tmp, store_visit(engine) as store:
        path = Path(tmp) / "campaign.csv"
        _, rows = export_campaign(store, name, path, keys=engine.keys, pseudonymized=not contacts)
        data = path.read_bytes()
    append_audit(
        folder,
        "campaign.export",
        {"name": name, "rows": rows, "contacts": contacts},
        actor=f"api-key:{key.id}",
    )
    return Response(
        data,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="campaign.csv"'},
    )
