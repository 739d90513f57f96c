"""Local runs belong to their host: replicas of two hosts on one database, driven tick by tick (no HTTP)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from service.core.clock import utcnow
from service.core.states import JobStatus
from service.jobs import hosts
from service.jobs.dispatcher import Dispatcher
from service.jobs.poller import Poller
from service.runtime import Runtime
from tests.support.backend import FakeBackend
from tests.support.core import core_runtime, job, queue_job

LEASE = 30.0


def replica(runtime: Runtime, name: str, host: str) -> Runtime:
    """Another replica on the same database and backend, on `host`."""
    settings = runtime.settings.model_copy(update={"replica_id": name, "host_id": host})
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def two_hosts(tmp_path: Path) -> tuple[Runtime, Runtime, FakeBackend]:
    """Replica a on host h1 (it runs the local job), replica b on host h2."""
    runtime, backend = core_runtime(tmp_path, lease_seconds=LEASE)
    return replica(runtime, "a", "h1"), replica(runtime, "b", "h2"), backend


def running_on_a(a: Runtime, **fields: object) -> str:
    job_id = queue_job(a, **fields)
    asyncio.run(Dispatcher(a).tick())
    asyncio.run(Poller(a).tick())
    running = job(a, job_id)
    assert (running.status, running.owner, running.host) == (JobStatus.RUNNING, "a", "h1")
    return job_id


def lapse(runtime: Runtime, job_id: str, *, ago: float) -> None:
    """Replica a stopped renewing the job's lease `ago` seconds past its expiry (killed, or its host lost)."""
    with runtime.uow() as tx:
        row = tx.session.get(type(job(runtime, job_id)), job_id)
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=ago)
        tx.session.add(row)


def test_another_hosts_replica_neither_polls_nor_takes_over_a_local_run(
    two_hosts: tuple[Runtime, Runtime, FakeBackend],
) -> None:
    a, b, backend = two_hosts
    job_id = running_on_a(a)
    polls = backend.calls["poll"]
    lapse(a, job_id, ago=1)  # lapsed, but within the lease a replica of h1 has to adopt it
    asyncio.run(Poller(b).tick())
    asyncio.run(Dispatcher(b).tick())
    kept = job(a, job_id)
    assert (kept.status, kept.owner, kept.host) == (JobStatus.RUNNING, "a", "h1")
    assert backend.calls["poll"] == polls


def test_a_replica_of_the_same_host_adopts_the_run(two_hosts: tuple[Runtime, Runtime, FakeBackend]) -> None:
    a, _b, backend = two_hosts
    job_id = running_on_a(a)
    lapse(a, job_id, ago=1)
    backend.script(job_id, JobStatus.COMPLETED)
    asyncio.run(Poller(replica(a, "a2", "h1")).tick())
    done = job(a, job_id)
    assert (done.status, done.owner, done.host) == (JobStatus.COMPLETED, "a2", "h1")


def test_a_local_run_whose_host_is_gone_fails_with_the_reason(two_hosts: tuple[Runtime, Runtime, FakeBackend]) -> None:
    a, b, backend = two_hosts
    job_id = running_on_a(a)
    lapse(a, job_id, ago=LEASE + 1)  # a whole lease more: no replica of h1 is left to adopt it
    asyncio.run(Poller(b).tick())
    failed = job(a, job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("its local run was on host h1, which stopped renewing the job at ")
    assert failed.ended_at is not None
    assert backend.calls["cancel"] == 0  # out of reach: nothing is asked of the run


def test_a_local_run_whose_host_is_gone_is_requeued_when_a_retry_is_left(
    two_hosts: tuple[Runtime, Runtime, FakeBackend],
) -> None:
    a, b, backend = two_hosts
    job_id = running_on_a(a, max_retries=1)
    lapse(a, job_id, ago=LEASE + 1)
    asyncio.run(Poller(b).tick())
    again = job(a, job_id)
    assert (again.status, again.attempt, again.run_id) == (JobStatus.QUEUED, 2, None)
    assert again.last_error is not None
    assert "host h1" in again.last_error
    asyncio.run(Dispatcher(b).tick())  # the new attempt runs on b's host
    moved = job(a, job_id)
    assert (moved.status, moved.owner, moved.host, moved.run_id) == (JobStatus.STARTING, "b", "h2", f"run-{job_id}.2")


def test_a_submit_another_host_left_unfinished_is_not_repeated_here(
    two_hosts: tuple[Runtime, Runtime, FakeBackend],
) -> None:
    a, b, backend = two_hosts
    job_id = queue_job(a)
    backend.fail("submit", transient=True)
    asyncio.run(Dispatcher(a).tick())  # claimed on h1, its submit not done
    assert (job(a, job_id).status, job(a, job_id).run_id) == (JobStatus.STARTING, None)
    lapse(a, job_id, ago=1)
    asyncio.run(Dispatcher(b).tick())
    assert backend.calls["submit"] == 1  # h1 may have started the run: only h1 can find it
    lapse(a, job_id, ago=LEASE + 1)
    asyncio.run(Poller(b).tick())
    failed = job(a, job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert "host h1" in failed.error


def test_the_run_folder_of_another_host_is_a_problem_naming_it(two_hosts: tuple[Runtime, Runtime, FakeBackend]) -> None:
    a, b, backend = two_hosts
    job_id = running_on_a(a)
    with pytest.raises(hosts.RunHostBusy) as busy:  # held by a live replica of h1: retrying may reach it
        hosts.run_dir_here(b, job(a, job_id), now=utcnow())
    assert (busy.value.status_code, busy.value.extra, busy.value.retry_after) == (503, {"host": "h1"}, 1)
    assert hosts.run_dir_here(a, job(a, job_id), now=utcnow()) == a.job_dir(job(a, job_id))
    lapse(a, job_id, ago=LEASE + 1)
    asyncio.run(Poller(b).tick())  # h1 gone: the job fails, and its folder stays on h1
    with pytest.raises(hosts.RunOnAnotherHost) as gone:
        hosts.run_dir_here(b, job(a, job_id), now=utcnow())
    assert (gone.value.status_code, gone.value.extra) == (409, {"host": "h1"})
    a.job_dir(job(a, job_id)).root.mkdir(parents=True)  # a folder b can read (shared storage) is served
    assert hosts.run_dir_here(b, job(a, job_id), now=utcnow()).root.is_dir()


def test_a_local_targets_capacity_is_each_hosts(tmp_path: Path) -> None:
    runtime, _backend = core_runtime(tmp_path, capacity=1, lease_seconds=LEASE)
    a, b = replica(runtime, "a", "h1"), replica(runtime, "b", "h2")
    first, second, third = queue_job(a), queue_job(a), queue_job(a)
    asyncio.run(Dispatcher(a).tick())
    asyncio.run(Dispatcher(a).tick())  # h1's one slot is taken
    asyncio.run(Dispatcher(b).tick())  # h2 has a slot of its own
    claimed = {job_id: (job(a, job_id).status, job(a, job_id).host) for job_id in (first, second, third)}
    assert claimed == {first: (JobStatus.STARTING, "h1"), second: (JobStatus.STARTING, "h2"),
                       third: (JobStatus.QUEUED, None)}
