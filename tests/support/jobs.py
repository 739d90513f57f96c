"""Request bodies and waits for the HTTP tests."""

from __future__ import annotations

import copy
import time
from typing import Any

from fastapi.testclient import TestClient

from service.jobs.schemas import TUTORIAL_JOB

TERMINAL = {"completed", "failed", "canceled"}


def tutorial_job(**overrides: Any) -> dict[str, Any]:
    """The seed tutorial's job on the offline `digits` dataset (the API's own example)."""
    body: dict[str, Any] = copy.deepcopy(TUTORIAL_JOB)
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
