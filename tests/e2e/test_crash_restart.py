"""kill -9 the service mid-run: every job still reaches its true end, none runs twice."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import REPO_ROOT, LiveServer, _wait_ready, free_port, server_env, stop_server

TERMINAL = {"completed", "failed", "canceled"}
logger = logging.getLogger(__name__)


def spawn(data_dir: Path, port: int, log_path: Path) -> LiveServer:
    env = server_env(data_dir, port, {})
    handle = open(log_path, "ab")  # noqa: SIM115 - closed by stop_server
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=handle,
                               stderr=subprocess.STDOUT)
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, log_path=log_path,
                        env=env, process=process, _log_handle=handle)
    assert _wait_ready(server), server.log_text()[-3000:]
    return server


def sleeper(steps: int, step_seconds: float) -> dict[str, Any]:
    args = ["--steps", steps, "--step-seconds", step_seconds]
    return {"experiment": "crash", "source": "testscripts", "script": "sleeper.py", "arguments": args}


def wait_all(http: httpx.Client, ids: list[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {i: http.get(f"/v1/jobs/{i}").json() for i in ids}
        if all(j["status"] in TERMINAL for j in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)


def test_sigkill_mid_run_then_restart(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    first = spawn(data_dir, port, log)
    http = httpx.Client(base_url=first.url, timeout=10)
    long_ids = [http.post("/v1/jobs", json=sleeper(8, 0.5)).json()["id"] for _ in range(2)]
    queued = http.post("/v1/jobs", json=sleeper(2, 0.1)).json()["id"]  # 2 slots: this one waits
    deadline = time.monotonic() + 30
    while {http.get(f"/v1/jobs/{i}").json()["status"] for i in long_ids} != {"running"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    run_ids = {i: http.get(f"/v1/jobs/{i}").json()["run_id"] for i in long_ids}
    assert http.get(f"/v1/jobs/{queued}").json()["status"] == "queued"

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    killed_at = time.monotonic()
    logs = [data_dir / "runs" / i / "user_logs" / "std_log.txt" for i in long_ids]
    sizes = [p.stat().st_size for p in logs]
    time.sleep(1.5)
    # The runs went on writing while the service was dead.
    assert any(p.stat().st_size > s for p, s in zip(logs, sizes, strict=True))

    second = spawn(data_dir, port, log)
    try:
        jobs = wait_all(http, [*long_ids, queued])
        for job_id in long_ids:
            job = jobs[job_id]
            assert job["status"] == "completed", job
            assert job["run_id"] == run_ids[job_id]  # re-attached, not resubmitted
            text = http.get(f"/v1/jobs/{job_id}/logs").json()["text"]
            assert text.count("sleeper starting") == 1
            assert "sleeper done" in text
            history = http.get(f"/v1/jobs/{job_id}/metrics/loss/history").json()["items"]
            assert [p["step"] for p in history] == list(range(8))
            assert len(list((data_dir / "runs").glob(f"{job_id}*"))) == 1
        assert jobs[queued]["status"] == "completed"
        assert jobs[queued]["submitted_at"] > jobs[long_ids[0]]["submitted_at"]
        logger.info("recovered %d jobs %.1fs after the kill", len(jobs), time.monotonic() - killed_at)
    finally:
        http.close()
        stop_server(second)


def test_run_that_ended_while_the_service_was_down(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    first = spawn(data_dir, port, log)
    http = httpx.Client(base_url=first.url, timeout=10)
    ok = http.post("/v1/jobs", json=sleeper(3, 0.3)).json()["id"]
    bad = http.post("/v1/jobs", json={**sleeper(1, 0.5), "arguments": ["--seconds", 1, "--exit-code", 4]}).json()["id"]
    deadline = time.monotonic() + 30
    while {http.get(f"/v1/jobs/{i}").json()["status"] for i in (ok, bad)} != {"running"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    time.sleep(2.5)  # both runs end while nobody watches
    second = spawn(data_dir, port, log)
    try:
        jobs = wait_all(http, [ok, bad], timeout=30)
        assert jobs[ok]["status"] == "completed"
        assert [p["step"] for p in http.get(f"/v1/jobs/{ok}/metrics/loss/history").json()["items"]] == [0, 1, 2]
        assert (jobs[bad]["status"], jobs[bad]["exit_code"]) == ("failed", 4)
        # ended_at is the run's own end (from its exit record), not when we noticed it.
        assert jobs[ok]["ended_at"] < jobs[ok]["updated_at"]
    finally:
        http.close()
        stop_server(second)
