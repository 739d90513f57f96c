"""Sweep plan amplification (issue 20, item 4): bounded plans, and lists that never read them."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from service.sweeps.schemas import MAX_PLAN_BYTES


def sweep(search_space: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job": {"experiment": "plan-limits", "source": "testscripts", "script": "scorer.py", "arguments": []},
        "search_space": search_space, "sampling": "random", "seed": 1, "primary_metric": "score",
        "max_total_runs": 1000, "max_concurrent_runs": 1,
    }
    body.update(overrides)
    return body


def problem_of(response: Any) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json())


def test_the_reported_amplification_is_refused_with_a_clear_422(client: TestClient) -> None:
    # The review's request: 20 flags of 4,096-character choices, 1,000 runs (82 MB of plan).
    space: dict[str, Any] = {f"--f{i}": {"type": "choice", "values": [f"{i}" * 4096]} for i in range(20)}
    assert "at most 256 characters" in problem_of(client.post("/v1/sweeps", json=sweep(space)))

    # Within the per-value limit, the plan as a whole is bounded too.
    space = {f"--f{i}": {"type": "choice", "values": [chr(97 + i) * 250, "b"]} for i in range(20)}
    detail = problem_of(client.post("/v1/sweeps", json=sweep(space)))
    assert f"at most {MAX_PLAN_BYTES}" in detail
    assert "fewer runs" in detail

    # A choice with more values than a sweep can run is refused too.
    space = {"--n": {"type": "choice", "values": list(range(1001))}}
    assert "1000 items" in problem_of(client.post("/v1/sweeps", json=sweep(space)))
    assert client.get("/v1/sweeps").json()["items"] == []


def test_a_long_number_is_no_long_value(client: TestClient) -> None:
    # Integers are int64 (the document says so); a longer JSON number is still a number, read as a
    # float of a few characters, not 301 digits copied into each child's arguments.
    created = client.post("/v1/sweeps", json=sweep({"--n": {"type": "choice", "values": [10**300]}}))
    assert created.status_code == 201, created.text
    assert created.json()["search_space"]["--n"]["values"] == [1e300]
    assert client.post(f"/v1/sweeps/{created.json()['id']}/cancel").status_code == 202


def test_a_large_sweep_within_the_limits_is_accepted(client: TestClient) -> None:
    space = {f"--f{i}": {"type": "uniform", "low": 0, "high": 1} for i in range(20)}
    created = client.post("/v1/sweeps", json=sweep(space))
    assert created.status_code == 201, created.text
    client.post(f"/v1/sweeps/{created.json()['id']}/cancel")


def test_listing_sweeps_does_not_load_their_plans(client: TestClient) -> None:
    space = {"--quality": {"type": "uniform", "low": 0, "high": 1}}
    created = client.post("/v1/sweeps", json=sweep(space, max_total_runs=50)).json()
    client.post(f"/v1/sweeps/{created['id']}/cancel")
    statements: list[str] = []
    engine = client.app.state.runtime.db.engine  # type: ignore[attr-defined]

    def record(*args: Any) -> None:  # (conn, cursor, statement, parameters, context, executemany)
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        listed = client.get("/v1/sweeps").json()["items"]
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert [s["progress"]["total"] for s in listed] == [50]
    assert listed[0]["search_space"] == space
    reads = [s for s in statements if "FROM sweep" in s]
    assert reads
    # The plan is only ever named inside json_array_length(...): counted, never read.
    assert not [s for s in reads if re.search(r"sweep\.plan(?!\))", s)], reads
