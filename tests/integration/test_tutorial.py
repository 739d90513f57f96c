"""The seed tutorial end to end over HTTP on the local target, with the real trainer."""

from __future__ import annotations

import io

import joblib
from fastapi.testclient import TestClient

from tests.support.jobs import tutorial_job, wait_for


def test_tutorial_job_trains_logs_and_registers(client: TestClient) -> None:
    created = client.post("/v1/jobs", json=tutorial_job())
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert created.headers["location"] == f"/v1/jobs/{job_id}"
    assert created.json()["status"] == "queued"
    assert created.json()["arguments"][1] == {"dataset": "digits", "version": 1, "mode": "mount"}

    job = wait_for(client, job_id)
    assert job["status"] == "completed", job
    assert job["backend_status"] == "Completed"
    assert job["exit_code"] == 0
    assert job["run_id"].startswith("Tutorial-sklearn-mnist_")
    assert job["submitted_at"] <= job["started_at"] <= job["ended_at"]

    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]
    assert metrics["regularization rate"] == 0.5
    assert metrics["accuracy"] >= 0.9

    history = client.get(f"/v1/jobs/{job_id}/metrics/accuracy/history").json()
    assert [p["value"] for p in history["items"]] == [metrics["accuracy"]]

    logs = client.get(f"/v1/jobs/{job_id}/logs").json()
    assert "Accuracy is" in logs["text"]
    assert logs["eof"] is True
    assert logs["next_offset"] == len(logs["text"].encode())

    files = {f["path"]: f["size"] for f in client.get(f"/v1/jobs/{job_id}/files").json()["items"]}
    assert "outputs/sklearn_mnist_model.pkl" in files
    assert "user_logs/std_log.txt" in files
    download = client.get(f"/v1/jobs/{job_id}/files/outputs/sklearn_mnist_model.pkl")
    assert download.status_code == 200
    assert len(download.content) == files["outputs/sklearn_mnist_model.pkl"]
    model = joblib.load(io.BytesIO(download.content))
    assert model.predict([[0.0] * 64]).shape == (1,)

    body = {"model_name": "sklearn_mnist", "model_path": "outputs/sklearn_mnist_model.pkl"}
    first = client.post(f"/v1/jobs/{job_id}/models", json=body)
    assert first.status_code == 201, first.json()
    assert first.json()["version"] == 1
    assert first.json()["job_id"] == job_id
    assert first.json()["run_id"] == job["run_id"]
    assert first.json()["metrics"]["accuracy"] == metrics["accuracy"]

    second_job = wait_for(client, client.post("/v1/jobs", json=tutorial_job()).json()["id"])
    second = client.post(f"/v1/jobs/{second_job['id']}/models", json={**body, "tags": {"stage": "candidate"}})
    assert second.json()["version"] == 2
    assert second.headers["location"] == "/v1/models/sklearn_mnist/versions/2"

    latest = client.get("/v1/models/sklearn_mnist/versions/latest").json()
    assert (latest["version"], latest["job_id"], latest["tags"]) == (2, second_job["id"], {"stage": "candidate"})
    versions = client.get("/v1/models/sklearn_mnist/versions").json()["items"]
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job_id), (2, second_job["id"])]
    assert client.get("/v1/models").json()["items"] == [{"name": "sklearn_mnist", "latest_version": 2, "versions": 2}]


def test_built_in_resources_exist_from_the_start(client: TestClient) -> None:
    envs = client.get("/v1/environments").json()["items"]
    assert [(e["name"], e["version"]) for e in envs] == [("tutorial-env", 1)]
    datasets = {d["name"]: d for d in client.get("/v1/datasets").json()["items"]}
    assert datasets["digits"]["version"] == 1
    compute = client.get("/v1/compute").json()["items"]
    assert compute[0]["name"] == "local"
    assert compute[0]["max_concurrent"] == 2
    assert client.get("/readyz").json()["status"] == "ok"
    assert client.get("/healthz").status_code == 200
