"""Routes for experiments, environments, datasets and compute targets."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import func
from sqlmodel import col, select

from service.api.deps import Cursor, Limit, NameVersionCursor, RuntimeDep, SessionDep
from service.api.docs import ERRORS
from service.catalog import service as catalog
from service.catalog.schemas import (
    ComputePublic,
    DatasetCreate,
    DatasetPublic,
    EnvironmentCreate,
    EnvironmentPublic,
    ExperimentCreate,
    ExperimentPublic,
)
from service.core.schemas import Page
from service.core.states import JobStatus
from service.db.tables import Job

router = APIRouter(prefix="/v1")


@router.post(
    "/experiments",
    status_code=status.HTTP_201_CREATED,
    tags=["experiments"],
    summary="Create an experiment",
    responses=ERRORS(409, 422),
)
def create_experiment(spec: ExperimentCreate, runtime: RuntimeDep) -> ExperimentPublic:
    with runtime.uow() as tx:
        experiment = catalog.create_experiment(tx.session, name=spec.name)
    return ExperimentPublic.model_validate(experiment, from_attributes=True)


@router.get("/experiments", tags=["experiments"], summary="List experiments")
def list_experiments(session: SessionDep, limit: Limit = 100, cursor: Cursor = None) -> Page[ExperimentPublic]:
    items, next_cursor = catalog.list_experiments(session, limit=limit, cursor=cursor)
    return Page(
        items=[ExperimentPublic.model_validate(e, from_attributes=True) for e in items], next_cursor=next_cursor
    )


@router.post(
    "/environments",
    status_code=status.HTTP_201_CREATED,
    tags=["environments"],
    summary="Register an environment version",
    responses=ERRORS(422),
)
def create_environment(spec: EnvironmentCreate, runtime: RuntimeDep) -> EnvironmentPublic:
    with runtime.uow() as tx:
        env = catalog.create_environment(tx.session, spec=spec)
    return EnvironmentPublic.model_validate(env, from_attributes=True)


@router.get("/environments", tags=["environments"], summary="List environment versions")
def list_environments(
    session: SessionDep, limit: Limit = 100, cursor: NameVersionCursor = None
) -> Page[EnvironmentPublic]:
    items, next_cursor = catalog.list_environments(session, limit=limit, cursor=cursor)
    return Page(
        items=[EnvironmentPublic.model_validate(e, from_attributes=True) for e in items], next_cursor=next_cursor
    )


@router.post(
    "/datasets",
    status_code=status.HTTP_201_CREATED,
    tags=["datasets"],
    summary="Register a dataset version",
    responses=ERRORS(403, 404, 422),
)
def create_dataset(spec: DatasetCreate, runtime: RuntimeDep) -> DatasetPublic:
    with runtime.uow() as tx:
        dataset = catalog.create_dataset(tx.session, spec=spec, settings=runtime.settings)
    return DatasetPublic.model_validate(dataset, from_attributes=True)


@router.get("/datasets", tags=["datasets"], summary="List dataset versions")
def list_datasets(session: SessionDep, limit: Limit = 100, cursor: NameVersionCursor = None) -> Page[DatasetPublic]:
    items, next_cursor = catalog.list_datasets(session, limit=limit, cursor=cursor)
    return Page(items=[DatasetPublic.model_validate(d, from_attributes=True) for d in items], next_cursor=next_cursor)


@router.get("/compute", tags=["compute"], summary="List compute targets and their state")
def list_compute(session: SessionDep, runtime: RuntimeDep) -> Page[ComputePublic]:
    active = dict(
        session.exec(
            select(Job.compute_target, func.count())
            .where(col(Job.status).in_([s for s in JobStatus if s.is_active()]))
            .group_by(col(Job.compute_target))
        ).all()
    )
    items = [
        ComputePublic(**vars(info), active_jobs=active.get(info.name, 0))
        for backend in runtime.backends.unique()
        for info in backend.describe()
    ]
    return Page(items=items, next_cursor=None)
