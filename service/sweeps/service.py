"""Sweep use cases: create (with its first child), read with progress and children, list, cancel."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from service.backends.targets import Backends
from service.catalog import service as catalog
from service.core.clock import utcnow
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.events import Event
from service.core.ids import new_id
from service.core.settings import Settings
from service.core.states import JobStatus
from service.db.pagination import keyset_page
from service.db.tables import Job, MetricPoint, Sweep
from service.db.uow import UnitOfWork
from service.jobs import service as jobs
from service.jobs.schemas import DatasetArgument, JobCreate
from service.sweeps import lifecycle
from service.sweeps import sampling as sweep_sampling
from service.sweeps.schemas import (
    RegisteredModelRef,
    SweepChild,
    SweepCreate,
    SweepDetail,
    SweepProgress,
    SweepPublic,
    SweepStatus,
)

_OPEN = [SweepStatus.RUNNING, SweepStatus.CANCELING]


@dataclass(frozen=True)
class Created:
    sweep: Sweep
    replayed: bool


def request_hash(spec: SweepCreate) -> str:
    """A digest of the request body, to tell a retry from a different request."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_sweep(
    tx: UnitOfWork, *, spec: SweepCreate, idempotency_key: str | None, settings: Settings, backends: Backends
) -> Created:
    """Validate `spec`, sample its plan and add the sweep together with its first child."""
    session = tx.session
    digest = request_hash(spec)
    if idempotency_key is not None and (existing := _by_key(session, idempotency_key, digest)) is not None:
        return Created(existing, replayed=True)
    sweep_sampling.validate(spec)
    if backends.for_target(spec.job.compute_target).kind == "local":
        catalog.check_server_paths((v for d in spec.search_space.values() for v in getattr(d, "values", ())),
                                   settings=settings)
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**32)
    # Children submitted later must not pick up a dataset version registered mid-sweep.
    accepted = spec.model_copy(update={"seed": seed, "job": _pin_datasets(session, spec.job)})
    catalog.ensure_experiment(session, name=spec.job.experiment)
    sweep = Sweep(
        id=new_id(), experiment=spec.job.experiment, status=SweepStatus.RUNNING,
        spec=accepted.model_dump(mode="json"), plan=sweep_sampling.plan(accepted, seed=seed),
        idempotency_key=idempotency_key, request_hash=digest,
    )
    # One transaction for the sweep and its first child: the child is validated exactly like
    # POST /v1/jobs, and a request it refuses leaves nothing behind (the unit of work rolls back).
    session.add(sweep)
    try:
        launch_child(tx, sweep=sweep, index=0, settings=settings, backends=backends)
    except IntegrityError:
        tx.start_over()
        existing = _by_key(session, idempotency_key, digest) if idempotency_key is not None else None
        if existing is None:
            raise
        return Created(existing, replayed=True)  # a concurrent request with the same key won
    tx.publish(Event.SWEEP_CHANGED, sweep.id)
    return Created(sweep, replayed=False)


def launch_child(tx: UnitOfWork, *, sweep: Sweep, index: int, settings: Settings, backends: Backends) -> Job:
    """Submit child `index` of the plan as an ordinary job; a retry returns the same job."""
    link = jobs.SweepLink(sweep_id=sweep.id, index=index, params=sweep.plan[index])
    result = jobs.submit_job(tx, spec=child_spec(sweep, index), idempotency_key=f"sweep:{sweep.id}:{index}",
                             settings=settings, backends=backends, sweep=link)
    return result.job


def child_spec(sweep: Sweep, index: int) -> JobCreate:
    """The base job with child `index`'s flags and values appended to its arguments."""
    base: dict[str, Any] = sweep.spec["job"]
    extra = itertools.chain.from_iterable(sweep.plan[index].items())
    try:
        return JobCreate.model_validate({**base, "arguments": [*base["arguments"], *extra]})
    except ValidationError as exc:
        raise InvalidRequest(f"child {index} is not a valid job: {exc.errors()[0]['msg']}") from None


def _pin_datasets(session: Session, job: JobCreate) -> JobCreate:
    pinned = [
        arg.model_copy(update={"version": catalog.get_dataset(session, name=arg.dataset, version=arg.version).version})
        if isinstance(arg, DatasetArgument) else arg
        for arg in job.arguments
    ]
    return job.model_copy(update={"arguments": pinned})


def _by_key(session: Session, key: str, digest: str) -> Sweep | None:
    sweep = session.exec(select(Sweep).where(Sweep.idempotency_key == key)).first()
    if sweep is not None and sweep.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request body", sweep_id=sweep.id)
    return sweep


def get_sweep(session: Session, *, sweep_id: str, for_update: bool = False) -> Sweep:
    """The sweep (under its row lock with `for_update`, on PostgreSQL); unknown ids are a 404."""
    sweep = session.get(Sweep, sweep_id, with_for_update=for_update, populate_existing=for_update)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id!r} does not exist")
    return sweep


def list_sweeps(
    session: Session, *, experiment: str | None, status: SweepStatus | None, limit: int, cursor: str | None
) -> tuple[list[Sweep], str | None]:
    """Sweeps newest first, filtered by experiment and status; their plans are not loaded."""
    stmt = select(Sweep).options(defer(Sweep.plan))  # type: ignore[arg-type]
    if experiment is not None:
        stmt = stmt.where(Sweep.experiment == experiment)
    if status is not None:
        stmt = stmt.where(col(Sweep.status) == status)
    return keyset_page(session, stmt, [col(Sweep.id)], lambda s: [s.id], limit=limit, cursor=cursor,
                       descending=True)


def open_sweep_ids(session: Session) -> list[str]:
    """Sweeps that still have work: running or canceling."""
    return list(session.exec(select(Sweep.id).where(col(Sweep.status).in_(_OPEN)).order_by(col(Sweep.id))).all())


def children_of(session: Session, *, sweep_id: str) -> list[Job]:
    """The sweep's child jobs in plan order."""
    return list(session.exec(select(Job).where(Job.sweep_id == sweep_id).order_by(col(Job.sweep_index))).all())


def cancel_sweep(tx: UnitOfWork, *, sweep_id: str) -> Sweep:
    """Stop launching and cancel every unfinished child; a finished sweep is a 409."""
    sweep = get_sweep(tx.session, sweep_id=sweep_id)
    if sweep.status.is_terminal():
        raise Conflict(f"sweep {sweep_id} is already {sweep.status.value}")
    if sweep.status is SweepStatus.CANCELING:
        return sweep
    now = utcnow()
    lifecycle.set_status(sweep, SweepStatus.CANCELING, now=now)
    children = children_of(tx.session, sweep_id=sweep.id)
    cancel_children(tx, children)
    if all(c.status.is_terminal() for c in children):
        lifecycle.set_status(sweep, SweepStatus.CANCELED, now=now)
    tx.session.add(sweep)
    tx.publish(Event.SWEEP_CHANGED, sweep.id)
    return sweep


def cancel_children(tx: UnitOfWork, children: list[Job]) -> bool:
    """Ask every unfinished child to stop; True if any was asked."""
    asked = False
    for child in children:
        if not child.status.is_terminal() and child.status is not JobStatus.CANCELING:
            jobs.request_cancel(tx, child)
            asked = True
    return asked


def latest_values(session: Session, *, job_ids: list[str], metric: str) -> dict[str, float]:
    """The last logged value of `metric` for each of the jobs that logged it."""
    last = (
        select(func.max(MetricPoint.id))
        .where(col(MetricPoint.job_id).in_(job_ids), MetricPoint.name == metric)
        .group_by(col(MetricPoint.job_id))
        .scalar_subquery()
    )
    rows = session.exec(select(MetricPoint.job_id, MetricPoint.value).where(col(MetricPoint.id).in_(last)))
    return dict(rows.all())


def describe(session: Session, sweeps: list[Sweep]) -> list[SweepPublic]:
    """The public view of a page of sweeps, with progress counted in one query."""
    counts: dict[str, Counter[JobStatus]] = {s.id: Counter() for s in sweeps}
    rows = session.exec(
        select(Job.sweep_id, Job.status, func.count())
        .where(col(Job.sweep_id).in_(list(counts)))
        .group_by(col(Job.sweep_id), col(Job.status))
    )
    for sweep_id, status, n in rows:
        if sweep_id is not None:
            counts[sweep_id][JobStatus(status)] = n
    # The plan's length, counted by the database: a page of sweeps never reads their plans.
    totals: dict[str, int] = dict(session.exec(
        select(Sweep.id, func.json_array_length(Sweep.plan)).where(col(Sweep.id).in_(list(counts)))
    ).all())
    return [SweepPublic.model_validate(_fields(s, counts[s.id], totals[s.id])) for s in sweeps]


def detail(session: Session, sweep: Sweep) -> SweepDetail:
    """The sweep with its table of children: job, parameters, status, primary metric."""
    children = children_of(session, sweep_id=sweep.id)
    values = latest_values(session, job_ids=[c.id for c in children], metric=sweep.spec["primary_metric"])
    table = [
        SweepChild(index=c.sweep_index or 0, job_id=c.id, params=c.sweep_params or {}, status=c.status,
                   primary_metric=values.get(c.id), early_terminated=sweep.terminated.get(c.id),
                   started_at=c.started_at, ended_at=c.ended_at)
        for c in children
    ]
    counts = Counter(c.status for c in children)
    return SweepDetail.model_validate({**_fields(sweep, counts, len(sweep.plan)), "children": table})


def _fields(sweep: Sweep, counts: Counter[JobStatus], total: int) -> dict[str, Any]:
    done = {s: counts[s] for s in JobStatus if s.is_terminal()}
    launched = sum(counts.values())
    progress = SweepProgress(
        total=total, launched=launched, active=launched - sum(done.values()),
        completed=done[JobStatus.COMPLETED], failed=done[JobStatus.FAILED], canceled=done[JobStatus.CANCELED],
        early_terminated=len(sweep.terminated), done=sum(done.values()),
    )
    registered = (
        RegisteredModelRef(name=sweep.model_name, version=sweep.model_version)
        if sweep.model_name is not None and sweep.model_version is not None else None
    )
    return {
        **sweep.spec, "id": sweep.id, "status": sweep.status, "progress": progress,
        "best_job_id": sweep.best_job_id, "best_metric": sweep.best_metric, "registered_model": registered,
        "error": sweep.error, "created_at": sweep.created_at, "updated_at": sweep.updated_at,
        "ended_at": sweep.ended_at, "cancel_requested_at": sweep.cancel_requested_at,
    }
