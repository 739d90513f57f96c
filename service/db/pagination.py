"""Keyset pagination with opaque cursors, shared by every list endpoint."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import tuple_
from sqlmodel import Session

from service.core.errors import InvalidRequest

T = TypeVar("T")
MAX_LIMIT = 500
# A key value must fit the database's 64-bit integers and encode as text: json.loads accepts
# 2**63, "\ud800" and NUL, each of which would fail (500) only once bound into the query.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_MAX_TEXT = 1024


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque token for the position after a row with these key values."""
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key values in `cursor`; a token that is not ours is a 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not valid; pass back a next_cursor unchanged") from exc
    if not isinstance(values, list) or len(values) != arity or not all(_valid_key(v) for v in values):
        raise InvalidRequest("cursor is not valid; pass back a next_cursor unchanged")
    return values


def _valid_key(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT_MIN <= value <= _INT_MAX
    if isinstance(value, str):
        if len(value) > _MAX_TEXT or "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return False
        return True
    return False


def keyset_page(
    session: Session,
    stmt: Any,
    keys: Sequence[Any],
    key_of: Callable[[Any], Sequence[Any]],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """Rows of `stmt` (a select) after `cursor` ordered by `keys` (columns), and the next cursor."""
    key = tuple_(*keys) if len(keys) > 1 else keys[0]
    if cursor is not None:
        values = decode_cursor(cursor, len(keys))
        bound = tuple_(*values) if len(values) > 1 else values[0]
        stmt = stmt.where(key < bound if descending else key > bound)
    order = [k.desc() if descending else k.asc() for k in keys]
    rows = list(session.exec(stmt.order_by(*order).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key_of(rows[-1]))
