"""Dependencies the routes share: the engine, the settings, and API-key checks by scope.

``Annotated`` aliases (``EngineDep``, ``ReadKey``, ...) keep route signatures short and put
the scope a route needs where a reader looks first. The dependencies are ``async`` on purpose:
FastAPI runs a plain function dependency in its thread pool, a hop that costs more per request
than a recommendation. The key itself is checked before routing, by
:class:`~tailorcast.serving.middleware.AuthMiddleware` (so a request without one is refused
before its body is read); the route's dependency checks the scope and the rate limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from tailorcast.serving.auth import ApiKey, KeyStore, Scope, TokenBuckets
from tailorcast.serving.engine import ServingEngine
from tailorcast.serving.metrics import ServerMetrics
from tailorcast.serving.segments import SegmentTable
from tailorcast.serving.settings import ServeSettings

__all__ = [
    "AdminKey",
    "AppContext",
    "EngineDep",
    "ReadKey",
    "WriteKey",
    "check_key",
    "context",
    "require",
]


@dataclass
class AppContext:
    """What one app holds for its lifetime (on ``app.state.ctx``)."""

    engine: ServingEngine
    settings: ServeSettings
    keys: KeyStore
    buckets: TokenBuckets
    metrics: ServerMetrics
    segments: SegmentTable


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def _engine(request: Request) -> ServingEngine:
    return context(request).engine


async def _context(request: Request) -> AppContext:
    return context(request)


EngineDep = Annotated[ServingEngine, Depends(_engine)]
ContextDep = Annotated[AppContext, Depends(_context)]


def check_key(request: Request, scope: Scope) -> ApiKey:
    """The request's key (checked by the key middleware) when it holds ``scope``.

    Raises:
        HTTPException: 401 without a key (an app without the key middleware lets nobody
            in), 403 with a key lacking the scope, 429 with ``Retry-After`` when the key spent
            its rate limit.
    """
    ctx = context(request)
    key = request.scope.get("state", {}).get("api_key")
    if not isinstance(key, ApiKey):
        raise HTTPException(
            401,
            "an API key is required (header X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if scope not in key.scopes:
        raise HTTPException(403, f"this API key lacks the {scope!r} scope")
    wait = ctx.buckets.take(key.id)
    if wait > 0:
        ctx.metrics.rate_limited.inc()
        raise HTTPException(
            429,
            "rate limit exceeded for this API key",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return key


def require(scope: Scope) -> Any:
    """A dependency that lets a request through only with an active key holding ``scope``
    (see :func:`check_key`)."""

    async def check(request: Request) -> ApiKey:
        return check_key(request, scope)

    return Depends(check)


ReadKey = Annotated[ApiKey, require("read")]
WriteKey = Annotated[ApiKey, require("write")]
AdminKey = Annotated[ApiKey, require("admin")]
