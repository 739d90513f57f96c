"""The whole HTTP API on a cluster served by azure-ai-ml (SDK v2), on the stubbed v2 workspace.

Same service as in production (lifespan, dispatcher, poller) with `local` and an
`AzureMLV2Backend` whose clients are `tests.fakes.azureml_v2`; the v1 test's helpers drive it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Run in .venv-v2 by `make test` (the azure-v2 extra); elsewhere reported as skipped, not passed.
pytest.importorskip("azure.ai.ml", reason="the azure-v2 extra is not installed: pip install -e .[azure-v2]")
from azure.ai.ml.entities import Command, Environment
from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, ValidationException
from azure.core.exceptions import ClientAuthenticationError
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.azureml_base import FINAL_READ_GIVE_UP_SECONDS
from service.backends.azureml_v2 import AzureMLV2Backend, job_name
from service.backends.base import Backend, EnvironmentSpec, RunRef, SubmitRequest
from service.backends.local import LocalBackend
from service.core.errors import BackendError
from service.core.settings import REPO_ROOT, Settings
from service.core.states import JobStatus
from tests.conftest import script_job, tutorial_job, wait_for
from tests.fakes.azureml import WORKSPACE_SETTINGS, RunScript
from tests.fakes.azureml_v2 import FakeAzureV2, http_error
from tests.integration.test_azure_backend import MNIST_URI, MODEL, at, azure_job, wait_metrics, wait_until_compute


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake() -> Iterator[FakeAzureV2]:
    azure = FakeAzureV2()
    azure.add_compute("cpu-cluster")
    yield azure
    azure.release()


@pytest.fixture
def v2_settings(settings: Settings) -> Settings:
    return Settings(**(settings.model_dump() | WORKSPACE_SETTINGS | {
        "azureml_sdk": "v2", "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 2,
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


def test_tutorial_as_a_command_job_end_to_end(client: TestClient, fake: FakeAzureV2) -> None:
    job_id = azure_job(client)
    job = at(client, job_id, "Queued")
    assert (job["status"], job["run_id"]) == ("starting", job_name(job_id))

    # The real Command azure-ai-ml would send: argv, code, inputs, environment, compute, tags.
    [sent] = fake.created
    assert isinstance(sent, Command)
    assert sent.name == job_name(job_id)
    assert (sent.experiment_name, sent.compute, sent.display_name) == ("Tutorial-sklearn-mnist", "cpu-cluster", job_id)
    assert sent.command == "python train.py --data-folder ${{inputs.data_0}} --regularization 0.5"
    assert str(sent.code) == str(REPO_ROOT / "trainer")
    data = sent.inputs["data_0"]
    assert (data.type, data.mode, data.path) == ("uri_folder", "ro_mount", "azureml:mnist-blob:1")
    assert fake.data["mnist-blob"][0].path == MNIST_URI
    env = sent.environment
    assert isinstance(env, Environment)
    assert (env.name, env.version, env.image) == ("tutorial-env", "1", client.app.state.runtime.settings
                                                  .azureml_v2_base_image)
    pip = env.conda_file["dependencies"][-1]["pip"]
    assert {"azureml-defaults", "mlflow-skinny", "azureml-mlflow"} <= set(pip)
    assert "scikit-learn==1.9.1" in env.conda_file["dependencies"]
    assert sent.tags == {"team": "vision", "runyard_job_id": job_id}

    for raw, status in [("Preparing", "starting"), ("Starting", "starting"), ("Running", "running")]:
        fake.clock.advance(1)
        assert at(client, job_id, raw)["status"] == status
    assert wait_metrics(client, job_id, lambda m: "loss" in m) == {"regularization rate": 0.5, "loss": 0.9}
    partial = client.get(f"/v1/jobs/{job_id}/logs").json()
    assert (partial["text"], partial["eof"]) == ("Loading data from the mounted dataset\n", False)
    fake.clock.advance(2)
    wait_metrics(client, job_id, lambda m: "accuracy" in m)
    fake.clock.advance(2)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"], job["error"]) == ("completed", "Completed", None)
    assert job["started_at"] is not None

    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]
    assert metrics == {"regularization rate": 0.5, "loss": 0.3, "accuracy": 0.9123}
    history = client.get(f"/v1/jobs/{job_id}/metrics/loss/history").json()["items"]
    assert [(p["value"], p["step"]) for p in history] == [(0.9, 0), (0.5, 1), (0.3, 2)]  # MLflow's steps
    log = client.get(f"/v1/jobs/{job_id}/logs").json()
    assert log["text"].splitlines()[-1] == "Accuracy is 0.9123"
    assert log["eof"] is True
    files = [f["path"] for f in client.get(f"/v1/jobs/{job_id}/files").json()["items"]]
    assert files == [MODEL, "user_logs/std_log.txt"]
    download = client.get(f"/v1/jobs/{job_id}/files/{MODEL}")
    assert (download.status_code, download.content) == (200, b"fake pickled model")

    registered = client.post(f"/v1/jobs/{job_id}/models", json={"model_name": "sklearn_mnist", "model_path": MODEL,
                                                                "tags": {"area": "mnist"}})
    assert registered.status_code == 201, registered.text
    [model] = fake.models
    assert model.path == f"azureml://jobs/{job['run_id']}/outputs/artifacts/paths/{MODEL}"
    assert (model.version, model.type) == ("1", "custom_model")
    assert model.tags == {"area": "mnist", "runyard_job_id": job_id, "runyard_version": "1",
                          "runyard_registration": f"{job['run_id']}/{MODEL}"}
    versions = client.get("/v1/models/sklearn_mnist/versions").json()["items"]
    assert [(v["version"], v["job_id"], v["run_id"]) for v in versions] == [(1, job_id, job["run_id"])]
    assert versions[0]["metrics"]["accuracy"] == 0.9123


def test_compute_says_which_sdk_serves_it(client: TestClient) -> None:
    cluster = wait_until_compute(client, lambda c: c["state"] == "ready")
    assert (cluster["kind"], cluster["sdk"], cluster["vm_size"], cluster["max_nodes"]) == (
        "amlcompute", "v2", "STANDARD_D2_V2", 4)
    local = {c["name"]: c for c in client.get("/v1/compute").json()["items"]}["local"]
    assert local["sdk"] is None


def test_a_missing_cluster_is_created_with_v1s_rules(v2_settings: Settings) -> None:
    fake = FakeAzureV2()
    with TestClient(create_app(v2_settings, backends=with_v2(fake))) as client:
        cluster = wait_until_compute(client, lambda c: c["state"] == "provisioning")
        assert cluster["state"] == "provisioning"
        made = fake.computes["cpu-cluster"]["cluster"]
        assert (made.size, made.min_instances, made.max_instances, made.idle_time_before_scale_down) == (
            "STANDARD_D2_V2", 0, 4, 1800)


def test_cancel_uses_begin_cancel(client: TestClient, fake: FakeAzureV2) -> None:
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    fake.clock.advance(3)
    at(client, job_id, "Running")
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert at(client, job_id, "CancelRequested")["status"] == "canceling"
    fake.clock.advance(1)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"], job["error"]) == ("canceled", "Canceled", "canceled on request")
    assert fake.calls["jobs.begin_cancel"] in (1, 2)


FAILING = "Traceback ...\nModuleNotFoundError: No module named 'sklearn'\n"
RUN_HISTORY_ERROR = {"code": "UserError",
                     "message": "Execution failed. User process 'python' exited with status code 1."}


def failing_script(error: dict[str, str] | None) -> RunScript:
    return RunScript(statuses=[(0, "Queued"), (1, "Running"), (2, "Failed")], log=[(1, FAILING)], error=error)


def test_a_failed_job_fails_with_the_error_run_history_keeps(client: TestClient, fake: FakeAzureV2) -> None:
    fake.script_for = lambda _: failing_script(RUN_HISTORY_ERROR)
    fake.fail("runs.get_run_details", http_error(503, "ServiceUnavailable", "busy"))  # read again next cycle
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    fake.clock.advance(2)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"]) == ("failed", "Failed")
    assert job["error"] == ("the Azure ML job failed: UserError: Execution failed. User process 'python' exited "
                            "with status code 1.")
    assert fake.calls["runs.get_run_details"] == 2
    assert client.get(f"/v1/jobs/{job_id}/logs").json()["text"] == FAILING


@pytest.mark.parametrize("details_fault", [None, http_error(403, "AuthorizationFailed", "no read on run history")],
                         ids=["no-error-in-run-history", "run-history-refused"])
def test_a_failed_job_without_an_error_fails_with_its_last_log_line(
    client: TestClient, fake: FakeAzureV2, details_fault: Exception | None
) -> None:
    fake.script_for = lambda _: failing_script(None)
    if details_fault is not None:
        fake.fail("runs.get_run_details", details_fault)
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    fake.clock.advance(2)
    job = wait_for(client, job_id, timeout=15)
    assert (job["status"], job["backend_status"]) == ("failed", "Failed")
    assert job["error"] == "the Azure ML job failed: ModuleNotFoundError: No module named 'sklearn'"
    assert fake.calls["runs.get_run_details"] == 1


def test_transient_errors_are_retried(client: TestClient, fake: FakeAzureV2) -> None:
    fake.fail("jobs.create_or_update", http_error(503, "ServiceUnavailable", "busy"))
    job_id = azure_job(client)
    at(client, job_id, "Queued")
    assert (len(fake.created), fake.calls["jobs.create_or_update"]) == (1, 2)
    fake.fail("jobs.list", http_error(429, "TooManyRequests", "slow down"), times=3)
    fake.clock.advance(3)
    assert at(client, job_id, "Running")["status"] == "running"
    fake.clock.advance(4)
    assert wait_for(client, job_id, timeout=15)["status"] == "completed"


@pytest.mark.parametrize("error", [
    http_error(400, "UserError", "Snapshot is larger than 300 MB"),
    ValidationException(message="Snapshot is larger than 300 MB", no_personal_data_message="too large",
                        target=ErrorTarget.JOB, error_category=ErrorCategory.USER_ERROR),
], ids=["http-400", "validation"])
def test_a_permanent_create_error_fails_the_job(client: TestClient, fake: FakeAzureV2, error: Exception) -> None:
    fake.fail("jobs.create_or_update", error)
    job = wait_for(client, azure_job(client), timeout=15)
    assert job["status"] == "failed"
    assert "Snapshot is larger than 300 MB" in job["error"]
    assert fake.created == []


def test_a_job_created_before_a_crash_is_found_by_its_name(client: TestClient, fake: FakeAzureV2) -> None:
    # The create reached Azure, its answer was lost: the retry finds the job instead of making a second.
    fake.fail("jobs.create_or_update", ConnectionError("connection reset by peer"), after=True)
    job_id = azure_job(client)
    job = at(client, job_id, "Queued")
    assert (len(fake.created), fake.calls["jobs.create_or_update"], job["run_id"]) == (1, 1, job_name(job_id))


def test_a_create_that_collides_with_its_own_job_takes_it(v2_settings: Settings, fake: FakeAzureV2,
                                                         tmp_path: Path) -> None:
    # The job exists (made by an earlier try whose answer was lost) though find_run was not asked first:
    # create answers 409 for the name, and submit hands back that job instead of failing.
    backend = AzureMLV2Backend(v2_settings.for_azureml_sdk("v2"), sdk=fake.sdk())
    fake.add_job(job_name("JOB1.2"))
    env = EnvironmentSpec("tutorial-env", 1, "3.11", ("azureml-defaults",), ())
    request = SubmitRequest(job_id="JOB1.2", experiment="tests", source_dir=REPO_ROOT / "trainer", script="train.py",
                            arguments=("--regularization", 0.5), compute_target="cpu-cluster", environment=env,
                            tags={}, run_dir=tmp_path)
    assert backend.submit(request) == "runyard-job1-2"
    assert (fake.calls["jobs.create_or_update"], len(fake.created)) == (1, 0)
    assert backend.find_run("JOB3.1", "tests", tmp_path) is None


def backend_and_job(settings: Settings, fake: FakeAzureV2, tmp_path: Path) -> tuple[AzureMLV2Backend, RunRef]:
    """A backend on the fake's clock and a submitted tutorial job (Running at 3 s, Completed at 7 s)."""
    backend = AzureMLV2Backend(settings.for_azureml_sdk("v2"), sdk=fake.sdk(), clock=fake.clock,
                               now=fake.clock.datetime)
    env = EnvironmentSpec("tutorial-env", 1, "3.11", ("azureml-defaults",), ())
    request = SubmitRequest(job_id="JOB2.1", experiment="tests", source_dir=REPO_ROOT / "trainer", script="train.py",
                            arguments=("--regularization", 0.5), compute_target="cpu-cluster", environment=env,
                            tags={}, run_dir=tmp_path)
    return backend, RunRef("JOB2.1", backend.submit(request), "tests", "cpu-cluster", tmp_path)


def test_no_capacity_until_the_cluster_is_provisioned(v2_settings: Settings) -> None:
    fake = FakeAzureV2()
    backend = AzureMLV2Backend(v2_settings.for_azureml_sdk("v2"), sdk=fake.sdk(), clock=fake.clock)
    assert backend.capacity("cpu-cluster") == 0  # not attached yet
    assert backend.workspace.ensure_compute()  # created: provisioning
    assert backend.capacity("cpu-cluster") == 0
    fake.clock.advance(10)
    backend.workspace.refresh_compute(backend.workspace.compute["cpu-cluster"], force=True)
    assert backend.capacity("cpu-cluster") is None  # Azure queues the jobs itself


def test_a_final_read_that_keeps_failing_fails_the_job_after_a_bounded_time(
    v2_settings: Settings, fake: FakeAzureV2, tmp_path: Path
) -> None:
    backend, ref = backend_and_job(v2_settings, fake, tmp_path)
    fake.clock.advance(8)
    fake.fail("mlflow.get_run", http_error(403, "AuthorizationFailed", "no read access"), times=100)
    assert backend.poll([ref]) == []  # retried for a while
    fake.clock.advance(FINAL_READ_GIVE_UP_SECONDS - 1)
    assert backend.poll([ref]) == []
    fake.clock.advance(1)
    [update] = backend.poll([ref])
    assert (update.status, update.backend_status) == (JobStatus.FAILED, "Completed")
    assert update.error is not None
    assert "the Azure ML job ended Completed, but its results could not be read" in update.error
    assert "no read access" in update.error


def test_a_retried_registration_finds_the_model_instead_of_registering_again(
    v2_settings: Settings, fake: FakeAzureV2, tmp_path: Path
) -> None:
    backend, ref = backend_and_job(v2_settings, fake, tmp_path)
    fake.clock.advance(8)
    fake.fail("models.create_or_update", ConnectionError("connection reset"), after=True)  # registered, reply lost
    with pytest.raises(BackendError):
        backend.register_model(ref, model_name="sklearn_mnist", model_path=MODEL, version=1, tags={})
    stored = backend.register_model(ref, model_name="sklearn_mnist", model_path=MODEL, version=1, tags={})
    assert (stored.version, stored.location) == (1, "azureml:sklearn_mnist:1")
    assert (len(fake.models), fake.calls["models.create_or_update"], fake.calls["models.list"]) == (1, 1, 2)
    # Another path of the same job is another model version.
    fake.jobs[ref.run_id].script.files["outputs/other.pkl"] = (5, b"x")
    other = backend.register_model(ref, model_name="sklearn_mnist", model_path="outputs/other.pkl", version=2, tags={})
    assert other.version == 2


def test_a_folder_dataset_cannot_run_on_azure(client: TestClient, fake: FakeAzureV2) -> None:
    response = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster"))
    job = wait_for(client, response.json()["id"], timeout=15)
    assert job["status"] == "failed"
    assert "folder on the runyard server" in job["error"]
    assert fake.created == []


def test_a_registered_data_asset_is_used_by_name(client: TestClient, fake: FakeAzureV2) -> None:
    assert client.post("/v1/datasets", json={"name": "mnist-asset", "uri": "azureml://datasets/mnist"}).status_code \
        == 201
    from azure.ai.ml.entities import Data

    fake.data["mnist"] = [Data(name="mnist", version="3", path=MNIST_URI, type="uri_folder")]
    arguments = ["--data-folder", {"dataset": "mnist-asset", "mode": "download"}]
    response = client.post("/v1/jobs", json=tutorial_job(compute_target="cpu-cluster", arguments=arguments))
    at(client, response.json()["id"], "Queued")
    [sent] = fake.created
    assert (sent.inputs["data_0"].path, sent.inputs["data_0"].mode) == ("azureml:mnist:3", "download")


def test_auth_failure_degrades_readiness_but_local_jobs_run(v2_settings: Settings, fake: FakeAzureV2) -> None:
    fake.auth_error = ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")
    with TestClient(create_app(v2_settings, backends=with_v2(fake))) as client:
        body = client.get("/readyz").json()
        assert body["status"] == "degraded"
        assert "Azure ML authentication failed" in body["checks"]["backend:cpu-cluster"]
        local = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", "2"))
        assert wait_for(client, local.json()["id"])["status"] == "completed"


def test_no_azure_ai_ml_import_without_a_v2_workspace(tmp_path: Path) -> None:
    """Neither the default service nor a v1-only workspace imports azure.ai.ml or mlflow."""
    program = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from service.app import create_app, default_backends
        from service.core.settings import Settings
        settings = Settings(data_dir={str(tmp_path / "data")!r})
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").json()["status"] == "ok"
        named = dict(data_dir={str(tmp_path / "data")!r}, azureml_subscription_id="s", azureml_resource_group="g",
                     azureml_workspace_name="w")
        assert [type(b).__name__ for b in default_backends(Settings(**named))] == ["LocalBackend", "AzureMLBackend"]
        assert "azure.ai.ml" not in sys.modules and "mlflow" not in sys.modules, "v2 SDK imported"
        both = Settings(**named, azureml_compute_targets=[{{"name": "cpu-cluster"}}, {{"name": "gpu", "sdk": "v2"}}])
        built = default_backends(both)
        assert [type(b).__name__ for b in built] == ["LocalBackend", "AzureMLBackend", "AzureMLV2Backend"]
        assert [list(b.targets()) for b in built[1:]] == [["cpu-cluster"], ["gpu"]]
        assert "azure.ai.ml" not in sys.modules and "azureml" not in sys.modules, "building a backend imported an SDK"
        v2 = default_backends(Settings(**named, azureml_sdk="v2"))
        assert [type(b).__name__ for b in v2] == ["LocalBackend", "AzureMLV2Backend"]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
