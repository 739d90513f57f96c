"""Inputs that used to pass validation and then break later (issue 19: 4, 5, 8): now each is a 422."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.sweep_support import scorer_sweep
from tests.support.jobs import script_job, wait_for


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _problem(response: Any, status: int, fragment: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert fragment in json.dumps(body), body
    return body


def test_cursors_outside_what_the_database_holds_are_422(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 1)).json()
    wait_for(client, job["id"])
    bad = [[2**63], [-(2**63) - 1], [10**400], ["\ud800"], ["a\x00b"], ["x" * 1500], [1.5], [None]]
    for values in bad:
        cursor = _cursor(values)
        for path in ("/v1/jobs", "/v1/experiments", f"/v1/jobs/{job['id']}/metrics/loss/history"):
            _problem(client.get(path, params={"cursor": cursor}), 422, "cursor")


def test_the_issues_cursor_is_422(client: TestClient) -> None:
    _problem(client.get("/v1/jobs", params={"cursor": "WzkyMjMzNzIwMzY4NTQ3NzU4MDhd"}), 422, "cursor")


def test_an_empty_idempotency_key_is_422(client: TestClient) -> None:
    body = script_job("sleeper.py")
    _problem(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": ""}), 422, "idempotency-key")
    _problem(client.post("/v1/sweeps", json=scorer_sweep([0.1]), headers={"Idempotency-Key": ""}), 422)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_arguments_are_422(client: TestClient, literal: str) -> None:
    job = '{"experiment": "tests", "source": "testscripts", "script": "sleeper.py", "arguments": ["--x", %s]}'
    headers = {"Content-Type": "application/json"}
    _problem(client.post("/v1/jobs", content=job % literal, headers=headers), 422, "arguments")
    sweep = json.dumps(scorer_sweep([0.5])).replace("0.5", literal)
    _problem(client.post("/v1/sweeps", content=sweep, headers=headers), 422, "search_space")


@pytest.mark.parametrize("text", ["a\x00b", "\ud83d"])
def test_arguments_the_os_cannot_pass_are_422(client: TestClient, text: str) -> None:
    headers = {"Content-Type": "application/json"}  # json.dumps escapes a lone surrogate; httpx would refuse it
    job = json.dumps(script_job("sleeper.py", "--x", text))
    _problem(client.post("/v1/jobs", content=job, headers=headers), 422, "arguments")
    _problem(client.post("/v1/sweeps", content=json.dumps(scorer_sweep([0.5, text])), headers=headers), 422)
    assert client.get("/v1/jobs").json()["items"] == []


def test_a_uniform_range_whose_width_overflows_is_422(client: TestClient) -> None:
    space = {"--quality": {"type": "uniform", "low": -1.7e308, "high": 1.7e308}}
    body = scorer_sweep([0.5], search_space=space, sampling="random", max_total_runs=2)
    _problem(client.post("/v1/sweeps", json=body), 422, "overflows")


def test_a_loguniform_range_up_to_the_float_maximum_draws_inside_it(client: TestClient) -> None:
    space = {"--quality": {"type": "loguniform", "low": 1e300, "high": 1.7976931348623157e308}}
    body = scorer_sweep([0.5], search_space=space, sampling="random", max_total_runs=3, seed=7,
                        max_concurrent_runs=1)
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    client.post(f"/v1/sweeps/{created.json()['id']}/cancel")


@pytest.mark.parametrize("key", ["kü", "ключ", "k\"q", "🔑"])
def test_tag_filters_match_unicode_keys(client: TestClient, key: str) -> None:
    tagged = client.post("/v1/jobs", json=script_job("sleeper.py", tags={key: "v", "plain": "ü"})).json()
    client.post("/v1/jobs", json=script_job("sleeper.py", tags={key: "w"}))
    found = client.get("/v1/jobs", params={"tag": f"{key}:v"}).json()["items"]
    assert [j["id"] for j in found] == [tagged["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", params={"tag": "plain:ü"}).json()["items"]] == [tagged["id"]]
