"""`supervision.next_due` (MIN() queries): which limit is passed, and when the next one falls due."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.core.clock import utcnow
from service.core.states import JobStatus
from service.db.tables import Job
from service.jobs import supervision
from service.runtime import Runtime
from tests.support.core import core_runtime, queue_job

LIMITS = {"queue_timeout_seconds": 600, "max_run_duration_seconds": 3600, "not_responding_timeout_seconds": 300,
          "cancel_abandon_seconds": 900, "cancel_confirm_seconds": 120, "cancel_grace_seconds": 30}


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return core_runtime(tmp_path, **LIMITS)[0]


def put(runtime: Runtime, status: JobStatus, **fields: Any) -> str:
    """A job forced into `status` with the given columns (the deadlines read nothing else)."""
    job_id = queue_job(runtime)
    with runtime.uow() as tx:
        job = tx.session.get(Job, job_id)
        assert job is not None
        job.status = status
        for name, value in fields.items():
            setattr(job, name, value)
        tx.session.add(job)
    return job_id


def due(runtime: Runtime, now: datetime) -> tuple[bool, float | None]:
    with runtime.db.session() as session:
        return supervision.next_due(session, settings=runtime.settings, now=now)


def test_nothing_active_has_no_deadline(runtime: Runtime) -> None:
    assert due(runtime, utcnow()) == (False, None)


def test_the_queue_deadline_counts_from_creation(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.QUEUED, created_at=now - timedelta(seconds=100))
    overdue, seconds = due(runtime, now)
    assert not overdue
    assert seconds == pytest.approx(500)


def test_an_overdue_job_is_reported_and_the_next_deadline_is_the_first_one_still_ahead(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.RUNNING, started_at=now - timedelta(seconds=4000))  # past 3600
    put(runtime, JobStatus.RUNNING, started_at=now - timedelta(seconds=3000))  # due in 600
    put(runtime, JobStatus.RUNNING, started_at=now - timedelta(seconds=1000))  # due in 2600
    overdue, seconds = due(runtime, now)
    assert overdue
    assert seconds == pytest.approx(600)


def test_each_job_keeps_its_own_run_limit_and_the_submit_time_stands_in_for_a_start(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.RUNNING, started_at=now - timedelta(seconds=100), max_run_duration_seconds=150)
    put(runtime, JobStatus.FINALIZING, submitted_at=now - timedelta(seconds=3590))  # default 3600: in 10
    overdue, seconds = due(runtime, now)
    assert not overdue
    assert seconds == pytest.approx(10)
    assert due(runtime, now + timedelta(seconds=30)) == (True, pytest.approx(20))  # the 150 s one, at 50
    assert due(runtime, now + timedelta(seconds=60)) == (True, None)


def test_not_responding_counts_from_when_that_status_was_first_seen(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.RUNNING, started_at=now, backend_status="NotResponding",
        backend_status_since=now - timedelta(seconds=280))
    put(runtime, JobStatus.RUNNING, started_at=now, backend_status="Running",
        backend_status_since=now - timedelta(seconds=1000))  # not NotResponding: no such deadline
    overdue, seconds = due(runtime, now)
    assert not overdue
    assert seconds == pytest.approx(20)


def test_a_cancel_brings_its_escalation_confirmation_and_abandon_times(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.CANCELING, cancel_requested_at=now - timedelta(seconds=10))
    assert due(runtime, now) == (False, pytest.approx(20))  # the forced cancel, 30 s after the ask
    # Past the escalation: the confirmation (120 s) is next; a forced cancel is never "overdue".
    assert due(runtime, now + timedelta(seconds=50)) == (False, pytest.approx(60))
    # Past the confirmation: overdue (enforce_deadlines notes it), then the abandon at 900 s.
    assert due(runtime, now + timedelta(seconds=200)) == (True, pytest.approx(690))


def test_a_noted_confirmation_is_not_due_again(runtime: Runtime) -> None:
    now = utcnow()
    put(runtime, JobStatus.CANCELING, cancel_requested_at=now - timedelta(seconds=200),
        last_error="cancel not confirmed after 120 s; still trying")
    assert due(runtime, now) == (False, pytest.approx(700))
