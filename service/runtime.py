"""The service's long-lived parts, built once in the lifespan and shared by requests."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlmodel import Session

from service.backends.base import Arg, DatasetInput, EnvironmentSpec, RunRef, SubmitRequest
from service.backends.targets import Backends
from service.catalog import service as catalog
from service.core.events import Events
from service.core.metrics import Metrics
from service.core.rundir import RunDir
from service.core.settings import Settings
from service.db.engine import Database
from service.db.tables import Job
from service.db.uow import UnitOfWork, uow
from service.jobs.supervision import run_key


class PolledJob(Protocol):
    """The columns of a job that `Runtime.run_ref_of` reads."""

    @property
    def id(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def experiment(self) -> str: ...
    @property
    def compute_target(self) -> str: ...
    @property
    def metrics_cursor(self) -> int: ...
    @property
    def cancel_requested_at(self) -> datetime | None: ...


@dataclass
class Runtime:
    settings: Settings
    db: Database
    backends: Backends
    metrics: Metrics = field(default_factory=Metrics)
    # Who hears what changed (loops to wake, counters): subscribed by the composition root.
    events: Events = field(default_factory=Events)
    # Backend kind -> the last transient error, while it lasts; /readyz reports it.
    backend_health: dict[str, str] = field(default_factory=dict)
    # Job id -> open `logs?follow=true` streams (log_stream keeps it; changed only on the event loop).
    log_followers: dict[str, int] = field(default_factory=dict)

    def uow(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work on this database whose events reach this runtime's subscribers."""
        return uow(self.db, self.events)

    def run_dir(self, job_id: str, attempt: int = 1) -> RunDir:
        """The run folder of one attempt: `runs/<job_id>`, then `runs/<job_id>.<attempt>`."""
        return RunDir(self.settings.runs_dir / (job_id if attempt == 1 else f"{job_id}.{attempt}"))

    def job_dir(self, job: Job) -> RunDir:
        """The run folder of the job's current attempt."""
        return self.run_dir(job.id, job.attempt)

    def run_ref(self, job: Job) -> RunRef:
        """The poller's view of a submitted job's run."""
        return self.run_ref_of(job)

    def run_ref_of(self, job: PolledJob, runs_dir: Path | None = None) -> RunRef:
        """`run_ref` of a job or of a row holding just the columns it reads (the poller's, which
        passes `settings.runs_dir` once for thousands of rows)."""
        runs_dir = runs_dir or self.settings.runs_dir
        if job.run_id is None:
            raise ValueError(f"job {job.id} has no run yet")
        return RunRef(
            job_id=job.id,
            run_id=job.run_id,
            experiment=job.experiment,
            compute_target=job.compute_target,
            run_dir=runs_dir / (job.id if job.attempt == 1 else f"{job.id}.{job.attempt}"),
            metrics_cursor=job.metrics_cursor,
            cancel_requested=job.cancel_requested_at is not None,
        )

    def submit_request(self, session: Session, job: Job) -> SubmitRequest:
        """What the backend is given to start `job`, with datasets and environment resolved."""
        env = catalog.get_environment(session, name=job.environment, version=job.environment_version)
        return SubmitRequest(
            # Each attempt is its own run, found again (after a crash) by this key.
            job_id=run_key(job),
            experiment=job.experiment,
            source_dir=Path(self.settings.source_folders()[job.source]),
            script=job.script,
            arguments=tuple(self._resolve(session, arg) for arg in job.arguments),
            compute_target=job.compute_target,
            environment=EnvironmentSpec(
                name=env.name,
                version=env.version,
                python_version=env.python_version,
                pip_packages=tuple(env.pip_packages),
                conda_packages=tuple(env.conda_packages),
            ),
            tags=dict(job.tags),
            run_dir=self.job_dir(job).root,
        )

    @staticmethod
    def _resolve(session: Session, arg: object) -> Arg:
        if isinstance(arg, dict):
            dataset = catalog.get_dataset(session, name=str(arg["dataset"]), version=int(arg["version"]))
            return DatasetInput(
                name=dataset.name,
                version=dataset.version,
                mode=arg.get("mode", "mount"),
                path=dataset.path,
                uri=dataset.uri,
            )
        if isinstance(arg, str | int | float | bool):
            return arg
        raise ValueError(f"unsupported stored argument {arg!r}")
