"""Which replica submits and polls a job: a lease (owner, expiry) held in the job's row.

Every replica runs every loop. A replica works only on jobs it holds; it takes a job that is
unowned or whose lease lapsed (its owner stopped renewing: killed, partitioned, shut down), and
renews its own before they lapse. Taking is one conditional UPDATE: on PostgreSQL concurrent
takers queue on the row lock and the loser's WHERE no longer matches, so a job has one owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from service.db.tables import Job

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-parameter limit


def free_or_mine(owner: str, now: datetime) -> ColumnElement[bool]:
    """Jobs `owner` may work on: its own, unowned ones, and those whose lease lapsed."""
    return or_(col(Job.owner).is_(None), col(Job.owner) == owner, col(Job.lease_expires_at) < now)


def hold(job: Job, owner: str, *, now: datetime, seconds: float) -> None:
    """Mark a job the caller has just claimed under its row lock as `owner`'s."""
    job.owner, job.lease_expires_at = owner, now + timedelta(seconds=seconds)


def take(session: Session, job_ids: Iterable[str], owner: str, *, now: datetime, seconds: float) -> set[str]:
    """Take (or renew) the lease of each job that is free or `owner`'s; the ids now held."""
    ids = list(job_ids)
    held: set[str] = set()
    until = now + timedelta(seconds=seconds)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        result = session.execute(
            update(Job)
            .where(col(Job.id).in_(chunk), free_or_mine(owner, now))
            .values(owner=owner, lease_expires_at=until)
            .returning(col(Job.id))
        )
        held.update(str(row[0]) for row in result)
    return held


class Leased(Protocol):
    """A job's lease columns (a `Job`, or a row of just these)."""

    @property
    def id(self) -> str: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def lease_expires_at(self) -> datetime | None: ...


def to_renew(jobs: Iterable[Leased], owner: str, *, now: datetime, seconds: float) -> set[str]:
    """The ids of the jobs that are not `owner`'s, or whose lease has less than half its length left."""
    renew_by = now + timedelta(seconds=seconds / 2)  # once, not per job: the poller asks of 10,000
    return {job.id for job in jobs
            if job.owner != owner or job.lease_expires_at is None or job.lease_expires_at < renew_by}
