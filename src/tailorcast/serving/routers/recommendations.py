"""Read routes: a customer's recommendations, a personalized ranking, similar items.

These run on the event loop (``async def``) and call the engine directly: a recommendation
is a short CPU-bound computation that holds the GIL anyway, so a hop to the thread pool
would add latency without adding concurrency.

The GET form's nine query parameters (``k``, ``explain`` and seven filters) are read by one
dependency and validated by one pydantic model
(:class:`~tailorcast.serving.schemas.RecommendQuery`) instead of as nine FastAPI query
parameters: FastAPI inspects each declared parameter's annotation on every request, which
cost more than the recommendation itself. They are documented in the OpenAPI document from
the same model, and a bad value is the same 422 naming ``query.<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import StringConstraints, TypeAdapter, ValidationError

from tailorcast.rules import Rules, build_rules
from tailorcast.serving.deps import EngineDep, ReadKey, check_key, context
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.experiments import ExperimentDep, ExperimentServer
from tailorcast.serving.routers.common import ERRORS
from tailorcast.serving.schemas import (
    RankIn,
    RankOut,
    Recommendation,
    RecommendationsOut,
    RecommendIn,
    RecommendQuery,
    SimilarOut,
)

__all__ = ["MAX_K", "router"]

#: Largest ``k`` a client may ask for.
MAX_K: Final = 100

router = APIRouter(prefix="/v1", tags=["recommendations"])

CustomerId = Annotated[str, Path(min_length=1, max_length=256, description="The shop's ID.")]
ItemId = Annotated[str, Path(min_length=1, max_length=256)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")]
_PARAMS: Final = tuple(RecommendQuery.model_fields)
_REPEATABLE: Final = frozenset({"category", "exclude_category", "exclude_item"})
_DEFAULT_QUERY: Final = RecommendQuery()


async def _query(request: Request) -> tuple[int, bool, Rules | None]:
    """The GET form's ``k``, ``explain`` and filters (as rules; None without any: the
    engine's default rules), once the key's ``read`` scope is checked (here rather than by
    a ``ReadKey`` dependency of its own: each dependency costs FastAPI a solving pass)."""
    check_key(request, "read")
    query = request.query_params
    given: dict[str, Any] = {}
    for name in _PARAMS:
        if name in query:
            given[name] = query.getlist(name) if name in _REPEATABLE else query[name]
    try:
        f = RecommendQuery.model_validate(given) if given else _DEFAULT_QUERY
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from None
    fields = {
        "include_categories": tuple(f.category) if f.category else None,
        "exclude_categories": tuple(f.exclude_category or ()),
        "exclude_items": tuple(f.exclude_item or ()),
        "min_price": f.min_price,
        "max_price": f.max_price,
        "exclude_seen": f.exclude_seen,
        "max_per_category": f.max_per_category,
    }
    # No filter in effect: None, so the engine uses its precompiled default rules.
    given_rules = any(v not in (None, ()) for v in fields.values())
    return f.k, f.explain, build_rules(**fields) if given_rules else None


def _query_parameters() -> list[dict[str, Any]]:
    """OpenAPI query parameters of :class:`RecommendQuery`, as FastAPI would write them."""
    props = RecommendQuery.model_json_schema()["properties"]
    out = []
    for name in _PARAMS:
        schema = dict(props[name])
        description = schema.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if description:
            param["description"] = description
        out.append(param)
    return out


Asked = Annotated[tuple[int, bool, Rules | None], Depends(_query)]


_CUSTOMER_ID: Final = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=256)])


class _DirectRoute(APIRoute):
    """A route whose parameters are resolved by hand instead of by FastAPI's dependency
    solver, for the hottest route (a storefront asks it on every page view).

    FastAPI re-inspects every declared parameter and dependency on every request; for this
    route that cost more than the recommendation itself. The endpoint keeps its declared
    signature (the OpenAPI document is built from it as for any route) and this handler
    resolves the same values with the same rules: the key's ``read`` scope first, then the
    query (:func:`_query`), then the customer ID's length; a bad value is the same 422
    naming ``query.<name>`` or ``path.customer_id``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            asked = await _query(request)
            try:
                customer_id = _CUSTOMER_ID.validate_python(request.path_params["customer_id"])
            except ValidationError as exc:
                raise RequestValidationError(
                    [
                        {**e, "loc": ("path", "customer_id", *e["loc"])}
                        for e in exc.errors(include_input=False)
                    ]
                ) from None
            experiment = getattr(request.app.state, "experiment", None)
            out = await endpoint(
                customer_id=customer_id, request=request, experiment=experiment, asked=asked
            )
            if isinstance(out, Response):
                return out
            return Response(out.model_dump_json(), media_type="application/json")

        return handler


async def recommendations(
    customer_id: CustomerId,
    request: Request,
    experiment: ExperimentDep,
    asked: Asked,
) -> RecommendationsOut | Response:
    """The customer's top ``k`` items, best first, each with a reason, after the filters
    (``category`` keeps only those categories, ``exclude_category``/``exclude_item`` drop
    some, prices bound the range, ``max_per_category`` diversifies).

    An unknown customer gets the cold-start list (popular items), not a 404. The POST form
    of this route takes the full business rules (pins, boosts, whitelists) as a body.
    """
    k, explain, rules = asked
    return _answer(context(request).engine, customer_id, k, explain, rules, experiment)


router.add_api_route(
    "/customers/{customer_id}/recommendations",
    recommendations,
    methods=["GET"],
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations for a customer",
    openapi_extra={"parameters": _query_parameters()},
    route_class_override=_DirectRoute,
)


@router.post(
    "/customers/{customer_id}/recommendations",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations under business rules",
)
async def recommendations_with_rules(
    customer_id: CustomerId,
    body: RecommendIn,
    engine: EngineDep,
    _key: ReadKey,
    experiment: ExperimentDep,
) -> RecommendationsOut | Response:
    """As the GET form, with the full business rules in the body (``rules``: filters,
    ``pin``, ``boost``, ``items`` whitelist, ``max_per_category``...)."""
    return _answer(engine, customer_id, body.k, body.explain, body.rules, experiment)


def _answer(
    engine: ServingEngine,
    customer_id: str,
    k: int,
    explain: bool,
    rules: Rules | None,
    experiment: ExperimentServer | None = None,
) -> RecommendationsOut | Response:
    if experiment is not None:  # an A/B test: the customer's variant answers, and is recorded
        variant, version, items = experiment.recommend(customer_id, k, rules=rules, explain=explain)
        return RecommendationsOut(
            customer_id=customer_id,
            model_version=version,
            variant=variant,
            items=[Recommendation(**row) for row in items],
        )
    version, items = engine.recommend_versioned(customer_id, k, rules=rules, explain=explain)
    # The engine's rows are already the schema's plain types (str, int, float, str|None):
    # answered as they are, without a pydantic round trip per item (which would cost more
    # than the recommendation itself). The route's response_model still documents it.
    body = {"customer_id": customer_id, "model_version": version, "items": items, "variant": None}
    return Response(orjson.dumps(body), media_type="application/json")


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
