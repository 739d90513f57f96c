"""Deadlines keep their own time (issue 19, problem 7): with a 10-minute poll interval a run limit
and a forced cancel still happen on time, and an idle service writes nothing per tick."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.app import create_app
from service.core.settings import Settings
from tests.conftest import script_job, wait_for


@pytest.fixture
def slow_poll(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"poll_interval_seconds": 600.0}))) as client:
        yield client


def test_a_run_limit_is_enforced_without_waiting_for_the_poll_interval(slow_poll: TestClient) -> None:
    body = script_job("sleeper.py", "--seconds", 60, max_run_duration_seconds=2)
    job = wait_for(slow_poll, slow_poll.post("/v1/jobs", json=body).json()["id"], timeout=40)
    assert job["status"] == "failed"
    assert "max_run_duration_seconds=2" in job["error"]


def test_a_cancel_the_script_ignores_is_forced_after_its_grace(slow_poll: TestClient) -> None:
    job_id = slow_poll.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60, "--ignore-term")).json()["id"]
    wait_for(slow_poll, job_id, {"running"}, timeout=40)
    slow_poll.post(f"/v1/jobs/{job_id}/cancel")
    assert wait_for(slow_poll, job_id, timeout=40)["status"] == "canceled"


def test_an_idle_service_takes_no_write_lock(settings: Settings) -> None:
    fast = settings.model_copy(update={"poll_interval_seconds": 0.02})
    with TestClient(create_app(fast)) as client:
        runtime: Any = client.app.state.runtime  # type: ignore[attr-defined]
        writes: list[str] = []

        def count(conn: Any) -> None:
            if conn.get_execution_options().get("runyard_immediate"):
                writes.append("BEGIN IMMEDIATE")

        event.listen(runtime.db.engine, "begin", count)
        poller_ticks = _ticks(client)
        while _ticks(client) < poller_ticks + 20:
            client.get("/healthz")
        event.remove(runtime.db.engine, "begin", count)
        assert writes == []


def _ticks(client: TestClient) -> float:
    """Poller ticks so far: the count of the poll-duration histogram."""
    histogram = client.app.state.runtime.metrics.poll_seconds  # type: ignore[attr-defined]
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))
