"""ASGI middleware of the server: request-body limit, and the access log with metrics.

Plain ASGI classes rather than Starlette's ``BaseHTTPMiddleware``: that one runs every
request through an extra task and memory stream, which costs more than a recommendation.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailorcast.serving.metrics import ServerMetrics

__all__ = ["ACCESS_LOGGER", "BodyLimitMiddleware", "ObserveMiddleware", "route_template"]

ACCESS_LOGGER: Final = "tailorcast.serving.access"
_access = logging.getLogger(ACCESS_LOGGER)
UNMATCHED: Final = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the concrete path (which holds IDs)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


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
