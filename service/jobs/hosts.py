"""Local runs belong to their host: who may poll them, serve their folder, or give them up.

A local run is a process on one machine writing into that machine's data folder. Replicas on that
host (one `RUNYARD_HOST_ID`, one data folder) adopt each other's runs through the job lease; a
replica on another host can neither see the process nor read the folder. So it never takes such a
job over, and answers for its logs and files with a problem naming the host. When the host itself
is gone — its replicas stopped renewing the job's lease, and one more lease passed in which none of
them adopted it — the job is released: failed with that reason, or re-queued as a new attempt when
`max_retries` allows, never left active.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel import col, select

from service.core.errors import Conflict, NotFound, Overloaded
from service.core.events import Event
from service.core.rundir import RunDir
from service.core.states import JobStatus
from service.db.tables import Job
from service.jobs import leases, supervision
from service.runtime import Runtime

log = logging.getLogger(__name__)

# Active with a run that lives on a host; `queued` has none (whoever claims it runs it).
_HELD = [JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING, JobStatus.CANCELING]
RETRY_AFTER_SECONDS = 1


class RunOnAnotherHost(Conflict):
    """The run folder is on a host this replica cannot read, and no replica there holds the job now."""

    title = "Run on another host"


class RunHostBusy(Overloaded):
    """The run folder is on another host whose replica is running the job: another try may reach it."""

    title = "Run on another host"


class Hosted(Protocol):
    """What `elsewhere` reads of a job (a `Job`, or a row of just these columns)."""

    @property
    def host(self) -> str | None: ...
    @property
    def compute_target(self) -> str: ...


def host_bound(runtime: Runtime, job: Hosted) -> bool:
    """True when the job's run lives on a host (the local target), not in a remote workspace."""
    try:
        return runtime.backends.for_target(job.compute_target).kind == "local"
    except NotFound:
        return False


def elsewhere(runtime: Runtime, job: Hosted) -> bool:
    """True when the job's local run is another host's (jobs from before hosts were recorded are anyone's)."""
    return job.host not in (None, runtime.settings.effective_host_id) and host_bound(runtime, job)


def run_dir_here(runtime: Runtime, job: Job, *, now: datetime) -> RunDir:
    """The job's run folder, provided this replica can read it (a shared folder counts); else a problem
    naming the host: 503 while a replica there holds the job (retry: the load balancer may reach it),
    409 when none does (only a replica started on that host can serve it)."""
    rundir = runtime.job_dir(job)
    if job.status is JobStatus.QUEUED or not elsewhere(runtime, job) or rundir.root.is_dir():
        return rundir  # queued: its next attempt has no folder yet, wherever it will run
    here = runtime.settings.effective_host_id
    detail = f"the run folder of job {job.id} is on host {job.host}; this replica runs on {here}"
    held = job.status.is_active() and job.lease_expires_at is not None and job.lease_expires_at > now
    if held:
        raise RunHostBusy(f"{detail}; retry: a replica on {job.host} can serve it", retry_after=RETRY_AFTER_SECONDS,
                          host=job.host)
    raise RunOnAnotherHost(f"{detail}; only a replica on {job.host} can serve it", host=job.host)


def release_abandoned(runtime: Runtime, *, now: datetime) -> list[str]:
    """Fail (or re-queue, when a retry is left) the local jobs of hosts gone for over a lease; their ids.

    Read-only when there is nothing to release, so an idle service takes no write lock per tick.
    """
    settings = runtime.settings
    me, ttl = settings.effective_replica_id, settings.lease_seconds
    gone_before = now - timedelta(seconds=ttl)  # a whole lease after the lapse: no replica of that host adopted it
    with runtime.db.session() as session:
        found = session.exec(
            select(Job).where(
                col(Job.status).in_(_HELD), col(Job.host).is_not(None), col(Job.host) != settings.effective_host_id,
                col(Job.lease_expires_at) < gone_before,
            )
        ).all()
    lapsed_at = {job.id: job.lease_expires_at for job in found if host_bound(runtime, job)}
    candidates = list(lapsed_at)
    if not candidates:
        return []
    released: list[str] = []
    with runtime.uow() as tx:
        # The conditional take: a replica of that host adopting the job this very moment keeps it.
        held = leases.take(tx.session, candidates, me, now=now, seconds=ttl)
        for job in tx.session.exec(select(Job).where(col(Job.id).in_(sorted(held)))).all():
            lapsed = lapsed_at[job.id]
            reason = (f"its local run was on host {job.host}, which stopped renewing the job"
                      f"{'' if lapsed is None else ' at ' + lapsed.isoformat(timespec='seconds')}"
                      f"; the run cannot be reached from another host")
            job.error = reason
            status = JobStatus.CANCELED if job.cancel_requested_at is not None else JobStatus.FAILED
            final = supervision.settle(tx.session, job, status=status, now=now, ended_at=None)
            log.warning("job %s: host %s is gone; %s", job.id, job.host, final.value)
            tx.session.add(job)
            tx.publish(Event.JOB_ENDED, job.id)  # a slot freed either way
            released.append(job.id)
    return released
