"""The service's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.registry import Collector

from service.core.errors import BackendError

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
        # Which replica answered a scrape: one series a dashboard joins on (`* on() group_left(replica)`),
        # rather than a label on every series that a single process would carry for nothing.
        self.replica = Info("runyard_replica", "This replica's identity and its database kind", registry=self.registry)
        self._watched: Collector | None = None

    def identify(self, *, replica: str, database: str) -> None:
        self.replica.info({"replica": replica, "database": database})

    def watch(self, collector: Collector) -> None:
        """Add a collector read at each scrape (the jobs-by-status count, say); one at a time."""
        self.unwatch()
        self._watched = collector
        self.registry.register(collector)

    def unwatch(self) -> None:
        if self._watched is not None:
            self.registry.unregister(self._watched)
            self._watched = None

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
