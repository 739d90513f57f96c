"""Sweeps on the local target: the real trainer on digits, early termination, a restart mid-sweep."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from tests.integration.sweep_support import max_overlap, scorer_sweep, wait_for_sweep

REGULARIZATIONS = [0.001, 0.01, 0.1, 0.5, 2.0, 10.0]


@pytest.fixture
def wide_settings(settings: Settings) -> Settings:
    """Room for 4 local runs, so that only the sweep's own limit of 2 holds children back."""
    return settings.model_copy(update={"local_max_concurrent": 4})


def test_a_digits_sweep_finds_registers_and_reports_the_best_child(wide_settings: Settings) -> None:
    body = {
        "job": {"experiment": "digits-sweep", "arguments": ["--data-folder", {"dataset": "digits"}],
                "tags": {"team": "vision"}},
        "search_space": {"--regularization": {"type": "choice", "values": REGULARIZATIONS}},
        "sampling": "grid", "primary_metric": "accuracy", "goal": "maximize", "max_concurrent_runs": 2,
        "register_best": {"model_name": "digits-best", "model_path": "outputs/sklearn_mnist_model.pkl",
                          "tags": {"stage": "candidate"}},
    }
    with TestClient(create_app(wide_settings)) as client:
        created = client.post("/v1/sweeps", json=body)
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == f"/v1/sweeps/{created.json()['id']}"
        sweep = wait_for_sweep(client, created.json()["id"], timeout=240)

        assert sweep["status"] == "completed", sweep
        assert sweep["progress"] == {"total": 6, "launched": 6, "active": 0, "completed": 6, "failed": 0,
                                     "canceled": 0, "early_terminated": 0, "done": 6}
        children = sweep["children"]
        assert [c["params"]["--regularization"] for c in children] == REGULARIZATIONS

        # Each child is an ordinary job: read its accuracy through the jobs API, not the sweep's table.
        accuracy: dict[str, float] = {}
        for child in children:
            job = client.get(f"/v1/jobs/{child['job_id']}").json()
            assert job["sweep_id"] == sweep["id"]
            assert job["arguments"][-2:] == ["--regularization", child["params"]["--regularization"]]
            assert job["tags"] == {"team": "vision"}
            accuracy[child["job_id"]] = client.get(f"/v1/jobs/{child['job_id']}/metrics").json()["metrics"]["accuracy"]
            assert child["primary_metric"] == accuracy[child["job_id"]]
        best = max(accuracy, key=lambda job_id: accuracy[job_id])
        assert sweep["best_job_id"] == best
        assert sweep["best_metric"] == accuracy[best] == max(accuracy.values())
        assert accuracy[best] > 0.95

        # At most max_concurrent_runs at once, and the sweep did use its two slots.
        assert max_overlap(children) == 2

        listed = client.get("/v1/jobs", params={"sweep_id": sweep["id"], "limit": 50}).json()["items"]
        assert {j["id"] for j in listed} == set(accuracy)

        assert sweep["registered_model"] == {"name": "digits-best", "version": 1}
        version = client.get("/v1/models/digits-best/versions/latest").json()
        assert version["job_id"] == best
        assert version["tags"] == {"stage": "candidate", "sweep_id": sweep["id"], "primary_metric": "accuracy",
                                   "accuracy": repr(accuracy[best])}
        assert version["metrics"]["accuracy"] == accuracy[best]
        print_table(sweep)  # the closing note's table, visible with -s


def print_table(sweep: dict[str, Any]) -> None:
    rows = [f"{c['job_id']}  {c['params']['--regularization']:>8}  {c['primary_metric']:.4f}"
            for c in sweep["children"]]
    print("\njob                         regularization  accuracy\n" + "\n".join(rows))  # noqa: T201


@pytest.mark.parametrize(
    "policy",
    [
        {"policy": "median", "evaluation_interval": 1, "delay_evaluation": 2},
        {"policy": "bandit", "evaluation_interval": 1, "delay_evaluation": 2, "slack_amount": 0.2},
    ],
)
def test_early_termination_stops_the_child_that_is_behind(client: TestClient, policy: dict[str, Any]) -> None:
    # Child 0 is bad and slow (2 s a step, 16 s in all); the others are good and quick.
    args = ["--steps", 8, "--step-seconds", 0.2, "--slow-below", 0.5, "--slow-step-seconds", 2]
    body = scorer_sweep([0.2, 0.7, 0.8, 0.9], extra_args=args, early_termination=policy)
    sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
    sweep = wait_for_sweep(client, sweep_id, timeout=90)

    assert sweep["status"] == "completed", sweep
    laggard, *good = sweep["children"]
    assert laggard["status"] == "canceled"
    assert laggard["early_terminated"].startswith(policy["policy"])
    assert [c["status"] for c in good] == ["completed"] * 3
    assert all(c["early_terminated"] is None for c in good)
    assert sweep["progress"]["early_terminated"] == 1
    history = client.get(f"/v1/jobs/{laggard['job_id']}/metrics/score/history").json()["items"]
    assert 3 <= len(history) < 8  # stopped after the delay, before its end
    ran = datetime.fromisoformat(laggard["ended_at"]) - datetime.fromisoformat(laggard["started_at"])
    assert ran.total_seconds() < 12
    assert sweep["best_job_id"] == good[-1]["job_id"]
    assert sweep["best_metric"] == 0.9


def test_a_restart_mid_sweep_finishes_without_repeating_children(settings: Settings) -> None:
    qualities = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    body = scorer_sweep(qualities, extra_args=["--steps", 4, "--step-seconds", 0.5])
    with TestClient(create_app(settings)) as client:
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/sweeps/{sweep_id}").json()["progress"]["completed"] < 1:
            assert time.monotonic() < deadline, "no child completed in time"
            time.sleep(0.1)
        before = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert before["status"] == "running"
    assert before["progress"]["launched"] < len(qualities)

    # A new process on the same data dir: state comes from the database alone.
    with TestClient(create_app(settings)) as client:
        sweep = wait_for_sweep(client, sweep_id, timeout=120)
        jobs = client.get("/v1/jobs", params={"experiment": "sweep-tests", "limit": 100}).json()["items"]

    assert sweep["status"] == "completed", sweep
    assert len(jobs) == len(qualities)
    assert [c["params"]["--quality"] for c in sweep["children"]] == qualities
    assert [c["index"] for c in sweep["children"]] == list(range(len(qualities)))
    assert all(c["status"] == "completed" for c in sweep["children"])
    # Children that existed before the restart are the same jobs afterwards.
    kept = len(before["children"])
    assert [c["job_id"] for c in before["children"]] == [c["job_id"] for c in sweep["children"]][:kept]
    assert max_overlap(sweep["children"]) <= 2
    assert sweep["best_metric"] == 0.6
