"""Shared fixtures: settings on a temporary data dir, the app served in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings

TERMINAL = {"completed", "failed", "canceled"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own data dir and database, fast polling."""
    return Settings(
        data_dir=tmp_path / "data",
        poll_interval_seconds=0.1,
        local_max_concurrent=2,
        cancel_grace_seconds=1.0,
        sources={"testscripts": Path(__file__).parent / "scripts"},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with its lifespan running (migrations, seeding, background loops)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def tutorial_job(**overrides: Any) -> dict[str, Any]:
    """The seed tutorial's job on the offline `digits` dataset."""
    body: dict[str, Any] = {
        "experiment": "Tutorial-sklearn-mnist",
        "source": "trainer",
        "script": "train.py",
        "arguments": ["--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", 0.5],
        "compute_target": "local",
        "environment": "tutorial-env",
        "tags": {"team": "vision"},
    }
    body.update(overrides)
    return body


def script_job(script: str, *args: Any, **overrides: Any) -> dict[str, Any]:
    """A job running one of tests/scripts/."""
    body: dict[str, Any] = {"experiment": "tests", "source": "testscripts", "script": script, "arguments": list(args)}
    body.update(overrides)
    return body


def wait_for(client: TestClient, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.05)
