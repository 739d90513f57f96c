"""Job use cases: submit (idempotently), read, list, cancel."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, exists, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.backends.targets import Backends
from service.catalog import service as catalog
from service.core.clock import utcnow
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.events import Event
from service.core.ids import new_id
from service.core.rundir import confined
from service.core.settings import Settings
from service.core.states import JobStatus
from service.core.suggest import unknown
from service.db.pagination import PagedQuery, keyset_page
from service.db.tables import Job, JobAttempt
from service.db.uow import UnitOfWork
from service.jobs import lifecycle
from service.jobs.schemas import DatasetArgument, JobCreate


@dataclass(frozen=True)
class Submitted:
    job: Job
    replayed: bool


@dataclass(frozen=True)
class SweepLink:
    """Makes a submitted job a sweep's child: its place in the sweep's plan and its values."""

    sweep_id: str
    index: int
    params: dict[str, Any]


def request_hash(spec: JobCreate) -> str:
    """A digest of the request body, to tell a retry from a different request."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_job(
    tx: UnitOfWork,
    *,
    spec: JobCreate,
    idempotency_key: str | None,
    settings: Settings,
    backends: Backends,
    sweep: SweepLink | None = None,
) -> Submitted:
    """Validate `spec` and add it as a queued job (or return the job this key made).

    After the commit the dispatcher is woken; a job from the API (not a sweep's child) is counted.
    """
    session = tx.session
    digest = request_hash(spec)
    if idempotency_key is not None:
        existing = _by_key(session, idempotency_key, digest)
        if existing is not None:
            return Submitted(existing, replayed=True)
    if backends.for_target(spec.compute_target).kind == "local":  # Azure runs see their own machine
        catalog.check_server_paths(spec.arguments, settings=settings)
    sources = settings.source_folders()
    if spec.source not in sources:
        raise unknown("source", spec.source, sources)
    if not _is_script(sources[spec.source], spec.script):
        # The path's form is the schema's (RelPath); what the source folder holds is the server's.
        raise NotFound(f"script {spec.script!r} is not a file in source {spec.source!r}")
    environment_version = catalog.pinned_environment_version(
        session, name=spec.environment, version=spec.environment_version)
    now = utcnow()
    # Every field with a default factory is given: pydantic inspects a factory's signature on each
    # call, which was most of building the row.
    job = Job(
        id=new_id(),
        experiment=spec.experiment,
        source=spec.source,
        script=spec.script,
        arguments=[_pin(session, arg) for arg in spec.arguments],
        compute_target=spec.compute_target,
        environment=spec.environment,
        environment_version=environment_version,
        tags=dict(spec.tags),
        sweep_id=sweep.sweep_id if sweep else None,
        sweep_index=sweep.index if sweep else None,
        sweep_params=dict(sweep.params) if sweep else None,
        status=JobStatus.QUEUED,
        idempotency_key=idempotency_key,
        request_hash=digest,
        max_retries=spec.max_retries,
        max_run_duration_seconds=spec.max_run_duration_seconds,
        files=[],
        created_at=now,
        updated_at=now,
    )
    catalog.ensure_experiment(session, name=spec.experiment)
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        # The transaction is spoilt (PostgreSQL refuses further statements): start over, as a replay.
        tx.start_over()
        if idempotency_key is None:
            raise
        # A concurrent request with the same key won the race.
        existing = _by_key(session, idempotency_key, digest)
        if existing is None:
            raise
        return Submitted(existing, replayed=True)
    tx.publish(Event.JOB_QUEUED, job.compute_target)
    if sweep is None:
        tx.publish(Event.JOB_ACCEPTED, job.compute_target)
    return Submitted(job, replayed=False)


def _is_script(source: Path, script: str) -> bool:
    try:
        return confined(source, script).is_file()
    except (InvalidRequest, OSError):  # a symlink out of the source, a name too long: no such script here
        return False


# Built once, as the catalog's pins are: composing the select cost more than running it.
_BY_KEY = select(Job).where(col(Job.idempotency_key) == bindparam("key"))


def _by_key(session: Session, key: str, digest: str) -> Job | None:
    job = session.exec(_BY_KEY, params={"key": key}).first()
    if job is not None and job.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request body", job_id=job.id)
    return job


def _pin(session: Session, arg: Any) -> Any:
    """Dataset arguments keep the version that was latest at submit time."""
    if isinstance(arg, DatasetArgument):
        version = catalog.pinned_dataset_version(session, name=arg.dataset, version=arg.version)
        return {"dataset": arg.dataset, "version": version, "mode": arg.mode}
    return arg


def get_job(session: Session, *, job_id: str) -> Job:
    """The job; unknown ids are a 404."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} does not exist")
    return job


def require_job(session: Session, *, job_id: str) -> None:
    """A 404 unless the job exists; reads its key only (no row, no JSON columns decoded)."""
    if session.exec(select(Job.id).where(Job.id == job_id)).first() is None:
        raise NotFound(f"job {job_id!r} does not exist")


def list_jobs(
    session: Session,
    *,
    experiment: str | None,
    status: JobStatus | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
    sweep_id: str | None = None,
) -> tuple[list[Job], str | None]:
    """Jobs newest first, filtered by experiment, status, one `key:value` tag and sweep."""
    filters = _filters(experiment=experiment, status=status, sweep_id=sweep_id)
    stmt = select(Job).where(*_conditions(tuple(filters))).params(filters)
    if tag is not None:
        stmt = stmt.where(_tag_condition(session, tag))
    return keyset_page(session, stmt, [col(Job.id)], lambda j: [j.id], limit=limit, cursor=cursor, descending=True)


def list_job_rows(
    session: Session,
    base: Select[Any],
    *,
    experiment: str | None,
    status: JobStatus | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
    sweep_id: str | None = None,
) -> tuple[list[Row[Any]], str | None]:
    """`list_jobs` as rows of `base`, a select of Job's columns (`Job.id` first): no mapped object per row."""
    filters = _filters(experiment=experiment, status=status, sweep_id=sweep_id)
    extra = None if tag is None else _tag_condition(session, tag)
    return _paged(base, tuple(filters)).page(session, filters, limit=limit, cursor=cursor, extra=extra)


def list_is_bounded(*, experiment: str | None, status: JobStatus | None, tag: str | None, sweep_id: str | None) -> bool:
    """True when a page of this list is read along an index, so its cost is bounded by the page size.

    No filter (the primary key), a status (ix_job_status_id) and an experiment with a status
    (ix_job_experiment_status_id) all give rows newest first straight from an index; a tag, an
    experiment alone or a sweep may read (or sort) every job they match first.
    """
    return tag is None and sweep_id is None and (status is not None or experiment is None)


def _filters(*, experiment: str | None, status: JobStatus | None, sweep_id: str | None) -> dict[str, Any]:
    given = {"sweep_id": sweep_id, "experiment": experiment, "status": status}
    return {name: value for name, value in given.items() if value is not None}


def _conditions(names: tuple[str, ...]) -> list[ColumnElement[bool]]:
    """`column == :name` for each filter given, its value bound when the statement runs."""
    columns = {"sweep_id": col(Job.sweep_id), "experiment": col(Job.experiment), "status": col(Job.status)}
    return [columns[name] == bindparam(name) for name in names]


@functools.cache
def _paged(base: Select[Any], names: tuple[str, ...]) -> PagedQuery:
    """The list's statement for one set of filters, built once (at most 8 per select)."""
    return PagedQuery(base.where(*_conditions(names)), col(Job.id), descending=True)


def _tag_condition(session: Session, tag: str) -> ColumnElement[bool]:
    key, sep, value = tag.partition(":")
    if not sep or not key:
        raise InvalidRequest("tag filter must look like key:value")
    return _tag_is(session, key, value)


def _tag_is(session: Session, key: str, value: str) -> ColumnElement[bool]:
    """`tags[key] == value`, for any Unicode key."""
    if session.get_bind().dialect.name != "sqlite":
        matches: ColumnElement[bool] = col(Job.tags)[key].as_string() == value
        return matches
    # Tags are stored as json.dumps writes them, "k\u00fc" for "kü"; SQLite's json_extract
    # compares path labels with the stored text still escaped, json_each decodes them.
    each = func.json_each(Job.tags).table_valued("key", "value")
    return exists(select(1).select_from(each).where(each.c.key == key, each.c.value == value))


def cancel_job(tx: UnitOfWork, *, job_id: str) -> Job:
    """Ask for a job to stop: queued jobs end at once, running ones via their backend."""
    job = get_job(tx.session, job_id=job_id)
    if job.status in (JobStatus.CANCELING, JobStatus.CANCELED):
        return job  # a repeated cancel (a script's retry) gets the same answer, not a 409
    if job.status.is_terminal():
        raise Conflict(f"job {job_id} is already {job.status.value}")
    request_cancel(tx, job)
    return job


def request_cancel(tx: UnitOfWork, job: Job) -> None:
    """Mark an active job `canceling` (a queued one ends at once); the poller and dispatcher act on it."""
    lifecycle.request_cancel(job, now=utcnow())
    tx.session.add(job)
    tx.publish(Event.CANCEL_REQUESTED, job.id)


def attempts_of(session: Session, *, job_ids: list[str]) -> dict[str, list[JobAttempt]]:
    """Earlier attempts of each job, in one query for a whole page."""
    found: dict[str, list[JobAttempt]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return found  # most pages: no job was retried, so no query
    rows = session.exec(select(JobAttempt).where(col(JobAttempt.job_id).in_(job_ids)).order_by(col(JobAttempt.attempt)))
    for row in rows:
        found[row.job_id].append(row)
    return found
