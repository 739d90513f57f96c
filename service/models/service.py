"""The model registry: versions registered from completed jobs' outputs."""

from __future__ import annotations

import threading

from sqlalchemy import func
from sqlmodel import Session, col, select

from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.rundir import clean_relative
from service.core.states import JobStatus
from service.db.pagination import keyset_page
from service.db.tables import Job, ModelVersion
from service.jobs import artifacts
from service.models.schemas import ModelPublic, ModelRegister
from service.runtime import Runtime

# Version numbers are taken in order; the unique constraint is the last line of defence.
_register_lock = threading.Lock()


def register_model(session: Session, *, job: Job, runtime: Runtime, spec: ModelRegister) -> ModelVersion:
    """Register `spec.model_path` from the job's outputs as the next version of the model."""
    if job.status != JobStatus.COMPLETED.value:
        raise Conflict(f"job {job.id} is {job.status}; only completed jobs can register models")
    path = clean_relative(spec.model_path)
    if path not in job.files and not any(f.startswith(path.rstrip("/") + "/") for f in job.files):
        raise InvalidRequest(f"model_path {path!r} is not among the files of job {job.id}")
    with _register_lock:
        latest = session.exec(select(func.max(ModelVersion.version)).where(ModelVersion.name == spec.model_name)).one()
        version = (latest or 0) + 1
        backend = runtime.backends.for_target(job.compute_target)
        stored = backend.register_model(
            runtime.run_ref(job), model_name=spec.model_name, model_path=path, version=version, tags=spec.tags
        )
        model = ModelVersion(
            name=spec.model_name,
            version=version,
            job_id=job.id,
            run_id=job.run_id,
            experiment=job.experiment,
            model_path=path,
            location=stored.location,
            tags=dict(spec.tags),
            metrics=artifacts.latest_metrics(session, job_id=job.id),
        )
        session.add(model)
        session.commit()
    return model


def list_models(session: Session, *, limit: int, cursor: str | None) -> tuple[list[ModelPublic], str | None]:
    """One entry per model name, with its latest version."""
    stmt = select(ModelVersion.name, func.max(ModelVersion.version), func.count(col(ModelVersion.id))).group_by(
        col(ModelVersion.name)
    )
    rows, next_cursor = keyset_page(
        session, stmt, [col(ModelVersion.name)], lambda r: [r[0]], limit=limit, cursor=cursor
    )
    return [ModelPublic(name=n, latest_version=v, versions=c) for n, v, c in rows], next_cursor


def list_versions(
    session: Session, *, name: str, limit: int, cursor: str | None
) -> tuple[list[ModelVersion], str | None]:
    """Every version of a model, oldest first; an unknown model is a 404."""
    stmt = select(ModelVersion).where(ModelVersion.name == name)
    versions, next_cursor = keyset_page(
        session, stmt, [col(ModelVersion.version)], lambda m: [m.version], limit=limit, cursor=cursor
    )
    if not versions and cursor is None:
        raise NotFound(f"model {name!r} does not exist")
    return versions, next_cursor


def get_version(session: Session, *, name: str, version: str) -> ModelVersion:
    """A version by number, or `latest`."""
    stmt = select(ModelVersion).where(ModelVersion.name == name)
    if version == "latest":
        stmt = stmt.order_by(col(ModelVersion.version).desc())
    elif version.isdigit():
        stmt = stmt.where(ModelVersion.version == int(version))
    else:
        raise InvalidRequest("version must be a number or 'latest'")
    found = session.exec(stmt.limit(1)).first()
    if found is None:
        raise NotFound(f"model {name!r} version {version} does not exist")
    return found
