"""Deadlines and retries: no job stays active forever; a failed run may get another attempt."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

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
    the next forced cancel) falls due; read-only, so an idle service takes no write lock."""
    jobs = session.exec(select(Job).where(col(Job.status).in_([*_WAITING, *_RUNNING, JobStatus.CANCELING]))).all()
    deadlines: list[datetime] = []
    escalations: list[datetime] = []  # the poller's, not ours: they only shorten the sleep
    for job in jobs:
        if job.status in _WAITING:
            deadlines.append(job.created_at + timedelta(seconds=settings.queue_timeout_seconds))
        elif job.status in _RUNNING:
            begun = job.started_at or job.submitted_at
            limit = job.max_run_duration_seconds or settings.max_run_duration_seconds
            if begun is not None:
                deadlines.append(begun + timedelta(seconds=limit))
            if job.backend_status == "NotResponding" and job.backend_status_since is not None:
                deadlines.append(job.backend_status_since + timedelta(seconds=settings.not_responding_timeout_seconds))
        elif (asked := job.cancel_requested_at) is not None:
            deadlines.append(asked + timedelta(seconds=settings.cancel_abandon_seconds))
            if not job.last_error:
                deadlines.append(asked + timedelta(seconds=settings.cancel_confirm_seconds))
            escalations.append(asked + timedelta(seconds=settings.cancel_grace_seconds))
    overdue = any(when <= now for when in deadlines)
    upcoming = [when for when in (*deadlines, *escalations) if when > now]
    return overdue, (min(upcoming) - now).total_seconds() if upcoming else None


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
