"""No job stays active forever, failed runs retry, and backend faults are visible, not fatal."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.base import Backend, RunRef, RunUpdate, SubmitRequest
from service.backends.local import LocalBackend
from service.core.errors import BackendError
from service.core.settings import Settings
from service.core.states import JobStatus
from tests.support.jobs import script_job, wait_for


def serve(settings: Settings, backend: Backend) -> TestClient:
    return TestClient(create_app(settings, backends=lambda _: [backend]))


class FlakyLocal(LocalBackend):
    """The real local backend, with transient faults switched on and off by the test."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(max_concurrent=2, models_dir=settings.models_dir)
        self.fail_polls = threading.Event()
        self.submit_failures = 0

    def submit(self, request: SubmitRequest) -> str:
        if self.submit_failures > 0:
            self.submit_failures -= 1
            raise BackendError("connection reset by peer", transient=True)
        return super().submit(request)

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        if self.fail_polls.is_set():
            raise BackendError("503 Service Unavailable", transient=True)
        return super().poll(runs)


class StubbornBackend(LocalBackend):
    """A backend whose runs never end by themselves, reporting `status`; cancels take if `obeys`."""

    def __init__(self, settings: Settings, status: str, *, obeys: bool = False) -> None:
        super().__init__(max_concurrent=2, models_dir=settings.models_dir)
        self.status = status
        self.obeys = obeys
        self.cancels = 0

    def submit(self, request: SubmitRequest) -> str:
        return f"stub-{request.job_id}"

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        return None

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        if self.obeys and self.cancels:
            return [RunUpdate(r.run_id, "Canceled", JobStatus.CANCELED) for r in runs]
        return [RunUpdate(r.run_id, self.status, JobStatus.RUNNING) for r in runs]

    def cancel(self, run: RunRef, *, force: bool) -> None:  # noqa: ARG002
        self.cancels += 1


@pytest.fixture
def flaky(settings: Settings) -> Iterator[tuple[TestClient, FlakyLocal]]:
    backend = FlakyLocal(settings)
    with serve(settings, backend) as client:
        yield client, backend


def test_failed_run_is_retried_as_a_new_attempt(client: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    body = script_job("flaky.py", "--marker", str(marker), "--succeed-on", 2, max_retries=2)
    job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["status"] == "completed"
    assert job["attempt"] == 2
    [first] = job["attempts"]
    assert (first["attempt"], first["status"], first["exit_code"]) == (1, "failed", 1)
    assert first["run_id"]
    assert first["run_id"] != job["run_id"]
    assert "failing on purpose" in first["error"]
    assert marker.read_text() == "2"
    logs = client.get(f"/v1/jobs/{job['id']}/logs").json()["text"]
    assert "flaky run 2" in logs
    assert "flaky run 1" not in logs


def test_retries_run_out(client: TestClient, tmp_path: Path) -> None:
    body = script_job("flaky.py", "--marker", str(tmp_path / "m"), "--succeed-on", 9, max_retries=1)
    job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
    assert (job["status"], job["attempt"], len(job["attempts"])) == ("failed", 2, 1)
    assert "exited with code 1" in job["error"]


def test_run_past_its_max_duration_is_stopped_and_failed(client: TestClient) -> None:
    body = script_job("sleeper.py", "--seconds", 60, max_run_duration_seconds=1)
    started = time.monotonic()
    job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"], timeout=30)
    assert job["status"] == "failed"
    assert job["error"] == "exceeded max_run_duration_seconds=1"
    assert time.monotonic() - started < 15


def test_job_waiting_past_the_queue_timeout_fails(settings: Settings) -> None:
    settings.local_max_concurrent, settings.queue_timeout_seconds = 1, 1.0
    with TestClient(create_app(settings)) as client:
        busy = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60)).json()["id"]
        waiting = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
        job = wait_for(client, waiting, timeout=20)
        assert job["status"] == "failed"
        assert job["run_id"] is None
        assert "not started within queue_timeout_seconds=1" in job["error"]
        client.post(f"/v1/jobs/{busy}/cancel")
        wait_for(client, busy)


def test_cancel_kills_a_run_that_ignores_sigterm(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60, "--ignore-term")).json()["id"]
    wait_for(client, job_id, {"running"})
    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = wait_for(client, job_id, timeout=20)
    assert job["status"] == "canceled"
    assert time.monotonic() - asked < 10  # grace is 1 s in tests, then SIGKILL


def test_vanished_process_fails_the_job_with_a_reason(client: TestClient, settings: Settings) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60)).json()["id"]
    wait_for(client, job_id, {"running"})
    runner = (settings.runs_dir / job_id / ".runyard" / "runner.json").read_text()
    pgid = int(runner.split('"pgid": ')[1].split(",")[0])
    os.killpg(pgid, signal.SIGKILL)  # as the OOM killer would: no exit code is ever written
    job = wait_for(client, job_id, timeout=20)
    assert job["status"] == "failed"
    assert "ended without recording an exit code" in job["error"]


def test_transient_poll_errors_are_visible_then_cleared(flaky: tuple[TestClient, FlakyLocal]) -> None:
    client, backend = flaky
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 2)).json()["id"]
    wait_for(client, job_id, {"running"})
    backend.fail_polls.set()
    deadline = time.monotonic() + 20
    while not client.get(f"/v1/jobs/{job_id}").json()["last_error"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert "503 Service Unavailable" in job["last_error"]
    assert job["backend_errors"] >= 1
    assert job["status"] == "running"  # a transient error never fails a job
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"
    assert "503" in ready["checks"]["backend:local"]
    time.sleep(3)  # the run finishes while the backend is unreachable
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    backend.fail_polls.clear()
    job = wait_for(client, job_id)
    assert job["status"] == "completed"
    assert job["last_error"] is None
    assert client.get("/readyz").json()["status"] == "ok"


def test_transient_submit_errors_back_off_and_succeed(flaky: tuple[TestClient, FlakyLocal]) -> None:
    client, backend = flaky
    backend.submit_failures = 2
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    job = wait_for(client, job_id, timeout=30)
    assert job["status"] == "completed"
    assert job["backend_errors"] == 2


def test_cancel_never_confirmed_surfaces_then_fails(settings: Settings) -> None:
    # A wide window between the two: a poller tick delayed by a busy machine must still land in it.
    settings.cancel_confirm_seconds, settings.cancel_abandon_seconds = 0.5, 6.0
    backend = StubbornBackend(settings, "Running")
    with serve(settings, backend) as client:
        job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
        wait_for(client, job_id, {"running"})
        client.post(f"/v1/jobs/{job_id}/cancel")
        deadline = time.monotonic() + 10
        while not (client.get(f"/v1/jobs/{job_id}").json()["last_error"] or "").startswith("cancel not confirmed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "canceling"
        job = wait_for(client, job_id, timeout=15)
        assert job["status"] == "failed"
        assert "never confirmed the cancel" in job["error"]
        assert backend.cancels >= 2  # it kept asking


def test_not_responding_run_is_stopped_after_the_limit(settings: Settings) -> None:
    settings.not_responding_timeout_seconds = 0.5
    with serve(settings, StubbornBackend(settings, "NotResponding", obeys=True)) as client:
        job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
        job = wait_for(client, job_id, timeout=15)
        assert job["status"] == "failed"
        assert job["backend_status"] == "Canceled"
        assert "not responding for over 0.5 s" in job["error"]


def test_symlinks_never_leave_the_run_folder(client: TestClient) -> None:
    job = wait_for(client, client.post("/v1/jobs", json=script_job("escape.py")).json()["id"])
    assert job["status"] == "completed"
    files = [f["path"] for f in client.get(f"/v1/jobs/{job['id']}/files").json()["items"]]
    assert "outputs/model.pkl" in files
    assert not any(name in p for p in files for name in ("passwd", "root", "up"))
    for path in ["outputs/passwd", "outputs/root/etc/passwd", "outputs/up/runyard.db"]:
        assert client.get(f"/v1/jobs/{job['id']}/files/{path}").status_code in (404, 422)
        register = client.post(f"/v1/jobs/{job['id']}/models", json={"model_name": "m", "model_path": path})
        # Not among the job's files (issue 12: what depends on the server's files is a 404).
        assert register.status_code == 404, register.text
    assert client.get("/v1/models/m").status_code == 404


class CrashAfterSubmit(LocalBackend):
    """Starts the run, then dies before runyard can record it, as a crash would."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(max_concurrent=2, models_dir=settings.models_dir)
        self.submits = 0

    def submit(self, request: SubmitRequest) -> str:
        self.submits += 1
        run_id = super().submit(request)
        if self.submits == 1:
            raise RuntimeError("process died between submit and commit")
        return run_id


def test_run_started_but_not_recorded_is_found_not_resubmitted(settings: Settings) -> None:
    backend = CrashAfterSubmit(settings)
    with serve(settings, backend) as client:
        job = wait_for(client, client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 1)).json()["id"])
        assert job["status"] == "completed"
        assert backend.submits == 1
        log = client.get(f"/v1/jobs/{job['id']}/logs").json()["text"]
        assert log.count("sleeper starting") == 1
