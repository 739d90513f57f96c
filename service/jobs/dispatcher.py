"""Submits queued jobs to their backends, and recovers submits a crash interrupted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import Session, col, select

from service.backends.base import RunRef
from service.core.clock import utcnow
from service.core.errors import BackendError, NotFound, RunyardError
from service.core.events import Event, Notice
from service.core.loop import BackgroundLoop
from service.core.states import JobStatus
from service.db.tables import Job
from service.jobs import hosts, leases, lifecycle
from service.runtime import Runtime

log = logging.getLogger(__name__)

_ACTIVE = [s for s in JobStatus if s.is_active()]
CLAIM_BATCH = 200
_GONE = "compute target no longer exists"
MAX_BACKOFF_SECONDS = 60.0


def _count_by_target(session: Session, statuses: list[JobStatus]) -> dict[str, int]:
    rows = session.exec(
        select(Job.compute_target, func.count()).where(col(Job.status).in_(statuses)).group_by(col(Job.compute_target))
    ).all()
    return {str(target): int(count) for target, count in rows}


def _active_by_target_and_host(session: Session) -> dict[tuple[str, str | None], int]:
    rows = session.exec(
        select(Job.compute_target, Job.host, func.count())
        .where(col(Job.status).in_(_ACTIVE))
        .group_by(col(Job.compute_target), col(Job.host))
    ).all()
    return {(str(target), host): int(count) for target, host, count in rows}


class Dispatcher:
    """Moves jobs from `queued` to a backend run, at most each target's capacity at once."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self._clock = clock
        self._inflight: set[str] = set()
        self._retry_at: dict[str, tuple[int, float]] = {}
        # Targets whose every slot was taken at the last look. A job queued for one of them cannot
        # start before a slot frees, and what frees one (JOB_ENDED, CANCEL_REQUESTED) wakes the loop
        # itself; another replica's freed slot is that replica's to fill, or the next interval's.
        self._full: frozenset[str] = frozenset()
        self.loop = BackgroundLoop("dispatcher", self.tick, runtime.settings.poll_interval_seconds)

    def job_queued(self, notice: Notice) -> None:
        """Wake for a newly queued job, unless its target was full at the last look.

        Under a burst of submits to a full target, each one would otherwise cost a tick that reads
        every queued job's count only to find no slot.
        """
        if notice.subject is None or notice.subject not in self._full:
            self.loop.wake()

    async def tick(self) -> None:
        claimed = await asyncio.to_thread(self._claim)
        if claimed:
            await asyncio.gather(*(self._submit(job_id) for job_id in claimed))

    def _claim(self) -> list[str]:
        """Mark as many queued jobs `starting` as capacity allows; add unfinished submits.

        Unfinished submits are this replica's own, or another's whose lease lapsed; the leases of
        submits still in flight here are renewed so that no other replica submits them meanwhile.
        """
        now, wall = self._clock(), utcnow()
        me, ttl = self.runtime.settings.effective_replica_id, self.runtime.settings.lease_seconds
        host = self.runtime.settings.effective_host_id
        # Decide with a plain read first: most wake-ups find every slot taken, and then
        # they must not queue up for the write lock that API requests need.
        with self.runtime.db.session() as session:
            unsubmitted = session.exec(
                select(Job).where(
                    col(Job.status).in_([JobStatus.STARTING, JobStatus.CANCELING]),
                    col(Job.run_id).is_(None),
                    leases.free_or_mine(me, wall),
                )
            ).all()
            waiting = _count_by_target(session, [JobStatus.QUEUED])
            active = _active_by_target_and_host(session)
        # Another host's claim may have started a local run there: only that host can find it.
        unsubmitted = [j for j in unsubmitted if not hosts.elsewhere(self.runtime, j)]
        pending = [j for j in unsubmitted if j.id in self._inflight or self._due(j.id, now)]
        stale = leases.to_renew(pending, me, now=wall, seconds=ttl)
        claimed = [j.id for j in pending if j.id not in self._inflight and j.id not in stale]
        free, gone, self._full = self._free_slots(waiting, active)
        if free or gone or stale:
            with self.runtime.uow() as tx:
                held = leases.take(tx.session, stale, me, now=wall, seconds=ttl) if stale else set()
                claimed += sorted(held - self._inflight)
                for target in gone:
                    for job in self._queued(tx.session, target, CLAIM_BATCH):
                        lifecycle.fail(job, _GONE, now=wall)
                        tx.session.add(job)
                        tx.publish(Event.JOB_ENDED, job.id)
                for target, slots in free.items():
                    for job in self._queued(tx.session, target, slots):
                        lifecycle.set_status(job, JobStatus.STARTING, now=wall)
                        leases.hold(job, me, now=wall, seconds=ttl)
                        job.host = host  # a local run lives in this host's data folder
                        tx.session.add(job)
                        claimed.append(job.id)
        self._inflight.update(claimed)
        return claimed

    @staticmethod
    def _queued(session: Session, target: str, limit: int) -> list[Job]:
        """Up to `limit` queued jobs of `target`, oldest first, under their row locks."""
        return list(session.exec(
            select(Job)
            .where(col(Job.status) == JobStatus.QUEUED, col(Job.compute_target) == target)
            .order_by(col(Job.id))
            .limit(limit)
            # Another replica's claim in progress is skipped, not waited for.
            .with_for_update(skip_locked=True)
        ).all())

    def _free_slots(
        self, queued: dict[str, int], active: dict[tuple[str, str | None], int]
    ) -> tuple[dict[str, int], list[str], frozenset[str]]:
        """Target -> how many of its queued jobs to start now; the targets that no longer exist,
        whose queued jobs are failed (they would otherwise wait for the queue timeout); and the
        targets with every slot taken."""
        free: dict[str, int] = {}
        gone: list[str] = []
        full: set[str] = set()
        for target, waiting in queued.items():
            try:
                backend = self.runtime.backends.for_target(target)
            except NotFound:
                gone.append(target)
                continue
            limit = backend.capacity(target)
            # A local target's capacity is this host's (its CPUs): other hosts' runs do not count.
            shared = backend.kind != "local"
            mine = (None, self.runtime.settings.effective_host_id)
            running = sum(n for (t, h), n in active.items() if t == target and (shared or h in mine))
            slots = CLAIM_BATCH if limit is None else limit - running
            if slots > 0:
                free[target] = min(slots, waiting, CLAIM_BATCH)
            elif limit:  # not 0: an Azure cluster still provisioning opens without any event
                full.add(target)
        return free, gone, frozenset(full)

    def _due(self, job_id: str, now: float) -> bool:
        attempt = self._retry_at.get(job_id)
        return attempt is None or attempt[1] <= now

    async def _submit(self, job_id: str) -> None:
        try:
            await self._submit_one(job_id)
        except BackendError as exc:
            if exc.transient:
                self._backoff(job_id, exc)
            else:
                await asyncio.to_thread(self._fail, job_id, exc.message)
        except (ValueError, TypeError, LookupError, RunyardError) as exc:
            # The job itself, not the environment (e.g. an argument the OS refuses): retrying cannot help.
            log.exception("submitting job %s failed for good", job_id)
            await asyncio.to_thread(self._fail, job_id, f"could not be submitted: {type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("submitting job %s failed", job_id)
            self._backoff(job_id, exc)
        finally:
            self._inflight.discard(job_id)

    async def _submit_one(self, job_id: str) -> None:
        with self.runtime.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.run_id is not None or job.status.is_terminal():
                return
            backend = self.runtime.backends.for_target(job.compute_target)
            request = self.runtime.submit_request(session, job)
            canceling = job.status is JobStatus.CANCELING
        # A submit that died between the backend call and our commit left a tagged run.
        with self.runtime.metrics.backend_call(backend.kind, "find_run"):
            run_id = await asyncio.to_thread(backend.find_run, request.job_id, request.experiment, request.run_dir)
        if run_id is None and canceling:
            await asyncio.to_thread(self._finish_cancel, job_id)
            return
        if run_id is None:
            with self.runtime.metrics.backend_call(backend.kind, "submit"):
                run_id = await asyncio.to_thread(backend.submit, request)
        orphan = await asyncio.to_thread(self._record, job_id, run_id)
        self._retry_at.pop(job_id, None)
        if orphan is not None:
            # Ended (e.g. timed out) while the submit was in flight: stop the orphan, after the commit.
            try:
                with self.runtime.metrics.backend_call(backend.kind, "cancel"):
                    await asyncio.to_thread(backend.cancel, orphan, force=True)
            except BackendError as exc:
                log.warning("job %s ended during its submit; stopping run %s failed: %s", job_id, run_id, exc)

    def _record(self, job_id: str, run_id: str) -> RunRef | None:
        """Store the run id; returns the run to stop when the job ended meanwhile."""
        with self.runtime.uow() as tx:
            job = tx.session.get(Job, job_id)
            if job is None:
                return None
            job.run_id, job.submitted_at, job.updated_at = run_id, utcnow(), utcnow()
            job.last_error = None
            tx.session.add(job)
            tx.publish(Event.RUN_SUBMITTED, job_id)
            orphan = self.runtime.run_ref(job) if job.status.is_terminal() else None
        log.info("job %s submitted as run %s", job_id, run_id)
        return orphan

    def _finish_cancel(self, job_id: str) -> None:
        with self.runtime.uow() as tx:
            job = tx.session.get(Job, job_id)
            if job is None or job.status.is_terminal():
                return
            lifecycle.set_status(job, JobStatus.CANCELED, now=utcnow(), error="canceled before a run was started")
            tx.session.add(job)
            tx.publish(Event.JOB_ENDED, job_id)

    def _fail(self, job_id: str, reason: str) -> None:
        with self.runtime.uow() as tx:
            job = tx.session.get(Job, job_id)
            if job is None or job.status.is_terminal():
                return
            lifecycle.fail(job, reason, now=utcnow())
            tx.session.add(job)
            tx.publish(Event.JOB_ENDED, job_id)
        log.warning("job %s failed at submit: %s", job_id, reason)

    def _note_error(self, job_id: str, message: str) -> None:
        with self.runtime.uow() as tx:
            job = tx.session.get(Job, job_id)
            if job is not None and not job.status.is_terminal():
                job.last_error, job.backend_errors = message, job.backend_errors + 1
                tx.session.add(job)

    def _backoff(self, job_id: str, exc: Exception) -> None:
        attempts = self._retry_at.get(job_id, (0, 0.0))[0] + 1
        # Full jitter: many jobs failing together must not retry together.
        delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, 2.0**attempts))
        self._retry_at[job_id] = (attempts, self._clock() + delay)
        self._note_error(job_id, f"submit failed (try {attempts}), retrying: {exc}")
        log.warning("submit of job %s failed (attempt %d), retrying in %.1fs: %s", job_id, attempts, delay, exc)
