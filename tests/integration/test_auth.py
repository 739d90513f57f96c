"""API keys: every /v1 route needs one once configured; only digests are kept."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.auth import ApiKeys, digest
from service.app import create_app
from service.core.settings import Settings
from tests.support.jobs import script_job

KEY = "k-3f9a1c-secret"


@pytest.fixture
def secured(settings: Settings) -> Iterator[TestClient]:
    settings.api_keys = SecretStr(f"{KEY}, second-key")
    with TestClient(create_app(settings)) as client:
        yield client


def v1_operations(settings: Settings) -> list[tuple[str, str]]:
    """Every documented /v1 operation, with its path parameters filled in."""
    paths = create_app(settings).openapi()["paths"]
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, ops in paths.items()
        if path.startswith("/v1")
        for method in ops
    ]


def test_every_v1_route_refuses_a_missing_or_wrong_key(secured: TestClient, settings: Settings) -> None:
    operations = v1_operations(settings)
    assert len(operations) >= 20
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEY}"}):
            response = secured.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"].startswith("application/problem+json")
            assert KEY not in response.text


def test_right_key_works_and_open_routes_stay_open(secured: TestClient) -> None:
    for key in (KEY, "second-key"):
        headers = {"Authorization": f"Bearer {key}"}
        job = secured.post("/v1/jobs", json=script_job("sleeper.py"), headers=headers)
        assert job.status_code == 201
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert secured.get(path).status_code == 200


def test_keys_may_be_given_as_digests_only(settings: Settings) -> None:
    settings.api_key_hashes = [digest(KEY)]
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/jobs").status_code == 401
        ok = client.post("/v1/jobs", json=script_job("sleeper.py"), headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 201


def test_only_digests_are_kept() -> None:
    keys = ApiKeys.from_settings(Settings(api_keys=SecretStr("alpha,beta")))
    assert keys.accepts("alpha")
    assert keys.accepts("beta")
    assert not keys.accepts("alph")
    assert not keys.accepts("")
    assert "alpha" not in repr(vars(keys))


def test_refuses_to_serve_beyond_loopback_without_keys(settings: Settings) -> None:
    settings.host = "0.0.0.0"  # noqa: S104 - the point of the test
    with pytest.raises(RuntimeError, match="without API keys"):
        create_app(settings)
    settings.api_keys = SecretStr(KEY)
    create_app(settings)
