"""Helpers for the endpoint tests: train and register on `digits`, deploy, wait, read the test split."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient

from service.catalog.offline_data import digits_dataset_arrays
from tests.support.jobs import script_job, tutorial_job, wait_for
from trainer.train import build_model
from trainer.utils import load_mnist


def fit_digits_model(path: Path) -> Path:
    """The tutorial's model fitted on digits in this process, dumped to `path`."""
    arrays = digits_dataset_arrays()
    images = arrays["train_images"].reshape(len(arrays["train_images"]), -1) / 255.0
    joblib.dump(build_model("liblinear", 0.5, 100).fit(images, arrays["train_labels"].reshape(-1)), path)
    return path


def train_and_register(client: TestClient, model: str = "sklearn_mnist", regularization: float = 0.5) -> dict[str, Any]:
    """The tutorial job on digits, registered; returns the completed job with its `accuracy`."""
    job = wait_for(client, client.post("/v1/jobs", json=tutorial_job(arguments=[
        "--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", regularization,
    ])).json()["id"])  # fmt: skip
    assert job["status"] == "completed", job
    body = {"model_name": model, "model_path": "outputs/sklearn_mnist_model.pkl"}
    registered = client.post(f"/v1/jobs/{job['id']}/models", json=body)
    assert registered.status_code == 201, registered.json()
    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()["metrics"]
    return {**job, "accuracy": metrics["accuracy"], "version": registered.json()["version"]}


def register_copy(client: TestClient, model: str, source: Path) -> int:
    """`source` registered as a model version; staged in the datasets folder, where job arguments may point."""
    staged = client.app.state.runtime.settings.datasets_dir / "test-models" / source.name  # type: ignore[attr-defined]
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, staged)
    return register_file(client, model, "copy", "--source", str(staged))


def register_file(client: TestClient, model: str, kind: str, *args: Any) -> int:
    """A model version written by tests/scripts/write_model.py (a copy, or one that fails to serve)."""
    job = wait_for(
        client, client.post("/v1/jobs", json=script_job("write_model.py", "--kind", kind, *args)).json()["id"]
    )
    assert job["status"] == "completed", job
    registered = client.post(
        f"/v1/jobs/{job['id']}/models", json={"model_name": model, "model_path": "outputs/model.pkl"}
    )
    assert registered.status_code == 201, registered.json()
    return int(registered.json()["version"])


def deploy(client: TestClient, name: str, model: str, version: int | str = "latest", **extra: Any) -> dict[str, Any]:
    created = client.post("/v1/endpoints", json={"name": name, "model": model, "version": version, **extra})
    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "creating"
    assert created.headers["location"] == f"/v1/endpoints/{name}"
    return dict(created.json())


def wait_endpoint(client: TestClient, name: str, statuses: frozenset[str] = frozenset({"ready", "failed"}),
                  timeout: float = 60) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        endpoint: dict[str, Any] = client.get(f"/v1/endpoints/{name}").json()
        if endpoint["status"] in statuses:
            return endpoint
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} still {endpoint['status']} after {timeout}s")
        time.sleep(0.05)


def digits_test_split(client: TestClient) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """The test images scaled as the tutorial's train.py scales them, and their labels."""
    datasets = {d["name"]: d for d in client.get("/v1/datasets").json()["items"]}
    arrays = load_mnist(datasets["digits"]["path"])
    return arrays["test_images"] / 255.0, arrays["test_labels"]
