"""Dependencies the routes take, as `Annotated` aliases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from pydantic import BeforeValidator
from sqlmodel import Session

from service.core.settings import Settings
from service.db.pagination import KeyShape
from service.runtime import Runtime


# The dependencies are `async def` although nothing in them awaits: a plain `def` costs every
# request a hop to a worker thread and back (measured: ~15 % of a read's CPU).
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    return runtime.settings


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """A read session; opening it does no I/O, closing it only returns its connection."""
    with runtime.db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
# No write-session dependency on purpose: a dependency's session closes only after the response,
# holding SQLite's write lock meanwhile. Routes that write open `runtime.uow()` inline.
_INTEGER_TEXT = re.compile(r"-?[0-9]+")


def _integer_text(value: Any) -> Any:
    """A query value is text: only digits (and a minus) are the `integer` the document says.

    pydantic's lax int would also read " 7", "7\t", "+7", "7.0" and "1_0" (schemathesis: ST201).
    """
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise ValueError("must be an integer: digits only")
    return value


# For every `int` query parameter.
IntegerText = BeforeValidator(_integer_text)
Limit = Annotated[int, Query(ge=1, le=500, description="page size"), IntegerText]


def _cursor(shape: KeyShape) -> Any:
    """A list's `cursor` query: exactly the strings its key shape decodes (db/pagination.KeyShape)."""
    return Query(min_length=shape.min_length, max_length=2048, pattern=shape.pattern,
                 description="next_cursor of the previous page, unchanged")


# Each list's cursor by the kind of its sort key: a name or id (text), a number, or a name and a version.
Cursor = Annotated[str | None, _cursor(KeyShape.TEXT)]
IntCursor = Annotated[str | None, _cursor(KeyShape.INT)]
NameVersionCursor = Annotated[str | None, _cursor(KeyShape.TEXT_INT)]
# Exactly what the registry reads: a version number (1 up, as registered) or `latest`.
VersionRef = Annotated[str, Path(pattern=r"^([1-9][0-9]{0,8}|latest)$", description="a version number, or `latest`")]
