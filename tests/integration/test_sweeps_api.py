"""The sweeps API: bad input, cancel, lists, idempotency, failing children and registrations."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core.events import Event
from service.db.tables import Sweep
from tests.integration.sweep_support import scorer_sweep, wait_for_sweep
from tests.support.jobs import wait_for

QUICK = ["--steps", 2, "--step-seconds", 0.01]


def assert_problem(response: Any, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert fragment in body["detail"] or fragment in str(body.get("errors")), body


def digits_sweep(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job": {"experiment": "bad-sweeps", "arguments": ["--data-folder", {"dataset": "digits"}]},
        "search_space": {"--regularization": {"type": "loguniform", "low": 0.001, "high": 10}},
        "sampling": "random", "seed": 1, "primary_metric": "accuracy", "max_total_runs": 4,
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("overrides", "status", "fragment"),
    [
        ({"search_space": {"--regularization": {"type": "loguniform", "low": 0, "high": 1}}}, 422, "greater than 0"),
        ({"sampling": "grid"}, 422, "grid sampling needs choice"),
        ({"max_total_runs": None}, 422, "needs max_total_runs"),
        ({"max_total_runs": 1001}, 422, "less than or equal to 1000"),
        ({"max_concurrent_runs": 0}, 422, "greater than or equal to 1"),
        ({"search_space": {}}, 422, "at least 1 item"),
        ({"search_space": {"regularization": {"type": "choice", "values": [1]}}}, 422, "should match pattern"),
        ({"search_space": {"--r": {"type": "normal", "mu": 0}}}, 422, "does not match any of the expected tags"),
        ({"search_space": {"--data-folder": {"type": "choice", "values": ["x"]}}}, 422, "already among"),
        ({"primary_metric": ""}, 422, "at least 1 character"),
        ({"goal": "maximise"}, 422, "'maximize' or 'minimize'"),
        ({"early_termination": {"policy": "bandit"}}, 422, "exactly one of slack_factor"),
        ({"early_termination": {"policy": "median", "delay_evaluation": -1}}, 422, "greater than or equal to 0"),
        ({"register_best": {"model_name": "m", "model_path": "/etc/passwd"}}, 422, "should match pattern"),
        ({"job": {"experiment": "bad-sweeps", "arguments": ["--data-folder", {"dataset": "nope"}]}}, 404,
         "dataset 'nope'"),
        ({"job": {"experiment": "bad-sweeps", "compute_target": "gpu-cluster"}}, 404, "compute target"),
        ({"job": {"experiment": "bad-sweeps", "script": "missing.py"}}, 404, "is not a file"),
        ({"job": {"experiment": "bad-sweeps", "arguments": ["x"] * 256}}, 422, "at most 216 items"),
        ({"unexpected": 1}, 422, "Extra inputs are not permitted"),
    ],
)
def test_bad_requests_are_problems_and_leave_nothing_behind(
    client: TestClient, overrides: dict[str, Any], status: int, fragment: str
) -> None:
    assert_problem(client.post("/v1/sweeps", json=digits_sweep(**overrides)), status, fragment)
    assert client.get("/v1/sweeps").json()["items"] == []
    assert client.get("/v1/jobs").json()["items"] == []


def test_unknown_sweeps_are_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/sweeps/NOPE"), 404, "sweep 'NOPE' does not exist")
    assert_problem(client.post("/v1/sweeps/NOPE/cancel"), 404, "sweep 'NOPE' does not exist")


def test_cancel_stops_children_and_launches_no_more(client: TestClient) -> None:
    body = scorer_sweep([0.1, 0.2, 0.3, 0.4], extra_args=["--steps", 200, "--step-seconds", 0.2])
    sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
    wait_for_sweep(client, sweep_id, until={"running"})
    deadline = time.monotonic() + 30
    while client.get(f"/v1/sweeps/{sweep_id}").json()["progress"]["launched"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first = client.get(f"/v1/sweeps/{sweep_id}").json()["children"][0]["job_id"]
    wait_for(client, first, {"running"})

    response = client.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] in {"canceling", "canceled"}
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 202  # idempotent while open
    sweep = wait_for_sweep(client, sweep_id, timeout=60)

    assert sweep["status"] == "canceled"
    assert sweep["progress"]["launched"] == 2
    assert {c["status"] for c in sweep["children"]} == {"canceled"}
    assert sweep["registered_model"] is None
    time.sleep(0.5)  # a few sweeper ticks: still no new child
    assert client.get(f"/v1/sweeps/{sweep_id}").json()["progress"]["launched"] == 2
    assert_problem(client.post(f"/v1/sweeps/{sweep_id}/cancel"), 409, "already canceled")


def test_list_pages_newest_first_and_filters(client: TestClient) -> None:
    ids = [client.post("/v1/sweeps", json=scorer_sweep([q], extra_args=QUICK)).json()["id"] for q in (0.1, 0.2, 0.3)]
    first = client.get("/v1/sweeps", params={"limit": 2}).json()
    assert [s["id"] for s in first["items"]] == ids[::-1][:2]
    second = client.get("/v1/sweeps", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["id"] for s in second["items"]] == ids[:1]
    assert second["next_cursor"] is None
    assert "children" not in first["items"][0]
    assert first["items"][0]["progress"]["total"] == 1

    for sweep_id in ids:
        wait_for_sweep(client, sweep_id)
    completed = client.get("/v1/sweeps", params={"status": "completed", "experiment": "sweep-tests"}).json()
    assert {s["id"] for s in completed["items"]} == set(ids)
    assert client.get("/v1/sweeps", params={"status": "running"}).json()["items"] == []
    assert client.get("/v1/sweeps", params={"experiment": "other"}).json()["items"] == []
    assert_problem(client.get("/v1/sweeps", params={"cursor": "garbage!"}), 422, "cursor")


def test_idempotency_key_replays_the_same_sweep(client: TestClient) -> None:
    body = scorer_sweep([0.1, 0.2], extra_args=QUICK)
    headers = {"Idempotency-Key": "sweep-once"}
    first = client.post("/v1/sweeps", json=body, headers=headers)
    again = client.post("/v1/sweeps", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/v1/sweeps").json()["items"]) == 1
    other = client.post("/v1/sweeps", json=scorer_sweep([0.3], extra_args=QUICK), headers=headers)
    assert_problem(other, 409, "different request body")


def test_random_sampling_keeps_the_seed_it_chose(client: TestClient) -> None:
    body = scorer_sweep([], extra_args=QUICK, sampling="random", max_total_runs=3,
                        search_space={"--quality": {"type": "uniform", "low": 0.1, "high": 0.9}})
    sweep = client.post("/v1/sweeps", json=body).json()
    assert isinstance(sweep["seed"], int)
    done = wait_for_sweep(client, sweep["id"])
    values = [c["params"]["--quality"] for c in done["children"]]
    assert len(values) == 3
    assert all(0.1 <= v <= 0.9 for v in values)
    # The same request with that seed samples the same values.
    again = wait_for_sweep(client, client.post("/v1/sweeps", json={**body, "seed": sweep["seed"]}).json()["id"])
    assert [c["params"]["--quality"] for c in again["children"]] == values
    assert done["best_metric"] == max(values)


def test_failed_children_do_not_fail_the_sweep_unless_all_do(client: TestClient) -> None:
    some = scorer_sweep([0.1, 0.9, 0.2], extra_args=[*QUICK, "--fail-below", 0.5], goal="minimize")
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=some).json()["id"])
    assert sweep["status"] == "completed"
    assert [c["status"] for c in sweep["children"]] == ["failed", "completed", "failed"]
    assert sweep["best_metric"] == 0.9
    assert sweep["progress"]["failed"] == 2

    every = scorer_sweep([0.1, 0.2], extra_args=[*QUICK, "--fail-below", 0.5])
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=every).json()["id"])
    assert sweep["status"] == "failed"
    assert sweep["error"] == "all 2 children failed"
    assert sweep["best_job_id"] is None


def test_a_metric_no_child_logs_fails_the_sweep(client: TestClient) -> None:
    body = scorer_sweep([0.1], extra_args=QUICK, primary_metric="accuracy")
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=body).json()["id"])
    assert sweep["status"] == "failed"
    assert sweep["error"] == "no completed child logged 'accuracy'"


def test_registering_a_missing_model_file_fails_the_sweep_with_the_reason(client: TestClient) -> None:
    body = scorer_sweep([0.1, 0.2], extra_args=QUICK,
                        register_best={"model_name": "scorer", "model_path": "outputs/nothing.pkl"})
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=body).json()["id"])
    assert sweep["status"] == "failed"
    assert sweep["best_metric"] == 0.2
    assert "registering the best child's model failed" in sweep["error"]
    assert "outputs/nothing.pkl" in sweep["error"]
    assert client.get("/v1/models").json()["items"] == []


def test_registered_version_is_tagged_with_the_sweep(client: TestClient) -> None:
    body = scorer_sweep([0.3, 0.1, 0.2], extra_args=QUICK, goal="minimize",
                        register_best={"model_name": "scorer", "model_path": "outputs/model.txt"})
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=body).json()["id"])
    assert sweep["status"] == "completed"
    assert sweep["best_job_id"] == sweep["children"][1]["job_id"]
    version = client.get("/v1/models/scorer/versions/1").json()
    assert version["job_id"] == sweep["best_job_id"]
    assert version["tags"] == {"sweep_id": sweep["id"], "primary_metric": "score", "score": "0.1"}
    assert client.get(f"/v1/jobs/{sweep['best_job_id']}/files/outputs/model.txt").text == "quality=0.1\n"


def test_a_crash_between_registering_and_ending_the_sweep_registers_once(client: TestClient) -> None:
    body = scorer_sweep([0.1, 0.2], extra_args=QUICK,
                        register_best={"model_name": "scorer", "model_path": "outputs/model.txt"})
    sweep_id = wait_for_sweep(client, client.post("/v1/sweeps", json=body).json()["id"])["id"]
    # As the database looks when the process died after the version's commit, before the sweep's.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.write_session() as session:
        row = session.get(Sweep, sweep_id)
        row.status, row.model_name, row.model_version, row.ended_at = "running", None, None, None
        session.add(row)
        session.commit()
    runtime.events.publish(Event.SWEEP_CHANGED)

    sweep = wait_for_sweep(client, sweep_id)
    assert sweep["status"] == "completed"
    assert sweep["registered_model"] == {"name": "scorer", "version": 1}
    assert [v["version"] for v in client.get("/v1/models/scorer/versions").json()["items"]] == [1]
