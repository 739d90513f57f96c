"""The frames a model worker and the service exchange over the worker's stdin and stdout.

A frame is a 4-byte big-endian header length, a JSON header, then `header["nbytes"]` raw bytes
(rows as float64, C order). Replies are JSON; the load report of a linear model carries its
parameters as float64 bytes (linear.py). The service never unpickles anything a worker sends, so a
model that takes over its worker still cannot run code in the service.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

_LENGTH = struct.Struct(">I")
MAX_HEADER = 64 * 1024 * 1024


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: `header` (gets `nbytes`) followed by `payload`."""
    raw = json.dumps({**header, "nbytes": len(payload)}, separators=(",", ":")).encode()
    return _LENGTH.pack(len(raw)) + raw + payload


def header_length(prefix: bytes) -> int:
    """The header length a frame's first 4 bytes announce."""
    length = int(_LENGTH.unpack(prefix)[0])
    if length > MAX_HEADER:
        raise ValueError(f"frame header of {length} bytes is too large")
    return length


def payload_length(header: dict[str, Any]) -> int:
    """The payload length a header announces; a worker cannot make the service read without bound."""
    length = int(header.get("nbytes") or 0)
    if not 0 <= length <= MAX_HEADER:
        raise ValueError(f"frame payload of {length} bytes is too large")
    return length


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next frame from a blocking stream; None at end of stream."""
    prefix = stream.read(_LENGTH.size)
    if len(prefix) < _LENGTH.size:
        return None
    header = json_loads(stream.read(header_length(prefix)))
    payload = stream.read(payload_length(header))
    return header, payload


def json_loads(raw: bytes) -> dict[str, Any]:
    """A header; anything but a JSON object is a broken frame."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("frame header is not a JSON object")
    return value
