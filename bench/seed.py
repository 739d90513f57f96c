"""Fill a runyard database with stored jobs, fast: migrate, then bulk-insert through the
service's own tables in one transaction (rows shaped by the `Job` model, so its defaults
and column types are the service's own)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, insert

from service.core.ids import new_id
from service.core.states import JobStatus
from service.db import migrate
from service.db.tables import Experiment, Job, MetricPoint

# Only terminal states: an active seeded job would be polled (and failed) by the service.
STATUS_WEIGHTS = {"completed": 0.8, "failed": 0.15, "canceled": 0.05}
CHUNK = 20_000


@dataclass(frozen=True)
class Seeded:
    jobs: int
    seconds: float
    sample_job_id: str  # a completed job that has a metric history
    experiments: list[str]
    metric: str
    metric_points: int
    id_prefix: str


def experiment_names(count: int) -> list[str]:
    return [f"bench-exp-{i}" for i in range(count)]


def seed_jobs(database_url: str, *, jobs: int, experiments: int = 10, metric_points: int = 100,
              seed: int = 7, status: str | None = None, compute_target: str = "local") -> Seeded:
    """Migrate `database_url` and store `jobs` jobs spread over `experiments`.

    By default they are finished (mostly completed); `status` gives them all one status instead.
    Job i has the id `job_id(seeded, i)` and the run id `run_id(i)`.
    """
    started = time.perf_counter()
    migrate.upgrade(database_url)
    rng = random.Random(seed)
    names = experiment_names(experiments)
    engine = create_engine(database_url)
    table: Any = Job.__table__  # type: ignore[attr-defined]
    columns = [c.name for c in table.columns]
    bind = _binder(engine, table)
    template = [bind(c, v) for c, v in zip(columns, _template_values(names[0], columns), strict=True)]
    at = {name: i for i, name in enumerate(columns)}
    finished = status is None or status in STATUS_WEIGHTS
    # Active jobs started recently: the supervisor stops runs older than the default deadline.
    base_time = datetime.now(UTC) - (timedelta(days=30) if finished else timedelta(hours=1))
    stamped = ("created_at", "updated_at", "submitted_at", "started_at") + (("ended_at",) if finished else ())
    times = [at[c] for c in stamped]
    if not finished:
        template[at["ended_at"]] = template[at["exit_code"]] = None
    if status is None:
        statuses = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()), k=jobs)
        statuses[-1] = "completed"  # the sample job
    else:
        statuses = [status] * jobs
    # ULID layout: one millisecond prefix, then the row number, so ids sort by creation.
    prefix = new_id()[:10]
    sqlite = engine.dialect.name == "sqlite"
    marks = ", ".join(["?" if sqlite else "%s"] * len(columns))  # the driver's own paramstyle
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    with engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
        conn.execute(insert(Experiment), [{"name": n, "created_at": base_time} for n in names])
        for first in range(0, jobs, CHUNK):
            rows = []
            for i in range(first, min(jobs, first + CHUNK)):
                row = template.copy()
                row[at["id"]] = f"{prefix}{_base32(i, 16)}"
                row[at["experiment"]] = names[i % experiments]
                row[at["compute_target"]] = compute_target
                row[at["status"]] = statuses[i]
                row[at["backend_status"]] = statuses[i].capitalize()
                row[at["run_id"]] = run_id(i)
                row[at["request_hash"]] = f"{i:064x}"
                when = bind("created_at", base_time + timedelta(milliseconds=i * 2))
                for t in times:
                    row[t] = when
                rows.append(tuple(row))
            conn.exec_driver_sql(sql, rows)
        sample_id = f"{prefix}{_base32(jobs - 1, 16)}"
        conn.execute(insert(MetricPoint), [
            {"job_id": sample_id, "name": "accuracy", "step": step, "value": 0.5 + step / (2 * metric_points),
             "timestamp": base_time + timedelta(seconds=step)} for step in range(metric_points)
        ])
    engine.dispose()
    return Seeded(jobs=jobs, seconds=time.perf_counter() - started, sample_job_id=sample_id,
                  experiments=names, metric="accuracy", metric_points=metric_points, id_prefix=prefix)


def job_id(seeded: Seeded, i: int) -> str:
    """The id of the i-th seeded job."""
    return f"{seeded.id_prefix}{_base32(i, 16)}"


def run_id(i: int) -> str:
    """The backend run id of the i-th seeded job."""
    return f"run-{i:09d}"


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
        if not value:
            break
    return "".join(reversed(chars)).rjust(width, "0")


def _binder(engine: Engine, table: Any) -> Callable[[str, Any], Any]:
    """Turns a Python value into what the driver stores, by the column's own type."""
    processors = {c.name: c.type._cached_bind_processor(engine.dialect) for c in table.columns}

    def bind(column: str, value: Any) -> Any:
        process = processors[column]
        return process(value) if process is not None and value is not None else value

    return bind


def _template_values(experiment: str, columns: list[str]) -> list[Any]:
    """Every column of a job as the model fills it, defaults included."""
    job = Job(
        id="x", experiment=experiment, source="trainer", script="train.py",
        arguments=["--data-folder", {"dataset": "digits", "version": 1, "mode": "mount"}, "--regularization", 0.5],
        compute_target="local", environment="tutorial-env", environment_version=1, tags={"team": "vision"},
        status=JobStatus.COMPLETED, request_hash="0" * 64, exit_code=0,
        files=["outputs/sklearn_mnist_model.pkl", "logs/run.log"],
    )
    values = job.model_dump()
    return [values.get(c) for c in columns]
