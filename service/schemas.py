"""API models: what requests carry and responses return (never table rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints

from service.states import JobStatus

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ExperimentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")]
RelPath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ArgText = Annotated[str, StringConstraints(max_length=4096)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
TagValue = Annotated[str, StringConstraints(max_length=1024)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetArgument(Strict):
    """An argument bound to a dataset's folder on the compute target."""

    dataset: Name
    version: int | None = Field(default=None, ge=1, description="omitted: the latest")
    mode: Literal["mount", "download"] = "mount"


Argument = StrictBool | StrictInt | StrictFloat | ArgText | DatasetArgument

TUTORIAL_JOB: dict[str, Any] = {
    "experiment": "Tutorial-sklearn-mnist",
    "source": "trainer",
    "script": "train.py",
    "arguments": ["--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", 0.5],
    "compute_target": "local",
    "environment": "tutorial-env",
    "tags": {"team": "vision"},
}


class JobCreate(Strict):
    """A training job, shaped like Azure ML's `ScriptRunConfig`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TUTORIAL_JOB]})

    experiment: ExperimentName
    source: Name = "trainer"
    script: RelPath = "train.py"
    arguments: Annotated[list[Argument], Field(max_length=256)] = Field(default_factory=list)
    compute_target: Name = "local"
    environment: Name = "tutorial-env"
    environment_version: int | None = Field(default=None, ge=1)
    tags: Tags = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0, le=10, description="failed runs are resubmitted this many times")
    max_run_duration_seconds: int | None = Field(
        default=None, ge=1, le=2_592_000, description="the run is stopped and the job failed past this"
    )


class AttemptPublic(BaseModel):
    """An earlier run of a retried job."""

    attempt: int
    run_id: str | None
    status: JobStatus
    error: str | None
    exit_code: int | None
    started_at: datetime | None
    ended_at: datetime | None


class JobPublic(BaseModel):
    id: str
    experiment: str
    source: str
    script: str
    arguments: list[Any]
    compute_target: str
    environment: str
    environment_version: int
    tags: dict[str, str]
    status: JobStatus
    backend_status: str | None
    run_id: str | None
    error: str | None
    exit_code: int | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    sweep_id: str | None = Field(default=None, description="the sweep this job is a child of")
    cancel_requested_at: datetime | None
    max_retries: int
    max_run_duration_seconds: int | None
    attempt: int = Field(description="the current attempt, from 1")
    attempts: list[AttemptPublic] = Field(default_factory=list, description="earlier attempts that failed")
    last_error: str | None = Field(description="the latest transient problem, cleared when it passes")
    backend_errors: int


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next."""

    items: list[T]
    next_cursor: str | None


class MetricsPublic(BaseModel):
    job_id: str
    metrics: dict[str, float]


class MetricPointPublic(BaseModel):
    step: int | None
    value: float
    timestamp: datetime


class LogChunk(BaseModel):
    job_id: str
    offset: int
    next_offset: int
    text: str
    eof: bool = Field(description="true once the job is terminal and every byte was read")


class FilePublic(BaseModel):
    path: str
    size: int | None


class ModelRegister(Strict):
    model_name: Name
    model_path: RelPath
    tags: Tags = Field(default_factory=dict)


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    job_id: str | None
    run_id: str | None
    experiment: str | None
    model_path: str
    tags: dict[str, str]
    metrics: dict[str, Any]
    created_at: datetime


class ModelPublic(BaseModel):
    name: str
    latest_version: int
    versions: int


class ExperimentCreate(Strict):
    name: ExperimentName


class ExperimentPublic(BaseModel):
    name: str
    created_at: datetime


class EnvironmentCreate(Strict):
    name: Name
    python_version: Annotated[str, StringConstraints(pattern=r"^3\.\d{1,2}(\.\d{1,3})?$")] = "3.11"
    pip_packages: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=200)
    ] = Field(default_factory=list)
    conda_packages: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=200)
    ] = Field(default_factory=list)


class EnvironmentPublic(BaseModel):
    name: str
    version: int
    python_version: str
    pip_packages: list[str]
    conda_packages: list[str]
    created_at: datetime


class DatasetCreate(Strict):
    """A new version of a file dataset: a server-side folder, or a URL for Azure targets."""

    name: Name
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    uri: (
        Annotated[str, StringConstraints(pattern=r"^(https?|wasbs?|abfss?|adl|azureml)://.+", max_length=4096)] | None
    ) = None
    description: Annotated[str, StringConstraints(max_length=4096)] = ""


class DatasetPublic(BaseModel):
    name: str
    version: int
    path: str | None
    uri: str | None
    description: str
    created_at: datetime


class ComputePublic(BaseModel):
    name: str
    kind: Literal["local", "amlcompute"]
    state: str
    max_concurrent: int | None = None
    active_jobs: int
    vm_size: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    current_nodes: int | None = None
    error: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
