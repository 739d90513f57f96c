"""Reconciles active jobs with their backends' runs: status, metrics, files, cancels."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import func, insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from service.backends.base import Backend, RunRef, RunUpdate
from service.core.clock import utcnow
from service.core.errors import BackendError, IllegalTransition
from service.core.events import Event
from service.core.loop import BackgroundLoop
from service.core.states import JobStatus
from service.db.tables import Job, MetricPoint
from service.jobs import hosts, leases, lifecycle, supervision
from service.runtime import PolledJob, Runtime

log = logging.getLogger(__name__)

_ACTIVE = [s for s in JobStatus if s.is_active()]
BACKEND_CALL_TIMEOUT = 120.0
_IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-parameter limit
APPLY_CHUNK_POINTS = 5_000  # metric points per write transaction
STARTING_RECHECK_SECONDS = 0.5
# What `_load` reads of each active job (a RunRef, its lease, its cancel).
_POLLED = (col(Job.id), col(Job.run_id), col(Job.attempt), col(Job.experiment), col(Job.compute_target),
           col(Job.metrics_cursor), col(Job.cancel_requested_at), col(Job.owner), col(Job.lease_expires_at),
           col(Job.host))


def _points_stored(session: Session, job_ids: list[str]) -> dict[str, int]:
    """How many metric points each job has (on the job/name/id index)."""
    found: dict[str, int] = {}
    for start in range(0, len(job_ids), _IN_CHUNK):
        chunk = job_ids[start : start + _IN_CHUNK]
        rows = session.exec(
            select(MetricPoint.job_id, func.count()).where(col(MetricPoint.job_id).in_(chunk))
            .group_by(col(MetricPoint.job_id))
        )
        found.update({str(job_id): int(count) for job_id, count in rows})
    return found


class _Polled(PolledJob, leases.Leased, hosts.Hosted, Protocol):
    """A row of `_POLLED`."""


class Poller:
    """One tick: read every active run once per backend, store what changed."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self._now = now
        self._forced: set[str] = set()  # jobs whose cancel is past the grace period: kill
        self._local_runs: set[str] = set()  # run ids the local backend reported last tick
        self._refs: dict[_Polled, RunRef] = {}  # last tick's rows and the RunRefs made of them
        self.loop = BackgroundLoop("poller", self.tick, runtime.settings.poll_interval_seconds)

    async def tick(self) -> float | None:
        """One reconciliation; returns the seconds until the next deadline, so the loop wakes for it."""
        with self.runtime.metrics.poll_seconds.time():
            await asyncio.to_thread(self._enforce_deadlines)
            await asyncio.to_thread(self._release_abandoned)
            groups = await asyncio.to_thread(self._load)
            results = await asyncio.gather(*(self._poll(backend, refs) for backend, refs in groups.items()))
            updates = [u for batch in results for u in batch]
            if updates:
                await asyncio.to_thread(self._apply, updates)
            # Read after this tick's changes: a run that just started brings its own deadline.
            due = await asyncio.to_thread(self._next_due)
        if any(u.status is JobStatus.STARTING for _, u in updates if self._local(u)):
            # A local runner takes a moment to start; its start (and run deadline) must not wait
            # for the poll interval. Remote backends report their own slow starts.
            due = min(due, STARTING_RECHECK_SECONDS) if due is not None else STARTING_RECHECK_SECONDS
        return due

    def _load(self) -> dict[Backend, list[RunRef]]:
        groups: dict[Backend, list[RunRef]] = defaultdict(list)
        grace, now = self.runtime.settings.cancel_grace_seconds, self._now()
        me, ttl = self.runtime.settings.effective_replica_id, self.runtime.settings.lease_seconds
        with self.runtime.db.session() as session:
            # Only the columns a RunRef and the lease need: with 10,000 active runs, whole rows
            # (JSON columns, model objects) were most of a quiet tick's CPU.
            rows = session.execute(
                sa_select(*_POLLED).where(
                    col(Job.status).in_(_ACTIVE), col(Job.run_id).is_not(None), leases.free_or_mine(me, now)
                )
            ).all()
        # Another host's local runs are out of reach: that host's replicas poll them.
        jobs = [job for job in cast(list[_Polled], rows) if not hosts.elsewhere(self.runtime, job)]
        stale = leases.to_renew(jobs, me, now=now, seconds=ttl)
        if stale:  # new to this replica, or renewed while half the lease is left: not every tick
            with self.runtime.uow() as tx:
                held = leases.take(tx.session, stale, me, now=now, seconds=ttl)
            jobs = [job for job in jobs if job.id in held or job.id not in stale]
        # Decided here, from the rows just read, rather than re-reading each job before its cancel.
        self._forced = {
            job.id
            for job in jobs
            if job.cancel_requested_at is not None and (now - job.cancel_requested_at).total_seconds() >= grace
        }
        backends: dict[str, Backend | None] = {}
        runs_dir = self.runtime.settings.runs_dir
        # A row read again unchanged (most of them, tick after tick) gets last tick's RunRef back
        # rather than a new one and its run folder's Path: ~3 us a job.
        previous, self._refs = self._refs, {}
        for job in jobs:
            if job.compute_target not in backends:
                try:
                    backends[job.compute_target] = self.runtime.backends.for_target(job.compute_target)
                except Exception:
                    backends[job.compute_target] = None
            backend = backends[job.compute_target]
            if backend is not None:
                ref = previous.get(job) or self.runtime.run_ref_of(job, runs_dir)
                self._refs[job] = ref
                groups[backend].append(ref)
        return groups

    async def _poll(self, backend: Backend, refs: list[RunRef]) -> list[tuple[str, RunUpdate]]:
        await self._cancel(backend, [r for r in refs if r.cancel_requested])
        by_run = {r.run_id: r.job_id for r in refs}
        try:
            with self.runtime.metrics.backend_call(backend.kind, "poll"):
                updates = await asyncio.wait_for(asyncio.to_thread(backend.poll, refs), BACKEND_CALL_TIMEOUT)
        except (BackendError, TimeoutError) as exc:
            message = f"{backend.kind} backend unreachable: {exc or type(exc).__name__}"
            log.warning("polling %d %s runs failed; will retry: %s", len(refs), backend.kind, message)
            self.runtime.backend_health[backend.kind] = message
            await asyncio.to_thread(self._record_error, [r.job_id for r in refs], message)
            return []
        self.runtime.backend_health.pop(backend.kind, None)
        if backend.kind == "local":
            self._local_runs = {u.run_id for u in updates}
        return [(by_run[u.run_id], u) for u in updates if u.run_id in by_run]

    async def _cancel(self, backend: Backend, refs: list[RunRef]) -> None:
        for ref in refs:
            force = ref.job_id in self._forced
            try:
                with self.runtime.metrics.backend_call(backend.kind, "cancel"):
                    await asyncio.wait_for(asyncio.to_thread(backend.cancel, ref, force=force), BACKEND_CALL_TIMEOUT)
            except (BackendError, TimeoutError) as exc:
                log.warning("cancel of job %s failed; will retry: %s", ref.job_id, exc)

    def _local(self, update: RunUpdate) -> bool:
        return update.backend_status == "Starting" and update.run_id in self._local_runs

    def _next_due(self) -> float | None:
        with self.runtime.db.session() as session:
            _overdue, due = supervision.next_due(session, settings=self.runtime.settings, now=self._now())
        return due

    def _enforce_deadlines(self) -> None:
        settings, now = self.runtime.settings, self._now()
        with self.runtime.db.session() as session:
            overdue, _due = supervision.next_due(session, settings=settings, now=now)
        if not overdue:
            return  # nothing to write: an idle service takes no write lock per tick
        with self.runtime.uow() as tx:
            if supervision.enforce_deadlines(tx.session, settings=settings, now=now):
                tx.publish(Event.JOB_ENDED)

    def _release_abandoned(self) -> None:
        hosts.release_abandoned(self.runtime, now=self._now())

    def _record_error(self, job_ids: list[str], message: str) -> None:
        """Make a transient backend problem visible on the jobs it holds up."""
        with self.runtime.uow() as tx:
            for job in tx.session.exec(select(Job).where(col(Job.id).in_(job_ids))).all():
                job.last_error, job.backend_errors = message, job.backend_errors + 1
                tx.session.add(job)

    def _apply(self, updates: list[tuple[str, RunUpdate]]) -> None:
        """Store the updates in transactions of about `APPLY_CHUNK_POINTS` points each, so the
        write lock is never held for long; a job that ended frees a slot after its commit."""
        chunk: list[tuple[str, RunUpdate]] = []
        points = 0
        for item in updates:
            chunk.append(item)
            points += len(item[1].metrics)
            if points >= APPLY_CHUNK_POINTS:
                self._apply_chunk(chunk)
                chunk, points = [], 0
        if chunk:
            self._apply_chunk(chunk)

    def _apply_chunk(self, updates: list[tuple[str, RunUpdate]]) -> None:
        now, me = self._now(), self.runtime.settings.effective_replica_id
        cap = self.runtime.settings.max_metric_points_per_job
        with self.runtime.uow() as tx, tx.session.no_autoflush:
            session = tx.session
            ids = [job_id for job_id, _ in updates]
            jobs = {
                job.id: job
                for start in range(0, len(ids), _IN_CHUNK)
                for job in session.exec(select(Job).where(col(Job.id).in_(ids[start : start + _IN_CHUNK])))
            }
            stored = _points_stored(session, [job_id for job_id, u in updates if u.metrics])
            rows: list[dict[str, object]] = []
            for job_id, update in updates:
                job = jobs.get(job_id)
                if job is None or job.status.is_terminal() or job.run_id != update.run_id:
                    continue
                if job.owner not in (None, me):
                    continue  # another replica took the job over while this one was reading its run
                room = max(0, cap - stored.get(job.id, 0))
                kept = update.metrics[:room]
                rows += ({"job_id": job.id, "name": m.name, "value": m.value, "step": m.step,
                          "timestamp": m.timestamp} for m in kept)
                stored[job.id] = stored.get(job.id, 0) + len(kept)
                dropped = len(update.metrics) - len(kept) + update.metrics_skipped
                if dropped:
                    job.metrics_dropped += dropped
                if self._merge(session, job, update, now):
                    tx.publish(Event.JOB_ENDED, job.id)
                session.add(job)
            if rows:
                # One executemany, not an ORM object per point: a chatty script logs thousands a tick.
                session.execute(insert(MetricPoint), rows)

    def _merge(self, session: Session, job: Job, update: RunUpdate, now: datetime) -> bool:
        current = job.status
        target = update.status
        if current is JobStatus.CANCELING and not target.is_terminal():
            target = current  # stays canceling until the backend confirms an end
        try:
            current.check_transition(target)
        except IllegalTransition as exc:
            log.warning("job %s: ignoring backend report: %s", job.id, exc)
            return False
        changed = target is not current or update.backend_status != job.backend_status or bool(update.metrics)
        if update.backend_status != job.backend_status:
            job.backend_status_since = now
        job.backend_status = update.backend_status
        if not target.is_terminal() and target is not current:
            lifecycle.set_status(job, target, now=now)
        job.metrics_cursor = update.metrics_cursor
        if update.files is not None and list(update.files) != job.files:
            job.files, changed = list(update.files), True
        job.started_at = job.started_at or update.started_at
        if job.last_error is not None and (target.is_terminal() or current is not JobStatus.CANCELING):
            job.last_error = None  # the backend answers again (or confirmed the cancel)
        if changed:
            job.updated_at = now
        if not target.is_terminal():
            return False
        job.exit_code, job.error = update.exit_code, update.error
        final = supervision.settle(session, job, status=target, now=now, ended_at=update.ended_at)
        log.info("job %s %s", job.id, final.value)
        return True
