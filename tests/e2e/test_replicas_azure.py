"""Three replicas on one PostgreSQL and one stubbed Azure ML workspace: every job has one Azure run.

Like tests/e2e/test_replicas.py, on `cpu-cluster`: each replica is a real process whose Azure ML
backend talks to the same stubbed workspace (tests/fakes/azureml_shared.py: the workspace's state in
one file, each SDK call under its lock, one clock for all). Jobs go in through random replicas (some
twice with one Idempotency-Key), a sweep registers its best model, one replica is SIGKILLed mid-way
and another restarted. Then each job completed with exactly one Azure run (one submit, found again
by tag or run id on takeover, never resubmitted), its metrics were stored once, the sweep has
exactly its children and registered one model in the workspace, nothing is left active, and
registrations made concurrently from all replicas got the workspace's versions 1..N.
"""

from __future__ import annotations

import concurrent.futures
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, pool, select
from sqlmodel import col

from service.backends.azureml import JOB_TAG
from service.db.tables import Job, MetricPoint
from tests.e2e.conftest import ACTIVE, REPO_ROOT, LiveServer, _wait_ready, free_port, server_env, stop_server
from tests.fakes.azureml import WORKSPACE_SETTINGS, tutorial_script
from tests.fakes.azureml_shared import SharedFakeAzure, WallClock
from tests.support.postgres import scratch_database

JOBS = 24
SWEEP_RUNS = 3
REGISTRATIONS = 6
SPEED = 4.0  # stub seconds per real second: a tutorial run (7 stub seconds) takes under 2 s
METRIC_POINTS = len(tutorial_script().metrics)
DEADLINE = 180.0
TUTORIAL = {"experiment": "replicas-azure", "source": "trainer", "script": "train.py",
            "arguments": ["--regularization", 0.5], "compute_target": "cpu-cluster", "environment": "tutorial-env"}


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture
def workspace(tmp_path: Path) -> SharedFakeAzure:
    """The shared workspace, as the test process sees it; `cpu-cluster` exists with one node."""
    fake = SharedFakeAzure(tmp_path / "workspace.pickle", WallClock(time.time(), SPEED))
    with fake.shared():
        fake.add_compute("cpu-cluster", nodes=1)
    return fake


def _start(tmp_path: Path, url: str, workspace: SharedFakeAzure, name: str) -> LiveServer:
    port = free_port()
    data_dir = tmp_path / "shared-data"
    env = server_env(data_dir, port, {
        "RUNYARD_DATABASE_URL": url, "RUNYARD_REPLICA_ID": name, "RUNYARD_LEASE_SECONDS": "3",
        "RUNYARD_AZUREML_DETAIL_REFRESH_SECONDS": "0",
        # azureml writes ~/.azureml (discovery and snapshot caches): never the real home.
        "HOME": str(tmp_path / "home"),
        **{f"RUNYARD_{k.upper()}" if k.startswith("azureml") else k.upper(): v for k, v in WORKSPACE_SETTINGS.items()},
    })
    log_path = tmp_path / f"{name}-{port}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop_server
    argv = [sys.executable, "-m", "tests.e2e.azure_replica", "--store", str(workspace.path),
            "--origin", str(workspace.clock._origin), "--speed", str(SPEED)]  # type: ignore[attr-defined]
    process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, log_path=log_path, env=env,
                        process=process, _log_handle=handle)
    assert _wait_ready(server), server.log_text()[-4000:]
    return server


def _post(servers: list[LiveServer], path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    """POST through a random live replica, retrying a dropped connection with the same key."""
    headers = {"Idempotency-Key": key} if key else {}
    for attempt in range(5):
        server = random.choice([s for s in servers if s.process.poll() is None])
        try:
            return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)
        except httpx.TransportError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _wait(server: LiveServer, path: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}{path}", timeout=30).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{path} not done after {DEADLINE}s: {body}")


def test_three_replicas_on_one_azure_workspace_run_each_job_once(
    tmp_path: Path, database_url: str, workspace: SharedFakeAzure,
) -> None:
    random.seed(14)
    with concurrent.futures.ThreadPoolExecutor(3) as pool_:
        servers = list(pool_.map(lambda n: _start(tmp_path, database_url, workspace, n), ["az-a", "az-b", "az-c"]))
    try:
        sweep_body: dict[str, Any] = {
            "job": {k: v for k, v in TUTORIAL.items() if k != "arguments"} | {"experiment": "replicas-azure-sweep"},
            "search_space": {"--regularization": {"type": "choice", "values": [0.1, 0.5, 1.0]}},
            "sampling": "grid", "primary_metric": "regularization rate", "goal": "maximize",
            "max_total_runs": SWEEP_RUNS, "max_concurrent_runs": 2,
            "register_best": {"model_name": "sweep-best", "model_path": "outputs/sklearn_mnist_model.pkl"},
        }
        sweep = _post(servers, "/v1/sweeps", sweep_body, key="the-azure-sweep")
        assert sweep.status_code == 201, sweep.text
        ids: list[str] = []
        for i in range(JOBS):
            body = {**TUTORIAL, "tags": {"n": str(i)}}
            first = _post(servers, "/v1/jobs", body, key=f"azure-job-{i}")
            assert first.status_code == 201, first.text
            ids.append(first.json()["id"])
            if i % 4 == 0:  # a client retry through another replica: the same job back
                again = _post(servers, "/v1/jobs", body, key=f"azure-job-{i}")
                assert again.json()["id"] == first.json()["id"]
            if i == JOBS // 3:
                servers[0].process.send_signal(signal.SIGKILL)  # its leases must lapse
                servers[0].process.wait(10)
            if i == JOBS // 2:
                servers[1].process.terminate()
                servers[1].process.wait(30)
                stop_server(servers[1])
                servers[1] = _start(tmp_path, database_url, workspace, "az-b")
        live = servers[2]
        jobs = {j: _wait(live, f"/v1/jobs/{j}", lambda b: b["status"] not in ACTIVE) for j in ids}
        detail = _wait(live, f"/v1/sweeps/{sweep.json()['id']}",
                       lambda b: b["status"] not in ("queued", "running", "canceling"))

        assert {j: (b["status"], b["attempt"]) for j, b in jobs.items()} == dict.fromkeys(ids, ("completed", 1))
        assert detail["status"] == "completed", detail
        children = [c["job_id"] for c in detail["children"]]
        assert len(children) == SWEEP_RUNS
        with workspace.shared():
            runs = list(workspace.runs.values())
            submissions = list(workspace.submissions)
            models = list(workspace.models)
        for job_id in [*ids, *children]:  # exactly one Azure run each, submitted once, never again
            tagged = [r.run_id for r in runs if r.tags.get(JOB_TAG) == job_id]
            assert len(tagged) == 1, (job_id, tagged)
            assert job_id not in jobs or tagged == [jobs[job_id]["run_id"]]
            assert sum(1 for s in submissions if (s.tags or {}).get(JOB_TAG) == job_id) == 1, job_id
        assert len(runs) == len(submissions) == JOBS + SWEEP_RUNS
        assert [m.tags.get("sweep_id") for m in models if m.name == "sweep-best"] == [sweep.json()["id"]]
        assert detail["registered_model"]["name"] == "sweep-best"

        engine = create_engine(database_url, poolclass=pool.NullPool)
        with engine.connect() as conn:
            counts = dict(conn.execute(select(MetricPoint.job_id, func.count()).where(
                col(MetricPoint.job_id).in_(ids)).group_by(col(MetricPoint.job_id))).all())
            assert counts == dict.fromkeys(ids, METRIC_POINTS)  # every logged metric stored once
            active = conn.execute(select(func.count()).select_from(Job).where(col(Job.status).in_(ACTIVE)))
            assert active.scalar_one() == 0
        engine.dispose()

        # Registrations from all replicas at once, one per job: the workspace numbers them 1..N.
        with concurrent.futures.ThreadPoolExecutor(REGISTRATIONS) as pool_:
            answers = list(pool_.map(lambda i: httpx.post(
                f"{servers[1 + i % 2].url}/v1/jobs/{ids[i]}/models",
                json={"model_name": "shared", "model_path": "outputs/sklearn_mnist_model.pkl"}, timeout=60),
                range(REGISTRATIONS)))
        assert [a.status_code for a in answers] == [201] * REGISTRATIONS, [a.text for a in answers]
        assert sorted(a.json()["version"] for a in answers) == list(range(1, REGISTRATIONS + 1))
        with workspace.shared():
            assert sorted(m.version for m in workspace.models if m.name == "shared") == list(
                range(1, REGISTRATIONS + 1))
    finally:
        for server in servers:
            stop_server(server)
