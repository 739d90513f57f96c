"""The text/event-stream format, sans I/O: bytes in, events out (the WHATWG EventSource rules).

Lines end at CR, LF or CRLF and nowhere else. The split is done on bytes, before decoding, because
`str.splitlines()` (and httpx's `iter_lines`) also break at U+2028, U+0085 and friends: a job that
prints those could otherwise make one of its `log` events parse as a forged `end` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@dataclass
class LineSplitter:
    """Cuts a byte stream into lines at CR, LF or CRLF, across chunk boundaries."""

    _buffer: bytearray = field(default_factory=bytearray)
    _after_cr: bool = False  # the last chunk ended in CR: an LF first in the next one belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        if self._after_cr and chunk[:1] == b"\n":
            start = 1
        self._after_cr = False
        i = start
        while i < len(chunk):
            byte = chunk[i]
            if byte in (0x0A, 0x0D):
                self._buffer += chunk[start:i]
                lines.append(self._buffer.decode("utf-8", errors="replace"))
                self._buffer.clear()
                if byte == 0x0D:
                    if i + 1 == len(chunk):
                        self._after_cr = True
                    elif chunk[i + 1] == 0x0A:
                        i += 1
                start = i + 1
            i += 1
        self._buffer += chunk[start:]
        return lines


@dataclass
class SseParser:
    """Turns text/event-stream lines into events, as the WHATWG EventSource algorithm does."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None
    _retry: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its terminator); return an event when a blank line ends one."""
        if not line:
            if not self._data:
                self._event, self._retry = "", None
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._event, self._data, self._retry = "", [], None
            return event
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None


@dataclass
class SseDecoder:
    """Bytes of a text/event-stream body in, complete events out."""

    _lines: LineSplitter = field(default_factory=LineSplitter)
    _parser: SseParser = field(default_factory=SseParser)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return [event for line in self._lines.feed(chunk) if (event := self._parser.feed(line)) is not None]
