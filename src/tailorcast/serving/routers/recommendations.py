"""Read routes: a customer's recommendations, a personalized ranking, similar items.

These run on the event loop (``async def``) and call the engine directly: a recommendation
is a short CPU-bound computation that holds the GIL anyway, so a hop to the thread pool
would add latency without adding concurrency.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Path, Query

from tailorcast.rules import Rules, build_rules
from tailorcast.serving.deps import EngineDep, ReadKey
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import (
    RankIn,
    RankOut,
    Recommendation,
    RecommendationsOut,
    RecommendIn,
    SimilarOut,
)

__all__ = ["MAX_K", "router"]

#: Largest ``k`` a client may ask for.
MAX_K: Final = 100

router = APIRouter(prefix="/v1", tags=["recommendations"])

CustomerId = Annotated[str, Path(min_length=1, max_length=256, description="The shop's ID.")]
ItemId = Annotated[str, Path(min_length=1, max_length=256)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")]
Explain = Annotated[bool, Query(description="Say why each item is recommended.")]
Names = Annotated[list[str] | None, Query(max_length=100, description="Repeatable.")]
Price = Annotated[float | None, Query(ge=0, allow_inf_nan=False)]


@router.get(
    "/customers/{customer_id}/recommendations",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations for a customer",
)
async def recommendations(
    customer_id: CustomerId,
    engine: EngineDep,
    _key: ReadKey,
    k: K = 10,
    explain: Explain = True,
    category: Names = None,
    exclude_category: Names = None,
    exclude_item: Names = None,
    min_price: Price = None,
    max_price: Price = None,
    exclude_seen: Annotated[
        bool | None, Query(description="Leave out items the customer interacted with.")
    ] = None,
    max_per_category: Annotated[int | None, Query(ge=1, le=MAX_K)] = None,
) -> RecommendationsOut:
    """The customer's top ``k`` items, best first, each with a reason, after the filters
    (``category`` keeps only those categories, ``exclude_category``/``exclude_item`` drop
    some, prices bound the range, ``max_per_category`` diversifies).

    An unknown customer gets the cold-start list (popular items), not a 404. The POST form
    of this route takes the full business rules (pins, boosts, whitelists) as a body.
    """
    given = {
        "include_categories": tuple(category) if category else None,
        "exclude_categories": tuple(exclude_category or ()),
        "exclude_items": tuple(exclude_item or ()),
        "min_price": min_price,
        "max_price": max_price,
        "exclude_seen": exclude_seen,
        "max_per_category": max_per_category,
    }
    # No filter at all: None, so the engine uses its precompiled default rules.
    rules = build_rules(**given) if any(v not in (None, ()) for v in given.values()) else None
    return _answer(engine, customer_id, k, explain, rules)


@router.post(
    "/customers/{customer_id}/recommendations",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations under business rules",
)
async def recommendations_with_rules(
    customer_id: CustomerId, body: RecommendIn, engine: EngineDep, _key: ReadKey
) -> RecommendationsOut:
    """As the GET form, with the full business rules in the body (``rules``: filters,
    ``pin``, ``boost``, ``items`` whitelist, ``max_per_category``...)."""
    return _answer(engine, customer_id, body.k, body.explain, body.rules)


def _answer(
    engine: ServingEngine, customer_id: str, k: int, explain: bool, rules: Rules | None
) -> RecommendationsOut:
    items = engine.recommend(customer_id, k, rules=rules, explain=explain)
    return RecommendationsOut(
        customer_id=customer_id,
        model_version=engine.model_info.get("version"),
        items=[Recommendation(**row) for row in items],
    )


@router.post(
    "/customers/{customer_id}/rank",
    response_model=RankOut,
    responses=ERRORS,
    summary="Order candidate items for a customer",
)
async def rank(customer_id: CustomerId, body: RankIn, engine: EngineDep, _key: ReadKey) -> RankOut:
    """The candidates, best first for this customer; items the model does not know go last."""
    items = engine.rank(customer_id, list(body.items), explain=body.explain)
    return RankOut(customer_id=customer_id, items=[Recommendation(**row) for row in items])


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarOut,
    responses=ERRORS,
    summary="Items similar to an item",
)
async def similar(item_id: ItemId, engine: EngineDep, _key: ReadKey, k: K = 10) -> SimilarOut:
    """The ``k`` items most similar to ``item_id``; 404 for an item the catalog lacks."""
    items = engine.similar(item_id, k)
    return SimilarOut(item_id=item_id, items=[Recommendation(**row) for row in items])
