"""The dispatcher, the poller and the deadline rules driven tick by tick on a FakeBackend, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlmodel import select

from service.app import subscribe
from service.backends.base import RunRef, RunUpdate
from service.backends.targets import Backends
from service.core.clock import utcnow
from service.core.errors import IllegalTransition
from service.core.events import Event, Notice
from service.core.metrics import Metrics
from service.core.states import JobStatus
from service.db.tables import JobAttempt
from service.jobs import lifecycle
from service.jobs import service as jobs
from service.jobs.dispatcher import MAX_BACKOFF_SECONDS, Dispatcher
from service.jobs.poller import Poller
from service.runtime import Runtime
from service.sweeps.sweeper import Sweeper
from tests.support.backend import TARGET, FakeBackend, FakeClock
from tests.support.core import Heard, core_runtime, job, queue_job


class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def core(tmp_path: Path) -> tuple[Runtime, FakeBackend]:
    return core_runtime(tmp_path)


def tick(loop: Dispatcher | Poller) -> None:
    asyncio.run(loop.tick())


def test_dispatcher_submits_a_queued_job_and_tells_the_poller_after_commit(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    heard = Heard(runtime.events)
    job_id = queue_job(runtime)
    tick(Dispatcher(runtime))
    submitted = job(runtime, job_id)
    assert submitted.status is JobStatus.STARTING
    assert submitted.run_id == f"run-{job_id}"
    assert backend.calls["submit"] == 1
    assert heard.of(Event.JOB_QUEUED) == ["fake"]
    assert heard.of(Event.RUN_SUBMITTED) == [job_id]


def test_dispatcher_respects_the_targets_capacity(tmp_path: Path) -> None:
    runtime, backend = core_runtime(tmp_path, capacity=1)
    first, second = queue_job(runtime), queue_job(runtime)
    tick(Dispatcher(runtime))
    assert (job(runtime, first).status, job(runtime, second).status) == (JobStatus.STARTING, JobStatus.QUEUED)
    assert backend.calls["submit"] == 1


def test_a_job_queued_for_a_full_target_wakes_nobody_until_a_slot_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, backend = core_runtime(tmp_path, capacity=1)
    dispatcher, poller = Dispatcher(runtime), Poller(runtime)
    woken: list[str] = []
    monkeypatch.setattr(dispatcher.loop, "wake", lambda: woken.append("dispatcher"))  # before the app subscribes it
    subscribe(runtime.events, metrics=Metrics(), dispatcher=dispatcher, poller=poller, sweeper=Sweeper(runtime))
    first = queue_job(runtime)
    assert woken == ["dispatcher"]  # nothing known about the target yet
    backend.script(first, JobStatus.COMPLETED)
    tick(dispatcher)
    second = queue_job(runtime)
    assert woken == ["dispatcher"] * 2  # the last look found a slot
    tick(dispatcher)  # the second waits: the first holds the only slot
    third = queue_job(runtime)
    assert woken == ["dispatcher"] * 2  # the target was full: no tick for it
    assert [job(runtime, j).status for j in (first, second, third)] == [
        JobStatus.STARTING, JobStatus.QUEUED, JobStatus.QUEUED]
    tick(poller)  # the first ends: that wakes the dispatcher, which starts the oldest queued job
    assert woken == ["dispatcher"] * 3
    backend.script(second, JobStatus.COMPLETED)
    tick(dispatcher)
    tick(poller)
    tick(dispatcher)
    assert [job(runtime, j).status for j in (first, second, third)] == [
        JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.STARTING]
    assert backend.calls["submit"] == 3


@pytest.mark.parametrize("capacity", [None, 0])
def test_a_target_without_a_limit_or_with_none_yet_is_never_taken_for_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capacity: int | None
) -> None:
    # An Azure cluster still provisioning has capacity 0 and opens without any event: keep waking.
    runtime, _ = core_runtime(tmp_path, capacity=capacity)
    dispatcher = Dispatcher(runtime)
    for _ in range(3):
        queue_job(runtime)
        tick(dispatcher)
    woken: list[str] = []
    monkeypatch.setattr(dispatcher.loop, "wake", lambda: woken.append("dispatcher"))
    dispatcher.job_queued(Notice(Event.JOB_QUEUED, TARGET))
    assert woken == ["dispatcher"]


def test_poller_moves_a_run_to_its_end_and_a_terminal_job_never_changes(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    heard = Heard(runtime.events)
    job_id = queue_job(runtime)
    backend.script(job_id, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.RUNNING)
    tick(Dispatcher(runtime))
    poller = Poller(runtime)
    tick(poller)
    assert job(runtime, job_id).status is JobStatus.RUNNING
    tick(poller)
    done = job(runtime, job_id)
    assert done.status is JobStatus.COMPLETED
    assert done.ended_at is not None
    assert heard.of(Event.JOB_ENDED) == [job_id]
    tick(poller)  # a completed job is not polled, and the gate refuses any move out of it
    assert job(runtime, job_id).status is JobStatus.COMPLETED
    assert backend.calls["poll"] == 2
    for later in JobStatus:
        if later is not JobStatus.COMPLETED:
            with pytest.raises(IllegalTransition):
                lifecycle.set_status(done, later, now=utcnow())


def test_a_failed_run_with_a_retry_left_becomes_attempt_2(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = queue_job(runtime, max_retries=1)
    backend.script(job_id, JobStatus.FAILED)
    dispatcher, poller = Dispatcher(runtime), Poller(runtime)
    tick(dispatcher)
    tick(poller)
    retried = job(runtime, job_id)
    assert (retried.status, retried.attempt, retried.run_id) == (JobStatus.QUEUED, 2, None)
    assert retried.last_error == "attempt 1 failed: scripted failure"
    with runtime.db.session() as session:
        attempts = session.exec(select(JobAttempt).where(JobAttempt.job_id == job_id)).all()
    assert [(a.attempt, a.status, a.run_id) for a in attempts] == [(1, JobStatus.FAILED, f"run-{job_id}")]
    backend.script(f"{job_id}.2", JobStatus.FAILED)
    tick(dispatcher)
    assert job(runtime, job_id).run_id == f"run-{job_id}.2"
    tick(poller)  # the retry is used up: the second failure is final
    final = job(runtime, job_id)
    assert (final.status, final.attempt, final.error) == (JobStatus.FAILED, 2, "scripted failure")


def test_a_transient_submit_error_backs_off_then_submits(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    clock = Monotonic()
    dispatcher = Dispatcher(runtime, clock=clock)
    job_id = queue_job(runtime)
    backend.fail("submit", transient=True)
    tick(dispatcher)
    waiting = job(runtime, job_id)
    assert (waiting.status, waiting.run_id, waiting.backend_errors) == (JobStatus.STARTING, None, 1)
    assert waiting.last_error is not None
    assert "retrying" in waiting.last_error
    tick(dispatcher)  # not due yet: no second call
    assert backend.calls["submit"] == 1
    clock.t += MAX_BACKOFF_SECONDS + 1
    tick(dispatcher)
    submitted = job(runtime, job_id)
    assert (submitted.run_id, submitted.last_error) == (f"run-{job_id}", None)
    assert backend.calls["submit"] == 2


def test_a_permanent_submit_error_fails_the_job(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = queue_job(runtime)
    backend.fail("submit", transient=False)
    tick(Dispatcher(runtime))
    failed = job(runtime, job_id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "submit failed (scripted)")
    assert failed.ended_at is not None


def test_queued_jobs_of_a_target_that_no_longer_exists_fail_at_the_next_dispatch(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    heard = Heard(runtime.events)
    queued = [queue_job(runtime), queue_job(runtime)]
    runtime.backends = Backends([])  # the target was removed from the configuration (say by a restart)
    tick(Dispatcher(runtime))
    for job_id in queued:
        failed = job(runtime, job_id)
        assert (failed.status, failed.error) == (JobStatus.FAILED, "compute target no longer exists")
        assert failed.ended_at is not None
    assert sorted(s for s in heard.of(Event.JOB_ENDED) if s) == sorted(queued)
    assert sum(backend.calls.values()) == 0


def test_cancel_of_a_queued_job_ends_it_without_the_backend(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = queue_job(runtime)
    with runtime.uow() as tx:
        jobs.cancel_job(tx, job_id=job_id)
    canceled = job(runtime, job_id)
    assert (canceled.status, canceled.error) == (JobStatus.CANCELED, "canceled before it was submitted")
    tick(Dispatcher(runtime))
    assert sum(backend.calls.values()) == 0


def test_cancel_of_a_starting_job_without_a_run_ends_it_at_the_next_dispatch(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    clock = Monotonic()
    dispatcher = Dispatcher(runtime, clock=clock)
    job_id = queue_job(runtime)
    backend.fail("submit", transient=True)
    tick(dispatcher)  # claimed (starting), the submit failed: no run yet
    with runtime.uow() as tx:
        jobs.cancel_job(tx, job_id=job_id)
    assert job(runtime, job_id).status is JobStatus.CANCELING
    clock.t += MAX_BACKOFF_SECONDS + 1
    tick(dispatcher)
    ended = job(runtime, job_id)
    assert (ended.status, ended.error) == (JobStatus.CANCELED, "canceled before a run was started")
    assert backend.calls["submit"] == 1  # found no run, so started none


def test_cancel_of_a_running_job_stops_its_run_then_ends_canceled(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = queue_job(runtime)
    backend.script(job_id, JobStatus.RUNNING)
    poller = Poller(runtime)
    tick(Dispatcher(runtime))
    tick(poller)
    with runtime.uow() as tx:
        jobs.cancel_job(tx, job_id=job_id)
    assert job(runtime, job_id).status is JobStatus.CANCELING
    tick(poller)
    assert backend.canceled == {f"run-{job_id}": False}
    ended = job(runtime, job_id)
    assert ended.status is JobStatus.CANCELED
    assert ended.cancel_requested_at is not None


def test_a_job_that_ends_during_its_submit_has_its_run_stopped_outside_the_transaction(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    job_id = queue_job(runtime)
    real_submit = backend.submit

    def submit_while_the_job_times_out(request: object) -> str:
        run_id = real_submit(request)  # type: ignore[arg-type]
        with runtime.uow() as tx:  # the deadline rule fails the job meanwhile
            row = jobs.get_job(tx.session, job_id=job_id)
            lifecycle.fail(row, "not started within queue_timeout_seconds=1", now=utcnow())
        return run_id

    backend.submit = submit_while_the_job_times_out  # type: ignore[method-assign]
    tick(Dispatcher(runtime))  # FakeBackend.cancel asserts no write transaction is open
    assert backend.canceled == {f"run-{job_id}": True}
    ended = job(runtime, job_id)
    assert (ended.status, ended.run_id) == (JobStatus.FAILED, f"run-{job_id}")


def test_the_queue_deadline_fails_a_job_that_never_started(tmp_path: Path) -> None:
    runtime, backend = core_runtime(tmp_path, queue_timeout_seconds=60, local_max_concurrent=1)
    clock = FakeClock(utcnow())
    job_id = queue_job(runtime, compute_target="fake")
    backend.max_concurrent = 0  # the target is full: the job waits
    poller = Poller(runtime, now=clock)
    clock.advance(59)
    tick(poller)
    assert job(runtime, job_id).status is JobStatus.QUEUED
    clock.advance(2)
    tick(poller)
    failed = job(runtime, job_id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "not started within queue_timeout_seconds=60")


def test_the_run_deadline_stops_the_run_and_fails_the_job(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    clock = FakeClock(utcnow())
    job_id = queue_job(runtime, max_run_duration_seconds=30)
    backend.script(job_id, JobStatus.RUNNING)
    poller = Poller(runtime, now=clock)
    tick(Dispatcher(runtime))
    tick(poller)
    clock.advance(31)
    tick(poller)  # past the limit: canceling with a stop reason, and the run is asked to stop
    assert backend.canceled == {f"run-{job_id}": False}
    tick(poller)  # the backend confirms: the job ends failed with the reason
    ended = job(runtime, job_id)
    assert (ended.status, ended.error) == (JobStatus.FAILED, "exceeded max_run_duration_seconds=30")


def test_a_canceled_job_is_abandoned_when_the_backend_never_confirms(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    clock = FakeClock(utcnow())
    job_id = queue_job(runtime)
    backend.script(job_id, JobStatus.RUNNING)
    poller = Poller(runtime, now=clock)
    tick(Dispatcher(runtime))
    tick(poller)
    with runtime.uow() as tx:
        row = jobs.get_job(tx.session, job_id=job_id)
        lifecycle.request_cancel(row, now=clock())
    backend.fail("poll", transient=True)
    clock.advance(runtime.settings.cancel_abandon_seconds + 1)
    tick(poller)
    ended = job(runtime, job_id)
    assert ended.status is JobStatus.FAILED
    assert ended.error is not None
    assert "never confirmed the cancel" in ended.error
    assert ended.ended_at == clock()


def test_the_interval_counts_from_the_start_of_a_tick() -> None:
    from service.core.loop import MIN_SLEEP_SECONDS, sleep_after

    assert sleep_after(2.0, took=0.5, due=None) == pytest.approx(1.5)  # next tick 2 s after this one began
    assert sleep_after(2.0, took=0.5, due=0.2) == pytest.approx(0.2)  # a deadline sooner wins
    assert sleep_after(2.0, took=0.0, due=0.0) == MIN_SLEEP_SECONDS
    # A tick longer than the interval rests a quarter of its length, not a tight loop on a core.
    assert sleep_after(2.0, took=4.0, due=None) == pytest.approx(1.0)


def test_the_poller_gives_a_run_its_current_cursor_and_cancel_however_its_refs_are_reused(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    job_id = queue_job(runtime)
    backend.script(job_id, JobStatus.RUNNING)
    seen: list[RunRef] = []
    polled = backend.poll

    def recording(runs: Sequence[RunRef]) -> list[RunUpdate]:
        seen.extend(runs)
        return polled(runs)

    backend.poll = recording  # type: ignore[method-assign]
    poller = Poller(runtime)
    tick(Dispatcher(runtime))
    tick(poller)
    backend.log(job_id, accuracy=0.9, loss=0.3)
    tick(poller)  # stores two points: the job's cursor moves to 2
    tick(poller)
    tick(poller)  # the row is as the last tick read it: the same ref
    with runtime.uow() as tx:
        jobs.cancel_job(tx, job_id=job_id)
    tick(poller)
    assert [ref.metrics_cursor for ref in seen] == [0, 0, 2, 2, 2]
    assert [ref.cancel_requested for ref in seen] == [False] * 4 + [True]
    assert seen[3] is seen[2]
    assert job(runtime, job_id).metrics_cursor == 2
