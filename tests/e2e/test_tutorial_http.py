"""The README's walk-through against uvicorn running as a real process."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import LiveServer

TUTORIAL = {
    "experiment": "Tutorial-sklearn-mnist",
    "script": "train.py",
    "arguments": ["--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", 0.5],
}


def test_tutorial_over_http(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        submitted = time.monotonic()
        created = http.post("/v1/jobs", json=TUTORIAL)
        assert created.status_code == 201
        location = created.headers["location"]
        while (job := http.get(location).json())["status"] not in {"completed", "failed", "canceled"}:
            assert time.monotonic() - submitted < 120, job
            time.sleep(0.1)
        assert job["status"] == "completed", job
        assert http.get(f"{location}/metrics").json()["metrics"]["accuracy"] >= 0.9
        assert "Accuracy is" in http.get(f"{location}/logs").json()["text"]
        model = http.get(f"{location}/files/outputs/sklearn_mnist_model.pkl")
        assert model.status_code == 200
        assert len(model.content) > 1000
        register = {"model_name": "sklearn_mnist", "model_path": "outputs/sklearn_mnist_model.pkl"}
        assert http.post(f"{location}/models", json=register).json()["version"] == 1
        assert http.get("/v1/models/sklearn_mnist/versions/latest").json()["job_id"] == job["id"]
