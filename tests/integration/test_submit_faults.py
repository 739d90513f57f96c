"""Submits that cannot succeed (issue 19, problem 4): the job fails with the reason instead of holding
a slot in `starting` forever, and the queue timeout covers a job stuck before its run exists."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.base import SubmitRequest
from service.backends.local import LocalBackend
from service.core.errors import BackendError
from service.core.settings import Settings
from tests.conftest import script_job, wait_for


class RefusingLocal(LocalBackend):
    """The local backend whose submit fails as `error` says: the OS refusing argv, or always transiently."""

    def __init__(self, settings: Settings, error: Exception) -> None:
        super().__init__(max_concurrent=1, models_dir=settings.models_dir)
        self.error = error
        self.submits = 0

    def submit(self, request: SubmitRequest) -> str:
        self.submits += 1
        if self.submits == 1:
            raise self.error
        return super().submit(request)


def test_a_submit_the_os_refuses_fails_the_job_and_frees_its_slot(settings: Settings) -> None:
    # What subprocess.Popen raises for a NUL in argv (accepted before validation refused it).
    backend = RefusingLocal(settings, ValueError("embedded null byte"))
    with TestClient(create_app(settings, backends=lambda _: [backend])) as client:
        refused = client.post("/v1/jobs", json=script_job("sleeper.py")).json()
        behind = client.post("/v1/jobs", json=script_job("sleeper.py")).json()
        failed = wait_for(client, refused["id"], timeout=30)
        assert failed["status"] == "failed"
        assert "embedded null byte" in failed["error"]
        assert wait_for(client, behind["id"], timeout=60)["status"] == "completed"
    assert backend.submits == 2


def test_the_queue_timeout_covers_a_job_whose_submit_keeps_failing(settings: Settings, tmp_path: Path) -> None:
    class AlwaysDown(LocalBackend):
        def submit(self, request: SubmitRequest) -> str:  # noqa: ARG002
            raise BackendError("connection reset by peer", transient=True)

    backend = AlwaysDown(max_concurrent=1, models_dir=tmp_path)
    quick = settings.model_copy(update={"queue_timeout_seconds": 1.0})
    with TestClient(create_app(quick, backends=lambda _: [backend])) as client:
        job = client.post("/v1/jobs", json=script_job("sleeper.py")).json()
        ended = wait_for(client, job["id"], timeout=30)
        assert ended["status"] == "failed"
        assert "queue_timeout_seconds" in ended["error"]
