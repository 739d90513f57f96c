"""The one gate for a job's status: every change is checked, stamped and explained here.

Only this module and service/sweeps/lifecycle.py assign a status (a grep for `.status =` shows it). Callers
decide *what* happens (dispatcher, poller, supervision, use cases); this module decides whether it
may, and which timestamps and reasons go with it. The caller's unit of work commits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, col, delete

from service.core.errors import IllegalTransition
from service.core.states import JobStatus
from service.db.tables import Job, JobAttempt, MetricPoint

log = logging.getLogger(__name__)


def set_status(
    job: Job,
    to: JobStatus,
    *,
    now: datetime,
    error: str | None = None,
    ended_at: datetime | None = None,
) -> None:
    """Move `job` to `to` (raises `IllegalTransition`); `error` says why, when given."""
    job.status.check_transition(to)
    job.status = to
    job.updated_at = now
    if error is not None:
        job.error = error
    if to.is_terminal():
        job.ended_at = ended_at or now
    elif to is JobStatus.CANCELING:
        job.cancel_requested_at = job.cancel_requested_at or now


def fail(job: Job, reason: str, *, now: datetime) -> None:
    """End the job `failed` because of `reason`."""
    set_status(job, JobStatus.FAILED, now=now, error=reason)


def request_cancel(job: Job, *, now: datetime) -> None:
    """A queued job ends `canceled` at once; a started one becomes `canceling` until its run ends."""
    if job.status is JobStatus.QUEUED:
        set_status(job, JobStatus.CANCELED, now=now, error="canceled before it was submitted")
    else:
        set_status(job, JobStatus.CANCELING, now=now)
    job.cancel_requested_at = job.cancel_requested_at or now


def request_stop(job: Job, *, reason: str, now: datetime) -> None:
    """Cancel the run on runyard's own initiative; the job will end `failed` with `reason`."""
    log.warning("stopping job %s: %s", job.id, reason)
    job.stop_reason = reason
    set_status(job, JobStatus.CANCELING, now=now)


def requeue_for_retry(session: Session, job: Job, *, now: datetime) -> None:
    """The one way back from a started job to `queued`: its run failed and a retry is left.

    The failed run is kept as a `JobAttempt` row; the job starts over as attempt + 1.
    """
    if job.status.is_terminal() or job.status is JobStatus.CANCELING or job.cancel_requested_at is not None:
        raise IllegalTransition(f"a {job.status.value} job cannot be retried")
    if job.attempt > job.max_retries:
        raise IllegalTransition(f"job {job.id} has used its {job.max_retries} retries")
    session.add(
        JobAttempt(
            job_id=job.id,
            attempt=job.attempt,
            run_id=job.run_id,
            status=JobStatus.FAILED,
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
    job.status = JobStatus.QUEUED
    job.updated_at = now
