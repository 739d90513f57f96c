"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import shutil

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.auth import TrustedCaller
from service.api.deps import RuntimeDep
from service.api.schemas import Health
from service.core.errors import BackendError
from service.runtime import Runtime

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 5.0
# A write that failed this recently (and none succeeded since) makes the service not ready.
WRITE_FAILURE_WINDOW_SECONDS = 60.0


@router.get("/healthz", summary="Liveness: the process answers", response_model_exclude_none=True)
async def healthz() -> Health:
    # Answered on the event loop itself: no database, no worker thread. A locked database or
    # a busy thread pool must not make a supervisor restart a process that is only waiting.
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database and each backend",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database cannot be reached"}},
)
async def readyz(runtime: RuntimeDep, trusted: TrustedCaller) -> JSONResponse:
    """503 when the database is down; a backend that is down only marks the service degraded.

    The checks' details (an SDK error can name the tenant) go only to a caller with a key.
    """
    checks: dict[str, str] = {}
    db_ok = await _check(lambda: _ping(runtime), checks, "database")
    failure = runtime.db.writes.recent_failure(WRITE_FAILURE_WINDOW_SECONDS)
    if db_ok and failure is not None:
        checks["database"], db_ok = f"writes failing: {failure}", False
    disk_ok = await _check(lambda: _disk_space(runtime), checks, "disk")
    db_ok &= disk_ok
    backends_ok = True
    for backend in runtime.backends.unique():
        name = f"backend:{'/'.join(backend.targets())}"
        backends_ok &= await _check(backend.check, checks, name)
        if backend.kind in runtime.backend_health and checks[name] == "ok":
            checks[name], backends_ok = f"degraded: {runtime.backend_health[backend.kind]}", False
    state = "ok" if db_ok and backends_ok else "degraded" if db_ok else "unavailable"
    health = Health(status=state)
    if trusted:
        kind = runtime.db.engine.dialect.name
        health = Health(status=state, checks=checks, replica=runtime.settings.effective_replica_id,
                        host=runtime.settings.effective_host_id,
                        database="postgresql" if kind == "postgresql" else "sqlite")
    return JSONResponse(health.model_dump(exclude_none=True), status_code=200 if db_ok else 503)


def _disk_space(runtime: Runtime) -> None:
    settings = runtime.settings
    free_mb = shutil.disk_usage(settings.data_dir).free / 1_048_576
    if free_mb < settings.min_free_disk_mb:
        raise OSError(f"{free_mb:.0f} MB free in {settings.data_dir}, below {settings.min_free_disk_mb:g} MB")


def _ping(runtime: Runtime) -> None:
    with runtime.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def _check(probe: object, checks: dict[str, str], name: str) -> bool:
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), CHECK_TIMEOUT)  # type: ignore[arg-type]
    except BackendError as exc:
        checks[name] = f"unreachable: {exc.message}"
        return False
    except OSError as exc:
        checks[name] = f"unavailable: {exc}"
        return False
    except Exception as exc:
        checks[name] = f"unreachable: {type(exc).__name__}"
        return False
    checks[name] = "ok"
    return True
