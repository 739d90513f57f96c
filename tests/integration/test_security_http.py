"""What a caller without a key can reach (issue 20): /metrics labels, logs, readiness, docs, the bind guard."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from service.app import create_app
from service.core.errors import BackendError
from service.core.logs import configure_logging
from service.core.settings import Settings
from tests.support.jobs import script_job

KEY = "k-security-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def http_series(client: TestClient, **auth: str) -> set[tuple[str, str, str]]:
    """(method, route, status) of every latency series /metrics has."""
    text = client.get("/metrics", headers=auth).text
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for family in text_string_to_metric_families(text)
        if family.name == "runyard_http_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    }


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    settings.api_keys = SecretStr(KEY)
    with TestClient(create_app(settings)) as client:
        yield client


def test_invented_methods_and_raw_paths_never_become_metric_labels(client: TestClient) -> None:
    for n in range(30):
        client.request(f"FOO{n}" + "X" * 200, "/healthz")
        client.get(f"/no/such/route/{n}")
    client.get("/openapi.json")
    client.get("/docs-assets/swagger-ui.css")

    series = http_series(client)
    assert {m for m, _, _ in series} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert ("other", "/healthz", "405") in series
    assert ("GET", "/openapi.json", "200") in series  # a route of its own, not `unmatched`
    assert ("GET", "/docs-assets/{path}", "200") in series
    assert {r for _, r, _ in series} <= {"/healthz", "/openapi.json", "/docs-assets/{path}", "unmatched", "/metrics"}


def test_metrics_and_docs_can_require_the_key(settings: Settings) -> None:
    settings.api_keys = SecretStr(KEY)
    settings.metrics_require_key = settings.docs_require_key = True
    with TestClient(create_app(settings)) as client:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert client.get("/healthz").status_code == 200
        assert client.get("/docs-assets/swagger-ui.css").status_code == 200  # the package's public files


def test_metrics_and_docs_stay_open_by_default(keyed: TestClient) -> None:
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_the_text_log_escapes_control_characters_from_requests(client: TestClient) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", "text")
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        client.get("/v1/x%0D%0A2026-01-01 00:00:00,000 INFO runyard.access [-]: GET /v1/jobs 200%1B[2J%E2%80%A8")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    lines = buffer.getvalue().splitlines()
    access = [line for line in lines if line.split()[3:4] == ["runyard.access"]]
    assert len(access) == 1, lines  # one request, one line: nothing forged
    assert "\x1b" not in buffer.getvalue()
    assert "\r" not in buffer.getvalue()
    assert "/v1/x\\r\\n2026-01-01" in access[0]
    assert "\\x1b[2J" in access[0]
    assert "\\u2028" in access[0]


def test_readiness_details_only_for_a_caller_with_a_key(settings: Settings) -> None:
    settings.api_keys = SecretStr(KEY)
    with TestClient(create_app(settings)) as client:
        backend = client.app.state.runtime.backends.for_target("local")  # type: ignore[attr-defined]

        def failing_check() -> None:
            raise BackendError("AADSTS700016: tenant 72f988bf at https://login.microsoftonline.com", transient=True)

        backend.check = failing_check
        anonymous = client.get("/readyz")
        assert anonymous.json() == {"status": "degraded", "checks": {}}
        assert "tenant" not in anonymous.text
        detailed = client.get("/readyz", headers=AUTH).json()
        assert detailed["status"] == "degraded"
        assert "tenant" in detailed["checks"]["backend:local"]


def test_a_server_without_keys_answers_loopback_connections_only(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app, base_url="http://192.0.2.10") as outside:  # the address the socket reached
        refused = outside.get("/v1/jobs")
        assert refused.status_code == 403
        assert "RUNYARD_API_KEYS" in refused.json()["detail"]
        assert outside.get("/healthz").status_code == 403
    for loopback in ("http://127.0.0.1", "http://[::1]", "http://localhost"):
        with TestClient(app, base_url=loopback) as inside:
            assert inside.get("/v1/jobs").status_code == 200, loopback


def test_with_keys_other_addresses_are_served(keyed: TestClient) -> None:
    with TestClient(keyed.app, base_url="http://192.0.2.10") as outside:
        assert outside.get("/v1/jobs", headers=AUTH).status_code == 200


def test_docs_pages_carry_a_content_security_policy_and_nosniff(client: TestClient) -> None:
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = client.get(page)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "'sha256-" in client.get("/docs").headers["content-security-policy"]  # its start-up script
    assert client.get("/v1/jobs").headers["x-content-type-options"] == "nosniff"


def test_digits_that_are_not_plain_ascii_or_too_large_are_a_422(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    # Header bytes are read as latin-1: b"\xb2" is "²", which str.isdigit() accepts and int() refuses.
    for last_event_id in ("²".encode("latin-1"), "٣".encode(), b"99999999999999999999999", b"1e3", b"-1"):
        response = client.get(f"/v1/jobs/{job}/logs", params={"follow": "true"},
                              headers={"Last-Event-ID": last_event_id})
        assert response.status_code == 422, last_event_id
        assert response.headers["content-type"].startswith("application/problem+json")
    for version in ("²", "٣", "99999999999999999999999", "2147483648"):
        assert client.get(f"/v1/models/m/versions/{version}").status_code == 422, version
    assert client.get(f"/v1/jobs/{job}/logs", params={"offset": 10**30}).status_code == 422


@pytest.mark.parametrize("field", ["environment_version", "dataset_version"])
def test_huge_integers_in_a_job_are_a_422(client: TestClient, field: str) -> None:
    huge = 10**30
    if field == "environment_version":
        body = script_job("sleeper.py", environment_version=huge)
    else:
        body = script_job("sleeper.py", "--data", {"dataset": "digits", "version": huge})
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
