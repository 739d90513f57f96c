"""Dependencies the routes take, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlmodel import Session

from service.core.settings import Settings
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
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
# A cursor is base64url without padding (db/pagination.encode_cursor); one that is not ours is a 422.
Cursor = Annotated[str | None, Query(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="next_cursor of the previous page, unchanged")]
# Exactly what the registry reads: a version number (1 up, as registered) or `latest`.
VersionRef = Annotated[str, Path(pattern=r"^([1-9][0-9]{0,8}|latest)$", description="a version number, or `latest`")]
