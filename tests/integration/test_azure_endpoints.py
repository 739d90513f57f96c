"""Endpoints on the stubbed Azure ML workspace (SDK v1), the tutorial's part 2 way.

Train on `cpu-cluster`, register, `Model.deploy` to ACI with the generated score.py, follow the
deployment's state on the fake clock, and score through runyard: the rows really travel over HTTP
to a local server that runs that score.py with the model the run produced, behind the service key.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from azureml.core.model import InferenceConfig
from azureml.core.webservice.aci import AciServiceDeploymentConfiguration
from azureml.core.webservice.aks import AksServiceDeploymentConfiguration
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from service.app import create_app
from service.backends.azureml import AzureMLBackend
from service.backends.azureml_serving import AzureServing
from service.backends.base import Backend, ServeRequest
from service.backends.local import LocalBackend
from service.core.settings import Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeAzure, RunScript, service_error
from tests.support.jobs import tutorial_job

MODEL = "outputs/sklearn_mnist_model.pkl"
DIGITS = load_digits()
X_TRAIN, Y_TRAIN = DIGITS.data[:1300] / 16.0, DIGITS.target[:1300]
X_TEST, Y_TEST = DIGITS.data[1300:] / 16.0, DIGITS.target[1300:]


def trained(regularization: float) -> LogisticRegression:
    return LogisticRegression(C=1.0 / regularization, max_iter=500).fit(X_TRAIN, Y_TRAIN)


MODELS = {0.5: trained(0.5), 5.0: trained(5.0)}


def training_run(config: Any) -> RunScript:
    """The tutorial's train.py as a run that really leaves a pickled model in outputs/."""
    args = [str(a) for a in config.arguments]
    reg = float(args[args.index("--regularization") + 1])
    model = MODELS[reg]
    accuracy = float(model.score(X_TEST, Y_TEST))
    return RunScript(metrics=[(3, "regularization rate", reg), (5, "accuracy", accuracy)],
                     log=[(5, f"Accuracy is {accuracy}\n")], files={MODEL: (5, pickle.dumps(model))})


@pytest.fixture(autouse=True)
def _home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # azureml writes ~/.azureml


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    azure = FakeAzure()
    azure.add_compute("cpu-cluster", nodes=1)
    azure.script_for = training_run
    yield azure
    azure.release()
    azure.services.shutdown()


@pytest.fixture
def azure_settings(settings: Settings) -> Settings:
    return Settings(**(settings.model_dump() | WORKSPACE_SETTINGS | {
        "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 5,
        "azureml_inference_targets": [{"name": "aci", "cpu_cores": 1, "memory_gb": 1}],
        "endpoint_max_rows": 500,
    }))


def with_azure(fake: FakeAzure) -> Callable[[Settings], list[Backend]]:
    def build(settings: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=settings.local_max_concurrent, models_dir=settings.models_dir),
                AzureMLBackend(settings.for_azureml_sdk("v1"), sdk=fake.sdk())]

    return build


@pytest.fixture
def client(azure_settings: Settings, fake: FakeAzure) -> Iterator[TestClient]:
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as test_client:
        yield test_client


def eventually(read: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool],
               timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never matched after {timeout}s: {value}")
        time.sleep(0.05)


def train_and_register(client: TestClient, fake: FakeAzure, regularization: float) -> int:
    """An Azure job on cpu-cluster to its end, then its model registered: the new version."""
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


def endpoint(client: TestClient, name: str = "mnist-svc") -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/endpoints/{name}").json()
    return body


def deploy_ready(client: TestClient, fake: FakeAzure, version: int = 1) -> dict[str, Any]:
    made = client.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "version": version,
                                              "compute": "aci"})
    assert made.status_code == 201, made.text
    eventually(lambda: endpoint(client), lambda e: e["backend_state"] == "Transitioning")
    fake.clock.advance(3)
    return eventually(lambda: endpoint(client), lambda e: e["status"] != "creating")


def score(client: TestClient, rows: Any, **extra: Any) -> Any:
    return client.post("/v1/endpoints/mnist-svc/score", json={"data": rows, **extra})


def test_deploy_to_aci_score_switch_and_delete(client: TestClient, fake: FakeAzure) -> None:
    v1 = train_and_register(client, fake, 0.5)
    made = client.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "version": v1,
                                              "compute": "aci"})
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "creating"

    # Deployed the tutorial's way: the real InferenceConfig and ACI configuration reached Model.deploy.
    created = eventually(lambda: endpoint(client), lambda e: e["backend_state"] == "Transitioning")
    [record] = fake.services.records.values()
    assert record.name == created["service"]
    config, aci = record.details["inference_config"], record.details["deployment_config"]
    assert isinstance(config, InferenceConfig)
    assert config.entry_script == "score.py"
    assert config.environment.name == "tutorial-env"
    assert "azureml-defaults" in list(config.environment.python.conda_dependencies.pip_packages)
    assert isinstance(aci, AciServiceDeploymentConfiguration)
    assert (aci.cpu_cores, aci.memory_gb, aci.auth_enabled) == (1, 1, True)
    assert record.details["models"] == ["sklearn_mnist:1"]
    waiting = score(client, X_TEST[:1].tolist())
    assert waiting.status_code == 409  # not ready yet: Retry-After says when to ask again
    assert waiting.headers["retry-after"] == "1"
    assert "creating" in waiting.json()["detail"]

    fake.clock.advance(3)
    ready = eventually(lambda: endpoint(client), lambda e: e["status"] != "creating")
    assert (ready["status"], ready["backend_state"], ready["version"]) == ("ready", "Healthy", 1)

    # Every test row, forwarded over HTTP with the key, answered by score.py's run(): the job's accuracy.
    answer = score(client, X_TEST.tolist())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"]) == ("sklearn_mnist", 1)
    assert body["predictions"] == MODELS[0.5].predict(X_TEST).tolist()
    accuracy = float(np.mean(np.asarray(body["predictions"]) == Y_TEST))
    assert accuracy == client.get("/v1/models/sklearn_mnist/versions/1").json()["metrics"]["accuracy"]
    assert record.server is not None
    assert record.server.requests == 1
    probs = score(client, X_TEST[:2].tolist(), probabilities=True).json()
    assert probs["classes"] == list(range(10))
    assert np.allclose(probs["probabilities"], MODELS[0.5].predict_proba(X_TEST[:2]))

    # Bad input: the model's width from score.py (a 409, as locally: the body is valid, the model
    # cannot take it), the rest from runyard before anything is sent.
    sent = record.server.requests
    narrow = score(client, [[0.0] * 10])
    assert narrow.status_code == 409
    assert "64 values" in narrow.json()["detail"]
    assert score(client, []).status_code == 422
    assert client.post("/v1/endpoints/mnist-svc/score", json={"data": [["x"] * 64]}).status_code == 422
    assert score(client, [[0.0] * 64] * 501).status_code == 422
    assert score(client, [[0.0] * 64, [0.0] * 63]).status_code == 409
    assert record.server.requests == sent + 1  # only the narrow rows reached the service

    # Version 2 is deployed beside version 1; forwarding moves when it is Healthy; no request fails.
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
        assert (moving.json()["version"], moving.json()["pending_version"]) == (1, 2)
        assert client.patch("/v1/endpoints/mnist-svc", json={"version": v2}).status_code == 409
        time.sleep(0.3)
        fake.clock.advance(3)
        moved = eventually(lambda: endpoint(client), lambda e: e["version"] == 2 and e["pending_version"] is None)
        eventually(lambda: {"deleted": fake.services.deleted}, lambda d: d["deleted"] == [ready["service"]])
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert versions == {1, 2}
    assert moved["service"] != ready["service"]
    assert score(client, X_TEST[:5].tolist()).json()["predictions"] == MODELS[5.0].predict(X_TEST[:5]).tolist()

    assert client.delete("/v1/endpoints/mnist-svc").status_code == 204
    assert fake.services.records == {}
    assert client.get("/v1/endpoints/mnist-svc").status_code == 404


def test_a_restart_adopts_the_service_instead_of_deploying_again(
    azure_settings: Settings, fake: FakeAzure
) -> None:
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as first:
        train_and_register(first, fake, 0.5)
        assert deploy_ready(first, fake)["status"] == "ready"
    deploys = fake.calls["Model.deploy"]
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as second:
        back = eventually(lambda: endpoint(second), lambda e: e["status"] == "ready")
        assert back["backend_state"] == "Healthy"
        assert score(second, X_TEST[:4].tolist()).json()["predictions"] == MODELS[0.5].predict(X_TEST[:4]).tolist()
    assert fake.calls["Model.deploy"] == deploys
    assert len(fake.services.records) == 1


def test_a_model_whose_init_fails_makes_the_endpoint_failed_with_the_log(client: TestClient, fake: FakeAzure) -> None:
    train_and_register(client, fake, 0.5)
    [model] = fake.models
    # A pickle of a class from training code the environment lacks: joblib.load in init() raises.
    fake.runs[model.run_id].script.files[MODEL] = (5, b"cmissing_training_code\nModel\n(tR.")
    failed = deploy_ready(client, fake)
    assert failed["status"] == "failed"
    assert "Your container application crashed" in failed["error"]
    assert "No module named 'missing_training_code'" in failed["error"]  # init()'s traceback, from get_logs
    refused = score(client, X_TEST[:1].tolist())
    assert refused.status_code == 409
    assert "failed" in refused.json()["detail"]


def test_transient_deploy_errors_are_retried_and_forwarding_faults_are_clear(
    client: TestClient, fake: FakeAzure
) -> None:
    train_and_register(client, fake, 0.5)
    fake.fail("Model.deploy", service_error(503))
    ready = deploy_ready(client, fake)
    assert ready["status"] == "ready"
    assert fake.calls["Model.deploy"] == 2

    record = fake.services.records[ready["service"]]
    assert record.server is not None
    record.server.key = "regenerated"  # someone regenerated the key in the workspace
    refused = score(client, X_TEST[:1].tolist())
    assert refused.status_code == 502
    assert "key" in refused.json()["detail"]
    record.server.stop()  # the container is gone
    gone = score(client, X_TEST[:1].tolist())
    assert gone.status_code == 503
    assert "could not be reached" in gone.json()["detail"]


def test_an_unknown_inference_target_is_a_404_naming_the_known_ones(client: TestClient, fake: FakeAzure) -> None:
    unknown = client.post("/v1/endpoints", json={"name": "x", "model": "nope", "compute": "acx"})
    assert unknown.status_code == 404
    assert "local, aci" in unknown.json()["detail"]
    assert fake.calls["Model.deploy"] == 0


def test_a_delete_while_the_deploy_call_runs_leaves_no_service_behind(
    client: TestClient, fake: FakeAzure, monkeypatch: pytest.MonkeyPatch,
) -> None:
    train_and_register(client, fake, 0.5)
    inside, release = threading.Event(), threading.Event()
    real = AzureServing.deploy

    def slow_deploy(self: AzureServing, request: ServeRequest) -> None:
        inside.set()
        release.wait(30)  # Azure still working on Model.deploy when the DELETE arrives
        real(self, request)

    monkeypatch.setattr(AzureServing, "deploy", slow_deploy)
    made = client.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "version": 1,
                                              "compute": "aci"})
    assert made.status_code == 201, made.text
    assert inside.wait(30)
    assert client.delete("/v1/endpoints/mnist-svc").status_code == 204
    assert client.get("/v1/endpoints/mnist-svc").status_code == 404
    release.set()  # the call ends by creating the service...
    eventually(lambda: {"calls": fake.calls["Model.deploy"]}, lambda c: c["calls"] == 1)
    # ...which the delete then removes, instead of leaving it running (and billed) in the workspace.
    eventually(lambda: {"deleted": fake.services.deleted}, lambda d: d["deleted"] == [made.json()["service"]])
    assert fake.services.records == {}


def test_a_ready_endpoint_is_read_again_a_new_key_is_taken_a_deleted_service_fails_it(
    azure_settings: Settings, fake: FakeAzure,
) -> None:
    rechecking = Settings(**(azure_settings.model_dump() | {"endpoint_recheck_seconds": 0.2}))
    with TestClient(create_app(rechecking, backends=with_azure(fake))) as client:
        train_and_register(client, fake, 0.5)
        ready = deploy_ready(client, fake)
        assert ready["status"] == "ready"
        record = fake.services.records[ready["service"]]
        assert record.server is not None
        record.keys = ("regenerated-primary", "regenerated-secondary")  # az ml service regen-key
        record.server.key = record.keys[0]
        # Refused with the old key until the next read takes the new one; then answered again.
        eventually(lambda: {"status": score(client, X_TEST[:2].tolist()).status_code}, lambda s: s["status"] == 200)

        fake.services.delete(ready["service"])  # deleted in the workspace, behind runyard's back
        failed = eventually(lambda: endpoint(client), lambda e: e["status"] == "failed")
        assert "stopped working after it was ready" in failed["error"]
        assert ready["service"] in failed["error"]
        refused = score(client, X_TEST[:1].tolist())
        assert refused.status_code == 409
        assert "failed" in refused.json()["detail"]


def test_a_restart_during_a_switch_finishes_it(azure_settings: Settings, fake: FakeAzure) -> None:
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as first:
        train_and_register(first, fake, 0.5)
        v2 = train_and_register(first, fake, 5.0)
        ready = deploy_ready(first, fake)
        moving = first.patch("/v1/endpoints/mnist-svc", json={"version": v2})
        assert moving.json()["pending_version"] == v2
        eventually(lambda: {"deploys": fake.calls["Model.deploy"]}, lambda d: d["deploys"] == 2)
    # Stopped while version 2's service is still Transitioning: the PATCH's promise outlives the process.
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as second:
        back = eventually(lambda: endpoint(second), lambda e: e["status"] == "ready")
        assert (back["version"], back["pending_version"]) == (1, v2)
        fake.clock.advance(3)
        moved = eventually(lambda: endpoint(second), lambda e: e["version"] == v2 and e["pending_version"] is None)
        assert moved["service"] != ready["service"]
        eventually(lambda: {"deleted": fake.services.deleted}, lambda d: d["deleted"] == [ready["service"]])
        assert score(second, X_TEST[:3].tolist()).json()["version"] == v2
    assert fake.calls["Model.deploy"] == 2  # both services adopted after the restart, none deployed twice
    assert set(fake.services.records) == {moved["service"]}


def test_an_aks_target_deploys_to_its_attached_cluster(azure_settings: Settings, fake: FakeAzure) -> None:
    fake.add_compute("aks", state="Succeeded")
    aks = Settings(**(azure_settings.model_dump() | {"azureml_inference_targets": [
        {"name": "aci"}, {"name": "aks-prod", "kind": "aks", "aks_cluster": "aks", "cpu_cores": 2, "memory_gb": 4},
    ]}))
    with TestClient(create_app(aks, backends=with_azure(fake))) as client:
        train_and_register(client, fake, 0.5)
        made = client.post("/v1/endpoints", json={"name": "mnist-svc", "model": "sklearn_mnist", "version": 1,
                                                  "compute": "aks-prod"})
        assert made.status_code == 201, made.text
        eventually(lambda: endpoint(client), lambda e: e["backend_state"] == "Transitioning")
        [record] = fake.services.records.values()
        config = record.details["deployment_config"]
        assert isinstance(config, AksServiceDeploymentConfiguration)  # the SDK's own class, not ACI's
        assert (config.cpu_cores, config.memory_gb, config.auth_enabled) == (2, 4, True)
        assert config.compute_target_name == "aks"
        assert record.details["deployment_target"].name == "aks"
        fake.clock.advance(3)
        ready = eventually(lambda: endpoint(client), lambda e: e["status"] != "creating")
        assert ready["status"] == "ready", ready
        answer = score(client, X_TEST[:4].tolist())
        assert answer.json()["predictions"] == MODELS[0.5].predict(X_TEST[:4]).tolist()
