"""Endpoints as managed online endpoints on the stubbed v2 workspace (azure-ai-ml).

Train on a v2 cluster, register, deploy: a ManagedOnlineEndpoint, then a ManagedOnlineDeployment
with the generated score.py, traffic moved to it once it has succeeded; scoring crosses real HTTP
to the endpoint's scoring URI with its key, where the stub runs score.py with the job's model.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.ai.ml", reason="the azure-v2 extra is not installed: pip install -e .[azure-v2]")
from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.azureml_v2 import AzureMLV2Backend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.core.settings import Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, RunScript
from tests.fakes.azureml_v2 import FakeAzureV2
from tests.fakes.azureml_v2_serving import online
from tests.integration.test_azure_endpoints import MODEL, MODELS, X_TEST, Y_TEST, eventually, score
from tests.support.jobs import tutorial_job


def training_run(job: Any) -> RunScript:
    words = str(job.command).split()
    reg = float(words[words.index("--regularization") + 1])
    accuracy = float(MODELS[reg].score(X_TEST, Y_TEST))
    return RunScript(metrics=[(3, "regularization rate", reg), (5, "accuracy", accuracy)],
                     log=[(5, f"Accuracy is {accuracy}\n")], files={MODEL: (5, pickle.dumps(MODELS[reg]))})


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake() -> Iterator[FakeAzureV2]:
    azure = FakeAzureV2()
    azure.add_compute("cpu-cluster")
    azure.script_for = training_run
    yield azure
    azure.release()
    online(azure).shutdown()


@pytest.fixture
def v2_settings(settings: Settings) -> Settings:
    return Settings(**(settings.model_dump() | WORKSPACE_SETTINGS | {
        "azureml_sdk": "v2", "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 5,
        "azureml_inference_targets": [{"name": "online", "kind": "managed", "instance_type": "Standard_DS3_v2"}],
    }))


def with_v2(fake: FakeAzureV2) -> Callable[[Settings], list[Backend]]:
    def build(settings: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=settings.local_max_concurrent, models_dir=settings.models_dir),
                AzureMLV2Backend(settings.for_azureml_sdk("v2"), sdk=fake.sdk())]

    return build


@pytest.fixture
def client(v2_settings: Settings, fake: FakeAzureV2) -> Iterator[TestClient]:
    with TestClient(create_app(v2_settings, backends=with_v2(fake))) as test_client:
        yield test_client


def train_and_register(client: TestClient, fake: FakeAzureV2, regularization: float) -> int:
    if "mnist-blob" not in {d["name"] for d in client.get("/v1/datasets").json()["items"]}:
        client.post("/v1/datasets", json={"name": "mnist-blob", "uri": "https://example.blob.core.windows.net/m/"})
    arguments = ["--data-folder", {"dataset": "mnist-blob"}, "--regularization", regularization]
    job_id = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster", arguments=arguments)).json()["id"]
    eventually(lambda: client.get(f"/v1/jobs/{job_id}").json(), lambda j: j["run_id"] is not None)
    fake.clock.advance(8)
    eventually(lambda: client.get(f"/v1/jobs/{job_id}").json(), lambda j: j["status"] == "completed")
    made = client.post(f"/v1/jobs/{job_id}/models", json={"model_name": "sklearn_mnist", "model_path": MODEL})
    assert made.status_code == 201, made.text
    version: int = made.json()["version"]
    return version


def endpoint(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/v1/endpoints/mnist-svc").json()
    return body


def until_ready(client: TestClient, fake: FakeAzureV2) -> dict[str, Any]:
    """Advance Azure's clock through endpoint creation, deployment and the traffic update."""
    deadline = time.monotonic() + 30
    while (current := endpoint(client))["status"] == "creating" or current.get("pending_version"):
        if time.monotonic() > deadline:
            raise AssertionError(f"never ready: {current}")
        fake.clock.advance(1)
        time.sleep(0.3)
    return current


def test_managed_online_endpoint_deploy_score_switch_delete(client: TestClient, fake: FakeAzureV2) -> None:
    v1 = train_and_register(client, fake, 0.5)
    made = client.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "version": v1,
                                              "compute": "online"})
    assert made.status_code == 201, made.text
    assert score(client, X_TEST[:1].tolist()).status_code == 409  # still creating (with Retry-After)
    ready = until_ready(client, fake)
    assert (ready["status"], ready["version"], ready["backend_state"]) == ("ready", v1, "Succeeded")

    stub = online(fake)
    [record] = stub.records.values()
    assert record.traffic == {"version-1": 100}
    [deployment] = record.deployments.values()
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert isinstance(deployment.code_configuration, CodeConfiguration)
    assert deployment.code_configuration.scoring_script == "score.py"
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 1)
    assert str(deployment.model).startswith("azureml:sklearn_mnist:")
    assert deployment.environment.name == "tutorial-env"

    answer = score(client, X_TEST.tolist())
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == MODELS[0.5].predict(X_TEST).tolist()
    assert record.server is not None
    assert record.server.requests == 1
    narrow = score(client, [[0.0] * 10])
    assert narrow.status_code == 409
    assert "64 values" in narrow.json()["detail"]

    # PATCH: a second deployment on the same endpoint, then a traffic switch; nothing fails meanwhile.
    v2 = train_and_register(client, fake, 5.0)
    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = score(client, X_TEST[:3].tolist())
            if reply.status_code != 200:
                failures.append(reply.text)
            else:
                versions.add(reply.json()["version"])

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        moving = client.patch("/v1/endpoints/mnist-svc", json={"version": v2})
        assert moving.status_code == 200, moving.text
        assert moving.json()["pending_version"] == v2
        moved = until_ready(client, fake)
        eventually(lambda: {"left": sorted(record.deployments)}, lambda d: d["left"] == ["version-2"])
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert versions == {1, 2}
    assert moved["version"] == v2
    assert record.traffic == {"version-2": 100}
    assert score(client, X_TEST[:5].tolist()).json()["predictions"] == MODELS[5.0].predict(X_TEST[:5]).tolist()

    assert client.delete("/v1/endpoints/mnist-svc").status_code == 204
    assert stub.records == {}
    assert stub.deleted == [record.name]


def test_a_restart_adopts_the_deployment_and_a_failing_init_fails_the_endpoint(
    v2_settings: Settings, fake: FakeAzureV2
) -> None:
    with TestClient(create_app(v2_settings, backends=with_v2(fake))) as first:
        train_and_register(first, fake, 0.5)
        first.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "compute": "online"})
        assert until_ready(first, fake)["status"] == "ready"
    creates = fake.calls["online_deployments.begin_create_or_update"]
    with TestClient(create_app(v2_settings, backends=with_v2(fake))) as second:
        back = eventually(lambda: endpoint(second), lambda e: e["status"] == "ready")
        assert back["version"] == 1
        assert score(second, X_TEST[:4].tolist()).json()["predictions"] == MODELS[0.5].predict(X_TEST[:4]).tolist()
        assert fake.calls["online_deployments.begin_create_or_update"] == creates

        # A version whose pickle needs code the environment lacks: its deployment fails, the endpoint keeps v1.
        fake.script_for = lambda _job: RunScript(files={MODEL: (5, b"cmissing_training_code\nModel\n(tR.")})
        v2 = train_and_register(second, fake, 0.5)
        assert second.patch("/v1/endpoints/mnist-svc", json={"version": v2}).status_code == 200
        kept = until_ready(second, fake)
        assert (kept["status"], kept["version"]) == ("ready", 1)
        assert "No module named 'missing_training_code'" in kept["switch_error"]
        assert sorted(online(fake).records[kept["service"].rpartition("-v")[0]].deployments) == ["version-1"]
