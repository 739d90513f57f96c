"""SQLModel tables. Responses never expose these; see each feature's `schemas`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Dialect, Index, String, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.core.clock import utcnow
from service.core.states import JobStatus, SweepStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no offsets."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        return None if value is None else value.replace(tzinfo=UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], datetime | None] | None:
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or generic is None:
            return generic

        # SQLite hands back the text SQLAlchemy wrote ("2026-01-02 03:04:05.000006"): parsed with
        # its offset in one C call it is ~10x cheaper than parse-then-replace(tzinfo=UTC), which
        # was about a quarter of a metric history page's CPU (a timestamp per point).
        def from_text(value: Any) -> datetime | None:
            if isinstance(value, str) and len(value) in (19, 26) and value[10] == " ":
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass
            return generic(value)  # None, or text of another form: read (or refused) as it always was

        return from_text


E = TypeVar("E", bound=StrEnum)


class StatusText(TypeDecorator[E]):
    """A status column read as its enum; stored as the plain string it always was."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Any) -> str | None:  # noqa: ARG002
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> E | None:  # noqa: ARG002
        return None if value is None else self.enum(value)


def _status(enum: type[StrEnum]) -> Any:
    return Field(sa_type=StatusText(enum), max_length=16)


def _when(*, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Experiment(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=255)
    created_at: datetime = _when()


class Environment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    version: int
    python_version: str = Field(max_length=32)
    pip_packages: list[str] = Field(default_factory=list, sa_type=JSON)
    conda_packages: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _when()


class Dataset(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    version: int
    path: str | None = Field(default=None, max_length=4096)
    uri: str | None = Field(default=None, max_length=4096)
    description: str = Field(default="", max_length=4096)
    created_at: datetime = _when()


class Sweep(SQLModel, table=True):
    """A search over a job's arguments; its children are ordinary jobs (`Job.sweep_id`)."""

    __table_args__ = (Index("ix_sweep_status_id", "status", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    experiment: str = Field(foreign_key="experiment.name", max_length=255)
    # Written only by service.sweeps.lifecycle.
    status: SweepStatus = _status(SweepStatus)
    # The request as accepted, and every child's parameters sampled up front: a restart
    # resumes the same plan instead of drawing new values.
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    plan: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    best_job_id: str | None = Field(default=None, max_length=32)
    best_metric: float | None = None
    # Children the early-termination policy stopped: job id -> why.
    terminated: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    model_name: str | None = Field(default=None, max_length=255)
    model_version: int | None = None
    error: str | None = None
    idempotency_key: str | None = Field(default=None, max_length=255, unique=True)
    request_hash: str = Field(max_length=64)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True)
    cancel_requested_at: datetime | None = _when(nullable=True)


class Job(SQLModel, table=True):
    __table_args__ = (
        Index("ix_job_experiment_status_id", "experiment", "status", "id"),
        Index("ix_job_status_id", "status", "id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    experiment: str = Field(foreign_key="experiment.name", max_length=255)
    source: str = Field(max_length=255)
    script: str = Field(max_length=1024)
    # Dataset arguments are stored with their version pinned at submit time.
    arguments: list[Any] = Field(default_factory=list, sa_type=JSON)
    compute_target: str = Field(max_length=255)
    environment: str = Field(max_length=255)
    environment_version: int
    tags: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    # Written only by service.jobs.lifecycle.
    status: JobStatus = _status(JobStatus)
    backend_status: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=255, unique=True)
    error: str | None = Field(default=None)
    exit_code: int | None = None
    idempotency_key: str | None = Field(default=None, max_length=255, unique=True)
    request_hash: str = Field(max_length=64)
    # How far the poller has read the run's metrics (meaning is the backend's own).
    metrics_cursor: int = 0
    files: list[str] = Field(default_factory=list, sa_type=JSON)
    # Retries: a failed run is resubmitted as a new attempt while attempt <= max_retries.
    max_retries: int = 0
    attempt: int = 1
    max_run_duration_seconds: int | None = None
    # The latest transient problem (backend unreachable...), cleared once things work again.
    last_error: str | None = None
    backend_errors: int = 0
    # Metric points not stored: past the per-job cap, or on lines over the length cap.
    metrics_dropped: int = 0
    # Why runyard itself stopped the run (timeout, heartbeat); the job then ends failed.
    stop_reason: str | None = None
    backend_status_since: datetime | None = _when(nullable=True)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    submitted_at: datetime | None = _when(nullable=True)
    started_at: datetime | None = _when(nullable=True)
    ended_at: datetime | None = _when(nullable=True)
    cancel_requested_at: datetime | None = _when(nullable=True)
    # A sweep's child: which sweep, its place in the sweep's plan, the values it was given.
    sweep_id: str | None = Field(default=None, foreign_key="sweep.id", max_length=32, index=True)
    sweep_index: int | None = None
    sweep_params: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    # The replica that submits and polls the job while its lease lasts (service.jobs.leases).
    owner: str | None = Field(default=None, max_length=255, index=True)
    lease_expires_at: datetime | None = _when(nullable=True)
    # The host (RUNYARD_HOST_ID) whose data folder holds the current attempt's run folder: a local
    # run lives there, and only replicas of that host can poll it or serve its logs and files.
    host: str | None = Field(default=None, max_length=255)


class MetricPoint(SQLModel, table=True):
    __table_args__ = (Index("ix_metricpoint_job_name_id", "job_id", "name", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=32)
    name: str = Field(max_length=255)
    step: int | None = None
    value: float
    timestamp: datetime = _when()


class ModelVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    version: int
    job_id: str | None = Field(default=None, foreign_key="job.id", max_length=32)
    run_id: str | None = Field(default=None, max_length=255)
    experiment: str | None = Field(default=None, max_length=255)
    model_path: str = Field(max_length=1024)
    # Where the registered copy lives: a folder under data_dir/models, or an Azure model id.
    location: str = Field(max_length=4096)
    tags: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Digest of the stored model as the backend reported it (None when it reports none).
    sha256: str | None = Field(default=None, max_length=64)
    # True from the version's reservation until the backend has stored the model: not listed.
    pending: bool = False
    # While pending: the replica storing the model and until when (service.models.registrar); another
    # replica finishes the registration only after this lapses, so the backend is asked once.
    registrar: str | None = Field(default=None, max_length=255)
    registrar_expires_at: datetime | None = _when(nullable=True)
    # The latest evaluation on a dataset's test split: accuracy, labels, confusion matrix.
    evaluation: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    created_at: datetime = _when()


class Endpoint(SQLModel, table=True):
    """A model version served for scoring; the service brings `ready` ones back after a restart."""

    __table_args__ = (Index("ix_endpoint_status_name", "status", "name"),)

    name: str = Field(primary_key=True, max_length=255)
    model_name: str = Field(max_length=255)
    model_version: int
    # On an inference target: the version a PATCH is moving to, kept so that a restart finishes the move.
    pending_version: int | None = None
    compute: str = Field(max_length=255)
    replicas: int = 1
    status: str = Field(max_length=16)
    error: str | None = None
    created_at: datetime = _when()
    updated_at: datetime = _when()


class JobAttempt(SQLModel, table=True):
    """One finished run of a job that was retried."""

    __table_args__ = (UniqueConstraint("job_id", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=32, index=True)
    attempt: int
    run_id: str | None = Field(default=None, max_length=255)
    status: JobStatus = _status(JobStatus)
    error: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = _when(nullable=True)
    ended_at: datetime | None = _when(nullable=True)
