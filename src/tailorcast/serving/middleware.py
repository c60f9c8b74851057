"""ASGI middleware of the server: API-key check, request-body limit, access log with metrics.

Plain ASGI classes rather than Starlette's ``BaseHTTPMiddleware``: that one runs every
request through an extra task and memory stream, which costs more than a recommendation.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailorcast.serving.auth import KeyStore
from tailorcast.serving.metrics import ServerMetrics

__all__ = [
    "ACCESS_LOGGER",
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "ObserveMiddleware",
    "route_template",
]

ACCESS_LOGGER: Final = "tailorcast.serving.access"
_access = logging.getLogger(ACCESS_LOGGER)
UNMATCHED: Final = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the concrete path (which holds IDs)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


async def _send_json(
    send: Send,
    status: int,
    body: dict[str, str],
    *,
    close: bool = True,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A JSON answer sent before the app saw the request; ``close`` when its body was not
    read (the connection cannot carry another request after an unread body)."""
    payload = json.dumps(body).encode("utf-8")
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode("ascii")),
        *headers,
    ]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


_CHALLENGE: Final = ((b"www-authenticate", b"Bearer"),)


class AuthMiddleware:
    """401 for a request without an active API key, before anything reads its body.

    Every path but ``open_paths`` (``/healthz``, and the API docs when served) needs a key,
    sent as ``X-API-Key`` or ``Authorization: Bearer``. The key found is put in the request
    state (``api_key``, and its public ``key_id`` for the access log); whether it holds the
    route's scope is the route's own check (:func:`tailorcast.serving.deps.require`).
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, open_paths: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header: str | None = None
        bearer: str | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                header = value.decode("latin-1").strip()
            elif name == b"authorization":
                kind, _, credentials = value.decode("latin-1").partition(" ")
                if kind.lower() == "bearer":
                    bearer = credentials.strip()
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                has_body = True
        presented = header or bearer
        if not presented:
            detail = "an API key is required (header X-API-Key or Authorization: Bearer)"
            await _send_json(send, 401, {"detail": detail}, close=has_body, headers=_CHALLENGE)
            return
        key = self.keys.verify(presented)
        if key is None:
            detail = "invalid or revoked API key"
            await _send_json(send, 401, {"detail": detail}, close=has_body, headers=_CHALLENGE)
            return
        state = scope.setdefault("state", {})
        state["api_key"] = key
        state["key_id"] = key.id
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed (chunked).

    The body is read here, up to the limit, and replayed to the app; nothing larger is ever
    held in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = {"detail": f"request body larger than {self.max_bytes} bytes"}
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, too_big)
                    return
                has_body = has_body or declared > 0
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:  # HTTP/1.1: no length and no chunking is no body (most GETs)
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ObserveMiddleware:
    """One access-log line and the request metrics per HTTP request.

    The log line has the method, the route *template*, the status, the time and the API
    key's public id (never the key, the path's IDs, the query or the body).
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe(method, route, status, seconds)
            if _access.isEnabledFor(logging.INFO):
                state = scope.get("state") or {}
                _access.info(
                    "%s %s %d %.1fms key=%s",
                    method,
                    route,
                    status,
                    seconds * 1000,
                    state.get("key_id", "-"),
                )
