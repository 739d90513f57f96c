"""Serve the app with uvicorn: shared by `python -m service` and `runyard serve`.

uvicorn bounds neither how many connections it holds nor how long a client may take to send
its headers or body, and each connection is a file descriptor: past the process's limit every
`accept()` and every database open fails. `limited_protocol` adds those bounds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.app import create_app
from service.core.logs import configure_logging
from service.core.settings import Settings

log = logging.getLogger(__name__)
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")
_BUSY_BODY = (b'{"type":"https://runyard.dev/problems/too-many-connections","title":"Too many connections",'
              b'"status":503,"detail":"the server holds its maximum of open connections; retry shortly"}')


class CorkedTransport:
    """A connection's transport whose writes of one event-loop step go out as one send.

    uvicorn writes a response's status line and headers, then its body, each straight to the socket:
    two sends, and at one connection two wake-ups of the client per request (issue 16). Writes are
    held until the step ends (`call_soon`): a response answered without waiting goes out whole.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():  # the peer went away meanwhile: nobody to send to
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def limited_protocol(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap, header/body read timeouts and corked writes."""

    class LimitedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _timed: object = None  # the h11 state the timer is for

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
            if len(self.connections) > settings.max_connections:
                transport.write(_BUSY % (len(_BUSY_BODY), _BUSY_BODY))
                transport.close()
                return
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _watch(self) -> None:
            """Time the part of the request being read: its headers, then its body."""
            state = self.conn.their_state
            if state is self._timed:
                return
            self._disarm()
            if state is h11.IDLE and self.cycle is None:
                self._arm(state, settings.header_timeout_seconds)
            elif state is h11.SEND_BODY:
                self._arm(state, settings.body_timeout_seconds)

        def _arm(self, state: object, seconds: float) -> None:
            self._timed = state
            self._timer = self.loop.call_later(seconds, self._expire, state)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timed = None, None

        def _expire(self, state: object) -> None:
            self._timer, self._timed = None, None
            if self.conn.their_state is state and not self.transport.is_closing():
                part = "headers" if state is h11.IDLE else "body"
                log.info("closing a connection that did not send its request %s in time", part)
                self.transport.close()

    return LimitedH11Protocol


def settle_heap() -> None:
    """Move every object made so far (modules, classes, routes, schemas) out of the collector's
    sight, then let it run: a full collection otherwise walks all of them again each time, and the
    poller's busy ticks at 10,000 runs trigger many."""
    gc.freeze()
    gc.enable()


def serve(settings: Settings) -> None:
    """Configure logging, then run uvicorn on the settings' host and port until stopped."""
    configure_logging(settings.log_level, settings.resolved_log_format())
    app = create_app(settings)
    settle_heap()
    uvicorn.run(
        app, host=settings.host, port=settings.port,
        log_level=settings.log_level.lower(),
        # Our logging setup and our access log (with request ids) replace uvicorn's.
        log_config=None, access_log=False,
        # Connections past the cap get a 503 problem with Retry-After from the protocol itself
        # (not uvicorn's limit_concurrency: its 503 is plain text with no Retry-After).
        http=limited_protocol(settings),
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
    )
