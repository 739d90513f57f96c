"""Inputs that used to pass validation and then break later (issue 19: 4, 5, 8): now each is a 422."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.sweep_support import scorer_sweep
from tests.support.jobs import script_job, wait_for


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _problem(response: Any, status: int, fragment: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert fragment in json.dumps(body), body
    return body


def test_any_cursor_the_document_allows_names_a_position_and_others_are_422(client: TestClient) -> None:
    """Cursors are typed by their list's key (db/pagination.KeyShape): every string of the documented
    pattern decodes (issue 12), including ones that once broke the query deep in the driver (issue 19)."""
    job = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 1)).json()
    wait_for(client, job["id"])
    nasty_text = [b"[9223372036854775808]", "\ud800".encode("utf-8", "surrogatepass"), b"a\x00b", b"x" * 1500,
                  b"\xff\xfe", b"\x00"]
    for raw in nasty_text:
        for path in ("/v1/jobs", "/v1/experiments", f"/v1/jobs/{job['id']}/files", "/v1/datasets"):
            answer = client.get(path, params={"cursor": _cursor(raw if path != "/v1/datasets" else b"\xff" * 8 + raw)})
            assert answer.status_code == 200, (path, raw, answer.text)
    for raw in (b"\x7f" + b"\xff" * 7, b"\x80" + b"\x00" * 7, b"\x00" * 8):  # int64 max, min, 0
        answer = client.get(f"/v1/jobs/{job['id']}/metrics/loss/history", params={"cursor": _cursor(raw)})
        assert answer.status_code == 200, (raw, answer.text)
    for path, cursor in (("/v1/jobs", "A"), ("/v1/jobs", "YQ=="), ("/v1/datasets", "YWJj"),
                         (f"/v1/jobs/{job['id']}/metrics/loss/history", _cursor(b"12345678" * 2))):
        _problem(client.get(path, params={"cursor": cursor}), 422, "cursor")


def test_the_issues_cursor_is_a_position_not_an_error(client: TestClient) -> None:
    page = client.get("/v1/jobs", params={"cursor": "WzkyMjMzNzIwMzY4NTQ3NzU4MDhd"})
    assert page.status_code == 200, page.text
    assert page.json()["next_cursor"] is None


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


def test_a_uniform_range_whose_width_overflows_a_float_still_draws_inside_it(client: TestClient) -> None:
    # Once a 422 (issue 19); any two finite ends are a range the schema allows, so it is drawn without
    # computing high - low (issue 12).
    space = {"--quality": {"type": "uniform", "low": -1.7e308, "high": 1.7e308}}
    body = scorer_sweep([0.5], search_space=space, sampling="random", max_total_runs=2, max_concurrent_runs=1)
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    client.post(f"/v1/sweeps/{created.json()['id']}/cancel")
    children = client.get(f"/v1/sweeps/{created.json()['id']}").json()["children"]
    values = [child["params"]["--quality"] for child in children]
    assert values
    assert all(-1.7e308 <= v <= 1.7e308 for v in values)


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
