"""The Azure ML backend against the stubbed workspace, one method at a time, on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
from azureml.core import ScriptRunConfig
from azureml.data.dataset_consumption_config import DatasetConsumptionConfig
from azureml.exceptions import AuthenticationException

from service.backends.azureml import AzureMLBackend
from service.backends.base import DatasetInput, EnvironmentSpec, RunRef, RunUpdate, SubmitRequest
from service.core.errors import BackendError
from service.core.settings import REPO_ROOT, Settings
from service.core.states import JobStatus
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeAzure, FakeClock, RunScript, service_error

EXPERIMENT = "Tutorial-sklearn-mnist"
MNIST_URI = "https://azureopendatastorage.blob.core.windows.net/mnist/"
TUTORIAL_ENV = EnvironmentSpec("tutorial-env", 1, "3.11", ("azureml-defaults",), ("scikit-learn==1.9.1",))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # azureml writes ~/.azureml (discovery and snapshot caches): never the real home.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


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
    settings = Settings(data_dir=tmp_path / "data", **fields)
    return AzureMLBackend(settings, sdk=fake.sdk(), clock=clock)


@pytest.fixture
def backend(tmp_path: Path, fake: FakeAzure, clock: FakeClock) -> AzureMLBackend:
    return make_backend(tmp_path, fake, clock)


def request(tmp_path: Path, job_id: str = "JOB1", *, mode: str = "mount", uri: str | None = MNIST_URI,
            env: EnvironmentSpec = TUTORIAL_ENV, experiment: str = EXPERIMENT) -> SubmitRequest:
    dataset = DatasetInput("mnist", 1, mode, "/srv/mnist" if uri is None else None, uri)  # type: ignore[arg-type]
    return SubmitRequest(
        job_id=job_id, experiment=experiment, source_dir=REPO_ROOT / "trainer", script="train.py",
        arguments=("--data-folder", dataset, "--regularization", 0.5), compute_target="cpu-cluster",
        environment=env, tags={"team": "vision"}, run_dir=tmp_path / "runs" / job_id,
    )


def ref_for(req: SubmitRequest, run_id: str, **changes: Any) -> RunRef:
    ref = RunRef(job_id=req.job_id, run_id=run_id, experiment=req.experiment, compute_target=req.compute_target,
                 run_dir=req.run_dir)
    return replace(ref, **changes)


def advance_refs(refs: list[RunRef], updates: list[RunUpdate]) -> list[RunRef]:
    """What the poller would store: each run's new metrics cursor."""
    cursors = {u.run_id: u.metrics_cursor for u in updates}
    return [replace(r, metrics_cursor=cursors.get(r.run_id, r.metrics_cursor)) for r in refs]


# -- submit --------------------------------------------------------------------------


def test_submit_sends_a_real_script_run_config(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    run_id = backend.submit(request(tmp_path))

    [sent] = fake.submissions
    config = sent.config
    assert isinstance(config, ScriptRunConfig)
    assert (config.source_directory, config.script) == (str(REPO_ROOT / "trainer"), "train.py")
    flag, data, *rest = config.arguments
    assert (flag, rest) == ("--data-folder", ["--regularization", "0.5"])  # argv strings, as on `local`
    assert isinstance(data, DatasetConsumptionConfig)
    assert data.mode == "mount"
    assert data.dataset.path == MNIST_URI
    assert config.run_config.target == "cpu-cluster"
    env = config.run_config.environment
    assert (env.name, env.version) == ("tutorial-env", "1")  # the registered copy
    assert list(env.python.conda_dependencies.pip_packages) == ["azureml-defaults"]
    assert "scikit-learn==1.9.1" in list(env.python.conda_dependencies.conda_packages)
    assert "python=3.11" in list(env.python.conda_dependencies.conda_packages)
    assert sent.tags == {"team": "vision", "runyard_job_id": "JOB1"}
    assert run_id == sent.run_id
    assert run_id == f"{EXPERIMENT}_JOB1"  # one id per attempt: a retried submit meets its run


def test_download_mode_binds_as_download(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    backend.submit(request(tmp_path, mode="download"))
    assert fake.submissions[0].config.arguments[1].mode == "download"


def test_environment_and_dataset_are_registered_once_per_version(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend
) -> None:
    for job in ("A", "B"):
        backend.submit(request(tmp_path, job))
    assert fake.calls["Environment.register"] == 1
    assert fake.calls["Dataset.File.from_files"] == fake.calls["FileDataset.register"] == 1
    assert [d.version for d in fake.datasets["mnist"]] == [1]

    backend.submit(request(tmp_path, "C", env=replace(TUTORIAL_ENV, version=2, pip_packages=("azureml-core",))))
    assert fake.calls["Environment.register"] == 2
    assert fake.calls["Experiment.__init__"] == 1  # the experiment object is reused too


def test_a_dataset_registered_in_azure_is_fetched_by_name(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend
) -> None:
    fake.FileDataset(MNIST_URI).register(None, "mnist-azure")
    backend.submit(request(tmp_path, uri="azureml://datasets/mnist-azure/versions/1"))
    bound = fake.submissions[0].config.arguments[1]
    assert (bound.dataset.name, bound.dataset.version) == ("mnist-azure", 1)
    assert fake.calls["Dataset.File.from_files"] == 0


def test_a_server_folder_dataset_cannot_go_to_azure(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    with pytest.raises(BackendError, match="folder on the runyard server") as raised:
        backend.submit(request(tmp_path, uri=None))
    assert not raised.value.transient
    assert fake.submissions == []


@pytest.mark.parametrize(
    ("error", "transient", "message"),
    [
        (service_error(503, "ServiceUnavailable", "busy"), True, "busy"),
        (service_error(429, "TooManyRequests", "slow down"), True, "slow down"),
        (ConnectionError("connection reset"), True, "connection reset"),
        (service_error(400, "BadRequest", "bad snapshot"), False, "bad snapshot"),
        (AuthenticationException("token expired"), False, "authentication failed"),
    ],
)
def test_submit_errors_are_translated(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend, error: BaseException, transient: bool, message: str
) -> None:
    fake.fail("Experiment.submit", error)
    with pytest.raises(BackendError, match=message) as raised:
        backend.submit(request(tmp_path))
    assert raised.value.transient is transient


def test_a_hanging_call_times_out_as_transient(tmp_path: Path, fake: FakeAzure, clock: FakeClock) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_call_timeout_seconds=0.2)
    fake.hang("Experiment.submit")
    started = time.monotonic()
    with pytest.raises(BackendError, match="no answer from Azure ML within 0.2s") as raised:
        backend.submit(request(tmp_path))
    assert raised.value.transient
    assert time.monotonic() - started < 2


# -- find_run ------------------------------------------------------------------------


def test_find_run_by_tag(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) is None
    fake.add_run(experiment=EXPERIMENT, tags={"runyard_job_id": "OTHER"})
    started = fake.add_run(experiment=EXPERIMENT, tags={"runyard_job_id": req.job_id}, run_id="AnyName_1")
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) == started.run_id


def test_find_run_by_id_when_submit_died_before_tagging(
    tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend
) -> None:
    req = request(tmp_path, "JOB9.2")  # a second attempt's key
    fake.submit_loses_tags = 1
    fake.fail("Experiment.submit", ConnectionError("connection aborted"), after=True)
    fake.fail("Run.__init__", ConnectionError("connection aborted"))  # and the check for the run too
    with pytest.raises(BackendError):
        backend.submit(req)
    [lost] = fake.runs.values()
    assert lost.tags == {}
    assert lost.run_id == f"{EXPERIMENT}_JOB9-2"
    assert backend.find_run(req.job_id, EXPERIMENT, req.run_dir) == lost.run_id
    assert backend.find_run("JOB9", EXPERIMENT, req.run_dir) is None  # the first attempt is not this run


# -- poll ----------------------------------------------------------------------------


def test_poll_follows_a_run_to_completion(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                          backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    refs = [ref_for(req, backend.submit(req))]
    seen: list[tuple[str, JobStatus]] = []
    metrics: list[tuple[str, float]] = []
    for _ in range(9):
        updates = backend.poll(refs)
        refs = advance_refs(refs, updates)
        seen += [(u.backend_status, u.status) for u in updates]
        metrics += [(m.name, m.value) for u in updates for m in u.metrics]
        clock.advance(1)
    assert seen == [
        ("Queued", JobStatus.STARTING), ("Preparing", JobStatus.STARTING), ("Starting", JobStatus.STARTING),
        ("Running", JobStatus.RUNNING), ("Running", JobStatus.RUNNING), ("Running", JobStatus.RUNNING),
        ("Finalizing", JobStatus.FINALIZING), ("Completed", JobStatus.COMPLETED), ("Completed", JobStatus.COMPLETED),
    ]
    # Each point once, though get_metrics returns whole (and sometimes collapsed) lists every time.
    assert sorted(metrics) == sorted([("regularization rate", 0.5), ("loss", 0.9), ("loss", 0.5), ("loss", 0.3),
                                      ("accuracy", 0.9123)])
    log = (req.run_dir / "user_logs" / "std_log.txt").read_text()
    assert log == ("Loading data from the mounted dataset\n"
                   "Train a logistic regression model with regularization rate of 0.5\nAccuracy is 0.9123\n")
    final = backend.poll(refs)[0]
    assert final.files == ("outputs/sklearn_mnist_model.pkl", "user_logs/std_log.txt")
    assert final.started_at is not None
    assert final.ended_at is not None
    assert final.error is None
    assert fake.leaky_run_handles == 0


def test_an_uncommitted_metrics_cursor_is_read_again(tmp_path: Path, clock: FakeClock, backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(4)
    first = backend.poll([ref])[0]
    assert first.metrics_cursor == 3
    assert len(first.metrics) == 3
    again = backend.poll([ref])[0]  # the poller's commit of `first` was lost
    assert [(m.name, m.value) for m in again.metrics] == [(m.name, m.value) for m in first.metrics]
    assert backend.poll([replace(ref, metrics_cursor=3)])[0].metrics == ()


def test_failure_reason_comes_from_the_run_details(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                                   backend: AzureMLBackend) -> None:
    fake.script_for = lambda _: RunScript(statuses=[(0, "Queued"), (2, "Running"), (3, "Failed")],
                                          error={"code": "UserError", "message": "No module named 'sklearn'"})
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(3)
    [update] = backend.poll([ref])
    assert (update.backend_status, update.status) == ("Failed", JobStatus.FAILED)
    assert update.error == "the Azure ML run failed: UserError: No module named 'sklearn'"


def test_one_listing_per_experiment_whatever_the_number_of_runs(tmp_path: Path, fake: FakeAzure,
                                                               backend: AzureMLBackend) -> None:
    refs = [ref_for(request(tmp_path, f"J{e}{i}", experiment=f"exp{e}"), "")
            for e in range(2) for i in range(3)]
    refs = [replace(r, run_id=fake.add_run(experiment=r.experiment, tags={}).run_id) for r in refs]
    fake.reset_calls()
    updates = backend.poll(refs)
    assert len(updates) == 6
    # All still Queued: nothing per run. (Workspace.get is the first cycle's connection.)
    assert fake.calls == {"Workspace.get": 1, "Experiment.__init__": 2, "Experiment.get_runs": 2}


def steady_running(n_runs: int, tmp_path: Path, *, cycles: int = 30, interval: float = 2.0) -> list[int]:
    """SDK calls per poll cycle for `n_runs` running runs in one experiment, default settings."""
    clock = FakeClock()
    fake = FakeAzure(clock)
    fake.script_for = lambda _: RunScript(statuses=[(0, "Running")], metrics=[(0, "loss", 1.0)], log=[(0, "x\n")])
    settings = Settings(data_dir=tmp_path / f"n{n_runs}", **WORKSPACE_SETTINGS)  # default budget and refresh
    backend = AzureMLBackend(settings, sdk=fake.sdk(), clock=clock)
    refs = [RunRef(job_id=f"J{i}", run_id=fake.add_run(experiment=EXPERIMENT, tags={}).run_id,
                   experiment=EXPERIMENT, compute_target="cpu-cluster", run_dir=tmp_path / f"n{n_runs}" / f"J{i}")
            for i in range(n_runs)]
    counts = []
    for _ in range(cycles + 1):
        fake.reset_calls()
        refs = advance_refs(refs, backend.poll(refs))
        counts.append(sum(fake.calls.values()))
        clock.advance(interval)
    return counts


@pytest.mark.parametrize(
    ("n_runs", "first", "steady_mean", "steady_max"),
    # first cycle: Workspace.get + Experiment() + 1 listing + 3 detail calls per run read (at most 10
    # runs a cycle); then 1 listing per cycle, plus each running run's details every 10 s within that budget.
    [(1, 6, 1.6, 4), (10, 33, 7.0, 31), (100, 33, 31.0, 31)],
)
def test_sdk_calls_per_poll_cycle(tmp_path: Path, n_runs: int, first: int, steady_mean: float,
                                  steady_max: int) -> None:
    counts = steady_running(n_runs, tmp_path)
    assert (counts[0], round(mean(counts[1:]), 1), max(counts[1:])) == (first, steady_mean, steady_max)


def test_finished_runs_come_first_and_only_with_their_final_details(tmp_path: Path, fake: FakeAzure,
                                                                   clock: FakeClock) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_poll_detail_budget=2)
    fake.script_for = lambda _: RunScript(statuses=[(0, "Running"), (5, "Completed")])
    early = [fake.add_run(experiment=EXPERIMENT, tags={}) for _ in range(3)]
    clock.advance(3)
    fake.script_for = lambda _: RunScript(statuses=[(0, "Running")])
    late = [fake.add_run(experiment=EXPERIMENT, tags={}) for _ in range(2)]
    refs = [ref_for(request(tmp_path, r.run_id), r.run_id) for r in early + late]
    clock.advance(3)  # the early three have completed; the late two just started
    first = {u.run_id: u for u in backend.poll(refs)}
    done = [r.run_id for r in early if r.run_id in first]
    assert len(done) == 2
    assert all(first[d].status is JobStatus.COMPLETED and first[d].files is not None for d in done)
    assert all(first[r.run_id].files is None for r in late)  # over budget: status only, cursor kept
    assert all(first[r.run_id].metrics_cursor == 0 for r in late)
    second = {u.run_id: u for u in backend.poll(refs)}
    assert {r.run_id for r in early} - set(done) <= set(second)


def test_a_poll_builds_a_run_handle_only_for_the_runs_it_reads(tmp_path: Path, fake: FakeAzure,
                                                                 clock: FakeClock) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_poll_detail_budget=3)
    fake.script_for = lambda _: RunScript(statuses=[(0, "Running")])
    runs = [fake.add_run(experiment=EXPERIMENT, tags={}) for _ in range(40)]
    refs = [ref_for(request(tmp_path, r.run_id), r.run_id) for r in runs]
    first = backend.poll(refs)
    assert len(first) == 40  # every run reported once, from its listed status
    assert all(u.status is JobStatus.RUNNING for u in first)
    assert fake.handles_of_listed == 3  # a handle only for the detail reads of the budget
    assert fake.calls["Run.get_metrics"] == 3
    assert fake.calls["Run.__init__"] == 0  # and no extra request per run
    assert fake.leaky_run_handles == 0


def test_a_run_beyond_the_listing_page_is_read_alone(tmp_path: Path, fake: FakeAzure, backend: AzureMLBackend) -> None:
    old = fake.add_run(experiment=EXPERIMENT, tags={})
    for _ in range(500):
        fake.add_run(experiment=EXPERIMENT, tags={})
    fake.reset_calls()
    [update] = backend.poll([ref_for(request(tmp_path), old.run_id)])
    assert update.backend_status == "Queued"
    assert fake.calls["Experiment.get_runs"] == 1
    assert fake.calls["Run.__init__"] == 1
    assert fake.calls["Experiment.get_runs:next_page"] == 0  # the scan stops at one page


def test_a_deleted_run_fails_its_job(tmp_path: Path, backend: AzureMLBackend) -> None:
    gone = ref_for(request(tmp_path), "Tutorial-sklearn-mnist_deleted")
    [update] = backend.poll([gone])
    assert update.status is JobStatus.FAILED
    assert "no longer exists" in (update.error or "")


def test_a_failing_listing_is_reported_and_tried_again(tmp_path: Path, fake: FakeAzure,
                                                        backend: AzureMLBackend) -> None:
    run = fake.add_run(experiment=EXPERIMENT, tags={})
    other = fake.add_run(experiment="other", tags={})
    refs = [ref_for(request(tmp_path), run.run_id), ref_for(request(tmp_path, "J2", experiment="other"), other.run_id)]
    fake.fail("Experiment.get_runs", service_error(503), times=2)
    with pytest.raises(BackendError) as raised:  # nothing readable: the poller shows it on the jobs
        backend.poll(refs)
    assert raised.value.transient
    fake.fail("Experiment.get_runs", service_error(503))
    assert [u.run_id for u in backend.poll(refs)] == [other.run_id]  # one experiment down: the other is read
    assert [u.run_id for u in backend.poll(refs)] == [run.run_id]  # the other has nothing new


def test_unchanged_runs_are_not_reported_again(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                               backend: AzureMLBackend) -> None:
    queued = [fake.add_run(experiment=EXPERIMENT, tags={}) for _ in range(3)]
    refs = [ref_for(request(tmp_path, r.run_id), r.run_id) for r in queued]
    assert len(backend.poll(refs)) == 3
    assert backend.poll(refs) == []  # all still Queued
    clock.advance(1)
    assert [u.backend_status for u in backend.poll(refs)] == ["Preparing"] * 3
    fake.fail("Experiment.get_runs", service_error(503))
    with pytest.raises(BackendError):
        backend.poll(refs)
    assert len(backend.poll(refs)) == 3  # after an outage every run is reported once more


def test_a_hanging_listing_does_not_hang_the_poll(tmp_path: Path, fake: FakeAzure, clock: FakeClock) -> None:
    backend = make_backend(tmp_path, fake, clock, azureml_call_timeout_seconds=0.2)
    run = fake.add_run(experiment=EXPERIMENT, tags={})
    backend.workspace.experiment(EXPERIMENT)
    fake.hang("Experiment.get_runs")
    started = time.monotonic()
    with pytest.raises(BackendError, match="no answer from Azure ML within 0.2s"):
        backend.poll([ref_for(request(tmp_path), run.run_id)])
    assert time.monotonic() - started < 2


# -- cancel, files, models -----------------------------------------------------------


def test_cancel_is_sent_once_and_once_more_when_forced(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                                       backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req), cancel_requested=True)
    clock.advance(3)
    for force in (False, False, True, True):
        backend.cancel(ref, force=force)
    assert fake.calls["Run.cancel"] == 2
    assert backend.poll([ref])[0].backend_status == "CancelRequested"
    clock.advance(1)
    [update] = backend.poll([ref])
    assert (update.status, update.error) == (JobStatus.CANCELED, "canceled on request")
    assert fake.leaky_run_handles == 0


def test_fetch_file_downloads_into_the_run_folder(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                                  backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(5)
    local = backend.fetch_file(ref, "outputs/sklearn_mnist_model.pkl")
    assert local == req.run_dir / "outputs" / "sklearn_mnist_model.pkl"
    assert local.read_bytes() == b"fake pickled model"
    assert fake.calls["Run.download_file"] == 1
    clock.advance(5)
    backend.poll([ref])  # sees it Completed: its files are final from now on
    fake.reset_calls()
    backend.fetch_file(ref, "outputs/sklearn_mnist_model.pkl")
    assert fake.calls["Run.download_file"] == 0


def test_register_model_returns_the_azure_model_id(tmp_path: Path, fake: FakeAzure, clock: FakeClock,
                                                   backend: AzureMLBackend) -> None:
    req = request(tmp_path)
    ref = ref_for(req, backend.submit(req))
    clock.advance(7)
    stored = backend.register_model(ref, model_name="sklearn_mnist", model_path="outputs/sklearn_mnist_model.pkl",
                                    version=3, tags={"area": "mnist"})
    assert stored.location == "sklearn_mnist:1"  # Azure numbers its own versions
    assert fake.models[0].tags == {"area": "mnist", "runyard_job_id": "JOB1",
                                   "runyard_registration": f"{ref.run_id}/outputs/sklearn_mnist_model.pkl"}
    with pytest.raises(BackendError, match="ModelPathNotFoundException") as raised:
        backend.register_model(ref, model_name="m", model_path="outputs/nope.pkl", version=1, tags={})
    assert not raised.value.transient


# -- compute and health --------------------------------------------------------------


def test_a_missing_cluster_is_created_with_max_nodes(
    fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend
) -> None:
    assert backend.workspace.ensure_compute()
    config = fake.computes["cpu-cluster"]["config"]
    scale = config.scale_settings
    assert (config.vm_size, scale.minimum_node_count, scale.maximum_node_count) == ("STANDARD_D2_V2", 0, 4)
    assert scale.idle_seconds_before_scaledown == 1800
    [info] = backend.describe()
    assert (info.name, info.kind, info.state, info.max_nodes) == ("cpu-cluster", "amlcompute", "provisioning", 4)
    clock.advance(10)
    assert backend.describe()[0].state == "ready"


def test_an_existing_cluster_is_attached(fake: FakeAzure, backend: AzureMLBackend) -> None:
    fake.add_compute("cpu-cluster", nodes=2)
    assert backend.workspace.ensure_compute()
    assert fake.calls["ComputeTarget.create"] == 0
    [info] = backend.describe()
    assert (info.state, info.current_nodes, info.error) == ("ready", 2, None)


def test_a_cluster_that_cannot_be_created_shows_its_error(fake: FakeAzure, backend: AzureMLBackend) -> None:
    fake.fail("ComputeTarget.create", service_error(403, "AuthorizationFailed", "not allowed to create computes"))
    assert not backend.workspace.ensure_compute()
    [info] = backend.describe()
    assert info.state == "error"
    assert "not allowed to create computes" in (info.error or "")


def test_check_reports_an_authentication_failure(fake: FakeAzure, clock: FakeClock, backend: AzureMLBackend) -> None:
    fake.auth_error = AuthenticationException("AADSTS7000215: Invalid client secret provided.")
    with pytest.raises(BackendError, match="authentication failed: .*Invalid client secret") as raised:
        backend.check()
    assert not raised.value.transient
    fake.auth_error = None
    with pytest.raises(BackendError):
        backend.check()  # not retried at once...
    clock.advance(11)
    backend.check()  # ...but after a pause
    assert isinstance(fake.auths[-1], fake.sdk().ServicePrincipalAuthentication)


def test_many_active_runs_are_found_by_listing_more_pages(tmp_path: Path, fake: FakeAzure,
                                                          backend: AzureMLBackend) -> None:
    runs = [fake.add_run(experiment=EXPERIMENT, tags={}) for _ in range(600)]
    fake.reset_calls()
    updates = backend.poll([ref_for(request(tmp_path), r.run_id) for r in runs])
    assert len(updates) == 600
    assert fake.calls["Run.__init__"] == 0  # no run read alone
    assert fake.calls["Experiment.get_runs"] == 1
