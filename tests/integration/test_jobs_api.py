"""Bad input and edges of the jobs API: every mistake is a 4xx problem, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import script_job, tutorial_job, wait_for


def assert_problem(response: Any, status: int, fragment: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert fragment in body["detail"], body
    return body


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"compute_target": "gpu-cluster"}, "compute target 'gpu-cluster'"),
        ({"environment": "nope-env"}, "environment 'nope-env'"),
        ({"source": "elsewhere"}, "source 'elsewhere'"),
        ({"arguments": ["--data-folder", {"dataset": "mnist"}]}, "dataset 'mnist'"),
        ({"arguments": ["--data-folder", {"dataset": "digits", "version": 7}]}, "version 7"),
    ],
)
def test_unknown_references_are_404(client: TestClient, override: dict[str, Any], fragment: str) -> None:
    assert_problem(client.post("/v1/jobs", json=tutorial_job(**override)), 404, fragment)


@pytest.mark.parametrize("script", ["../service/app.py", "/etc/passwd", "utils/../../x.py", "./train.py", "a\\b"])
def test_scripts_cannot_leave_their_source(client: TestClient, script: str) -> None:
    # Not a plain relative path: the schema's pattern (RelPath) refuses it, as a generated client would.
    assert_problem(client.post("/v1/jobs", json=tutorial_job(script=script)), 422, "script")


def test_a_script_the_source_does_not_hold_is_not_found(client: TestClient) -> None:
    # A well-formed path; whether the folder has it is the server's state: 404, not 422 (issue 12).
    assert_problem(client.post("/v1/jobs", json=tutorial_job(script="missing.py")), 404, "is not a file in source")


def test_unknown_job_is_404_everywhere(client: TestClient) -> None:
    for path in ["", "/metrics", "/logs", "/files", "/files/outputs/x", "/metrics/accuracy/history"]:
        assert_problem(client.get(f"/v1/jobs/NOPE{path}"), 404, "job 'NOPE'")
    assert_problem(client.post("/v1/jobs/NOPE/cancel"), 404)
    assert_problem(client.post("/v1/jobs/NOPE/models", json={"model_name": "m", "model_path": "outputs/m"}), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"experiment": "has space"},
        {"experiment": "ok", "arguments": [{"dataset": "digits", "mode": "teleport"}]},
        {"experiment": "ok", "arguments": [[1, 2]]},
        {"experiment": "ok", "arguments": [None]},
        {"experiment": "ok", "unexpected": 1},
        {"experiment": "ok", "tags": {"k": 5}},
        {},
    ],
)
def test_malformed_bodies_are_422(client: TestClient, body: dict[str, Any]) -> None:
    problem = assert_problem(client.post("/v1/jobs", json=body), 422)
    assert problem["errors"]


def test_not_json_and_oversized_bodies(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert_problem(client.post("/v1/jobs", content=b"{not json", headers=headers), 422)
    huge = b'{"experiment": "' + b"x" * 2_000_000 + b'"}'
    assert_problem(client.post("/v1/jobs", content=huge, headers=headers), 413)


def test_failing_script_reports_exit_code_and_log_tail(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--exit-code", 3)).json()["id"]
    job = wait_for(client, job_id)
    assert job["status"] == "failed"
    assert job["exit_code"] == 3
    assert "exited with code 3" in job["error"]
    assert "sleeper done" in job["error"]


def test_trainer_without_data_fails_with_its_message(client: TestClient, tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent")  # inside a dataset root, so the run starts
    job_id = client.post("/v1/jobs", json=tutorial_job(arguments=["--data-folder", missing])).json()["id"]
    job = wait_for(client, job_id)
    assert job["status"] == "failed"
    assert missing in job["error"]


def test_idempotency_key_replays_and_conflicts(client: TestClient) -> None:
    key = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", json=tutorial_job(), headers=key)
    again = client.post("/v1/jobs", json=tutorial_job(), headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/jobs", json=tutorial_job(tags={"team": "other"}), headers=key)
    assert_problem(other, 409, "Idempotency-Key")
    assert len(client.get("/v1/jobs").json()["items"]) == 1


def test_cancel_and_register_respect_the_lifecycle(client: TestClient) -> None:
    running = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 30)).json()["id"]
    wait_for(client, running, {"running"})
    body = {"model_name": "m", "model_path": "user_logs/std_log.txt"}
    assert_problem(client.post(f"/v1/jobs/{running}/models", json=body), 409, "only completed")
    assert client.post(f"/v1/jobs/{running}/cancel").status_code == 202
    assert client.post(f"/v1/jobs/{running}/cancel").status_code == 202  # idempotent while active
    job = wait_for(client, running)
    assert job["status"] == "canceled"
    assert job["cancel_requested_at"] is not None
    again = client.post(f"/v1/jobs/{running}/cancel")  # a script retrying its cancel succeeds
    assert (again.status_code, again.json()["status"]) == (202, "canceled")
    done = wait_for(client, client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"])
    assert done["status"] == "completed"
    assert_problem(client.post(f"/v1/jobs/{done['id']}/cancel"), 409, "already completed")


def test_register_paths_are_confined(client: TestClient) -> None:
    job_id = wait_for(client, client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"])["id"]
    for path in ["../../runyard.db", "/etc/passwd", "outputs/../../x"]:
        assert_problem(client.post(f"/v1/jobs/{job_id}/models", json={"model_name": "m", "model_path": path}), 422)
    missing = {"model_name": "m", "model_path": "outputs/none.pkl"}
    assert_problem(client.post(f"/v1/jobs/{job_id}/models", json=missing), 404, "not among the files")
    assert_problem(client.get(f"/v1/jobs/{job_id}/files/..%2F..%2Frunyard.db"), 422)
    assert_problem(client.get(f"/v1/jobs/{job_id}/files/outputs/none.pkl"), 404)
    assert_problem(client.get("/v1/models/nope/versions"), 404)
    assert_problem(client.get("/v1/models/nope/versions/latest"), 404)
    assert_problem(client.get("/v1/models/nope/versions/abc"), 422)


def test_list_filters_and_cursor_pagination(client: TestClient) -> None:
    ids = []
    for i in range(5):
        job = script_job("sleeper.py", experiment=f"exp-{i % 2}", tags={"parity": str(i % 2)})
        ids.append(client.post("/v1/jobs", json=job).json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    exp0 = client.get("/v1/jobs", params={"experiment": "exp-0"}).json()["items"]
    assert [j["id"] for j in exp0] == [ids[4], ids[2], ids[0]]
    odd = client.get("/v1/jobs", params={"tag": "parity:1"}).json()["items"]
    assert [j["id"] for j in odd] == [ids[3], ids[1]]
    for job_id in ids:
        wait_for(client, job_id)
    done = client.get("/v1/jobs", params={"status": "completed", "experiment": "exp-1"}).json()["items"]
    assert len(done) == 2
    assert_problem(client.get("/v1/jobs", params={"cursor": "garbage!"}), 422, "cursor")
    assert_problem(client.get("/v1/jobs", params={"tag": "novalue"}), 422, "query.tag")
    assert_problem(client.get("/v1/jobs", params={"status": "sleeping"}), 422)
    assert_problem(client.get("/v1/jobs", params={"limit": 0}), 422)


def test_logs_offsets_and_metric_history(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 4)).json()["id"]
    wait_for(client, job_id)
    whole = client.get(f"/v1/jobs/{job_id}/logs").json()
    text, offset = "", 0
    while True:
        chunk = client.get(f"/v1/jobs/{job_id}/logs", params={"offset": offset, "limit": 7}).json()
        text += chunk["text"]
        offset = chunk["next_offset"]
        if chunk["eof"]:
            break
    assert text == whole["text"]
    assert "step 3" in text
    beyond = client.get(f"/v1/jobs/{job_id}/logs", params={"offset": 10**9}).json()
    assert (beyond["text"], beyond["eof"]) == ("", True)
    history = client.get(f"/v1/jobs/{job_id}/metrics/loss/history", params={"limit": 3}).json()
    assert [(p["step"], p["value"]) for p in history["items"]] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    rest = client.get(f"/v1/jobs/{job_id}/metrics/loss/history", params={"cursor": history["next_cursor"]}).json()
    assert [p["step"] for p in rest["items"]] == [3]
    assert rest["next_cursor"] is None
    assert client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"] == {"loss": 0.25}
    assert_problem(client.get(f"/v1/jobs/{job_id}/metrics/nope/history"), 404)


def test_resource_registration(client: TestClient) -> None:
    assert client.post("/v1/experiments", json={"name": "vision"}).status_code == 201
    assert_problem(client.post("/v1/experiments", json={"name": "vision"}), 409)
    env = client.post("/v1/environments", json={"name": "tutorial-env", "pip_packages": ["scikit-learn"]})
    assert env.json()["version"] == 2
    assert_problem(client.post("/v1/datasets", json={"name": "x", "path": "/etc"}), 403, "outside the dataset roots")
    assert_problem(client.post("/v1/datasets", json={"name": "x", "path": "relative/folder"}), 422, "body.path")
    assert_problem(client.post("/v1/datasets", json={"name": "x"}), 422, "exactly one")
    ds = client.post("/v1/datasets", json={"name": "remote", "uri": "https://example.org/mnist/"})
    assert (ds.status_code, ds.json()["version"]) == (201, 1)


def test_a_finished_log_that_ends_mid_character_still_reaches_eof(client: TestClient, settings: Any) -> None:
    job_id = wait_for(client, client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"])["id"]
    log = settings.runs_dir / job_id / "user_logs" / "std_log.txt"
    log.write_bytes(log.read_bytes() + "é".encode()[:1])  # a run killed halfway through writing "é"
    offset, chunks = 0, 0
    while not (chunk := client.get(f"/v1/jobs/{job_id}/logs", params={"offset": offset, "limit": 5}).json())["eof"]:
        offset, chunks = chunk["next_offset"], chunks + 1
        assert chunks < 1000
    assert chunk["next_offset"] == log.stat().st_size


@pytest.mark.parametrize("path", ["/bad\\u0000path", "/\\udc80", "bad"])
def test_dataset_paths_the_os_refuses_are_422(client: TestClient, path: str) -> None:
    # Found by schemathesis: a NUL byte in a dataset path was a 500.
    body = '{"name": "x", "path": "' + path + '"}'
    assert_problem(client.post("/v1/datasets", content=body, headers={"content-type": "application/json"}), 422)


def test_a_dataset_folder_the_server_does_not_have_is_404(client: TestClient, settings: Any) -> None:
    for path in (settings.data_dir / "nope", settings.data_dir / ("x" * 300)):  # missing; a name too long
        assert_problem(client.post("/v1/datasets", json={"name": "x", "path": str(path)}), 404, "not a folder")
    (settings.data_dir / "afile").write_text("")
    assert_problem(client.post("/v1/datasets", json={"name": "x", "path": str(settings.data_dir / "afile")}), 404)
    inside = settings.data_dir / "mine"
    inside.mkdir()
    assert client.post("/v1/datasets", json={"name": "x", "path": str(inside)}).status_code == 201
