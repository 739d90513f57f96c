"""Deadlines and retries: no job stays active forever; a failed run may get another attempt."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from service.core.settings import Settings
from service.core.states import JobStatus
from service.db.tables import Job, JobAttempt, MetricPoint

log = logging.getLogger(__name__)

_WAITING = [JobStatus.QUEUED.value, JobStatus.STARTING.value]
_RUNNING = [JobStatus.RUNNING.value, JobStatus.FINALIZING.value]


def run_key(job: Job) -> str:
    """The name of the job's current attempt: the job id, then `<id>.2`, `<id>.3`..."""
    return job.id if job.attempt == 1 else f"{job.id}.{job.attempt}"


def request_stop(job: Job, *, reason: str, now: datetime) -> None:
    """Cancel the run on runyard's own initiative; the job will end `failed` with `reason`."""
    log.warning("stopping job %s: %s", job.id, reason)
    job.stop_reason = reason
    job.status = JobStatus.CANCELING.value
    job.cancel_requested_at = job.cancel_requested_at or now
    job.updated_at = now


def enforce_deadlines(session: Session, *, settings: Settings, now: datetime) -> list[str]:
    """Stop or fail every job past one of its limits; returns the ids that changed."""
    changed: list[str] = []
    queue_limit = timedelta(seconds=settings.queue_timeout_seconds)
    waiting = session.exec(
        select(Job).where(col(Job.status).in_(_WAITING), col(Job.created_at) < now - queue_limit)
    ).all()
    for job in waiting:
        reason = f"not started within queue_timeout_seconds={settings.queue_timeout_seconds:g}"
        if job.run_id is None and job.status == JobStatus.QUEUED.value:
            job.status, job.error, job.ended_at, job.updated_at = JobStatus.FAILED.value, reason, now, now
        elif job.run_id is not None:
            request_stop(job, reason=reason, now=now)
        else:
            continue  # a submit is in flight; the next tick sees its run id
        changed.append(job.id)

    running = session.exec(select(Job).where(col(Job.status).in_(_RUNNING))).all()
    for job in running:
        limit = job.max_run_duration_seconds or settings.max_run_duration_seconds
        started = job.started_at or job.submitted_at  # not every backend reports a start time
        if started is not None and now - started > timedelta(seconds=limit):
            request_stop(job, reason=f"exceeded max_run_duration_seconds={limit}", now=now)
            changed.append(job.id)
        elif (
            job.backend_status == "NotResponding"
            and job.backend_status_since is not None
            and now - job.backend_status_since > timedelta(seconds=settings.not_responding_timeout_seconds)
        ):
            request_stop(job, reason=f"not responding for over {settings.not_responding_timeout_seconds:g} s", now=now)
            changed.append(job.id)

    canceling = session.exec(
        select(Job).where(Job.status == JobStatus.CANCELING.value, col(Job.cancel_requested_at).is_not(None))
    ).all()
    for job in canceling:
        asked = job.cancel_requested_at
        if asked is None:
            continue
        waited = (now - asked).total_seconds()
        if waited > settings.cancel_abandon_seconds:
            job.status, job.ended_at, job.updated_at = JobStatus.FAILED.value, now, now
            job.error = (
                f"the backend never confirmed the cancel in {settings.cancel_abandon_seconds:g} s; "
                f"run {job.run_id} may still exist"
            )
            changed.append(job.id)
        elif waited > settings.cancel_confirm_seconds and not job.last_error:
            job.last_error = f"cancel not confirmed after {settings.cancel_confirm_seconds:g} s; still trying"
            job.updated_at = now
            changed.append(job.id)
    return changed


def settle(session: Session, job: Job, *, status: JobStatus, now: datetime) -> JobStatus:
    """The status a job takes when its run ended with `status`: stop reasons and retries apply."""
    if job.stop_reason is not None:
        job.error = job.stop_reason
        return JobStatus.FAILED
    if status is JobStatus.FAILED and job.attempt <= job.max_retries and job.cancel_requested_at is None:
        _start_next_attempt(session, job, now=now)
        return JobStatus.QUEUED
    return status


def _start_next_attempt(session: Session, job: Job, *, now: datetime) -> None:
    session.add(
        JobAttempt(
            job_id=job.id,
            attempt=job.attempt,
            run_id=job.run_id,
            status=JobStatus.FAILED.value,
            error=job.error,
            exit_code=job.exit_code,
            started_at=job.started_at,
            ended_at=now,
        )
    )
    # The new attempt's metrics start from nothing; the failed one is kept in its attempt row.
    session.exec(delete(MetricPoint).where(col(MetricPoint.job_id) == job.id))
    log.info("job %s attempt %d failed; retrying as attempt %d", job.id, job.attempt, job.attempt + 1)
    job.last_error = f"attempt {job.attempt} failed: {job.error}"
    job.attempt += 1
    job.run_id = job.backend_status = job.exit_code = job.error = None
    job.started_at = job.submitted_at = job.ended_at = None
    job.metrics_cursor, job.files = 0, []
