"""The HTTP API: :func:`create_app` wraps a :class:`ServingEngine` in a FastAPI app.

Routes live in :mod:`tailorcast.serving.routers` (one module per resource); this module adds
the middleware (body limit, access log and metrics, CORS when configured) and maps the
library's exceptions to HTTP answers:

=================================  ======================================================
``RequestValidationError``         422, naming the field (``body.events.0.timestamp: ...``)
``NotFoundError``                  404 with the message (unknown item, customer, job)
``NoModelError``                   503 "no model trained yet: run `tailorcast train`"
``StoreBusyError``                 503 with Retry-After (a CLI job holds the store)
other ``UserError``                422 with the message (input the engine refused)
anything else                      500 "internal error" (logged with its traceback: a bug)
=================================  ======================================================

Example::

    engine = ServingEngine(Path("shop"), keys=keys)
    app = create_app(engine, settings=ServeSettings(store=Path("shop")))
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from tailorcast.config import Settings
from tailorcast.errors import KeyMaterialError, NoModelError, NotFoundError, UserError
from tailorcast.privacy import resolve_keys
from tailorcast.serving.auth import KeyStore, TokenBuckets
from tailorcast.serving.deps import AppContext
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.experiments import close_experiment, experiment_server
from tailorcast.serving.metrics import ServerMetrics
from tailorcast.serving.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    ObserveMiddleware,
    route_template,
)
from tailorcast.serving.routers import (
    admin,
    campaigns,
    catalog,
    events,
    health,
    marketing,
    recommendations,
)
from tailorcast.serving.segments import SegmentTable, StoreBusyError
from tailorcast.serving.settings import ServeSettings

__all__ = ["app_from_env", "create_app"]

_log = logging.getLogger("tailorcast.serving")

_DESCRIPTION = """Personalized recommendations, events and catalog updates for one shop.

Every route but `/healthz` needs an API key (`X-API-Key: <key>` or
`Authorization: Bearer <key>`) with the route's scope: **read** (recommendations, ranking,
similar items, readiness, metrics), **write** (events, customers, items) or **admin**
(model, retraining, erasure). Make keys with `tailorcast keys create --scope read`.
"""


def create_app(engine: ServingEngine, *, settings: ServeSettings) -> FastAPI:
    """The API around ``engine``. The caller owns the engine (and closes it)."""
    metrics = ServerMetrics()
    ctx = AppContext(
        engine=engine,
        settings=settings,
        keys=KeyStore(settings.store),
        buckets=TokenBuckets(settings.rate_limit, settings.rate_burst),
        metrics=metrics,
        segments=SegmentTable(engine),
    )
    app = FastAPI(
        title="tailorcast",
        version=_version(),
        description=_DESCRIPTION,
        openapi_url="/openapi.json" if settings.docs else None,
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.experiment = experiment_server(engine, settings.experiment)  # None: no A/B test
    for module in (health, recommendations, events, catalog, admin, marketing, campaigns):
        app.include_router(module.router)
    _add_error_handlers(app)
    # Added innermost first: the access log sees every answer, 401s, 413s and CORS refusals
    # too; the key is checked before the body is read (401 before 413 or 422), and CORS
    # answers preflight requests (which carry no key) before the key check.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # The docs paths need no key (they are 404 when the docs are off).
    open_paths = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
    app.add_middleware(AuthMiddleware, keys=ctx.keys, open_paths=open_paths)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    _document_keys(app, open_paths)
    return app


def _document_keys(app: FastAPI, open_paths: frozenset[str]) -> None:
    """The key schemes in the OpenAPI document, on every operation that needs a key (the
    key is checked by middleware, so FastAPI does not know of it by itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "APIKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "The API key.",
            },
            "HTTPBearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <API key>`",
            },
        }
        for path, ops in schema.get("paths", {}).items():
            if path in open_paths:
                continue
            for op in ops.values():
                op["security"] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The app uvicorn workers build (``factory=True``): settings from ``TAILORCAST_SERVE_*``,
    store keys from ``TAILORCAST_*``; the engine lives as long as the app."""
    settings = ServeSettings()
    keys = resolve_keys(
        Settings(), settings.store, insecure_dev=settings.insecure_dev, create=False
    )
    engine = ServingEngine(settings.store, keys=keys, retrain_interval_s=settings.retrain_every_s)
    app = create_app(engine, settings=settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            close_experiment(app)  # first: the engine's last merge takes its served lists
            engine.close()

    app.router.lifespan_context = lifespan
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_clean_error(e) for e in exc.errors()]
        first = errors[0] if errors else {"field": "request", "msg": "invalid"}
        return JSONResponse(
            {"detail": f"{first['field']}: {first['msg']}", "errors": errors}, status_code=422
        )

    @app.exception_handler(NoModelError)
    async def no_model(_: Request, exc: NoModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "60"})

    @app.exception_handler(StoreBusyError)
    async def busy(_: Request, exc: StoreBusyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UserError)
    async def refused(request: Request, exc: UserError) -> JSONResponse:
        if isinstance(exc, KeyMaterialError):  # the server's keys, not the client's input
            return _internal(request, exc)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    # The route template only: the concrete path and the body may hold customer IDs.
    _log.error(
        "internal error on %s %s",
        request.method,
        route_template(request.scope),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


def _clean_error(error: Any) -> dict[str, Any]:
    """A validation error without the offending value (it may be personal data)."""
    loc: Sequence[Any] = error.get("loc", ())
    kind = error.get("type")
    msg = str(error.get("msg", ""))
    if kind == "json_invalid" and len(loc) == 2:  # ("body", character offset)
        cause = (error.get("ctx") or {}).get("error", "")
        msg = f"malformed JSON at character {loc[1]}" + (f" ({cause})" if cause else "")
        loc = ("body",)
    field = ".".join(str(part) for part in loc) or "request"
    return {"field": field, "loc": list(loc), "msg": msg, "type": kind}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tailorcast")
    except PackageNotFoundError:
        return "0.0.0"
