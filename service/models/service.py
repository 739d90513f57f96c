"""The model registry: versions registered from completed jobs' outputs.

Registering takes three steps so that no backend call waits inside a write transaction:
reserve the next version (the unique (name, version) constraint decides between processes),
let the backend store the model, then record where it went. A failed store frees the version.
"""

from __future__ import annotations

import logging

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from service.backends.base import Backend, RegisteredModel, RunRef
from service.core.clock import utcnow
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.rundir import clean_relative
from service.core.schemas import MAX_VERSION, bounded_int
from service.core.states import JobStatus
from service.db.pagination import keyset_page
from service.db.repository import serialize
from service.db.tables import Job, ModelVersion
from service.jobs import artifacts
from service.jobs import service as jobs
from service.models import registrar
from service.models.schemas import ModelPublic, ModelRegister
from service.runtime import Runtime

log = logging.getLogger(__name__)

RESERVE_TRIES = 8  # concurrent registrations of one name each take the next free number


def register_model(runtime: Runtime, *, job_id: str, spec: ModelRegister, once_per: str | None = None) -> ModelVersion:
    """Register `spec.model_path` from the job's outputs as the next version of the model.

    With `once_per` (a tag name), a version of this model from this job with the same value of
    that tag is returned (or finished, when a crash left it reserved) instead of a new one; while
    another replica is storing that version, `RegistrationBusy` (the backend is not called).
    """
    reserved, ref, backend = _reserve(runtime, job_id=job_id, spec=spec, once_per=once_per)
    if not reserved.pending:
        return reserved
    try:
        with registrar.renewing(runtime, reserved.id):
            stored = backend.register_model(ref, model_name=reserved.name, model_path=reserved.model_path,
                                            version=reserved.version, tags=spec.tags)
    except BaseException:
        _release(runtime, reserved)
        raise
    return _record(runtime, reserved, stored)


def _reserve(
    runtime: Runtime, *, job_id: str, spec: ModelRegister, once_per: str | None
) -> tuple[ModelVersion, RunRef, Backend]:
    """Validate and insert the next version as `pending` (or find the one `once_per` names)."""
    path = clean_relative(spec.model_path)
    me, seconds = runtime.settings.effective_replica_id, runtime.settings.lease_seconds
    for _ in range(RESERVE_TRIES):
        try:
            with runtime.uow() as tx:
                job = jobs.get_job(tx.session, job_id=job_id)
                _check_registrable(job, path)
                backend = runtime.backends.for_target(job.compute_target)
                ref = runtime.run_ref(job)
                # Before looking for an earlier one: two replicas ending one sweep find each other's.
                serialize(tx.session, f"model-version:{spec.model_name}")
                earlier = _earlier(tx.session, job, spec, once_per)
                if earlier is not None and earlier.pending:
                    # Left reserved by a crash, or being stored by another replica right now.
                    registrar.hold(earlier, me, now=utcnow(), seconds=seconds)
                    tx.session.add(earlier)
                if earlier is not None:
                    return earlier, ref, backend
                model = ModelVersion(
                    name=spec.model_name, version=next_version(tx.session, spec.model_name), job_id=job.id,
                    run_id=job.run_id, experiment=job.experiment, model_path=path, location="", tags=dict(spec.tags),
                    metrics=artifacts.latest_metrics(tx.session, job_id=job.id), pending=True,
                )
                registrar.hold(model, me, now=utcnow(), seconds=seconds)
                tx.session.add(model)
            return model, ref, backend
        except IntegrityError:
            log.info("model %s: version taken by a concurrent registration; taking the next", spec.model_name)
    raise Conflict(f"could not reserve a version of model {spec.model_name!r}: too many concurrent registrations")


def next_version(session: Session, name: str) -> int:
    """One past the highest version of `name`, reserved ones included."""
    latest = session.exec(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)).one()
    return (latest or 0) + 1


def _check_registrable(job: Job, path: str) -> None:
    if job.status is not JobStatus.COMPLETED:
        raise Conflict(f"job {job.id} is {job.status.value}; only completed jobs can register models")
    if path not in job.files and not any(f.startswith(path.rstrip("/") + "/") for f in job.files):
        # The path's form is the schema's (RelPath); which files the job made is the server's.
        raise NotFound(f"model_path {path!r} is not among the files of job {job.id}")


def _earlier(session: Session, job: Job, spec: ModelRegister, once_per: str | None) -> ModelVersion | None:
    if once_per is None:
        return None
    for row in session.exec(
        select(ModelVersion).where(ModelVersion.job_id == job.id, ModelVersion.name == spec.model_name)
    ):
        if row.tags.get(once_per) == spec.tags.get(once_per):
            return row
    return None


def _release(runtime: Runtime, reserved: ModelVersion) -> None:
    """Give the number back after the backend refused: the next registration takes it."""
    with runtime.uow() as tx:
        tx.session.exec(
            delete(ModelVersion).where(col(ModelVersion.id) == reserved.id, col(ModelVersion.pending).is_(True),
                                       # not when another replica took the registration over meanwhile
                                       col(ModelVersion.registrar) == runtime.settings.effective_replica_id)
        )


def _record(runtime: Runtime, reserved: ModelVersion, stored: RegisteredModel) -> ModelVersion:
    """Store where the backend put the model; the version is the backend's when it numbers them."""
    try:
        with runtime.uow() as tx:
            if stored.version is not None:
                # The name's turn before any row is written (the autoflush of a changed row first
                # would hold that row while waiting for the turn: a deadlock with `_make_room`'s mover).
                serialize(tx.session, f"model-version:{reserved.name}")
            model = tx.session.get(ModelVersion, reserved.id)
            if model is None:
                raise NotFound(f"the reservation of model {reserved.name!r} version {reserved.version} is gone")
            model.location, model.sha256, model.pending = stored.location, stored.sha256, False
            model.registrar = model.registrar_expires_at = None
            if stored.version is not None and stored.version != model.version:
                _make_room(tx.session, model, stored.version)
                model.version = stored.version
            tx.session.add(model)
    except IntegrityError:
        raise Conflict(
            f"the backend registered {reserved.name!r} as version {stored.version}, which runyard already has"
        ) from None
    return model


def _make_room(session: Session, model: ModelVersion, version: int) -> None:
    """Free `version` for `model` when another registration still pending holds it as a placeholder.

    A backend that numbers versions itself (Azure) numbers concurrent registrations in the order
    they reach it, not in the order runyard reserved them: the reservation that got another's
    number moves to a fresh placeholder, to be replaced by its own backend number in turn.
    A recorded version in the way is a real clash, left to the unique constraint (409).
    The caller holds the name's turn (`serialize`).
    """
    holder = session.exec(select(ModelVersion).where(
        ModelVersion.name == model.name, ModelVersion.version == version, col(ModelVersion.id) != model.id,
    )).first()
    if holder is not None and holder.pending:
        holder.version = next_version(session, model.name)
        session.add(holder)
        session.flush()  # before this row takes the number: the unique constraint checks each statement


def list_models(session: Session, *, limit: int, cursor: str | None) -> tuple[list[ModelPublic], str | None]:
    """One entry per model name, with its latest version."""
    stmt = (
        select(ModelVersion.name, func.max(ModelVersion.version), func.count(col(ModelVersion.id)))
        .where(col(ModelVersion.pending).is_(False))
        .group_by(col(ModelVersion.name))
    )
    rows, next_cursor = keyset_page(
        session, stmt, [col(ModelVersion.name)], lambda r: [r[0]], limit=limit, cursor=cursor
    )
    return [ModelPublic(name=n, latest_version=v, versions=c) for n, v, c in rows], next_cursor


def list_versions(
    session: Session, *, name: str, limit: int, cursor: str | None
) -> tuple[list[ModelVersion], str | None]:
    """Every version of a model, oldest first; an unknown model is a 404."""
    stmt = select(ModelVersion).where(ModelVersion.name == name, col(ModelVersion.pending).is_(False))
    versions, next_cursor = keyset_page(
        session, stmt, [col(ModelVersion.version)], lambda m: [m.version], limit=limit, cursor=cursor
    )
    if not versions and cursor is None:
        raise NotFound(f"model {name!r} does not exist")
    return versions, next_cursor


def versions_of_job(session: Session, *, job_id: str) -> list[ModelVersion]:
    """The model versions registered from one job, oldest first (not those still being stored)."""
    stmt = (select(ModelVersion).where(ModelVersion.job_id == job_id, col(ModelVersion.pending).is_(False))
            .order_by(col(ModelVersion.id)))
    return list(session.exec(stmt).all())


def get_version(session: Session, *, name: str, version: str) -> ModelVersion:
    """A version by number, or `latest`."""
    stmt = select(ModelVersion).where(ModelVersion.name == name, col(ModelVersion.pending).is_(False))
    if version == "latest":
        stmt = stmt.order_by(col(ModelVersion.version).desc())
    elif (number := bounded_int(version, maximum=MAX_VERSION)) is not None:
        stmt = stmt.where(ModelVersion.version == number)
    else:
        raise InvalidRequest(f"version must be a number from 0 to {MAX_VERSION} or 'latest'")
    found = session.exec(stmt.limit(1)).first()
    if found is None:
        raise NotFound(f"model {name!r} version {version} does not exist")
    return found
