"""The interface every compute backend implements, and the values it exchanges."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from service.core.states import JobStatus


@dataclass(frozen=True)
class DatasetInput:
    """A dataset argument, resolved to where its files are."""

    name: str
    version: int
    mode: Literal["mount", "download"]
    path: str | None
    uri: str | None


Arg = str | int | float | bool | DatasetInput


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    version: int
    python_version: str
    pip_packages: tuple[str, ...]
    conda_packages: tuple[str, ...]


@dataclass(frozen=True)
class SubmitRequest:
    """Everything a backend needs to start the one run of a job."""

    job_id: str
    experiment: str
    source_dir: Path
    script: str
    arguments: tuple[Arg, ...]
    compute_target: str
    environment: EnvironmentSpec
    tags: Mapping[str, str]
    run_dir: Path


@dataclass(frozen=True)
class RunRef:
    """A job's backend run as the poller knows it."""

    job_id: str
    run_id: str
    experiment: str
    compute_target: str
    run_dir: Path
    metrics_cursor: int = 0
    cancel_requested: bool = False


@dataclass(frozen=True)
class MetricSample:
    name: str
    value: float
    step: int | None
    timestamp: datetime


@dataclass(frozen=True)
class RunUpdate:
    """What a backend reports about one run in one poll."""

    run_id: str
    backend_status: str
    status: JobStatus
    metrics: tuple[MetricSample, ...] = ()
    metrics_cursor: int = 0
    files: tuple[str, ...] | None = None
    exit_code: int | None = None
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # Metric lines the backend dropped unread (too long); the poller adds them to the job's count.
    metrics_skipped: int = 0


@dataclass(frozen=True)
class ComputeInfo:
    name: str
    kind: Literal["local", "amlcompute"]
    state: str
    max_concurrent: int | None = None
    vm_size: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    current_nodes: int | None = None
    error: str | None = None
    # Which Azure ML SDK serves the target (None for local).
    sdk: Literal["v1", "v2"] | None = None


@dataclass(frozen=True)
class RegisteredModel:
    """Where a backend put a model it registered."""

    location: str
    files: tuple[str, ...] = field(default_factory=tuple)
    # The version the backend's own registry assigned (Azure ML numbers models itself); None: runyard's.
    version: int | None = None
    # Digest of the stored model file (or of the folder's files in order), recorded and checked when served.
    sha256: str | None = None


class Backend(Protocol):
    """A place where jobs run. Methods block; callers run them in worker threads."""

    kind: Literal["local", "amlcompute"]

    def targets(self) -> Sequence[str]:
        """The compute target names this backend serves."""
        ...

    def capacity(self, target: str) -> int | None:
        """How many runs may be active at once on `target`; None for no limit."""
        ...

    def submit(self, request: SubmitRequest) -> str:
        """Start the job's run and return its run id (raises `BackendError`)."""
        ...

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:
        """The run id of a run already started for `job_id`, found by its tag."""
        ...

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        """The current state of each run (one update per run that could be read)."""
        ...

    def cancel(self, run: RunRef, *, force: bool) -> None:
        """Ask the run to stop; `force` once the grace period has passed."""
        ...

    def fetch_file(self, run: RunRef, path: str) -> Path:
        """A local copy of one of the run's files (`path` is already validated)."""
        ...

    def register_model(
        self, run: RunRef, *, model_name: str, model_path: str, version: int, tags: Mapping[str, str]
    ) -> RegisteredModel:
        """Register `model_path` from the run's outputs as `model_name` version `version`."""
        ...

    def describe(self) -> list[ComputeInfo]:
        """State of each target this backend serves."""
        ...

    def check(self) -> None:
        """Raise `BackendError` when the backend cannot be reached."""
        ...


@runtime_checkable
class BackgroundWork(Protocol):
    """Optional for a backend: work of its own that starts and stops with the service."""

    def start(self) -> None:
        """Begin, without blocking (e.g. connect and attach compute in a thread)."""
        ...

    def stop(self) -> None:
        """Stop what `start` began."""
        ...


@runtime_checkable
class ReportsExits(Protocol):
    """Optional for a backend: it notices its runs ending and says so at once (before any poll)."""

    def set_exit_listener(self, on_exit: Callable[[], None]) -> None:
        """Call `on_exit` (from any thread) whenever one of its runs ends."""
        ...


@dataclass(frozen=True)
class ServeRequest:
    """Everything a backend needs to serve one registered model version as a web service."""

    target: str  # the inference target (an ACI/AKS or managed online endpoint target)
    service: str  # the backend's name for this version's service (unique per endpoint and version)
    endpoint: str
    model_name: str
    model_location: str  # where the backend registered the model (RegisteredModel.location)
    model_file: str  # the model's file name inside the registered model (the tutorial's sklearn_mnist_model.pkl)
    environment: EnvironmentSpec
    source_dir: Path  # a folder of runyard's where the generated score.py is written


@dataclass(frozen=True)
class ServiceState:
    """A deployed service as its backend reports it; `scoring_uri` and `key` once it is ready."""

    state: Literal["creating", "ready", "failed"]
    backend_state: str
    scoring_uri: str | None = None
    key: str | None = None
    error: str | None = None


@runtime_checkable
class Serves(Protocol):
    """Optional for a backend: it deploys registered models as web services. Methods block."""

    def serving_targets(self) -> Sequence[str]:
        """The inference target names this backend deploys to."""
        ...

    def deploy(self, request: ServeRequest) -> None:
        """Start the service (never waits for it); a service of that name already there is adopted."""
        ...

    def service_state(self, target: str, service: str) -> ServiceState:
        """The service's deployment state (raises `AzureNotFound`-like `BackendError` when it is gone)."""
        ...

    def undeploy(self, target: str, service: str) -> None:
        """Delete the service; one already gone is not an error."""
        ...
