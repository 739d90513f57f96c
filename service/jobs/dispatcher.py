"""Submits queued jobs to their backends, and recovers submits a crash interrupted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import Session, col, select

from service.core.clock import utcnow
from service.core.errors import BackendError, NotFound
from service.core.loop import BackgroundLoop
from service.core.states import JobStatus
from service.db.tables import Job
from service.runtime import Runtime

log = logging.getLogger(__name__)

_ACTIVE = [s.value for s in JobStatus if s.is_active()]
CLAIM_BATCH = 200
_GONE = "compute target no longer exists"
MAX_BACKOFF_SECONDS = 60.0


def _count_by_target(session: Session, statuses: list[str]) -> dict[str, int]:
    rows = session.exec(
        select(Job.compute_target, func.count()).where(col(Job.status).in_(statuses)).group_by(col(Job.compute_target))
    ).all()
    return {str(target): int(count) for target, count in rows}


class Dispatcher:
    """Moves jobs from `queued` to a backend run, at most each target's capacity at once."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        on_submitted: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self._on_submitted = on_submitted
        self._clock = clock
        self._inflight: set[str] = set()
        self._retry_at: dict[str, tuple[int, float]] = {}
        self.loop = BackgroundLoop("dispatcher", self.tick, runtime.settings.poll_interval_seconds)

    async def tick(self) -> None:
        claimed = await asyncio.to_thread(self._claim)
        if claimed:
            await asyncio.gather(*(self._submit(job_id) for job_id in claimed))

    def _claim(self) -> list[str]:
        """Mark as many queued jobs `starting` as capacity allows; add unfinished submits."""
        now = self._clock()
        # Decide with a plain read first: most wake-ups find every slot taken, and then
        # they must not queue up for the write lock that API requests need.
        with self.runtime.db.session() as session:
            pending = [
                job_id
                for job_id in session.exec(
                    select(Job.id).where(
                        col(Job.status).in_([JobStatus.STARTING.value, JobStatus.CANCELING.value]),
                        col(Job.run_id).is_(None),
                    )
                ).all()
                if job_id not in self._inflight and self._due(job_id, now)
            ]
            waiting = _count_by_target(session, [JobStatus.QUEUED.value])
            active = _count_by_target(session, _ACTIVE)
        free = self._free_slots(waiting, active)
        claimed = list(pending)
        if free:
            with self.runtime.db.write_session() as session:
                for target, slots in free.items():
                    queued = session.exec(
                        select(Job)
                        .where(Job.status == JobStatus.QUEUED.value, Job.compute_target == target)
                        .order_by(col(Job.id))
                        .limit(slots)
                    ).all()
                    for job in queued:
                        if slots == 0:  # a target whose backend is gone: fail its jobs
                            job.status, job.error, job.ended_at = JobStatus.FAILED.value, _GONE, utcnow()
                        else:
                            job.status = JobStatus.STARTING.value
                            claimed.append(job.id)
                        job.updated_at = utcnow()
                        session.add(job)
                session.commit()
        self._inflight.update(claimed)
        return claimed

    def _free_slots(self, queued: dict[str, int], active: dict[str, int]) -> dict[str, int]:
        """Target -> how many of its queued jobs to start now (0: the target no longer exists)."""
        free: dict[str, int] = {}
        for target, waiting in queued.items():
            try:
                backend = self.runtime.backends.for_target(target)
            except NotFound:
                free[target] = 0
                continue
            limit = backend.capacity(target)
            slots = CLAIM_BATCH if limit is None else limit - active.get(target, 0)
            if slots > 0:
                free[target] = min(slots, waiting, CLAIM_BATCH)
        return free

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
        except Exception as exc:
            log.exception("submitting job %s failed", job_id)
            self._backoff(job_id, exc)
        finally:
            self._inflight.discard(job_id)

    async def _submit_one(self, job_id: str) -> None:
        with self.runtime.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.run_id is not None or JobStatus(job.status).is_terminal():
                return
            backend = self.runtime.backends.for_target(job.compute_target)
            request = self.runtime.submit_request(session, job)
            canceling = job.status == JobStatus.CANCELING.value
        # A submit that died between the backend call and our commit left a tagged run.
        with self.runtime.metrics.backend_call(backend.kind, "find_run"):
            run_id = await asyncio.to_thread(backend.find_run, request.job_id, request.experiment, request.run_dir)
        if run_id is None and canceling:
            await asyncio.to_thread(self._finish_cancel, job_id)
            return
        if run_id is None:
            with self.runtime.metrics.backend_call(backend.kind, "submit"):
                run_id = await asyncio.to_thread(backend.submit, request)
        await asyncio.to_thread(self._record, job_id, run_id)
        self._retry_at.pop(job_id, None)
        self._on_submitted()

    def _record(self, job_id: str, run_id: str) -> None:
        with self.runtime.db.write_session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            job.run_id, job.submitted_at, job.updated_at = run_id, utcnow(), utcnow()
            job.last_error = None
            if JobStatus(job.status).is_terminal():
                # Ended (e.g. timed out) while the submit was in flight: stop the orphan.
                backend = self.runtime.backends.for_target(job.compute_target)
                backend.cancel(self.runtime.run_ref(job), force=True)
            session.add(job)
            session.commit()
        log.info("job %s submitted as run %s", job_id, run_id)

    def _finish_cancel(self, job_id: str) -> None:
        with self.runtime.db.write_session() as session:
            job = session.get(Job, job_id)
            if job is None or JobStatus(job.status).is_terminal():
                return
            job.status, job.ended_at, job.updated_at = JobStatus.CANCELED.value, utcnow(), utcnow()
            job.error = "canceled before a run was started"
            session.add(job)
            session.commit()

    def _fail(self, job_id: str, reason: str) -> None:
        with self.runtime.db.write_session() as session:
            job = session.get(Job, job_id)
            if job is None or JobStatus(job.status).is_terminal():
                return
            job.status, job.error, job.ended_at, job.updated_at = JobStatus.FAILED.value, reason, utcnow(), utcnow()
            session.add(job)
            session.commit()
        log.warning("job %s failed at submit: %s", job_id, reason)

    def _note_error(self, job_id: str, message: str) -> None:
        with self.runtime.db.write_session() as session:
            job = session.get(Job, job_id)
            if job is not None and not JobStatus(job.status).is_terminal():
                job.last_error, job.backend_errors = message, job.backend_errors + 1
                session.add(job)
                session.commit()

    def _backoff(self, job_id: str, exc: Exception) -> None:
        attempts = self._retry_at.get(job_id, (0, 0.0))[0] + 1
        # Full jitter: many jobs failing together must not retry together.
        delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, 2.0**attempts))
        self._retry_at[job_id] = (attempts, self._clock() + delay)
        self._note_error(job_id, f"submit failed (try {attempts}), retrying: {exc}")
        log.warning("submit of job %s failed (attempt %d), retrying in %.1fs: %s", job_id, attempts, delay, exc)
