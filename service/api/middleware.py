"""ASGI middleware: request ids, latency and the access log; the request body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem
from service.core.errors import PayloadTooLarge
from service.core.logs import request_id_var
from service.core.metrics import Metrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("runyard.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids we accept from callers: short and log-safe; anything else is replaced by our own.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# Probes and scrapes would drown the access log at INFO.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Metric labels come from fixed sets only: a caller choosing label values grows /metrics without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(scope: Scope) -> str:
    """The request's method when it is a standard one, else `other`."""
    method = str(scope.get("method", ""))
    return method if method in KNOWN_METHODS else "other"


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/jobs/{job_id}`), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Plain Starlette routes (/openapi.json) leave only their endpoint in the scope.
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for route in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
            if getattr(route, "endpoint", None) is endpoint and isinstance(getattr(route, "path", None), str):
                return str(route.path)
    # A mount (the docs assets) leaves no route in the scope, only its prefix in root_path.
    mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))):]
    return f"{mounted}/{{path}}" if mounted else "unmatched"


def incoming_request_id(scope: Scope) -> str | None:
    """The caller's X-Request-ID, when it is one we can log safely."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


class RequestObservability:
    """ASGI middleware: request id (header in, header out, in every log line), latency, access log."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                # No response of ours is to be sniffed into another type (a log as HTML, say).
                headers.setdefault("X-Content-Type-Options", "nosniff")
                self._record(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if response_started:
                raise
            # Answer here rather than in Starlette's outer error middleware, so the 500 still
            # carries the request id and its log line is tagged with it.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = problem(500, "Internal error", "an unexpected error occurred; it has been logged",
                               Request(scope, receive))
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope)
        method = str(scope.get("method", ""))
        self.metrics.http_seconds.labels(method_label(scope), route, str(status)).observe(elapsed)
        level = logging.DEBUG if scope.get("path") in _QUIET_PATHS else logging.INFO
        access_log.log(
            level, "%s %s %d", method, scope.get("path"), status,
            extra={"method": method, "path": scope.get("path"), "route": route, "status": status,
                   "duration_ms": round(elapsed * 1000, 2)},
        )


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413, before they are parsed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(scope, receive, send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    response = problem(413, "Payload too large", f"request body exceeds {max_bytes} bytes",
                                Request(scope, receive))
    await response(scope, receive, send)
