"""A scripted in-memory backend and a clock to drive the loops in milliseconds."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from service.backends.base import ComputeInfo, MetricSample, RegisteredModel, RunRef, RunUpdate, SubmitRequest
from service.core.errors import BackendError
from service.core.states import JobStatus
from service.db.engine import Database

TARGET = "fake"


class FakeClock:
    """Wall-clock time that moves only when told to."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeBackend:
    """Implements the Backend Protocol from a script; as strict about its callers as the real ones.

    - `script(run_key, *statuses)`: what successive polls of that attempt's run report (the
      last one repeats); unscripted runs report `running`.
    - `fail(operation, transient=...)`: the next call of `operation` raises `BackendError`.
    - `log(run_key, name=value...)`: metrics the run's next poll reports once.
    - `files`: what every run's outputs hold; `registry_version`: a number the backend's own
      registry assigns on `register_model` (as Azure ML does), or None to keep runyard's.
    - `calls`: how often each operation was called.
    - Every call asserts that the calling thread holds no database write transaction.
    """

    kind: Literal["local", "amlcompute"] = "local"

    def __init__(self, db: Database, *, capacity: int | None = None) -> None:
        self.db = db
        self.max_concurrent = capacity
        self.calls: Counter[str] = Counter()
        self.canceled: dict[str, bool] = {}  # run id -> force
        self._script: dict[str, list[JobStatus]] = defaultdict(list)
        self._faults: dict[str, list[BackendError]] = defaultdict(list)
        self._runs: dict[str, str] = {}  # run key (job id, `<id>.2`...) -> run id
        self._metrics: dict[str, dict[str, float]] = {}
        self.files: tuple[str, ...] = ("outputs/model.pkl",)
        self.registry_version: int | None = None

    def script(self, run_key: str, *statuses: JobStatus) -> None:
        self._script[run_key] = list(statuses)

    def log(self, run_key: str, **values: float) -> None:
        self._metrics[run_key] = values

    def fail(self, operation: str, *, transient: bool) -> None:
        self._faults[operation].append(BackendError(f"{operation} failed (scripted)", transient=transient))

    def _call(self, operation: str) -> None:
        assert not self.db.writing, f"backend.{operation} called inside a database write transaction"
        self.calls[operation] += 1
        if self._faults[operation]:
            raise self._faults[operation].pop(0)

    def targets(self) -> Sequence[str]:
        return [TARGET]

    def capacity(self, target: str) -> int | None:  # noqa: ARG002
        return self.max_concurrent

    def submit(self, request: SubmitRequest) -> str:
        self._call("submit")
        run_id = f"run-{request.job_id}"
        self._runs[request.job_id] = run_id
        return run_id

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        self._call("find_run")
        return self._runs.get(job_id)

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        self._call("poll")
        updates = []
        for ref in runs:
            key = ref.run_id.removeprefix("run-")
            script = self._script[key]
            status = script.pop(0) if len(script) > 1 else (script[0] if script else JobStatus.RUNNING)
            if ref.run_id in self.canceled and not status.is_terminal():
                status = JobStatus.CANCELED
            error = "scripted failure" if status is JobStatus.FAILED else None
            now = datetime.now(UTC)
            metrics = tuple(MetricSample(name, value, None, now) for name, value in self._metrics.pop(key, {}).items())
            updates.append(RunUpdate(
                ref.run_id, status.value.title(), status, metrics, ref.metrics_cursor + len(metrics), self.files,
                error=error, exit_code=1 if status is JobStatus.FAILED else None,
            ))
        return updates

    def cancel(self, run: RunRef, *, force: bool) -> None:
        self._call("cancel")
        self.canceled[run.run_id] = force

    def fetch_file(self, run: RunRef, path: str) -> Path:
        self._call("fetch_file")
        return run.run_dir / path

    def register_model(
        self, run: RunRef, *, model_name: str, model_path: str, version: int, tags: Mapping[str, str]  # noqa: ARG002
    ) -> RegisteredModel:
        self._call("register_model")
        number = self.registry_version or version
        return RegisteredModel(location=f"fake://{model_name}/{number}", files=(model_path,),
                               version=self.registry_version, sha256="0" * 64)

    def describe(self) -> list[ComputeInfo]:
        return [ComputeInfo(name=TARGET, kind="local", state="ready", max_concurrent=self.max_concurrent)]

    def check(self) -> None:
        self._call("check")
