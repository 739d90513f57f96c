"""Retention: delete the run folders (or only the logs) of jobs that ended long ago.

Never those of a job a registered model version came from: the version's lineage points there.
The database keeps every job; only files go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from service.core.clock import utcnow
from service.core.loop import BackgroundLoop
from service.core.rundir import RunDir
from service.core.settings import Settings
from service.core.states import JobStatus
from service.db.tables import Job, ModelVersion
from service.runtime import Runtime

log = logging.getLogger(__name__)
_TERMINAL = [s for s in JobStatus if s.is_terminal()]
BATCH = 500  # jobs per pass; the next pass takes the next ones
INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class Removal:
    job_id: str
    path: Path
    bytes: int


def plan(session: Session, *, settings: Settings, now: datetime, days: float | None = None) -> list[Removal]:
    """What retention would delete now: folders (or logs) of jobs ended more than `days` ago."""
    keep_days = settings.retention_days if days is None else days
    if keep_days is None:
        return []
    cutoff = now - timedelta(days=keep_days)
    registered = select(ModelVersion.job_id).where(col(ModelVersion.job_id).is_not(None))
    jobs = session.exec(
        select(Job).where(col(Job.status).in_(_TERMINAL), col(Job.ended_at) < cutoff, col(Job.id).not_in(registered))
        .order_by(col(Job.ended_at)).limit(BATCH)
    ).all()
    found: list[Removal] = []
    for job in jobs:
        for attempt in range(1, job.attempt + 1):
            root = settings.runs_dir / (job.id if attempt == 1 else f"{job.id}.{attempt}")
            target = RunDir(root).log.parent if settings.retention_scope == "logs" else root
            if target.exists():
                found.append(Removal(job.id, target, _size(target)))
    return found


def apply(removals: list[Removal]) -> int:
    """Delete what `plan` found; returns the bytes freed."""
    freed = 0
    for removal in removals:
        try:
            shutil.rmtree(removal.path)
        except OSError as exc:
            log.warning("retention could not delete %s: %s", removal.path, exc)
            continue
        freed += removal.bytes
    if removals:
        log.info("retention deleted %d folders (%d bytes)", len(removals), freed)
    return freed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class RetentionLoop:
    """Applies retention once at start-up and then hourly, off the event loop."""

    def __init__(self, runtime: Runtime, *, interval: float = INTERVAL_SECONDS) -> None:
        self.runtime = runtime
        self.loop = BackgroundLoop("retention", self.tick, interval)

    async def tick(self) -> None:
        if self.runtime.settings.retention_days is not None:
            await asyncio.to_thread(self._pass)

    def _pass(self) -> None:
        with self.runtime.db.session() as session:
            removals = plan(session, settings=self.runtime.settings, now=utcnow())
        apply(removals)
