"""What a run leaves: metrics, log text, output files."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from service.core.errors import NotFound
from service.core.rundir import RunDir, clean_relative
from service.core.suggest import unknown
from service.db.pagination import KeyShape, PagedQuery, decode_cursor, encode_cursor
from service.db.tables import Job, MetricPoint
from service.jobs import service as jobs
from service.jobs.schemas import FilePublic, LogChunk


def latest_metrics(session: Session, *, job_id: str) -> dict[str, float]:
    """The last logged value of each metric of a job."""
    last = (
        select(func.max(MetricPoint.id))
        .where(MetricPoint.job_id == job_id)
        .group_by(col(MetricPoint.name))
        .scalar_subquery()
    )
    rows = session.exec(select(MetricPoint.name, MetricPoint.value).where(col(MetricPoint.id).in_(last)))
    return {str(name): float(value) for name, value in rows}


def last_logged(session: Session, *, job_ids: list[str]) -> dict[str, tuple[str, float]]:
    """Each job's most recently logged metric as (name, value), for a page of jobs in one query."""
    if not job_ids:
        return {}
    last = (
        select(func.max(MetricPoint.id))
        .where(col(MetricPoint.job_id).in_(job_ids))
        .group_by(col(MetricPoint.job_id))
        .scalar_subquery()
    )
    rows = session.exec(
        select(MetricPoint.job_id, MetricPoint.name, MetricPoint.value).where(col(MetricPoint.id).in_(last))
    )
    return {str(job_id): (str(name), float(value)) for job_id, name, value in rows}


class Point(NamedTuple):
    """One logged point of a metric: MetricPointPublic's fields, in its order and of its types."""

    step: int | None
    value: float
    timestamp: datetime


# Columns, not ORM objects: a page of points is read on every chart refresh, and a mapped
# object (or a model) per row cost more than the query. Built once (db/pagination.PagedQuery).
_HISTORY = PagedQuery(
    select(MetricPoint.id, MetricPoint.step, MetricPoint.value, MetricPoint.timestamp).where(
        col(MetricPoint.job_id) == bindparam("job_id"), col(MetricPoint.name) == bindparam("name")),
    col(MetricPoint.id),
)


def metric_history(
    session: Session, *, job_id: str, name: str, limit: int, cursor: str | None
) -> tuple[list[Point], str | None]:
    """Every logged point of one metric, in logging order; 404 for an unknown job or metric."""
    rows, next_cursor = _HISTORY.page(session, {"job_id": job_id, "name": name}, limit=limit, cursor=cursor)
    if not rows:
        # Only an empty page asks whether the job exists: a point proves it does (a foreign key,
        # and jobs are never deleted), and that query was a fifth of a page's CPU.
        jobs.require_job(session, job_id=job_id)
        if cursor is None:
            names = session.exec(select(MetricPoint.name).where(MetricPoint.job_id == job_id).distinct())
            raise unknown("metric", name, names, where=f" in job {job_id}")
    return [Point(step, value, timestamp) for _id, step, value, timestamp in rows], next_cursor


def read_log(job: Job, rundir: RunDir, *, offset: int, limit: int) -> LogChunk:
    """Up to `limit` bytes of the run's log from byte `offset`, cut on a character boundary."""
    try:
        with open(rundir.log, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(min(offset, size))
            data = handle.read(limit)
    except FileNotFoundError:
        size, data = 0, b""
    start = min(offset, size)
    finished = job.status.is_terminal()
    if not (finished and start + len(data) >= size):
        # A character cut off at the end comes whole with the next read; a finished log that
        # ends mid-character has no next read, so its last bytes are decoded as they are.
        data = _whole_characters(data)
    next_offset = start + len(data)
    eof = finished and next_offset >= size
    return LogChunk(
        job_id=job.id, offset=offset, next_offset=next_offset, text=data.decode("utf-8", errors="replace"), eof=eof
    )


def _whole_characters(data: bytes) -> bytes:
    """Drop a UTF-8 sequence cut off at the end; the next read starts with it."""
    for cut in range(1, min(4, len(data)) + 1):
        lead = data[-cut]
        if lead & 0xC0 != 0x80:  # found the start byte of the last character
            width = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
            return data[:-cut] if width > cut else data
    return data


def list_files(job: Job, rundir: RunDir, *, limit: int, cursor: str | None) -> tuple[list[FilePublic], str | None]:
    """The run's files by path, with sizes where a local copy exists."""
    paths = sorted(job.files)
    if cursor is not None:
        after = decode_cursor(cursor, KeyShape.TEXT)[0]
        paths = [p for p in paths if p > after]
    page = paths[:limit]
    items = [FilePublic(path=p, size=_size(rundir.root / p)) for p in page]
    return items, encode_cursor([page[-1]], KeyShape.TEXT) if len(paths) > limit else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def check_file(job: Job, path: str) -> str:
    """`path` normalised, provided it is one of the run's files (else 422 or 404)."""
    clean = clean_relative(path)
    if clean not in job.files:
        raise NotFound(f"job {job.id} has no file {clean!r}")
    return clean
