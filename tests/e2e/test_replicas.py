"""Three replicas on one PostgreSQL and one data folder: every job ends exactly once.

Real `python -m service` processes share a scratch database and a data folder. Jobs go in through
random replicas (some twice with one Idempotency-Key), a sweep runs, one replica is SIGKILLed
mid-way (its jobs' leases lapse and the others take them over, re-attaching the local runs that
outlived it) and another is restarted. Then each job ran its script once, its metrics were stored
once, the sweep launched exactly its children, nothing is left active, and model versions
registered concurrently from all replicas are 1..N.
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

from service.db.tables import Job, MetricPoint, ModelVersion
from tests.e2e.conftest import ACTIVE, REPO_ROOT, LiveServer, _wait_ready, free_port, start_server, stop_server
from tests.support.postgres import scratch_database

JOBS = 300  # the count; each run is short so the whole test stays a few minutes
STEPS = 3
SWEEP_RUNS = 4
REGISTRATIONS = 12
LEASE_SECONDS = "3"
DEADLINE = 480.0
SLEEPER = {"experiment": "replicas", "source": "testscripts", "script": "sleeper.py",
           "arguments": ["--steps", str(STEPS), "--step-seconds", "0.05", "--seconds", "0.3"]}


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


def _replica(tmp_path: Path, url: str, data_dir: Path, name: str) -> LiveServer:
    return start_server(tmp_path, {
        "RUNYARD_DATABASE_URL": url, "RUNYARD_DATA_DIR": str(data_dir), "RUNYARD_REPLICA_ID": name,
        "RUNYARD_LEASE_SECONDS": LEASE_SECONDS, "RUNYARD_POLL_INTERVAL_SECONDS": "0.2",
        "RUNYARD_LOCAL_MAX_CONCURRENT": "3",
    })


def _restart(server: LiveServer) -> LiveServer:
    """Stop a replica with SIGTERM (leaving its jobs alone) and start it again on a new port."""
    server.process.terminate()
    server.process.wait(30)
    port = free_port()
    env = {**server.env, "RUNYARD_PORT": str(port)}
    log_path = server.log_path.with_name(f"server-{port}.log")
    handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop_server
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env,
                               stdout=handle, stderr=subprocess.STDOUT)
    again = LiveServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=server.data_dir, log_path=log_path,
                       env=env, process=process, _log_handle=handle)
    assert _wait_ready(again), again.log_text()[-4000:]
    return again


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


def _wait_done(server: LiveServer, job_ids: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE
    jobs: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        while time.monotonic() < deadline:
            jobs = {j: http.get(f"/v1/jobs/{j}").json() for j in job_ids}
            if all(job["status"] not in ACTIVE for job in jobs.values()):
                return jobs
            time.sleep(1)
    pending = {j: job["status"] for j, job in jobs.items() if job["status"] in ACTIVE}
    raise AssertionError(f"jobs still active after {DEADLINE}s: {pending}")


def test_three_replicas_end_every_job_exactly_once(tmp_path: Path, database_url: str) -> None:
    random.seed(13)
    data_dir = tmp_path / "shared-data"
    with concurrent.futures.ThreadPoolExecutor(3) as pool_:
        # Started at once: the migration runs under an advisory lock, once.
        servers = list(pool_.map(lambda n: _replica(tmp_path, database_url, data_dir, n), ["r-a", "r-b", "r-c"]))
    try:
        sweep_body: dict[str, Any] = {
            "job": {"experiment": "replicas-sweep", "source": "testscripts", "script": "scorer.py",
                    "arguments": ["--steps", "3", "--step-seconds", "0.2"]},
            "search_space": {"--quality": {"type": "uniform", "low": 0.1, "high": 0.9}},
            "sampling": "random", "seed": 7, "primary_metric": "score", "goal": "maximize",
            "max_total_runs": SWEEP_RUNS, "max_concurrent_runs": 2,
        }
        sweep = _post(servers, "/v1/sweeps", sweep_body, key="the-sweep")
        assert sweep.status_code == 201, sweep.text
        ids: set[str] = set()
        for i in range(JOBS):
            key = f"job-{i}"
            first = _post(servers, "/v1/jobs", {**SLEEPER, "tags": {"n": str(i)}}, key=key)
            assert first.status_code == 201, first.text
            ids.add(first.json()["id"])
            if i % 5 == 0:  # a client retry through another replica: the same job back
                again = _post(servers, "/v1/jobs", {**SLEEPER, "tags": {"n": str(i)}}, key=key)
                assert again.status_code == 201, again.text
                assert again.json()["id"] == first.json()["id"]
            if i == JOBS // 3:
                servers[0].process.send_signal(signal.SIGKILL)  # no shutdown: its leases must lapse
                servers[0].process.wait(10)
            if i == JOBS // 2:
                servers[1] = _restart(servers[1])
        assert len(ids) == JOBS
        again_sweep = _post(servers, "/v1/sweeps", sweep_body, key="the-sweep")
        assert again_sweep.json()["id"] == sweep.json()["id"]

        live = servers[2]
        jobs = _wait_done(live, ids)
        _assert_sweep_done(live, sweep.json()["id"])
        failed = {j: (job["status"], job.get("error")) for j, job in jobs.items() if job["status"] != "completed"}
        assert not failed, failed
        for job_id, job in jobs.items():
            log = (data_dir / "runs" / job_id / "user_logs" / "std_log.txt").read_text()
            assert log.count("sleeper starting") == 1, (job_id, log)  # one backend run, never resubmitted
            assert job["attempt"] == 1

        engine = create_engine(database_url, poolclass=pool.NullPool)
        with engine.connect() as conn:
            counts = dict(conn.execute(select(MetricPoint.job_id, func.count()).where(
                col(MetricPoint.job_id).in_(ids)).group_by(col(MetricPoint.job_id))).all())
            assert counts == dict.fromkeys(ids, STEPS)  # every logged metric stored once
            active = conn.execute(select(func.count()).select_from(Job).where(
                col(Job.status).in_(ACTIVE))).scalar_one()
            assert active == 0
            run_ids = conn.execute(select(Job.run_id).where(col(Job.id).in_(ids))).scalars().all()
            assert None not in run_ids
            assert len(set(run_ids)) == JOBS
        _assert_versions_are_dense(servers[1:], engine)
        engine.dispose()
        stray = sorted(p.name for p in (data_dir / "runs").iterdir()) if (data_dir / "runs").is_dir() else []
        assert len(stray) == JOBS + SWEEP_RUNS + 1, stray  # one run folder each (the model job's too)
    finally:
        for server in servers:
            stop_server(server)


def _assert_sweep_done(server: LiveServer, sweep_id: str) -> None:
    deadline = time.monotonic() + DEADLINE
    detail: dict[str, Any] = {}
    while time.monotonic() < deadline:
        detail = httpx.get(f"{server.url}/v1/sweeps/{sweep_id}", timeout=30).json()
        if detail["status"] not in ("queued", "running", "canceling"):
            break
        time.sleep(1)
    assert detail["status"] == "completed", detail
    assert len(detail["children"]) == SWEEP_RUNS
    assert sorted(c["index"] for c in detail["children"]) == list(range(SWEEP_RUNS))
    assert all(c["status"] == "completed" for c in detail["children"]), detail["children"]


def _assert_versions_are_dense(servers: list[LiveServer], engine: Any) -> None:
    """Concurrent registrations of one name from every replica: versions 1..N, none twice."""
    made = _post(servers, "/v1/jobs", {"experiment": "replicas-model", "source": "testscripts",
                                       "script": "write_model.py", "arguments": ["--kind", "garbage"]})
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    _wait_done(servers[-1], {job_id})
    body = {"model_name": "shared-model", "model_path": "outputs/model.pkl"}
    with concurrent.futures.ThreadPoolExecutor(REGISTRATIONS) as pool_:
        responses = list(pool_.map(
            lambda i: httpx.post(f"{servers[i % len(servers)].url}/v1/jobs/{job_id}/models", json=body, timeout=60),
            range(REGISTRATIONS)))
    assert [r.status_code for r in responses] == [201] * REGISTRATIONS, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(1, REGISTRATIONS + 1))
    with engine.connect() as conn:
        stored = conn.execute(select(ModelVersion.version).where(
            col(ModelVersion.name) == "shared-model")).scalars().all()
    assert sorted(stored) == list(range(1, REGISTRATIONS + 1))

