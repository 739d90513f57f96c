"""Endpoints on the local compute: deploy a registered model, score it over HTTP, switch, restart."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from tests.support.endpoints import (
    deploy,
    digits_test_split,
    fit_digits_model,
    register_copy,
    register_file,
    train_and_register,
    wait_endpoint,
)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any good model, fitted once per session, for tests that do not check the job's own metric."""
    return fit_digits_model(tmp_path_factory.mktemp("models") / "digits.pkl")


def _score(client: TestClient, name: str, rows: Any, **extra: Any) -> Any:
    return client.post(f"/v1/endpoints/{name}/score", json={"data": rows, **extra})


def test_scoring_the_test_split_over_http_gives_the_jobs_accuracy(client: TestClient) -> None:
    job = train_and_register(client)
    deploy(client, "mnist", "sklearn_mnist")
    endpoint = wait_endpoint(client, "mnist")
    assert endpoint["status"] == "ready", endpoint
    assert (endpoint["model"], endpoint["version"], endpoint["n_features"]) == ("sklearn_mnist", 1, 64)
    assert len(endpoint["workers"]) == 1
    assert endpoint["memory_bytes"] > 10_000_000

    images, labels = digits_test_split(client)
    predictions: list[int] = []
    for start in range(0, len(images), 100):
        answer = _score(client, "mnist", images[start : start + 100].tolist())
        assert answer.status_code == 200, answer.json()
        assert (answer.json()["model"], answer.json()["version"]) == ("sklearn_mnist", 1)
        predictions += answer.json()["predictions"]
    accuracy = float(np.average(np.array(predictions) == labels))
    assert accuracy == job["accuracy"]

    answer = _score(client, "mnist", images[:3].tolist(), probabilities=True).json()
    assert answer["classes"] == list(range(10))
    assert [int(np.argmax(p)) for p in answer["probabilities"]] == answer["predictions"]
    assert all(abs(sum(p) - 1) < 1e-9 for p in answer["probabilities"])


def test_evaluating_a_version_keeps_accuracy_and_confusion_matrix(client: TestClient, digits_model: Path) -> None:
    register_copy(client, "sklearn_mnist", digits_model)
    images, labels = digits_test_split(client)
    expected = joblib.load(digits_model).predict(images)

    evaluated = client.post("/v1/models/sklearn_mnist/versions/1/evaluate", json={"dataset": "digits"})
    assert evaluated.status_code == 200, evaluated.json()
    result = evaluated.json()["evaluation"]
    assert (result["dataset"], result["dataset_version"], result["split"]) == ("digits", 1, "test")
    assert result["samples"] == len(labels) == 450
    assert result["accuracy"] == float(np.average(expected == labels))
    assert result["labels"] == list(range(10))
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == 450
    assert np.trace(matrix) / 450 == result["accuracy"]
    assert matrix[3].sum() == int(np.sum(labels == 3))  # rows are the true labels
    assert client.get("/v1/models/sklearn_mnist/versions/1").json()["evaluation"] == result

    # The dashboard shows it: the accuracy beside the version, the matrix as an SVG grid of counts.
    page = client.get("/ui/models").text
    figure = page[page.index('id="confusion-sklearn_mnist-v1"'):]
    figure = figure[: figure.index("</figure>")]
    assert f"accuracy <strong>{result['accuracy']:.4g}</strong> on digits v1 (450 test images)" in page
    assert figure.count('<g class="cell') == 100
    assert f"<title>true 3, predicted 3: {matrix[3][3]}</title>" in figure

    url = "/v1/models/sklearn_mnist/versions/{}/evaluate"
    assert client.post(url.format(1), json={"dataset": "nope"}).status_code == 404
    assert client.post(url.format(7), json={"dataset": "digits"}).status_code == 404
    assert client.post(url.format(1), json={}).status_code == 422


def test_bad_scoring_requests_get_clear_4xx(client: TestClient, settings: Settings, digits_model: Path) -> None:
    register_copy(client, "sklearn_mnist", digits_model)
    deploy(client, "mnist", "sklearn_mnist")
    assert wait_endpoint(client, "mnist")["status"] == "ready"
    row = [0.0] * 64

    # Rows as wide as the served model wants: the endpoint's state (its n_features), so 409 (issue 12).
    wide = _score(client, "mnist", [row, [0.0] * 784])
    assert wide.status_code == 409
    assert "64 values" in wide.json()["detail"]
    assert "row 1 has 784" in wide.json()["detail"]
    for bad in (["a"] + row[1:], [True] + row[1:], [None] + row[1:]):
        answer = _score(client, "mnist", [bad])
        assert answer.status_code == 422, bad
        assert answer.json()["errors"][0]["loc"] == ["data", 0, 0]
    for empty in ([], [[]]):  # the schema's minItems
        assert _score(client, "mnist", empty).status_code == 422
        assert "at least 1 item" in str(_score(client, "mnist", empty).json()["errors"])
    too_many = _score(client, "mnist", [row] * (settings.endpoint_max_rows + 1))  # the document's maxItems
    assert too_many.status_code == 422
    assert f"at most {settings.endpoint_max_rows}" in too_many.json()["detail"]
    assert client.post("/v1/endpoints/mnist/score", content=b"{not json").status_code == 422
    assert client.post("/v1/endpoints/mnist/score", json={"rows": [row]}).status_code == 422
    assert _score(client, "nope", [row]).status_code == 404
    # Finite inputs whose products overflow: the probabilities would be NaN, which JSON cannot carry.
    huge = client.post("/v1/endpoints/mnist/score", json={"data": [[1.7e308] * 32 + [-1.7e308] * 32],
                                                           "probabilities": True})
    assert huge.status_code == 409, huge.text
    # Every answer above came from the same, still healthy endpoint.
    assert _score(client, "mnist", [row]).status_code == 200

    assert client.post("/v1/endpoints", json={"name": "mnist", "model": "sklearn_mnist"}).status_code == 409
    assert client.post("/v1/endpoints", json={"name": "x", "model": "nope"}).status_code == 404
    assert client.post("/v1/endpoints", json={"name": "x", "model": "sklearn_mnist", "version": 9}).status_code == 404
    assert (
        client.post("/v1/endpoints", json={"name": "x", "model": "sklearn_mnist", "compute": "aks"}).status_code == 404
    )
    many = {"name": "x", "model": "sklearn_mnist", "replicas": settings.endpoint_max_replicas + 1}
    assert client.post("/v1/endpoints", json=many).status_code == 422


def test_switching_version_under_load_fails_no_request(client: TestClient, digits_model: Path) -> None:
    register_copy(client, "sklearn_mnist", digits_model)
    register_copy(client, "sklearn_mnist", digits_model)
    deploy(client, "mnist", "sklearn_mnist", version=1, replicas=2)
    assert wait_endpoint(client, "mnist")["status"] == "ready"
    images, _ = digits_test_split(client)
    seen: list[list[int]] = [[] for _ in range(6)]
    failures: list[Any] = []
    stop = threading.Event()

    def hammer(index: int) -> None:
        while not stop.is_set():
            answer = _score(client, "mnist", images[index : index + 5].tolist())
            if answer.status_code != 200:
                failures.append(answer.json())
            else:
                seen[index].append(answer.json()["version"])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(seen))]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60  # the hammers may have died on an error: never wait for ever
        while min(len(s) for s in seen) < 5:
            assert not failures, failures
            assert time.monotonic() < deadline, seen
            threading.Event().wait(0.02)
        switched = client.patch("/v1/endpoints/mnist", json={"version": 2})
        after = [len(s) for s in seen]
        while min(len(s) - a for s, a in zip(seen, after, strict=True)) < 5:
            assert not failures, failures
            assert time.monotonic() < deadline, seen
            threading.Event().wait(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert switched.status_code == 200, switched.json()
    assert switched.json()["version"] == 2
    assert failures == []
    for versions in seen:
        assert versions == sorted(versions)
        assert versions[0] == 1
        assert versions[-1] == 2
    assert client.get("/v1/endpoints/mnist").json()["version"] == 2


def test_an_endpoint_comes_back_ready_after_a_restart(settings: Settings, digits_model: Path) -> None:
    with TestClient(create_app(settings)) as client:
        register_copy(client, "sklearn_mnist", digits_model)
        deploy(client, "mnist", "sklearn_mnist")
        first = wait_endpoint(client, "mnist")
        assert first["status"] == "ready"
    old_pid = first["workers"][0]["pid"]
    with TestClient(create_app(settings)) as client:
        again = wait_endpoint(client, "mnist")
        assert again["status"] == "ready", again
        assert again["workers"][0]["pid"] != old_pid
        answer = _score(client, "mnist", [[0.0] * 64])
        assert answer.status_code == 200
        assert answer.json()["version"] == 1
    assert not _alive(old_pid)


def test_a_broken_model_file_makes_a_failed_endpoint_not_500s(client: TestClient) -> None:
    register_file(client, "broken", "garbage")
    deploy(client, "broken", "broken")
    endpoint = wait_endpoint(client, "broken")
    assert endpoint["status"] == "failed"
    assert endpoint["error"].startswith("the model could not be loaded: ")
    answer = _score(client, "broken", [[0.0]])
    assert answer.status_code == 409
    assert "could not be loaded" in answer.json()["detail"]
    assert client.get("/readyz").status_code == 200


def test_a_model_over_the_memory_limit_fails_to_load(client: TestClient) -> None:
    register_file(client, "huge", "huge")
    deploy(client, "huge", "huge")
    endpoint = wait_endpoint(client, "huge")
    assert endpoint["status"] == "failed"
    assert "more memory" in endpoint["error"]


def test_a_loading_endpoint_answers_409_not_ready_with_retry_after(client: TestClient) -> None:
    # Not a server error: the endpoint is still `creating` (issue 12: it was a 503).
    register_file(client, "slow", "slow", "--seconds", "3")
    deploy(client, "slow", "slow")
    answer = _score(client, "slow", [[0.0]])
    assert answer.status_code == 409
    assert answer.json()["title"] == "Endpoint not ready"
    assert answer.headers["retry-after"] == "1"
    assert "creating" in answer.json()["detail"]
    assert wait_endpoint(client, "slow")["error"].endswith("NoneType has no predict method")


def test_a_killed_worker_is_replaced(client: TestClient, settings: Settings, digits_model: Path) -> None:
    register_copy(client, "sklearn_mnist", digits_model)
    deploy(client, "mnist", "sklearn_mnist")
    pid = wait_endpoint(client, "mnist")["workers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    # Replaced at once, though no request has reached a worker since (small ones are scored inline).
    deadline = time.monotonic() + 60
    while (worker := client.get("/v1/endpoints/mnist").json()["workers"][0])["pid"] == pid \
            or worker["rss_bytes"] is None:
        assert time.monotonic() < deadline, worker
        time.sleep(0.05)
    # More rows than the service scores itself (test_endpoints_inline.py): these go to the new worker.
    rows = [[0.0] * 64] * (settings.endpoint_inline_max_rows + 1)
    assert _score(client, "mnist", rows).status_code == 200
    assert client.get("/v1/endpoints/mnist").json()["status"] == "ready"


def test_list_page_and_delete(client: TestClient, digits_model: Path) -> None:
    register_copy(client, "sklearn_mnist", digits_model)
    for name in ("b", "a", "c"):
        deploy(client, name, "sklearn_mnist")
    first = client.get("/v1/endpoints", params={"limit": 2}).json()
    assert [e["name"] for e in first["items"]] == ["a", "b"]
    rest = client.get("/v1/endpoints", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [e["name"] for e in rest["items"]] == ["c"]
    assert rest["next_cursor"] is None
    ready = wait_endpoint(client, "a")
    assert ready["status"] == "ready", ready
    pid = ready["workers"][0]["pid"]
    assert client.delete("/v1/endpoints/a").status_code == 204
    assert client.get("/v1/endpoints/a").status_code == 404
    assert _score(client, "a", [[0.0] * 64]).status_code == 404
    assert not _alive(pid)
    assert client.delete("/v1/endpoints/a").status_code == 404


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"
