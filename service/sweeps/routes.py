"""Routes under /v1/sweeps: create, list, read (with the children's table), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from service.api.deps import Cursor, Limit, RuntimeDep, SessionDep
from service.api.docs import ERRORS
from service.core.schemas import Page
from service.sweeps import service as sweeps
from service.sweeps.schemas import SweepCreate, SweepDetail, SweepPublic, SweepStatus

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
IdempotencyKey = Annotated[
    str | None,
    Header(min_length=1, max_length=255,
           description="non-empty; retries with the same key and body return the same sweep"),
]


@router.post(
    "", status_code=status.HTTP_201_CREATED, summary="Start a sweep over a job's arguments",
    responses=ERRORS(403, 404, 409, 413, 422),
)
def create_sweep(
    spec: SweepCreate, response: Response, runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> SweepDetail:
    """Sample the plan and queue the first child; the sweeper launches the rest as slots free up."""
    with runtime.uow() as tx:
        result = sweeps.create_sweep(tx, spec=spec, idempotency_key=idempotency_key,
                                     settings=runtime.settings, backends=runtime.backends)
    response.headers["Location"] = f"/v1/sweeps/{result.sweep.id}"
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    with runtime.db.session() as session:
        return sweeps.detail(session, result.sweep)


@router.get("", summary="List sweeps, newest first", responses=ERRORS(422))
def list_sweeps(
    session: SessionDep,
    experiment: Annotated[str | None, Query(max_length=255)] = None,
    status: SweepStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SweepPublic]:
    items, next_cursor = sweeps.list_sweeps(session, experiment=experiment, status=status, limit=limit,
                                            cursor=cursor)
    return Page(items=sweeps.describe(session, items), next_cursor=next_cursor)


@router.get("/{sweep_id}", summary="Read a sweep and its children", responses=ERRORS(404))
def get_sweep(sweep_id: str, session: SessionDep) -> SweepDetail:
    return sweeps.detail(session, sweeps.get_sweep(session, sweep_id=sweep_id))


@router.post(
    "/{sweep_id}/cancel", status_code=status.HTTP_202_ACCEPTED, summary="Cancel a sweep and its children",
    responses=ERRORS(404, 409),
)
def cancel_sweep(sweep_id: str, runtime: RuntimeDep) -> SweepDetail:
    """Idempotent while the sweep is open; a finished sweep answers 409."""
    with runtime.uow() as tx:
        sweep = sweeps.cancel_sweep(tx, sweep_id=sweep_id)
    with runtime.db.session() as session:
        return sweeps.detail(session, sweep)
