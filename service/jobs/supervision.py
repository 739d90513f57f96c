"""Deadlines and retries: no job stays active forever; a failed run may get another attempt."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from service.core.settings import Settings
from service.core.states import JobStatus
from service.db.tables import Job
from service.jobs import lifecycle

log = logging.getLogger(__name__)

_WAITING = [JobStatus.QUEUED, JobStatus.STARTING]
_RUNNING = [JobStatus.RUNNING, JobStatus.FINALIZING]


def run_key(job: Job) -> str:
    """The name of the job's current attempt: the job id, then `<id>.2`, `<id>.3`..."""
    return job.id if job.attempt == 1 else f"{job.id}.{job.attempt}"


def next_due(session: Session, *, settings: Settings, now: datetime) -> tuple[bool, float | None]:
    """Whether some limit of `enforce_deadlines` has passed, and the seconds until the next one (or
    the next forced cancel) falls due; read-only, so an idle service takes no write lock.

    Asked of the database as a few MIN() queries rather than by loading every active job: the
    poller asks twice a tick, and with 10,000 active runs loading them cost ~0.6 s of CPU each time.
    """
    status = col(Job.status)
    waiting, running = status.in_(_WAITING), status.in_(_RUNNING)
    canceling = status == JobStatus.CANCELING
    asked = col(Job.cancel_requested_at)
    limits: list[tuple[Any, list[Any], float]] = [
        (col(Job.created_at), [waiting], settings.queue_timeout_seconds),
        (col(Job.backend_status_since), [running, col(Job.backend_status) == "NotResponding"],
         settings.not_responding_timeout_seconds),
        (asked, [canceling], settings.cancel_abandon_seconds),
        (asked, [canceling, or_(col(Job.last_error).is_(None), col(Job.last_error) == "")],
         settings.cancel_confirm_seconds),
    ]
    durations = session.exec(select(col(Job.max_run_duration_seconds)).where(running).distinct()).all()
    begun = func.coalesce(col(Job.started_at), col(Job.submitted_at))
    for duration in durations:
        same = col(Job.max_run_duration_seconds) == duration if duration is not None else \
            col(Job.max_run_duration_seconds).is_(None)
        limits.append((begun, [running, same], duration or settings.max_run_duration_seconds))
    overdue, upcoming = False, []
    for column, where, seconds in limits:
        late, when = _earliest(session, column, where, seconds, now)
        overdue = overdue or late
        upcoming += [when] if when is not None else []
    # The poller's forced cancels only shorten the sleep: never overdue.
    _late, escalation = _earliest(session, asked, [canceling], settings.cancel_grace_seconds, now)
    upcoming += [escalation] if escalation is not None else []
    return overdue, (min(upcoming) - now).total_seconds() if upcoming else None


def _earliest(session: Session, column: Any, where: list[Any], seconds: float,
              now: datetime) -> tuple[bool, datetime | None]:
    """For `column + seconds` over the rows `where` selects: whether one is <= now, and the first > now."""
    limit = timedelta(seconds=seconds)
    oldest = session.exec(select(func.min(column)).where(*where)).one()
    if oldest is None:
        return False, None
    if oldest + limit > now:
        return False, oldest + limit
    after = session.exec(select(func.min(column)).where(*where, column > now - limit)).one()
    return True, after + limit if after is not None else None


def enforce_deadlines(session: Session, *, settings: Settings, now: datetime) -> list[str]:
    """Stop or fail every job past one of its limits; returns the ids that changed."""
    changed: list[str] = []
    queue_limit = timedelta(seconds=settings.queue_timeout_seconds)
    waiting = session.exec(
        select(Job).where(col(Job.status).in_(_WAITING), col(Job.created_at) < now - queue_limit)
    ).all()
    for job in waiting:
        reason = f"not started within queue_timeout_seconds={settings.queue_timeout_seconds:g}"
        if job.run_id is None:
            # Also a job stuck `starting` (a submit that keeps failing): if a submit is in flight
            # after all, the dispatcher stops the run it records for an ended job.
            lifecycle.fail(job, reason, now=now)
        else:
            lifecycle.request_stop(job, reason=reason, now=now)
        changed.append(job.id)

    running = session.exec(select(Job).where(col(Job.status).in_(_RUNNING))).all()
    for job in running:
        limit = job.max_run_duration_seconds or settings.max_run_duration_seconds
        started = job.started_at or job.submitted_at  # not every backend reports a start time
        if started is not None and now - started > timedelta(seconds=limit):
            lifecycle.request_stop(job, reason=f"exceeded max_run_duration_seconds={limit}", now=now)
            changed.append(job.id)
        elif (
            job.backend_status == "NotResponding"
            and job.backend_status_since is not None
            and now - job.backend_status_since > timedelta(seconds=settings.not_responding_timeout_seconds)
        ):
            reason = f"not responding for over {settings.not_responding_timeout_seconds:g} s"
            lifecycle.request_stop(job, reason=reason, now=now)
            changed.append(job.id)

    canceling = session.exec(
        select(Job).where(col(Job.status) == JobStatus.CANCELING, col(Job.cancel_requested_at).is_not(None))
    ).all()
    for job in canceling:
        asked = job.cancel_requested_at
        if asked is None:
            continue
        waited = (now - asked).total_seconds()
        if waited > settings.cancel_abandon_seconds:
            reason = (
                f"the backend never confirmed the cancel in {settings.cancel_abandon_seconds:g} s; "
                f"run {job.run_id} may still exist"
            )
            lifecycle.fail(job, reason, now=now)
            changed.append(job.id)
        elif waited > settings.cancel_confirm_seconds and not job.last_error:
            job.last_error = f"cancel not confirmed after {settings.cancel_confirm_seconds:g} s; still trying"
            job.updated_at = now
            changed.append(job.id)
    return changed


def settle(session: Session, job: Job, *, status: JobStatus, now: datetime, ended_at: datetime | None) -> JobStatus:
    """End a job whose run ended with `status`: a stop reason fails it, a retry left requeues it."""
    if job.stop_reason is not None:
        lifecycle.set_status(job, JobStatus.FAILED, now=now, error=job.stop_reason, ended_at=ended_at)
    elif status is JobStatus.FAILED and job.attempt <= job.max_retries and job.cancel_requested_at is None:
        lifecycle.requeue_for_retry(session, job, now=now)
    else:
        lifecycle.set_status(job, status, now=now, ended_at=ended_at)
    return job.status
