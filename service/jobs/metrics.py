"""The jobs-by-status gauge, counted in the database at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from service.core.states import JobStatus
from service.db.engine import Database
from service.db.tables import Job

log = logging.getLogger(__name__)


class JobsByStatus(Collector):
    """`runyard_jobs{status}` from one GROUP BY on the status index, at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> Iterable[Metric]:
        # Registering must not query the database; collect() names the families.
        return []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("runyard_database_up", "1 when the last scrape could count jobs in the database")
        try:
            with self.db.session() as session:
                rows = session.exec(select(Job.status, func.count()).group_by(col(Job.status))).all()
        except SQLAlchemyError as exc:
            log.warning("counting jobs for /metrics failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        counts = {status.value: 0 for status in JobStatus} | {status: int(n) for status, n in rows}
        jobs = GaugeMetricFamily("runyard_jobs", "Jobs by status", labels=["status"])
        for status, n in sorted(counts.items()):
            jobs.add_metric([status], n)
        up.add_metric([], 1)
        yield jobs
        yield up
