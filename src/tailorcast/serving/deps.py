"""Dependencies the routes share: the engine, the settings, and API-key checks by scope.

``Annotated`` aliases (``EngineDep``, ``ReadKey``, ...) keep route signatures short and put
the scope a route needs where a reader looks first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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
    "context",
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


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


def _engine(request: Request) -> ServingEngine:
    return context(request).engine


EngineDep = Annotated[ServingEngine, Depends(_engine)]
ContextDep = Annotated[AppContext, Depends(context)]


def require(scope: Scope) -> Any:
    """A dependency that lets a request through only with an active key holding ``scope``.

    401 without a (valid) key, 403 with a key lacking the scope, 429 with ``Retry-After``
    when the key spent its rate limit.
    """

    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> ApiKey:
        ctx = context(request)
        presented = header or (bearer.credentials if bearer is not None else None)
        if not presented:
            raise HTTPException(
                401,
                "an API key is required (header X-API-Key or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = ctx.keys.verify(presented)
        if key is None:
            raise HTTPException(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        request.state.key_id = key.id
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

    return Depends(check)


ReadKey = Annotated[ApiKey, require("read")]
WriteKey = Annotated[ApiKey, require("write")]
AdminKey = Annotated[ApiKey, require("admin")]
