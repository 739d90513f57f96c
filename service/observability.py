"""Prometheus metrics and the request middleware that times requests and tags them with an id."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem
from service.db import Database
from service.errors import BackendError
from service.logging_setup import request_id_var
from service.states import JobStatus
from service.tables import Job

log = logging.getLogger(__name__)
access_log = logging.getLogger("runyard.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids we accept from callers: short and log-safe; anything else is replaced by our own.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# Probes and scrapes would drown the access log at INFO.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_POLL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The service's metrics, in a registry of their own (one per app, so tests stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submits = Counter(
            "runyard_jobs_submitted", "Jobs accepted by POST /v1/jobs (idempotent replays not counted)",
            ["compute_target"], registry=self.registry,
        )
        self.poll_seconds = Histogram(
            "runyard_poll_cycle_seconds", "Duration of one poller cycle over every active job",
            buckets=_POLL_BUCKETS, registry=self.registry,
        )
        self.backend_calls = Counter(
            "runyard_backend_calls", "Calls made to compute backends", ["kind", "operation"], registry=self.registry,
        )
        self.backend_errors = Counter(
            "runyard_backend_errors", "Backend calls that failed, by kind of error",
            ["kind", "operation", "error"], registry=self.registry,
        )
        self.http_seconds = Histogram(
            "runyard_http_request_duration_seconds", "Time from request to response start, by route template",
            ["method", "route", "status"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self._jobs: JobsByStatus | None = None

    def watch_jobs(self, db: Database) -> None:
        """Report jobs by status, counted in `db` at each scrape."""
        self.unwatch_jobs()
        self._jobs = JobsByStatus(db)
        self.registry.register(self._jobs)

    def unwatch_jobs(self) -> None:
        if self._jobs is not None:
            self.registry.unregister(self._jobs)
            self._jobs = None

    @contextmanager
    def backend_call(self, kind: str, operation: str) -> Iterator[None]:
        """Count one backend call, and its failure by kind: transient, definitive, timeout, unexpected."""
        self.backend_calls.labels(kind, operation).inc()
        try:
            yield
        except BackendError as exc:
            self.backend_errors.labels(kind, operation, "transient" if exc.transient else "definitive").inc()
            raise
        except TimeoutError:
            self.backend_errors.labels(kind, operation, "timeout").inc()
            raise
        except Exception:
            self.backend_errors.labels(kind, operation, "unexpected").inc()
            raise

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


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


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/jobs/{job_id}`), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # A mount (the docs assets) leaves no route in the scope, only its prefix in root_path.
    mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))):]
    return f"{mounted}/{{path}}" if mounted else "unmatched"


def incoming_request_id(scope: Scope) -> str | None:
    """The caller's X-Request-ID, when it is one we can log safely."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


class RequestObservability:
    """ASGI middleware: request id (header in, header out, in every log line), latency, access log."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
                self._record(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if response_started:
                raise
            # Answer here rather than in Starlette's outer error middleware, so the 500 still
            # carries the request id and its log line is tagged with it.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = problem(500, "Internal error", "an unexpected error occurred; it has been logged",
                               Request(scope, receive))
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope)
        method = str(scope.get("method", ""))
        self.metrics.http_seconds.labels(method, route, str(status)).observe(elapsed)
        level = logging.DEBUG if scope.get("path") in _QUIET_PATHS else logging.INFO
        access_log.log(
            level, "%s %s %d", method, scope.get("path"), status,
            extra={"method": method, "path": scope.get("path"), "route": route, "status": status,
                   "duration_ms": round(elapsed * 1000, 2)},
        )
