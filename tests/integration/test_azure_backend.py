"""The whole HTTP API with an Azure ML target on the stubbed workspace (no network).

The service runs as in production (lifespan, dispatcher, poller), with `local` and an
`AzureMLBackend` whose SDK is `tests.fakes.azureml`. Azure's clock only moves when a test
advances it, so every status a run goes through can be observed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azureml.core import ScriptRunConfig
from azureml.data.dataset_consumption_config import DatasetConsumptionConfig
from azureml.data.file_dataset import FileDataset as RealFileDataset
from azureml.exceptions import AuthenticationException
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.azureml import AzureMLBackend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.catalog import service as catalog
from service.core.settings import REPO_ROOT, Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeAzure, RunScript, service_error
from tests.support.jobs import script_job, tutorial_job, wait_for

MNIST_URI = "https://azureopendatastorage.blob.core.windows.net/mnist/"
MODEL = "outputs/sklearn_mnist_model.pkl"

RUNTIME_INSTALLED = importlib.util.find_spec("azureml.dataprep") is not None


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # azureml writes ~/.azureml (discovery and snapshot caches): never the real home.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    azure = FakeAzure()
    azure.add_compute("cpu-cluster", nodes=1)
    yield azure
    azure.release()


@pytest.fixture
def azure_settings(settings: Settings) -> Settings:
    """The suite's settings plus a workspace; details read every cycle so tests see them at once."""
    return Settings(**(settings.model_dump() | WORKSPACE_SETTINGS | {
        "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 2,
    }))


def with_azure(fake: FakeAzure) -> Callable[[Settings], list[Backend]]:
    def build(settings: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=settings.local_max_concurrent, models_dir=settings.models_dir),
                AzureMLBackend(settings, sdk=fake.sdk())]

    return build


@pytest.fixture
def client(azure_settings: Settings, fake: FakeAzure) -> Iterator[TestClient]:
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as test_client:
        yield test_client


def azure_job(client: TestClient, **overrides: Any) -> str:
    """Register the blob dataset (once) and submit the tutorial job to cpu-cluster."""
    if "mnist-blob" not in {d["name"] for d in client.get("/v1/datasets").json()["items"]}:
        assert client.post("/v1/datasets", json={"name": "mnist-blob", "uri": MNIST_URI}).status_code == 201
    arguments = ["--data-folder", {"dataset": "mnist-blob", "mode": "mount"}, "--regularization", 0.5]
    body = tutorial_job(compute_target="cpu-cluster", arguments=arguments)
    response = client.post("/v1/jobs", json=body | overrides)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_until(client: TestClient, job_id: str, check: Callable[[dict[str, Any]], bool],
               timeout: float = 15) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until `check(job)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if check(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never matched after {timeout}s: {job}")
        time.sleep(0.05)


def at(client: TestClient, job_id: str, backend_status: str) -> dict[str, Any]:
    return wait_until(client, job_id, lambda j: j["backend_status"] == backend_status)


def wait_metrics(client: TestClient, job_id: str, check: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    deadline = time.monotonic() + 15
    while True:
        metrics: dict[str, float] = client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]
        if check(metrics):
            return metrics
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} metrics never matched: {metrics}")
        time.sleep(0.05)


def test_tutorial_on_cpu_cluster_end_to_end(client: TestClient, fake: FakeAzure) -> None:
    job_id = azure_job(client)

    # Submitted: the real ScriptRunConfig, as Azure would receive it.
    job = at(client, job_id, "Queued")
    assert (job["status"], job["compute_target"]) == ("starting", "cpu-cluster")
    [sent] = fake.submissions
    assert job["run_id"] == sent.run_id
    config = sent.config
    assert isinstance(config, ScriptRunConfig)
    assert (config.source_directory, config.script) == (str(REPO_ROOT / "trainer"), "train.py")
    assert config.arguments[0::2] == ["--data-folder", "--regularization"]
    assert config.arguments[3] == "0.5"
    mount = config.arguments[1]
    assert isinstance(mount, DatasetConsumptionConfig)
    assert (mount.mode, mount.dataset.path, mount.dataset.name) == ("mount", MNIST_URI, "mnist-blob")
    if RUNTIME_INSTALLED:  # the `azure` extra (CI installs it): the SDK's own from_files built the dataset
        assert isinstance(mount.dataset.definition, RealFileDataset)
        assert mount.dataset.definition.as_mount().mode == "mount"
    elif os.environ.get("CI"):
        raise AssertionError("CI installs the azure extra: azureml-dataset-runtime should be importable")
    assert config.run_config.target == "cpu-cluster"
    env = config.run_config.environment
    assert env.name == "tutorial-env"
    assert "azureml-defaults" in list(env.python.conda_dependencies.pip_packages)
    assert "scikit-learn==1.9.1" in list(env.python.conda_dependencies.conda_packages)
    assert sent.tags == {"team": "vision", "runyard_job_id": job_id}

    # Azure's statuses, mapped, with the raw one kept; metrics and log text arrive while it runs.
    for raw, status in [("Preparing", "starting"), ("Starting", "starting"), ("Running", "running")]:
        fake.clock.advance(1)
        assert at(client, job_id, raw)["status"] == status
    running = wait_metrics(client, job_id, lambda m: "loss" in m)
    assert running == {"regularization rate": 0.5, "loss": 0.9}
    partial = client.get(f"/v1/jobs/{job_id}/logs").json()
    assert (partial["text"], partial["eof"]) == ("Loading data from the mounted dataset\n", False)
    fake.clock.advance(2)
    assert wait_metrics(client, job_id, lambda m: "accuracy" in m)["loss"] == 0.3
    for raw, status in [("Finalizing", "finalizing"), ("Completed", "completed")]:
        fake.clock.advance(1)
        job = at(client, job_id, raw)
        assert job["status"] == status
    assert job["started_at"] is not None
    assert job["ended_at"] is not None
    assert job["error"] is None

    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]
    assert metrics == {"regularization rate": 0.5, "loss": 0.3, "accuracy": 0.9123}
    history = client.get(f"/v1/jobs/{job_id}/metrics/loss/history").json()["items"]
    assert [p["value"] for p in history] == [0.9, 0.5, 0.3]

    log = client.get(f"/v1/jobs/{job_id}/logs").json()
    assert log["text"].splitlines() == ["Loading data from the mounted dataset",
                                        "Train a logistic regression model with regularization rate of 0.5",
                                        "Accuracy is 0.9123"]
    assert log["eof"] is True

    files = [f["path"] for f in client.get(f"/v1/jobs/{job_id}/files").json()["items"]]
    assert files == [MODEL, "user_logs/std_log.txt"]
    download = client.get(f"/v1/jobs/{job_id}/files/{MODEL}")
    assert (download.status_code, download.content) == (200, b"fake pickled model")

    registered = client.post(f"/v1/jobs/{job_id}/models", json={"model_name": "sklearn_mnist", "model_path": MODEL,
                                                                "tags": {"area": "mnist"}})
    assert registered.status_code == 201, registered.text
    [model] = fake.models
    assert (model.name, model.path, model.run_id) == ("sklearn_mnist", MODEL, job["run_id"])
    assert model.tags == {"area": "mnist", "runyard_job_id": job_id,
                          "runyard_registration": f"{job['run_id']}/{MODEL}"}  # found again on a retry
    versions = client.get("/v1/models/sklearn_mnist/versions").json()["items"]
    assert [(v["version"], v["job_id"], v["run_id"]) for v in versions] == [(1, job_id, job["run_id"])]
    assert versions[0]["metrics"]["accuracy"] == 0.9123
    assert client.get("/v1/models/sklearn_mnist/versions/latest").json()["version"] == 1

    assert fake.leaky_run_handles == 0  # every Run handle was built with clean_up=False


def test_compute_lists_the_cluster_next_to_local(client: TestClient) -> None:
    items = {c["name"]: c for c in client.get("/v1/compute").json()["items"]}
    assert items["local"]["kind"] == "local"
    cluster = wait_until_compute(client, lambda c: c["state"] == "ready")
    assert (cluster["kind"], cluster["vm_size"], cluster["min_nodes"], cluster["max_nodes"]) == (
        "amlcompute", "STANDARD_D2_V2", 0, 4)
    assert cluster["current_nodes"] == 1


def wait_until_compute(client: TestClient, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        cluster: dict[str, Any] = {c["name"]: c for c in client.get("/v1/compute").json()["items"]}["cpu-cluster"]
        if check(cluster) or time.monotonic() > deadline:
            return cluster
        time.sleep(0.05)


def test_cancel_goes_through_run_cancel(client: TestClient, fake: FakeAzure) -> None:
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    fake.clock.advance(3)
    at(client, job_id, "Running")
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "canceling")
    job = at(client, job_id, "CancelRequested")
    assert job["status"] == "canceling"
    fake.clock.advance(1)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"], job["error"]) == ("canceled", "Canceled", "canceled on request")
    assert fake.calls["Run.cancel"] in (1, 2)  # once, and once more if the grace period passed first
    again = client.post(f"/v1/jobs/{job_id}/cancel")  # repeating a cancel is harmless
    assert (again.status_code, again.json()["status"]) == (202, "canceled")


def test_a_failed_run_fails_the_job_with_its_reason(client: TestClient, fake: FakeAzure) -> None:
    fake.script_for = lambda _: RunScript(
        statuses=[(0, "Queued"), (1, "Running"), (2, "Failed")], log=[(1, "Traceback ...\n")],
        error={"code": "UserError", "message": "ModuleNotFoundError: No module named 'sklearn'"},
    )
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    fake.clock.advance(2)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"]) == ("failed", "Failed")
    assert job["error"] == "the Azure ML run failed: UserError: ModuleNotFoundError: No module named 'sklearn'"
    assert client.get(f"/v1/jobs/{job_id}/logs").json()["text"] == "Traceback ...\n"


def test_transient_errors_are_retried_not_failed(client: TestClient, fake: FakeAzure) -> None:
    fake.fail("Experiment.submit", service_error(503, "ServiceUnavailable", "busy"))
    job_id = azure_job(client)
    job = at(client, job_id, "Queued")  # submitted on the dispatcher's retry
    assert len(fake.submissions) == 1
    assert fake.calls["Experiment.submit"] == 2
    # Polling errors too: the job waits them out.
    fake.fail("Experiment.get_runs", service_error(429, "TooManyRequests", "slow down"), times=3)
    fake.clock.advance(3)
    job = at(client, job_id, "Running")
    assert job["status"] == "running"
    fake.clock.advance(4)
    assert wait_for(client, job_id, timeout=15)["status"] == "completed"


def test_a_permanent_submit_error_fails_the_job(client: TestClient, fake: FakeAzure) -> None:
    fake.fail("Experiment.submit", service_error(400, "BadRequest", "Snapshot is larger than 300 MB"))
    job_id = azure_job(client)
    job = wait_for(client, job_id, timeout=15)
    assert job["status"] == "failed"
    assert "Snapshot is larger than 300 MB" in job["error"]


def test_a_run_created_before_a_crash_is_found_by_its_tag(client: TestClient, fake: FakeAzure) -> None:
    # The submit reached Azure, but its answer was lost (as if the service died before its commit).
    fake.fail("Experiment.submit", ConnectionError("connection reset by peer"), after=True)
    job_id = azure_job(client)
    job = at(client, job_id, "Queued")
    assert len(fake.submissions) == 1  # found again by its tag, not submitted twice
    assert job["run_id"] == fake.runs_tagged("runyard_job_id", job_id)[0].run_id


def test_a_run_created_before_its_tags_is_found_by_its_id(client: TestClient, fake: FakeAzure) -> None:
    fake.submit_loses_tags = 1
    fake.fail("Experiment.submit", ConnectionError("connection reset by peer"), after=True)
    job_id = azure_job(client)
    job = at(client, job_id, "Queued")
    [only] = fake.runs.values()
    assert (len(fake.submissions), job["run_id"], only.tags) == (1, only.run_id, {})


def test_a_folder_dataset_cannot_run_on_azure(client: TestClient, fake: FakeAzure) -> None:
    response = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster"))  # `digits`: a folder
    job = wait_for(client, response.json()["id"], timeout=15)
    assert job["status"] == "failed"
    assert "folder on the runyard server" in job["error"]
    assert fake.submissions == []


def test_auth_failure_degrades_readiness_but_local_jobs_run(azure_settings: Settings, fake: FakeAzure) -> None:
    fake.auth_error = AuthenticationException("AADSTS7000215: Invalid client secret provided.")
    with TestClient(create_app(azure_settings, backends=with_azure(fake))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["checks"]["backend:local"] == "ok"
        assert "Azure ML authentication failed" in body["checks"]["backend:cpu-cluster"]
        cluster = wait_until_compute(client, lambda c: c["state"] == "error")
        assert "authentication failed" in (cluster["error"] or "")

        local = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", "2"))
        assert wait_for(client, local.json()["id"])["status"] == "completed"
        remote = wait_for(client, azure_job(client), timeout=15)
        assert (remote["status"], "authentication failed" in remote["error"]) == ("failed", True)


def test_no_azureml_import_without_a_workspace(tmp_path: Path) -> None:
    """The default service, lifespan included, never imports azureml."""
    program = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from service.app import create_app, default_backends
        from service.core.settings import Settings
        settings = Settings(data_dir={str(tmp_path / "data")!r})
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").json()["status"] == "ok"
            assert [c["name"] for c in client.get("/v1/compute").json()["items"]] == ["local"]
        assert "azureml" not in sys.modules, "azureml was imported"
        configured = Settings(data_dir={str(tmp_path / "data")!r}, azureml_subscription_id="s",
                              azureml_resource_group="g", azureml_workspace_name="w")
        assert [b.kind for b in default_backends(configured)] == ["local", "amlcompute"]
        assert "azureml" not in sys.modules, "building the backend imported azureml"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_the_tutorials_open_mnist_is_registered_in_the_workspace(
    client: TestClient, fake: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "opendatasets_installed", lambda: True)
    arguments = ["--data-folder", {"dataset": "mnist_opendataset", "mode": "mount"}, "--regularization", 0.5]
    response = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster", arguments=arguments))
    assert response.status_code == 201, response.text
    wait_until(client, response.json()["id"], lambda j: j["run_id"] is not None)
    # As the tutorial: MNIST.get_file_dataset(), registered as mnist_opendataset, then mounted.
    assert fake.calls["opendatasets.MNIST.get_file_dataset"] == 1
    [registered] = fake.datasets["mnist_opendataset"]
    assert registered.path == "wasbs://mnist@azureopendatastorage.blob.core.windows.net/*.gz"
    bound = fake.submissions[0].config.arguments[1]
    assert isinstance(bound, DatasetConsumptionConfig)
    assert (bound.mode, bound.dataset.name) == ("mount", "mnist_opendataset")


def test_open_mnist_without_azureml_opendatasets_is_a_clear_422(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "opendatasets_installed", lambda: False)
    arguments = ["--data-folder", {"dataset": "mnist_opendataset"}]
    response = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster", arguments=arguments))
    assert response.status_code == 422, response.text
    assert "pip install 'runyard[azure]'" in response.json()["detail"]
