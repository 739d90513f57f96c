"""Prometheus /metrics, request ids (header in, header out, in the logs) and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.core.errors import BackendError
from service.core.logs import configure_logging, request_id_var
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.db.engine import Database
from service.jobs.metrics import JobsByStatus
from tests.support.jobs import script_job, wait_for


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Route the process's logging through the JSON formatter into a buffer, as `serve` does."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", "json")
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def test_metrics_count_jobs_submits_backend_calls_polls_and_http_by_route(client: TestClient) -> None:
    ok = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    bad = client.post("/v1/jobs", json=script_job("sleeper.py", "--exit-code", 2)).json()["id"]
    wait_for(client, ok)
    wait_for(client, bad)
    client.get(f"/v1/jobs/{ok}")
    client.get("/v1/jobs/does-not-exist")

    samples = scrape(client)

    assert samples[("runyard_jobs", (("status", "completed"),))] == 1
    assert samples[("runyard_jobs", (("status", "failed"),))] == 1
    assert samples[("runyard_jobs", (("status", "running"),))] == 0
    assert samples[("runyard_database_up", ())] == 1
    assert samples[("runyard_jobs_submitted_total", (("compute_target", "local"),))] == 2
    assert samples[("runyard_backend_calls_total", (("kind", "local"), ("operation", "submit")))] == 2
    assert samples[("runyard_backend_calls_total", (("kind", "local"), ("operation", "poll")))] >= 1
    assert samples[("runyard_poll_cycle_seconds_count", ())] >= 1
    # Latency is labelled by route template: one series for every job id, and the 404 apart.
    latency = "runyard_http_request_duration_seconds_count"
    by_route = {labels: v for (name, labels), v in samples.items() if name == latency}
    assert by_route[(("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "200"))] >= 1
    assert by_route[(("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404"))] == 1
    assert not any(ok in dict(labels)["route"] for labels in by_route)


def test_an_idempotent_replay_is_not_counted_as_a_submit(client: TestClient) -> None:
    headers = {"Idempotency-Key": "once"}
    first = client.post("/v1/jobs", json=script_job("sleeper.py"), headers=headers)
    again = client.post("/v1/jobs", json=script_job("sleeper.py"), headers=headers)
    assert first.json()["id"] == again.json()["id"]

    assert scrape(client)[("runyard_jobs_submitted_total", (("compute_target", "local"),))] == 1


def test_backend_errors_are_counted_by_kind() -> None:
    metrics = Metrics()
    for error in (BackendError("busy", transient=True), BackendError("gone", transient=False), TimeoutError()):
        with pytest.raises(type(error)), metrics.backend_call("amlcompute", "poll"):
            raise error

    def count(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert count("runyard_backend_calls_total", kind="amlcompute", operation="poll") == 3
    for kind in ("transient", "definitive", "timeout"):
        assert count("runyard_backend_errors_total", kind="amlcompute", operation="poll", error=kind) == 1


def test_jobs_gauge_reports_an_unreachable_database_instead_of_failing_the_scrape(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'runyard.db'}")
    families = list(JobsByStatus(broken).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("runyard_database_up", [0])]


def test_request_id_is_returned_generated_or_honoured(client: TestClient) -> None:
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz", headers={"X-Request-ID": "trace-42"}).headers["X-Request-ID"] == "trace-42"
    # Ids that could forge log lines are replaced, not echoed.
    forged = client.get("/healthz", headers={"X-Request-ID": "a b\tinjected"}).headers["X-Request-ID"]
    assert forged != "a b\tinjected"
    assert re.fullmatch(r"[0-9a-f]{32}", forged)
    # Errors carry it too.
    missing = client.get("/v1/jobs/nope", headers={"X-Request-ID": "trace-43"})
    assert (missing.status_code, missing.headers["X-Request-ID"]) == (404, "trace-43")


def test_log_lines_are_json_with_the_request_id(client: TestClient, json_logs: io.StringIO) -> None:
    client.get("/v1/jobs", headers={"X-Request-ID": "req-7"})

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    access = [e for e in lines if e["logger"] == "runyard.access" and e.get("request_id") == "req-7"]
    assert len(access) == 1
    entry = access[0]
    assert {"time", "level", "logger", "message"} <= entry.keys()
    assert (entry["method"], entry["route"], entry["status"]) == ("GET", "/v1/jobs", 200)
    assert entry["duration_ms"] >= 0


def test_an_unhandled_error_is_a_500_problem_with_the_request_id_logged(settings: Settings,
                                                                         json_logs: io.StringIO) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Request-ID"] == "req-500"
    assert "kaboom" not in response.text
    errors = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    logged = [e for e in errors if e["level"] == "ERROR" and e.get("request_id") == "req-500"]
    assert logged
    assert "kaboom" in logged[0]["exc_info"]
    assert request_id_var.get() is None
