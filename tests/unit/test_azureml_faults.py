"""The Azure ML backend where the real SDK is less kind than a happy stub (issue 11, problems 2-8).

Each fault is raised the way azureml-core raises it (tests/fakes/azureml.py says where in the SDK).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from azureml._base_sdk_common.common import get_http_exception_response_string
from azureml._vendor.azure_cli_core.auth.adal_authentication import MSIAuthenticationWrapper
from azureml._vendor.azure_cli_core.azclierror import AzureResponseError
from azureml.exceptions import ComputeTargetException, ProjectSystemException

from service.backends import azureml as azureml_backend
from service.backends.azureml import AzureMLBackend, run_id_for
from service.backends.azureml_base import FINAL_READ_GIVE_UP_SECONDS
from service.backends.azureml_sdk import load_sdk, translate
from service.backends.base import DatasetInput, EnvironmentSpec, RunRef, SubmitRequest
from service.core.errors import BackendError
from service.core.settings import REPO_ROOT, Settings
from service.core.states import JobStatus
from tests.fakes.azureml import (
    WORKSPACE_SETTINGS,
    FakeAzure,
    FakeClock,
    _reply,
    execution_error,
    msi_auth_error,
    msi_connection_error,
    service_error,
    snapshot_error,
)

EXPERIMENT = "Tutorial-sklearn-mnist"
MNIST_URI = "https://azureopendatastorage.blob.core.windows.net/mnist/"
ENV = EnvironmentSpec("tutorial-env", 1, "3.11", ("azureml-defaults",), ("scikit-learn==1.9.1",))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AZUREML_FLUSH_INGEST_WAIT", raising=False)  # as on a fresh service


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeAzure]:
    azure = FakeAzure(clock)
    yield azure
    azure.release()


def make_backend(tmp_path: Path, fake: FakeAzure, clock: FakeClock, **overrides: Any) -> AzureMLBackend:
    fields = {"azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 5, **WORKSPACE_SETTINGS, **overrides}
    return AzureMLBackend(Settings(data_dir=tmp_path / "data", **fields), sdk=fake.sdk(), clock=clock)


@pytest.fixture
def backend(tmp_path: Path, fake: FakeAzure, clock: FakeClock) -> AzureMLBackend:
    return make_backend(tmp_path, fake, clock)


def request(tmp_path: Path, job_id: str = "JOB1") -> SubmitRequest:
    dataset = DatasetInput("mnist", 1, "mount", None, MNIST_URI)
    return SubmitRequest(
        job_id=job_id, experiment=EXPERIMENT, source_dir=REPO_ROOT / "trainer", script="train.py",
        arguments=("--data-folder", dataset, "--regularization", 0.5), compute_target="cpu-cluster",
        environment=ENV, tags={}, run_dir=tmp_path / "runs" / job_id,
    )


def ref_for(req: SubmitRequest, run_id: str, **changes: Any) -> RunRef:
    return replace(RunRef(job_id=req.job_id, run_id=run_id, experiment=req.experiment,
                          compute_target=req.compute_target, run_dir=req.run_dir), **changes)


# -- 1. without the azure extra, Dataset.File says so --------------------------------------


def test_a_missing_dataset_runtime_fails_the_submit_with_the_install_command(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend
) -> None:
    fake.dataset_runtime_installed = False
    with pytest.raises(BackendError) as raised:
        backend.submit(request(tmp_path))
    assert not raised.value.transient
    assert 'Missing required package "azureml-dataset-runtime"' in raised.value.message
    assert "pip install 'runyard[azure]'" in raised.value.message
    assert fake.submissions == []


# -- 2. a submit that times out starts one run, not two ------------------------------------


def test_a_submit_abandoned_after_its_timeout_and_retried_starts_one_run(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock
) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_call_timeout_seconds=0.5)
    req = request(tmp_path)
    backend.submit(request(tmp_path, "WARM"))  # experiment, environment and dataset are ready
    fake.hang_next("Experiment.submit")  # e.g. the SDK sleeping through 429s: 32 + 64 + 128 s
    with pytest.raises(BackendError, match="no answer") as raised:
        backend.submit(req)
    assert raised.value.transient
    # The dispatcher retries: nothing found yet, so it submits again while the first still hangs.
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) is None
    run_id = backend.submit(req)
    fake.release()
    fake.wait_finished("Experiment.submit", 3)  # the abandoned call ends (in a conflict) in its thread
    assert [r.run_id for r in fake.runs_tagged("runyard_job_id", req.job_id)] == [run_id]
    assert run_id == run_id_for(EXPERIMENT, req.job_id)


def test_a_submit_that_conflicts_with_the_abandoned_one_adopts_its_run(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock
) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_call_timeout_seconds=0.5)
    req = request(tmp_path)
    backend.submit(request(tmp_path, "WARM"))
    fake.hang_next("Experiment.submit")
    with pytest.raises(BackendError):
        backend.submit(req)
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) is None
    fake.release()  # the abandoned submit creates the run between find_run and the retry
    fake.wait_finished("Experiment.submit", 2)
    assert backend.submit(req) == run_id_for(EXPERIMENT, req.job_id)  # the retry's 409 adopts it
    assert len(fake.runs_tagged("runyard_job_id", req.job_id)) == 1


def test_find_run_looks_the_attempt_up_by_id_first(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    req = request(tmp_path, "JOB7.3")
    fake.add_run(experiment=EXPERIMENT, tags={}, run_id=run_id_for(EXPERIMENT, req.job_id))
    fake.reset_calls()
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) == f"{EXPERIMENT}_JOB7-3"
    assert fake.calls["Experiment.get_runs"] == 0  # no listing when the id answers


# -- 3. transient outages are retried; messages are readable -----------------------------


def _project_error(status: int) -> ProjectSystemException:
    # _project/project_engine.py _raise_request_error
    return ProjectSystemException(get_http_exception_response_string(_reply(status, "Busy", "try later", "https://x")))


def _rp_error(status: int) -> ComputeTargetException:
    # core/compute/compute.py, after resp.raise_for_status()
    return ComputeTargetException(f"Received bad response from Resource Provider:\nResponse Code: {status}\n"
                                  "Headers: {}\nContent: b''")


@pytest.mark.parametrize(
    ("error", "transient", "message"),
    [
        (execution_error(503, "ServiceUnavailable", "The service is busy"), True,
         "ExperimentExecutionException: HTTP 503: ServiceUnavailable: The service is busy"),
        (execution_error(429, "TooManyRequests", "Slow down"), True,
         "ExperimentExecutionException: HTTP 429: TooManyRequests: Slow down"),
        (execution_error(400, "BadRequest", "Invalid run definition"), False,
         "ExperimentExecutionException: HTTP 400: BadRequest: Invalid run definition"),
        (_project_error(502), True, "ProjectSystemException: HTTP 502: Busy: try later"),
        (_rp_error(503), True, "ComputeTargetException: Received bad response from Resource Provider:"),
        (_rp_error(409), False, "ComputeTargetException: Received bad response from Resource Provider:"),
        (snapshot_error(503), True, "SnapshotException: HTTP 503: ServiceError: snapshot upload failed"),
        (snapshot_error(), False, "SnapshotException: While attempting to take snapshot of /srv/trainer"),
        (msi_connection_error(), True, "AzureConnectionError: Failed to connect to MSI."),
        (AzureResponseError("Failed to connect to MSI. Please make sure MSI is configured correctly.\n"
                            "Get Token request returned http error: 429, reason: Too Many Requests"), True,
         "AzureResponseError: Failed to connect to MSI."),
        (AzureResponseError("Failed to connect to MSI. Please make sure MSI is configured correctly.\n"
                            "Get Token request returned http error: 400, reason: Bad Request"), False,
         "AzureResponseError: Failed to connect to MSI."),
        (msi_auth_error(), False, "Azure ML authentication failed: AuthenticationError: VM SSH"),
    ],
    ids=["exec-503", "exec-429", "exec-400", "project-502", "compute-503", "compute-409", "snapshot-503",
         "snapshot-size", "msi-connection", "msi-429", "msi-400", "msi-auth"],
)
def test_errors_are_classed_from_the_status_the_sdk_embeds(error: BaseException, transient: bool,
                                                          message: str) -> None:
    translated = translate(error, "submit the run")
    assert translated.transient is transient
    assert translated.message.startswith(f"submit the run: {message}")
    assert "\n" not in translated.message


def test_a_503_on_submit_is_retried_with_the_services_words(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend
) -> None:
    fake.fail("Experiment.submit", execution_error(503, "ServiceUnavailable", "The service is busy"))
    with pytest.raises(BackendError) as raised:
        backend.submit(request(tmp_path))
    assert raised.value.transient
    assert raised.value.message.endswith("HTTP 503: ServiceUnavailable: The service is busy")


# -- 4. managed identity: one token per expiry, not one per request ----------------------


def test_managed_identity_tokens_are_cached_until_shortly_before_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    lifetime = {"seconds": 3600}

    def set_token(self: MSIAuthenticationWrapper) -> None:  # the identity endpoint, counted
        fetched.append(self.resource)
        self.token = {"access_token": jwt.encode({"exp": int(time.time()) + lifetime["seconds"]},
                                                 "a-key-long-enough-for-hs256-signing!", algorithm="HS256")}

    monkeypatch.setattr(MSIAuthenticationWrapper, "set_token", set_token)
    auth = load_sdk().MsiAuthentication(cloud="AzureCloud")
    for _ in range(100):  # e.g. listing runs: one header per request
        auth.get_authentication_header()
    assert 1 <= len(fetched) <= 2  # msrestazure's constructor fetches too
    before = len(fetched)
    auth._get_azureml_client_token()
    auth._get_azureml_client_token()
    assert len(fetched) - before <= 2  # a second resource: its own token, cached as well

    fresh = load_sdk().MsiAuthentication(cloud="AzureCloud")
    lifetime["seconds"] = 60  # inside the refresh margin: asked for again each time
    before = len(fetched)
    fresh.get_authentication_header()
    fresh.get_authentication_header()
    assert len(fetched) - before >= 2


# -- 5. metric points are stored once, whatever get_metrics returns ----------------------


def test_a_failed_metric_listing_does_not_store_points_twice(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend
) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(4)
    [first] = backend.poll([ref])
    assert (len(first.metrics), first.metrics_cursor) == (3, 3)
    ref = replace(ref, metrics_cursor=first.metrics_cursor)
    fake.metric_listing_failures = 1  # get_metrics() == {}: the SDK swallowed the listing error
    [blank] = backend.poll([ref])
    assert (blank.metrics, blank.metrics_cursor) == ((), 3)
    ref = replace(ref, metrics_cursor=blank.metrics_cursor)
    [after] = backend.poll([ref])
    assert (after.metrics, after.metrics_cursor) == ((), 3)  # nothing stored again


# -- 6. cancel never holds up the poll ---------------------------------------------------


def test_cancel_returns_without_waiting_for_metric_ingestion(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend
) -> None:
    req = request(tmp_path)
    ref = ref_for(req, fake.add_run(experiment=EXPERIMENT, tags={}).run_id, cancel_requested=True)
    clock.advance(3)
    backend.cancel(ref, force=False)
    assert fake.calls["Run.cancel:ingest_wait"] == 0  # AZUREML_FLUSH_INGEST_WAIT="" reached the SDK
    backend.cancel(ref, force=False)
    assert fake.calls["Run.cancel"] == 1


def test_a_cancel_still_flushing_is_recorded_as_sent(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_FLUSH_INGEST_WAIT", "1")  # an operator's choice wins: the SDK blocks
    monkeypatch.setattr(azureml_backend, "CANCEL_SEND_SECONDS", 0.3)
    backend = make_backend(tmp_path, fake, clock)
    req = request(tmp_path)
    ref = ref_for(req, fake.add_run(experiment=EXPERIMENT, tags={}).run_id, cancel_requested=True)
    clock.advance(3)
    backend.cancel(ref, force=False)  # returns although Run.cancel is still waiting
    backend.cancel(ref, force=False)
    assert fake.calls["Run.cancel"] == 1
    assert fake.runs[ref.run_id].cancel_at is not None


# -- 7. the cluster must be ready; a final read cannot keep a job active for ever ------------


def test_no_capacity_until_the_cluster_is_provisioned(clock: FakeClock, backend: AzureMLBackend) -> None:
    assert backend.capacity("cpu-cluster") == 0  # not attached yet
    assert backend.workspace.ensure_compute()  # created: provisioning
    assert backend.capacity("cpu-cluster") == 0
    clock.advance(10)
    backend.workspace.refresh_compute(backend.workspace.compute["cpu-cluster"], force=True)
    assert backend.capacity("cpu-cluster") is None  # Azure queues the runs itself


def test_a_final_read_that_keeps_failing_fails_the_job_after_a_bounded_time(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend
) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(8)
    fake.fail("Run.get_details", service_error(403, "AuthorizationFailed", "no read access"), times=100)
    assert backend.poll([ref]) == []  # retried for a while
    clock.advance(FINAL_READ_GIVE_UP_SECONDS - 1)
    assert backend.poll([ref]) == []
    clock.advance(1)
    [update] = backend.poll([ref])
    assert update.status is JobStatus.FAILED
    assert update.error is not None
    assert "could not be read" in update.error
    assert "no read access" in update.error


# -- 8. model versions are the workspace's; registration is idempotent ---------------------


def test_the_model_version_is_the_workspaces_own(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                                 backend: AzureMLBackend) -> None:
    fake.add_model("sklearn_mnist")  # registered by someone else
    fake.add_model("sklearn_mnist")
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(7)
    stored = backend.register_model(ref, model_name="sklearn_mnist", model_path="outputs/sklearn_mnist_model.pkl",
                                    version=1, tags={})
    assert (stored.version, stored.location) == (3, "sklearn_mnist:3")


def test_a_retried_registration_finds_the_model_instead_of_registering_again(
    tmp_path: Path, fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend
) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(7)
    fake.fail("Run.register_model", ConnectionError("connection reset"), after=True)  # registered, reply lost
    with pytest.raises(BackendError):
        backend.register_model(ref, model_name="m", model_path="outputs", version=1, tags={})  # a folder
    again = backend.register_model(ref, model_name="m", model_path="outputs", version=1, tags={})
    assert (again.version, len(fake.models)) == (1, 1)
