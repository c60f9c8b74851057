"""Customers and items: create or update (``PUT``) and delete.

Plain ``def`` routes: they write to disk (fsync), so they run in the thread pool and leave
the event loop to the reads.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from tailorcast.serving.audit import append_audit
from tailorcast.serving.deps import AdminKey, EngineDep, WriteKey, context
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import CustomerIn, DeleteOut, ItemIn, UpsertOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["catalog"])

CustomerId = Annotated[str, Path(min_length=1, max_length=256)]
ItemId = Annotated[str, Path(min_length=1, max_length=256)]


@router.put(
    "/customers/{customer_id}",
    response_model=UpsertOut,
    responses=ERRORS,
    summary="Upsert customer",
)
def put_customer(
    customer_id: CustomerId, body: CustomerIn, engine: EngineDep, _key: WriteKey
) -> UpsertOut:
    """Create or update a customer's attributes (personal ones are encrypted at rest)."""
    row = {**body.attributes, "user_id": customer_id}
    return UpsertOut(updated=engine.upsert_customers([row]))


@router.delete(
    "/customers/{customer_id}",
    response_model=DeleteOut,
    responses=ERRORS,
    summary="Erase a customer (admin)",
)
def delete_customer(
    customer_id: CustomerId, request: Request, engine: EngineDep, key: AdminKey
) -> DeleteOut:
    """Erase the customer's events, attributes and identity; 404 when unknown.

    Audited: the entry names the acting key and the customer's keyed pseudonym, not the ID.
    """
    deleted = engine.delete_customer(customer_id)
    details: dict[str, object] = {"erased": deleted}
    if engine.keys is not None:  # the keyed pseudonym, never the shop's ID
        details["customer"] = engine.keys.pseudonymizer().one(customer_id.strip())
    append_audit(
        context(request).settings.store, "customer.erase", details, actor=f"api-key:{key.id}"
    )
    if not deleted:
        raise HTTPException(404, "unknown customer: nothing to erase")
    return DeleteOut(deleted=True)


@router.put("/items/{item_id}", response_model=UpsertOut, responses=ERRORS, summary="Upsert item")
def put_item(item_id: ItemId, body: ItemIn, engine: EngineDep, _key: WriteKey) -> UpsertOut:
    """Create or update a catalog item; a new item is recommendable at once (by content)."""
    row = {
        **body.attributes,
        "item_id": item_id,
        "category": body.category,
        "price": body.price,
        "available": body.available,
        "title": body.title,
    }
    return UpsertOut(updated=engine.upsert_items([row]))


@router.delete(
    "/items/{item_id}", response_model=DeleteOut, responses=ERRORS, summary="Remove an item"
)
def delete_item(item_id: ItemId, engine: EngineDep, _key: WriteKey) -> DeleteOut:
    """Take an item out of the catalog (never recommended again); 404 when unknown."""
    if not engine.delete_item(item_id):
        raise HTTPException(404, f"unknown item {item_id!r}")
    return DeleteOut(deleted=True)
