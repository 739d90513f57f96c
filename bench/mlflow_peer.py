"""MLflow's tracking server as the peer: its own virtualenv, SQLite store, one worker.

MLflow is installed with pip into bench/.work/mlflow-venv (never into the project's venv).
3.17.2 is pinned: 3.18.0 is listed on the index but its `mlflow-skinny==3.18.0` is not.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import WORK_DIR, say
from bench.procs import LOOPBACK, Server, free_port, http
from bench.wrk import Request

MLFLOW_VERSION = "3.17.2"
VENV = WORK_DIR / "mlflow-venv"
API = "/api/2.0/mlflow"
STATUS_WEIGHTS = {"FINISHED": 0.8, "FAILED": 0.15, "KILLED": 0.05}


def ensure_mlflow() -> Path | None:
    """The venv's `mlflow` executable, installing the pinned version on first use; None if that fails."""
    exe = VENV / "bin" / "mlflow"
    if exe.exists() and _installed_version() == MLFLOW_VERSION:
        return exe
    say(f"installing mlflow=={MLFLOW_VERSION} into {VENV} (first run only; takes a few minutes)")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"mlflow=={MLFLOW_VERSION}"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or _installed_version() != MLFLOW_VERSION:
        say(f"could not install mlflow: {done.stderr.strip()[-400:]}; the MLflow columns are skipped")
        return None
    return exe


def _installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def start(exe: Path, folder: Path, *, job_execution: bool = False, name: str = "mlflow") -> tuple[Server, str]:
    """`mlflow server` with a SQLite store and `--workers 1`, ready on /health."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [str(exe), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--default-artifact-root", (folder / "artifacts").as_uri(), "--host", LOOPBACK,
            "--port", str(port), "--workers", "1"]
    # The job runner (huey consumers) is on by default; off it measures the tracking server alone.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if job_execution else "false"}
    server = Server(name, argv, env=env, cwd=folder, log=folder.parent / f"{name}.log")
    base = f"http://{LOOPBACK}:{port}"
    server.wait_ready(base + "/health", timeout=180)
    return server, base


@dataclass(frozen=True)
class MlflowSeeded:
    runs: int
    seconds: float
    sample_run_id: str
    experiment_ids: list[str]
    metric: str


def seed(base: str, db: Path, *, runs: int, experiments: int = 10, metric_points: int = 100,
         seed_value: int = 7) -> MlflowSeeded:
    """Experiments and one fully formed sample run through the REST API; the bulk of runs by SQL.

    Bulk runs get what a runyard job carries: two params, a tag, and their accuracy metric.
    """
    started = time.perf_counter()
    ids = []
    for i in range(experiments):
        status, body = http("POST", f"{base}{API}/experiments/create", {"name": f"bench-exp-{i}"})
        if status != 200:
            raise RuntimeError(f"MLflow experiments/create: {status} {body}")
        ids.append(str(body["experiment_id"]))
    rng = random.Random(seed_value)
    now_ms = int(time.time() * 1000) - 30 * 86_400_000
    run_rows, tag_rows, param_rows, metric_rows = [], [], [], []
    for i in range(runs - 1):
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        run_status = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0]
        when = now_ms + i * 2
        experiment = ids[i % experiments]
        run_rows.append((run_id, f"run-{i}", "LOCAL", "", "", "bench", run_status, when, when, "", "active",
                         f"file:///dev/null/{run_id}", int(experiment), None))
        tag_rows += [("team", "vision", run_id), ("mlflow.runName", f"run-{i}", run_id)]
        param_rows += [("regularization", "0.5", run_id), ("data-folder", "digits", run_id)]
        metric_rows.append(("accuracy", 0.9, when, 0, 0, run_id))
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                         "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
                         "experiment_id, deleted_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows)
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tag_rows)
        conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", param_rows)
        conn.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                         "VALUES (?,?,?,?,?,?)", metric_rows)
        conn.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
                         "VALUES (?,?,?,?,?,?)", metric_rows)
    # The sample run is the newest, made and logged through the API like a real client's.
    status, body = http("POST", f"{base}{API}/runs/create", {
        "experiment_id": ids[(runs - 1) % experiments], "start_time": int(time.time() * 1000),
        "tags": [{"key": "team", "value": "vision"}]})
    if status != 200:
        raise RuntimeError(f"MLflow runs/create: {status} {body}")
    sample = body["run"]["info"]["run_id"]
    points = [{"key": "accuracy", "value": 0.5 + s / (2 * metric_points), "timestamp": now_ms + s, "step": s}
              for s in range(metric_points)]
    http("POST", f"{base}{API}/runs/log-batch", {"run_id": sample, "metrics": points,
                                                 "params": [{"key": "regularization", "value": "0.5"}]})
    http("POST", f"{base}{API}/runs/update", {"run_id": sample, "status": "FINISHED"})
    return MlflowSeeded(runs=runs, seconds=time.perf_counter() - started, sample_run_id=sample,
                        experiment_ids=ids, metric="accuracy")


def requests(seeded: MlflowSeeded) -> dict[str, Request]:
    """The same four operations as runyard's, in MLflow's REST API."""
    run = seeded.sample_run_id
    return {
        "read": Request("GET", f"{API}/runs/get?run_id={run}"),
        "history": Request("GET", f"{API}/metrics/get-history?run_id={run}&metric_key={seeded.metric}"),
        "list": Request("POST", f"{API}/runs/search", {
            "experiment_ids": [seeded.experiment_ids[3]], "filter": "attributes.status = 'FINISHED'",
            "max_results": 50}),
        "create": Request("POST", f"{API}/runs/create", {
            "experiment_id": seeded.experiment_ids[0], "start_time": 1_790_000_000_000,
            "tags": [{"key": "team", "value": "vision"}]}),
    }
