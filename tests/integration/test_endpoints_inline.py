"""Small requests to a linear model are scored in the service itself (linear.py), with the worker's answers.

Everything else stays on the workers: a pipeline with a class of the model author's, a subclass
with its own predict. A version switch and an undeploy drop the service's copy with their pool.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from service.catalog.offline_data import digits_dataset_arrays
from service.core.settings import Settings
from service.models.endpoints.batcher import Pool
from tests.support.custom_model import ShiftedLogistic, custom_pipeline
from tests.support.endpoints import deploy, digits_test_split, fit_digits_model, register_copy, wait_endpoint


def _train() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    arrays = digits_dataset_arrays()
    return arrays["train_images"].reshape(len(arrays["train_images"]), -1) / 255.0, arrays["train_labels"].reshape(-1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tutorial's one-vs-rest model, a multinomial one, and two the service must leave to workers."""
    folder = tmp_path_factory.mktemp("inline-models")
    images, labels = _train()
    fitted = {
        "multinomial": LogisticRegression(max_iter=300).fit(images, labels),
        "pipeline": custom_pipeline(images, labels),
        "shifted": ShiftedLogistic(max_iter=300).fit(images, labels),
    }
    paths = {"ovr": fit_digits_model(folder / "ovr.pkl")}
    for name, model in fitted.items():
        paths[name] = folder / f"{name}.pkl"
        joblib.dump(model, paths[name])
    return paths


def _pool(client: TestClient, name: str) -> Pool:
    pool = client.app.state.endpoints.get(name).pool  # type: ignore[attr-defined]
    assert pool is not None
    return pool  # type: ignore[no-any-return]


def _score(client: TestClient, name: str, rows: Any, probabilities: bool = True) -> dict[str, Any]:
    answer = client.post(f"/v1/endpoints/{name}/score", json={"data": rows, "probabilities": probabilities})
    assert answer.status_code == 200, answer.json()
    return dict(answer.json())


def _answers(client: TestClient, name: str, images: np.ndarray[Any, Any], size: int) -> list[dict[str, Any]]:
    return [_score(client, name, images[i : i + size].tolist()) for i in range(0, len(images), size)]


@pytest.mark.parametrize("kind", ["ovr", "multinomial"])
def test_a_linear_model_is_scored_in_the_service_with_the_workers_answers(
    client: TestClient, settings: Settings, models: dict[str, Path], kind: str
) -> None:
    register_copy(client, "digits", models[kind])
    deploy(client, "mnist", "digits")
    assert wait_endpoint(client, "mnist")["status"] == "ready"
    pool = _pool(client, "mnist")
    assert pool.inline is not None
    images, _ = digits_test_split(client)
    model = joblib.load(models[kind])
    for size in (1, 7, settings.endpoint_inline_max_rows):
        inline = _answers(client, "mnist", images, size)
        for start, answer in zip(range(0, len(images), size), inline, strict=True):
            rows = images[start : start + size]
            assert answer["predictions"] == model.predict(rows).tolist()
            assert answer["probabilities"] == model.predict_proba(rows).tolist()
        copy, pool.inline = pool.inline, None  # the same requests through the worker
        assert _answers(client, "mnist", images, size) == inline
        pool.inline = copy

    # A stopped worker does not stop small requests: they never reach it.
    worker = wait_endpoint(client, "mnist")["workers"][0]["pid"]
    os.kill(worker, signal.SIGSTOP)
    try:
        assert _score(client, "mnist", images[:3].tolist())["predictions"] == model.predict(images[:3]).tolist()
    finally:
        os.kill(worker, signal.SIGCONT)
    too_many = images[: settings.endpoint_inline_max_rows + 1]
    assert _score(client, "mnist", too_many.tolist())["predictions"] == model.predict(too_many).tolist()


@pytest.mark.parametrize("kind", ["pipeline", "shifted"])
def test_a_model_with_code_of_its_own_stays_on_its_workers(
    client: TestClient, models: dict[str, Path], kind: str
) -> None:
    register_copy(client, "custom", models[kind])
    deploy(client, "custom", "custom")
    assert wait_endpoint(client, "custom")["status"] == "ready"
    assert _pool(client, "custom").inline is None
    images, _ = digits_test_split(client)
    model = joblib.load(models[kind])
    answer = _score(client, "custom", images[:5].tolist(), probabilities=False)
    assert answer["predictions"] == model.predict(images[:5]).tolist()


def test_a_version_switch_and_an_undeploy_drop_the_services_copy(client: TestClient, models: dict[str, Path]) -> None:
    register_copy(client, "digits", models["ovr"])
    register_copy(client, "digits", models["multinomial"])
    deploy(client, "mnist", "digits", version=1)
    assert wait_endpoint(client, "mnist")["status"] == "ready"
    images, _ = digits_test_split(client)
    rows = images[:40]
    first = _pool(client, "mnist")
    assert first.inline is not None
    assert _score(client, "mnist", rows.tolist())["version"] == 1

    switched = client.patch("/v1/endpoints/mnist", json={"version": 2})
    assert switched.status_code == 200, switched.json()
    second = _pool(client, "mnist")
    assert first.inline is None
    assert second.inline is not None
    answer = _score(client, "mnist", rows.tolist())
    multinomial = joblib.load(models["multinomial"])
    assert answer["version"] == 2
    assert answer["probabilities"] == multinomial.predict_proba(rows).tolist()
    assert answer["probabilities"] != joblib.load(models["ovr"]).predict_proba(rows).tolist()

    assert client.delete("/v1/endpoints/mnist").status_code == 204
    assert second.inline is None
    assert client.post("/v1/endpoints/mnist/score", json={"data": rows[:1].tolist()}).status_code == 404
