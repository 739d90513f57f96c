"""API models of jobs: what a job request carries and what its reads return (never table rows)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

from service.core.schemas import MAX_VERSION, ArgInt, ExperimentName, Name, RelPath, Strict, Tags
from service.core.states import JobStatus


def argv_safe(text: str) -> str:
    """`text` if a command line can carry it."""
    # execve takes C strings: a NUL, or a lone surrogate that no filesystem encoding can write,
    # would be accepted here and then fail every dispatch of the job.
    if "\x00" in text:
        raise ValueError("a NUL character cannot be passed on a command line")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return text


# A `..` segment in an argument or in its value after the first `=` (`--out=../x`): refused for
# every target, as the document says (a script's folders are never the caller's to climb out of).
# `(?![\s\S])` is the end of the text in ECMAScript and Python alike (Python's `$` also matches
# before a final newline).
NO_NUL = r"^[^\x00]*$"  # argv_safe: a C string ends at NUL
PARENT_SEGMENT = r"(?:^|/|^[^=]*=)\.\.(?:/|(?![\s\S]))"


def no_parent_segment(text: str) -> str:
    """`text` unless it has a `..` path segment (PARENT_SEGMENT)."""
    if re.search(PARENT_SEGMENT, text):
        raise ValueError(f"{text!r} has a '..' path segment, which would climb out of the run folder")
    return text


ArgText = Annotated[
    str, StringConstraints(max_length=4096), AfterValidator(argv_safe), AfterValidator(no_parent_segment),
    WithJsonSchema({"type": "string", "maxLength": 4096, "pattern": NO_NUL, "not": {"pattern": PARENT_SEGMENT}}),
]
# NaN and infinities are valid JSON to Python but no script's argparse reads them back as numbers.
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class DatasetArgument(Strict):
    """An argument bound to a dataset's folder on the compute target."""

    dataset: Name
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION, description="omitted: the latest")
    mode: Literal["mount", "download"] = "mount"


Argument = StrictBool | ArgInt | FiniteFloat | ArgText | DatasetArgument
MAX_JOB_ARGUMENTS = 256

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
    arguments: Annotated[list[Argument], Field(max_length=MAX_JOB_ARGUMENTS)] = Field(default_factory=list)
    compute_target: Name = "local"
    environment: Name = "tutorial-env"
    environment_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
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
    metrics_dropped: int = Field(
        default=0, description="metric points not stored: past RUNYARD_MAX_METRIC_POINTS_PER_JOB or on over-long lines"
    )


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
