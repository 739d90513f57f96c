"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.deps import RuntimeDep
from service.api.schemas import Health
from service.core.errors import BackendError
from service.runtime import Runtime

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 5.0


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database and each backend",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database cannot be reached"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """503 when the database is down; a backend that is down only marks the service degraded."""
    checks: dict[str, str] = {}
    db_ok = await _check(lambda: _ping(runtime), checks, "database")
    backends_ok = True
    for backend in runtime.backends.unique():
        name = f"backend:{'/'.join(backend.targets())}"
        backends_ok &= await _check(backend.check, checks, name)
        if backend.kind in runtime.backend_health and checks[name] == "ok":
            checks[name], backends_ok = f"degraded: {runtime.backend_health[backend.kind]}", False
    state = "ok" if db_ok and backends_ok else "degraded" if db_ok else "unavailable"
    return JSONResponse(Health(status=state, checks=checks).model_dump(), status_code=200 if db_ok else 503)


def _ping(runtime: Runtime) -> None:
    with runtime.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def _check(probe: object, checks: dict[str, str], name: str) -> bool:
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), CHECK_TIMEOUT)  # type: ignore[arg-type]
    except BackendError as exc:
        checks[name] = f"unreachable: {exc.message}"
        return False
    except Exception as exc:
        checks[name] = f"unreachable: {type(exc).__name__}"
        return False
    checks[name] = "ok"
    return True
