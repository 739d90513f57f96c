"""service.server.CorkedTransport: a response's header and body writes leave in one send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.server import CorkedTransport


class _Transport:
    """The asyncio.Transport calls the wrapper makes, recorded."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name)


@pytest.mark.asyncio
async def test_writes_of_one_step_are_one_send_and_close_flushes_first() -> None:
    raw = _Transport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.write(b"")
    corked.write(memoryview(b"body"))
    assert raw.sent == []
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert corked.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the transport's

    corked.write(b"last")
    corked.close()
    assert (raw.sent[-1], raw.closed) == (b"last", True)
    await asyncio.sleep(0)  # the step's flush finds nothing left
    assert len(raw.sent) == 2


@pytest.mark.asyncio
async def test_a_transport_closed_meanwhile_gets_nothing() -> None:
    raw = _Transport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"late")
    raw.close()
    await asyncio.sleep(0)
    assert raw.sent == []
