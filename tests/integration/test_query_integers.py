"""Integer query parameters take what the document's `integer` is: digits, nothing around them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import script_job


@pytest.mark.parametrize("text", ["7\t", " 7", "+7", "7.0", "1_0", "7e0", ""])
def test_an_integer_with_anything_else_is_a_422_naming_the_parameter(client: TestClient, text: str) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 1)).json()["id"]
    for url, name in (("/v1/jobs", "limit"), (f"/v1/jobs/{job_id}/logs", "offset"),
                      (f"/v1/jobs/{job_id}/logs", "limit")):
        answer = client.get(url, params={name: text})  # encoded: 7%09, %207, %2B7
        assert answer.status_code == 422, (url, name, answer.text)
        assert answer.json()["errors"][0]["loc"] == ["query", name]


def test_plain_digits_still_pass(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 1)).json()["id"]
    assert client.get("/v1/jobs?limit=7").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}/logs?offset=0&limit=7").status_code == 200
    assert client.get("/v1/jobs?limit=-1").status_code == 422  # digits, but below the minimum
