"""A stubbed Azure ML workspace: fakes of exactly the azureml-core surface runyard uses.

`FakeAzure().sdk()` is an `AzureSdk` whose Workspace, Experiment, Run, ComputeTarget,
AmlCompute, Environment and Dataset are fakes with azureml-core's own signatures (checked by
tests/unit/test_azureml_contract.py), while ScriptRunConfig, CondaDependencies,
DatasetConsumptionConfig, the auth classes and the exceptions are the real ones. So the
fake `Experiment.submit` receives the real `ScriptRunConfig` Azure would be sent.

Runs move through Azure's status strings on a `FakeClock` the test advances; they log
metrics in `get_metrics` shapes; any call can be told to fail (before or after it acts),
to hang, or to raise the SDK's own exception types; every call is counted.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import os
import posixpath
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from azureml._base_sdk_common.common import get_http_exception_response_string
from azureml._model_management._util import webservice_name_validation
from azureml._restclient import models as rest_models
from azureml._restclient.models.error_response import ErrorResponseException
from azureml._vendor.azure_cli_core.azclierror import AuthenticationError, AzureConnectionError
from azureml.core import Environment as RealEnvironment
from azureml.core import ScriptRunConfig
from azureml.core.authentication import MsiAuthentication, ServicePrincipalAuthentication
from azureml.core.compute import AmlCompute as RealAmlCompute
from azureml.core.compute.amlcompute import AmlComputeProvisioningConfiguration, AmlComputeStatus
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.model import InferenceConfig
from azureml.core.run import _RunBase  # where Run.__init__ sends its **kwargs
from azureml.core.script_run_config import submit as real_script_run_submit
from azureml.core.webservice import AciWebservice, AksWebservice
from azureml.core.webservice.aks import AksServiceDeploymentConfiguration
from azureml.data._dataprep_helper import get_dataprep_missing_message
from azureml.data.dataset_consumption_config import DatasetConsumptionConfig
from azureml.exceptions import (
    ComputeTargetException,
    ExperimentExecutionException,
    ModelPathNotFoundException,
    ServiceException,
    SnapshotException,
    UserErrorException,
    WebserviceException,
)
from msrest import Deserializer

from service.backends.azureml_sdk import AzureSdk
from tests.fakes.azureml_serving import FakeServices

EPOCH = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LOG_FILE = "user_logs/std_log.txt"
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
CANCEL_SECONDS = 1.0
PROVISION_SECONDS = 5.0
PAGE_SIZE = 500  # one `runs:query` page, as azureml._restclient.constants.DEFAULT_PAGE_SIZE
_EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_URL = re.compile(r"^(https?|adl|wasbs?|abfss?)://")


class FakeClock:
    """Seconds that pass only when the test says so; thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def datetime(self, at: float | None = None) -> datetime:
        return EPOCH + timedelta(seconds=self() if at is None else at)


class ScaledClock(FakeClock):
    """Fake seconds that pass `speed` times faster than real ones: runs move while the service polls."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self._origin, self._speed = time.monotonic(), speed

    def __call__(self) -> float:
        return super().__call__() + (time.monotonic() - self._origin) * self._speed


def service_error(status: int, code: str = "ServiceError", message: str = "the service said no") -> ServiceException:
    """A real `ServiceException` as the SDK raises it for an HTTP `status` reply."""
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"error": {"code": code, "message": message}}).encode()
    response.headers["Content-Type"] = "application/json"
    deserializer = Deserializer({k: v for k, v in vars(rest_models).items() if isinstance(v, type)})
    return ServiceException(ErrorResponseException(deserializer, response))


def _reply(status: int, code: str, message: str, url: str) -> requests.Response:
    response = requests.Response()
    response.status_code, response.url = status, url
    response._content = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
    response.headers["Content-Type"] = "application/json"
    return response


def execution_error(status: int, code: str = "ServiceError", message: str = "the service said no",
                    url: str = "https://fake.api.azureml.ms/execution/v1.0/startrun") -> ExperimentExecutionException:
    """What `Experiment.submit` raises for an HTTP `status` reply: `_execution._commands._raise_request_error`
    puts the reply, as JSON with its `status_code`, into the message."""
    return ExperimentExecutionException(get_http_exception_response_string(_reply(status, code, message, url)))


def snapshot_error(status: int | None = None) -> SnapshotException:
    """What the snapshot upload of a submit raises: `_restclient/snapshots_client.py` builds it from the
    reply (`get_http_exception_response_string`), or from its size check."""
    if status is not None:
        reply = _reply(status, "ServiceError", "snapshot upload failed", "https://fake.api.azureml.ms/snapshot")
        return SnapshotException(get_http_exception_response_string(reply))
    return SnapshotException(
        "====================================================================\n\n"
        "While attempting to take snapshot of /srv/trainer\n"
        "Your total snapshot size exceeds the limit of 300.0 MB.\n"
        "Please see http://aka.ms/aml-largefiles on how to work with large files.\n\n"
        "====================================================================\n\n")


def msi_connection_error() -> AzureConnectionError:
    """What `MSIAuthenticationWrapper.set_token` raises when the identity endpoint cannot be reached."""
    return AzureConnectionError("Failed to connect to MSI. Please make sure MSI is configured correctly and check "
                                "the network connection.\nError detail: HTTPConnectionPool(host='169.254.169.254')")


def msi_auth_error() -> AuthenticationError:
    """The vendored azure-cli error the MSI wrapper raises where managed identity is unsupported."""
    return AuthenticationError("VM SSH currently doesn't support managed identity or Cloud Shell.")


@dataclass
class RunScript:
    """What a fake run does, in seconds after its submit."""

    statuses: list[tuple[float, str]] = field(default_factory=lambda: [
        (0, "Queued"), (1, "Preparing"), (2, "Starting"), (3, "Running"), (6, "Finalizing"), (7, "Completed"),
    ])
    metrics: list[tuple[float, str, Any]] = field(default_factory=list)  # (at, name, value): run.log
    log: list[tuple[float, str]] = field(default_factory=list)  # (at, text appended to std_log.txt)
    files: dict[str, tuple[float, bytes]] = field(default_factory=dict)  # name -> (at, content)
    error: dict[str, Any] | None = None  # get_details()["error"] once Failed


def tutorial_script(regularization: float = 0.5, accuracy: float = 0.9123) -> RunScript:
    """The seed tutorial's train.py as a run script: data, training, accuracy, a model file."""
    return RunScript(
        metrics=[(3, "regularization rate", regularization), (3, "loss", 0.9), (4, "loss", 0.5), (5, "loss", 0.3),
                 (5, "accuracy", accuracy)],
        log=[(3, "Loading data from the mounted dataset\n"),
             (4, f"Train a logistic regression model with regularization rate of {regularization}\n"),
             (5, f"Accuracy is {accuracy}\n")],
        files={"outputs/sklearn_mnist_model.pkl": (5, b"fake pickled model")},
    )


def default_script(config: ScriptRunConfig) -> RunScript:
    """The tutorial script, with the `--regularization` the job was given."""
    args = [str(a) for a in config.arguments or []]
    reg = float(args[args.index("--regularization") + 1]) if "--regularization" in args[:-1] else 0.01
    return tutorial_script(regularization=reg)


class Timeline:
    """How a fake run or job moves: its script's statuses, output and files, seen from `now`.

    Shared by the v1 fake's runs and the v2 fake's jobs, which both carry `submitted_at`,
    `script` and `cancel_at`.
    """

    submitted_at: float
    script: RunScript
    cancel_at: float | None

    def status(self, now: float) -> str:
        if self.cancel_at is not None and now >= self.cancel_at:
            return "Canceled" if now >= self.cancel_at + CANCEL_SECONDS else "CancelRequested"
        current = "NotStarted"
        for at, status in self.script.statuses:
            if now >= self.submitted_at + at:
                current = status
        return current

    def end(self) -> float:
        """When the run stops producing output: its terminal status or its cancel."""
        ends = [self.submitted_at + at for at, s in self.script.statuses if s in TERMINAL]
        if self.cancel_at is not None:
            ends.append(self.cancel_at)
        return min(ends, default=float("inf"))

    def happened(self, at: float, now: float) -> bool:
        return self.submitted_at + at <= min(now, self.end())

    def log_text(self, now: float) -> str:
        return "".join(text for at, text in self.script.log if self.happened(at, now))

    def files(self, now: float) -> dict[str, bytes]:
        found = {name: content for name, (at, content) in self.script.files.items() if self.happened(at, now)}
        if self.log_text(now):
            found[LOG_FILE] = self.log_text(now).encode()
        return found

    def started(self) -> float | None:
        return next((self.submitted_at + at for at, s in self.script.statuses if s == "Running"), None)


@dataclass
class RunRecord(Timeline):
    """A run as the fake service stores it."""

    run_id: str
    experiment: str
    number: int
    submitted_at: float
    script: RunScript
    tags: dict[str, str]
    config: ScriptRunConfig
    target: str
    cancel_at: float | None = None


@dataclass
class Submission:
    config: ScriptRunConfig
    tags: dict[str, str] | None
    kwargs: dict[str, Any]
    run_id: str


@dataclass
class _Fault:
    error: BaseException
    after: bool


class FaultSwitches:
    """Call counts and injected faults of a stubbed workspace (the v1 and the v2 fakes have the same).

    Every faked SDK call does `enter(name)` before acting and `leave(name)` after: a test makes
    calls fail (before or after they act), hang until `release()`, or fail authentication.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.auth_error: BaseException | None = None
        self._faults: dict[str, list[_Fault]] = {}
        self._hangs: set[str] = set()
        self._hang_once: Counter[str] = Counter()
        self._released = threading.Event()
        self._lock = threading.RLock()

    def fail(self, call: str, error: BaseException, *, times: int = 1, after: bool = False) -> None:
        """Make the next `times` calls of `call` raise `error`; `after`: once the call has acted."""
        self._faults.setdefault(call, []).extend(_Fault(error, after) for _ in range(times))

    def hang(self, call: str) -> None:
        """Make calls of `call` block until `release()`."""
        self._hangs.add(call)

    def hang_next(self, call: str) -> None:
        """Make only the next call of `call` block until `release()`; it then completes."""
        self._hang_once[call] += 1

    def release(self) -> None:
        self._hangs.clear()
        self._released.set()

    def reset_calls(self) -> None:
        self.calls.clear()

    def enter(self, call: str) -> None:
        with self._lock:
            self.calls[call] += 1
            once = self._hang_once[call] > 0
            if once:
                self._hang_once[call] -= 1
        if once or call in self._hangs:
            self._released.wait(timeout=30)
        if self.auth_error is not None:
            raise self.auth_error
        self._raise(call, after=False)

    def leave(self, call: str) -> None:
        self._raise(call, after=True)

    def _raise(self, call: str, *, after: bool) -> None:
        with self._lock:
            pending = self._faults.get(call, [])
            fault = next((f for f in pending if f.after == after), None)
            if fault is not None:
                pending.remove(fault)
        if fault is not None:
            raise fault.error


class FakeAzure(FaultSwitches):
    """The stub service behind the fake SDK classes: runs, compute, assets, faults, call counts."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FakeClock()
        self.runs: dict[str, RunRecord] = {}
        self.submissions: list[Submission] = []
        self.experiments: set[str] = set()
        self.computes: dict[str, dict[str, Any]] = {}
        self.environments: list[RealEnvironment] = []
        self.datasets: dict[str, list[FileDataset]] = {}
        self.models: list[ModelRecord] = []
        # Calls that fail on the service side but which the SDK swallows: `get_metrics` returns {}
        # when listing the metric names fails (_restclient/metrics_client.py get_metrics_for_run_v2).
        self.metric_listing_failures = 0
        # Dataset.File.from_files needs azureml-dataset-runtime (the `azure` extra); False: the
        # ImportError the SDK raises without it (azureml/data/_dataprep_helper.py dataprep()).
        self.dataset_runtime_installed = True
        self.auths: list[Any] = []
        self.script_for: Callable[[ScriptRunConfig], RunScript] = default_script
        self.submit_loses_tags = 0  # the next submits die between creating the run and tagging it
        self.leaky_run_handles = 0  # Run(...) built without clean_up=False (facts §6.7)
        self.handles_of_listed = 0  # Run handles built from listed records (run_of_listed)
        self.finished: Counter[str] = Counter()  # calls that returned or raised (a hung one counts once done)
        self._outside_config: ScriptRunConfig | None = None
        self.Workspace = _bind(Workspace, self)
        self.Experiment = _bind(Experiment, self)
        self.Run = _bind(Run, self)
        self.ComputeTarget = _bind(ComputeTarget, self)
        self.AmlCompute = _bind(AmlCompute, self)
        self.Environment = _bind(Environment, self)
        self.FileDatasetFactory = _bind(FileDatasetFactory, self)
        self.FileDataset = _bind(FileDataset, self)
        self.Dataset = _bind(Dataset, self, File=self.FileDatasetFactory)
        self.Model = _bind(Model, self)
        self.Webservice = _bind(Webservice, self)
        self.services = FakeServices(self.clock)

    def sdk(self) -> AzureSdk:
        """The SDK surface the backend is given: these fakes plus the real offline classes."""
        return AzureSdk(
            Workspace=self.Workspace, Experiment=self.Experiment, Run=self.Run, ComputeTarget=self.ComputeTarget,
            AmlCompute=self.AmlCompute, Environment=self.Environment, CondaDependencies=CondaDependencies,
            Dataset=self.Dataset, ScriptRunConfig=ScriptRunConfig,
            ServicePrincipalAuthentication=ServicePrincipalAuthentication, MsiAuthentication=MsiAuthentication,
            Model=self.Model, open_file_dataset=self.open_file_dataset,
            Webservice=self.Webservice, AciWebservice=AciWebservice, AksWebservice=AksWebservice,
            InferenceConfig=InferenceConfig, list_runs=self.list_runs, run_of_listed=self.run_of_listed,
        )

    def list_runs(self, experiment: Experiment) -> Iterator[rest_models.RunDto]:
        """`azureml_sdk.list_run_records`: the same `runs:query` pages as `Experiment.get_runs`
        (counted, failed and hung under that name), as the SDK's own `RunDto`s, no `Run` each."""
        call = "Experiment.get_runs"
        try:
            self.enter(call)
            now = self.clock()
            records = sorted((r for r in self.runs.values() if r.experiment == experiment.name),
                             key=lambda r: r.number, reverse=True)
            self.leave(call)
        finally:
            with self._lock:
                self.finished[call] += 1

        def pages() -> Iterator[rest_models.RunDto]:
            for index, record in enumerate(records):
                if index and index % PAGE_SIZE == 0:
                    self.calls[f"{call}:next_page"] += 1
                yield rest_models.RunDto(run_id=record.run_id, status=record.status(now),
                                         experiment_id=experiment.name)

        return pages()

    def run_of_listed(self, experiment: Experiment, record: rest_models.RunDto) -> Run:
        """`azureml_sdk.run_of_record`: a handle on a listed run, no request (status as listed)."""
        stored = self.runs.get(record.run_id)
        if stored is None:
            raise AssertionError(f"runyard built a handle for a run it never listed: {record.run_id}")
        self.handles_of_listed += 1
        run = self.Run._listed(experiment, stored)
        run._status = record.status
        return run

    def open_file_dataset(self, name: str) -> FileDataset:
        """`MNIST.get_file_dataset()`: offline in azureml-opendatasets too, a lazy FileDataset of the blob."""
        self.calls["opendatasets.MNIST.get_file_dataset"] += 1
        if name != "mnist":
            raise AssertionError(f"runyard asked for an open dataset it does not know: {name}")
        return self.FileDataset("wasbs://mnist@azureopendatastorage.blob.core.windows.net/*.gz")

    # -- test controls -------------------------------------------------------------

    def wait_finished(self, call: str, count: int, timeout: float = 10.0) -> None:
        """Block until `count` calls of `call` have ended (a released call finishes in its thread)."""
        deadline = time.monotonic() + timeout
        while self.finished[call] < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{call} ended {self.finished[call]} times, not {count}")
            time.sleep(0.01)

    def add_model(self, name: str, *, tags: dict[str, str] | None = None) -> ModelRecord:
        """A model version registered in the workspace by someone else."""
        with self._lock:
            version = 1 + sum(1 for m in self.models if m.name == name)
            model = ModelRecord(name=name, version=version, tags=dict(tags or {}), run_id="", experiment_name="",
                                path=name)
            self.models.append(model)
        return model

    def add_compute(self, name: str, *, state: str = "Succeeded", nodes: int = 0) -> None:
        """A cluster that already exists in the workspace."""
        self.computes[name] = {"state": state, "nodes": nodes, "config": None, "created_at": self.clock()}

    def add_run(self, *, experiment: str, tags: dict[str, str], run_id: str | None = None) -> RunRecord:
        """A run started outside this process (by a previous one, say)."""
        with self._lock:
            if self._outside_config is None:  # building one costs ~30 ms: share it
                self._outside_config = ScriptRunConfig(source_directory=".", script="train.py")
            record = self._new_run(experiment, run_id, tags, self._outside_config)
        return record

    def runs_tagged(self, key: str, value: str) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.tags.get(key) == value]

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Around each SDK call: nothing here; one workspace shared by processes syncs its state
        (tests/fakes/azureml_shared.py)."""
        return contextlib.nullcontext()

    # -- what the fake classes use -------------------------------------------------

    def _new_run(self, experiment: str, run_id: str | None, tags: dict[str, str], config: ScriptRunConfig) -> RunRecord:
        now = self.clock()
        run_id = run_id or f"{experiment}_{int(EPOCH.timestamp() + now)}_{secrets.token_hex(4)}"
        if run_id in self.runs:
            # UNVERIFIED against live Azure: the status and code of a run id that is taken.
            raise execution_error(409, "Conflict", f"A run with id {run_id} already exists",
                                  url=f"https://fake.api.azureml.ms/execution/v1.0/startrun?runId={run_id}")
        record = RunRecord(run_id=run_id, experiment=experiment, number=len(self.runs) + 1, submitted_at=now,
                           script=self.script_for(config), tags=dict(tags), config=config,
                           target=str(config.run_config.target))
        self.runs[run_id] = record
        return record


def _bind(cls: type, azure: FakeAzure, **extra: Any) -> type:
    """A subclass of a fake class wired to one FakeAzure (signatures unchanged)."""
    return type(cls.__name__, (cls,), {"_azure": azure, "__module__": cls.__module__, **extra})


def sdk_call(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count the call, apply hangs and faults; `functools.wraps` keeps the signature."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(owner: Any, *args: Any, **kwargs: Any) -> Any:
            azure: FakeAzure = owner._azure
            try:
                with azure.shared():
                    azure.enter(name)
                    result = fn(owner, *args, **kwargs)
                    azure.leave(name)
            finally:
                with azure._lock:
                    azure.finished[name] += 1
            return result

        return wrapper

    return decorate


# -- the fake SDK classes (same names and signatures as azureml-core's) --------------


class Workspace:
    _azure: FakeAzure

    def __init__(self, subscription_id, resource_group, workspace_name, auth=None, _location=None,
                 _disable_service_check=False, _workspace_id=None, sku="basic", tags=None, _cloud="AzureCloud"):
        if auth is None:
            raise AssertionError("runyard must never fall back to interactive login (auth=None)")
        self.subscription_id, self.resource_group, self.name = subscription_id, resource_group, workspace_name
        self.auth, self.cloud = auth, _cloud
        self._azure.auths.append(auth)

    @classmethod
    @sdk_call("Workspace.get")
    def get(cls, name, auth=None, subscription_id=None, resource_group=None, location=None, cloud="AzureCloud",
            id=None):
        return cls(subscription_id, resource_group, name, auth=auth, _cloud=cloud)

    @classmethod
    @sdk_call("Workspace.from_config")
    def from_config(cls, path=None, auth=None, _logger=None, _file_name=None):
        config_path = Path(path or ".")
        if config_path.is_dir():
            config_path = config_path / "config.json"
        if not config_path.is_file():
            raise UserErrorException(f"The workspace configuration file config.json, could not be found in {path}")
        data = json.loads(config_path.read_text())
        return cls(data["subscription_id"], data["resource_group"], data["workspace_name"], auth=auth)

    @sdk_call("Workspace.get_details")
    def get_details(self):
        return {"name": self.name, "subscriptionId": self.subscription_id, "resourceGroup": self.resource_group}


class Experiment:
    _azure: FakeAzure

    @sdk_call("Experiment.__init__")
    def __init__(self, workspace, name, _skip_name_validation=False, _id=None, _archived_time=None,
                 _create_in_cloud=True, _experiment_dto=None, **kwargs):
        if not _EXPERIMENT_NAME.match(name):
            raise UserErrorException(f"Experiment name {name!r} is invalid")
        self.workspace, self.name = workspace, name
        self._azure.experiments.add(name)

    @sdk_call("Experiment.submit")
    def submit(self, config, tags=None, **kwargs):
        azure = self._azure
        # Experiment.submit hands **kwargs to the config's submit function (script_run_config.submit):
        # a keyword it does not take is a TypeError there too.
        inspect.signature(real_script_run_submit).bind(config, self.workspace, self.name, **kwargs)
        if not isinstance(config, ScriptRunConfig):
            raise TypeError(f"submit expects a ScriptRunConfig, got {type(config).__name__}")
        if any(isinstance(arg, FileDataset) for arg in config.arguments or []):
            raise UserErrorException("a Dataset must be passed as a DatasetConsumptionConfig (as_mount/as_download)")
        if not (Path(config.source_directory) / config.script).is_file():
            raise ExperimentExecutionException(
                f"{config.script} script path doesn't exist. The script should be inside the project folder")
        with azure._lock:
            record = azure._new_run(self.name, kwargs.get("run_id"), {}, config)
            azure.submissions.append(Submission(config, tags, dict(kwargs), record.run_id))
            if azure.submit_loses_tags:
                azure.submit_loses_tags -= 1
            else:
                record.tags.update(tags or {})
        return azure.Run._listed(self, record)

    @sdk_call("Experiment.get_runs")
    def get_runs(self, type=None, tags=None, properties=None, include_children=False):
        azure = self._azure
        records = sorted((r for r in azure.runs.values() if r.experiment == self.name),
                         key=lambda r: r.number, reverse=True)
        if isinstance(tags, str):
            records = [r for r in records if tags in r.tags]
        elif isinstance(tags, dict):
            records = [r for r in records if all(r.tags.get(k) == v for k, v in tags.items())]

        def pages() -> Iterator[Run]:
            for index, record in enumerate(records):
                if index and index % PAGE_SIZE == 0:
                    azure.calls["Experiment.get_runs:next_page"] += 1
                yield azure.Run._listed(self, record)

        return pages()


_RUN_KWARGS = {*inspect.signature(_RunBase.__init__).parameters, "clean_up", "_parent_logger"} - {"self", "kwargs"}


class Run:
    _azure: FakeAzure

    @sdk_call("Run.__init__")
    def __init__(self, experiment, run_id, outputs=None, **kwargs):
        # Run.__init__ hands **kwargs to _RunBase.__init__, which pops `clean_up`, takes its named
        # parameters and hands the rest up its bases (ChainedIdentity takes `_parent_logger`).
        unknown = set(kwargs) - _RUN_KWARGS
        if unknown:
            raise TypeError(f"Run got unexpected keyword arguments {sorted(unknown)}")
        if kwargs.get("clean_up", True):
            self._azure.leaky_run_handles += 1
        record = self._azure.runs.get(run_id)
        if record is None or record.experiment != experiment.name:
            raise service_error(404, "NotFound", f"Run {run_id} was not found")
        self._setup(experiment, record)

    @classmethod
    def _listed(cls, experiment: Experiment, record: RunRecord) -> Run:
        run = cls.__new__(cls)
        run._setup(experiment, record)
        return run

    def _setup(self, experiment: Experiment, record: RunRecord) -> None:
        self.experiment, self._record = experiment, record
        self._status = record.status(self._azure.clock())  # a snapshot, like the SDK's cached run DTO

    @property
    def id(self):
        return self._record.run_id

    @property
    def status(self):
        return self._status

    @property
    def tags(self):
        return dict(self._record.tags)

    @sdk_call("Run.get_status")
    def get_status(self):
        self._status = self._record.status(self._azure.clock())
        return self._status

    @sdk_call("Run.get_metrics")
    def get_metrics(self, name=None, recursive=False, run_type=None, populate=False):
        now, record = self._azure.clock(), self._record
        with self._azure._lock:
            if self._azure.metric_listing_failures and name is None:
                self._azure.metric_listing_failures -= 1
                return {}  # the SDK logs the failed listing at debug level and returns what it has
        values: dict[str, list[Any]] = {}
        for at, metric, value in record.script.metrics:
            if record.happened(at, now) and name in (None, metric):
                values.setdefault(metric, []).append(value)
        # The SDK collapses a one-element list to a scalar (facts §6.5).
        return {k: v[0] if len(v) == 1 else v for k, v in values.items()}

    @sdk_call("Run.get_file_names")
    def get_file_names(self):
        return sorted(self._record.files(self._azure.clock()))

    @sdk_call("Run.download_file")
    def download_file(self, name, output_file_path=None, _validate_checksum=False):
        files = self._record.files(self._azure.clock())
        if name not in files:
            raise UserErrorException(f"File with path {name} was not found in the run's artifacts")
        Path(output_file_path or Path(name).name).write_bytes(files[name])

    @sdk_call("Run.get_details")
    def get_details(self):
        azure, record = self._azure, self._record
        now = azure.clock()
        status = record.status(now)
        details: dict[str, Any] = {"runId": record.run_id, "target": record.target, "status": status,
                                   "properties": {}, "inputDatasets": [], "outputDatasets": [],
                                   "logFiles": {LOG_FILE: f"https://fake.blob/{record.run_id}/{LOG_FILE}"}}
        started = record.started()
        if started is not None and now >= started:
            details["startTimeUtc"] = azure.clock.datetime(started).isoformat().replace("+00:00", "Z")
        if status in TERMINAL:
            details["endTimeUtc"] = azure.clock.datetime(min(now, record.end())).isoformat().replace("+00:00", "Z")
        if status == "Failed":
            details["error"] = {"error": record.script.error or {"code": "UserError", "message": "script failed"}}
        return details

    @sdk_call("Run.cancel")
    def cancel(self):
        azure, record, now = self._azure, self._record, self._azure.clock()
        if record.cancel_at is None and record.status(now) not in TERMINAL:
            record.cancel_at = now
        # Then RunHistoryFacade.cancel flushes: MetricsClient.flush waits up to 240 s for metric
        # ingestion unless os.getenv('AZUREML_FLUSH_INGEST_WAIT', True) is falsy.
        if os.getenv("AZUREML_FLUSH_INGEST_WAIT", True):
            azure.calls["Run.cancel:ingest_wait"] += 1
            azure._released.wait(timeout=30)

    @sdk_call("Run.register_model")
    def register_model(self, model_name, model_path=None, tags=None, properties=None, model_framework=None,
                       model_framework_version=None, description=None, datasets=None, sample_input_dataset=None,
                       sample_output_dataset=None, resource_configuration=None, **kwargs):
        azure, record = self._azure, self._record
        path = posixpath.normpath(model_path or model_name)
        files = record.files(azure.clock())
        # RunHistoryFacade.register_model looks the path up as an artifact *prefix*: a folder works.
        if not any(f.startswith(path) for f in files):
            raise ModelPathNotFoundException(
                f"Could not locate the provided model_path {path} in the set of files uploaded to the run: "
                f"{sorted(files)}\n                See https://aka.ms/run-logging for more details.")
        with azure._lock:
            # The workspace numbers versions per name, whoever registered the earlier ones.
            version = 1 + sum(1 for m in azure.models if m.name == model_name)
            model = ModelRecord(name=model_name, version=version, tags=dict(tags or {}), run_id=record.run_id,
                                experiment_name=record.experiment, path=path)
            azure.models.append(model)
        return model


class Model:
    _azure: FakeAzure

    @sdk_call("Model.__init__")
    def __init__(self, workspace, name=None, id=None, tags=None, properties=None, version=None, run_id=None,
                 model_framework=None, expand=True, **kwargs):
        if id is not None:
            name, _, number = id.partition(":")
            version = int(number) if number else None
        found = [m for m in self._azure.models if m.name == name and (version is None or m.version == version)]
        if not found:
            raise WebserviceException(f"ModelNotFound: Model with id {name}:{version} not found in provided workspace")
        self._record = max(found, key=lambda m: m.version)
        self.workspace, self.name, self.version = workspace, self._record.name, self._record.version
        self.id, self.tags, self.run_id = self._record.id, dict(self._record.tags), self._record.run_id

    @classmethod
    @sdk_call("Model.deploy")
    def deploy(cls, workspace, name, models, inference_config=None, deployment_config=None, deployment_target=None,
               overwrite=False, show_output=False):
        azure = cls._azure
        webservice_name_validation(name)  # the SDK's own check, before any request
        if not isinstance(inference_config, InferenceConfig):
            raise AssertionError("runyard deploys the tutorial's way: with an InferenceConfig")
        # AksWebservice._deploy's own checks (azureml/core/webservice/aks.py), same exception and words.
        if isinstance(deployment_config, AksServiceDeploymentConfiguration):
            if deployment_target is None and getattr(deployment_config, "compute_target_name", None) is None:
                raise WebserviceException("Must have a deployment target for an AKS web service.")
            if deployment_target is not None:
                deployment_config.compute_target_name = deployment_target.name
        if name in azure.services.records and not overwrite:
            # UNVERIFIED against live Azure: the wording of the name-validation reply.
            raise WebserviceException(f"Service {name} with the same name already exists, please use a different "
                                      "service name or delete the existing service.")
        source = Path(inference_config.source_directory or ".")
        if not (source / inference_config.entry_script).is_file():
            raise WebserviceException(f"Error, provided entry_script {inference_config.entry_script} does not "
                                      f"exist in {source}")
        if len(models) != 1:
            raise AssertionError("the stub lays out one model's files")
        record = models[0]._record
        run = azure.runs[record.run_id]
        files = run.files(azure.clock())
        prefix = posixpath.dirname(record.path)
        # The registered asset keeps the file (or folder) under its own name: AZUREML_MODEL_DIR/<basename...>.
        model_files = {posixpath.relpath(f, prefix or "."): content for f, content in files.items()
                       if f == record.path or f.startswith(record.path + "/")}
        auth = deployment_config.auth_enabled if deployment_config is not None else None
        azure.services.create(
            name, source_dir=source, entry_script=inference_config.entry_script, model_files=model_files,
            model_subdir=f"{record.name}/{record.version}",
            auth_enabled=auth is not False,  # ACI defaults to no auth, runyard always asks for a key
            details={"models": [m.id for m in models], "inference_config": inference_config,
                     "deployment_config": deployment_config, "deployment_target": deployment_target},
        )
        return azure.Webservice(workspace, name)

    @classmethod
    @sdk_call("Model.list")
    def list(cls, workspace, name=None, tags=None, properties=None, run_id=None, latest=False, dataset_id=None,
             expand=True, page_count=255, model_framework=None):
        if tags is not None and type(tags) is not list:
            raise UserErrorException(f'Expected tags must be list type. Ex. ["key", ["key2", "key2 value"]]: '
                                     f"provided {type(tags)}")

        def matches(model: ModelRecord) -> bool:
            for tag in tags or []:
                if isinstance(tag, list) and model.tags.get(tag[0]) != tag[1]:
                    return False
                if isinstance(tag, str) and tag not in model.tags:
                    return False
            return (name is None or model.name == name) and (run_id is None or model.run_id == run_id)

        found = [m for m in cls._azure.models if matches(m)]
        if latest:
            newest: dict[str, ModelRecord] = {}
            for m in found:
                if m.name not in newest or m.version > newest[m.name].version:
                    newest[m.name] = m
            found = list(newest.values())
        return found


@dataclass
class ModelRecord:
    """A registered model with the attributes the SDK's Model has (core/model.py `Model.__init__`)."""

    name: str
    version: int
    tags: dict[str, str]
    run_id: str
    experiment_name: str
    path: str

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


class Webservice:
    """`Webservice(ws, name)`: the service's state as of this read (azureml-core builds it from one GET)."""

    _azure: FakeAzure

    @sdk_call("Webservice.__init__")
    def __init__(self, workspace, name):
        record = self._azure.services.records.get(name)
        if record is None:
            raise WebserviceException(f"WebserviceNotFound: Webservice with name {name} not found in provided "
                                      "workspace")
        self.workspace, self.name, self._record = workspace, name, record
        self.state = self._azure.services.state(record)
        self.error = record.error if self.state == "Failed" else None
        self.auth_enabled = record.auth_enabled
        self.compute_type = "AKS" if record.details.get("deployment_target") is not None else "ACI"
        self.scoring_uri = record.server.uri if self.state == "Healthy" and record.server else None

    @sdk_call("Webservice.get_keys")
    def get_keys(self):
        return self._record.keys

    @sdk_call("Webservice.get_logs")
    def get_logs(self, num_lines=5000, init=False):
        return "\n".join(self._record.logs.splitlines()[-num_lines:])

    @sdk_call("Webservice.delete")
    def delete(self):
        self._azure.services.delete(self.name)
        self.state = "Deleting"


class ComputeTarget:
    _azure: FakeAzure

    @sdk_call("ComputeTarget.__init__")
    def __init__(self, workspace, name):
        if name not in self._azure.computes:
            raise ComputeTargetException(f"ComputeTargetNotFound: Compute Target with name {name} not found in "
                                         "provided workspace")
        self.workspace, self.name = workspace, name

    @classmethod
    @sdk_call("ComputeTarget.create")
    def create(cls, workspace, name, provisioning_configuration):
        azure = cls._azure
        if name.lower() in {"local", "amlcompute", "containerinstance"}:
            raise UserErrorException(f"Please specify a different target name. {name} is a reserved name.")
        if not isinstance(provisioning_configuration, AmlComputeProvisioningConfiguration):
            raise ComputeTargetException("Invalid provisioning configuration")
        azure.computes[name] = {"state": "Creating", "nodes": 0, "config": provisioning_configuration,
                                "created_at": azure.clock()}
        target = azure.AmlCompute.__new__(azure.AmlCompute)
        target.workspace, target.name = workspace, name
        return target

    @property
    def provisioning_state(self) -> str:
        record = self._azure.computes[self.name]
        if record["state"] == "Creating" and self._azure.clock() >= record["created_at"] + PROVISION_SECONDS:
            record["state"] = "Succeeded"
        return str(record["state"])

    @sdk_call("AmlCompute.get_status")
    def get_status(self):
        state = self.provisioning_state
        if state == "Creating":
            return None  # the SDK prints "AmlCompute is getting created..." and returns None
        record = self._azure.computes[self.name]
        config = record["config"]
        return AmlComputeStatus(
            allocation_state="Steady", allocation_state_transition_time=None, creation_time=None,
            current_node_count=record["nodes"], errors=None, modified_time=None, node_state_counts=None,
            provisioning_state=state, provisioning_state_transition_time=None,
            scale_settings=getattr(config, "scale_settings", None), target_node_count=record["nodes"],
            vm_priority="Dedicated", vm_size=getattr(config, "vm_size", "STANDARD_D2_V2"),
        )


class AmlCompute(ComputeTarget):
    _azure: FakeAzure

    @classmethod
    @sdk_call("AmlCompute.provisioning_configuration")
    def provisioning_configuration(cls, vm_size="", vm_priority="dedicated", min_nodes=0, max_nodes=None,
                                   idle_seconds_before_scaledown=1800, admin_username=None,
                                   admin_user_password=None, admin_user_ssh_key=None, vnet_resourcegroup_name=None,
                                   vnet_name=None, subnet_name=None, tags=None, description=None,
                                   remote_login_port_public_access="NotSpecified", identity_type=None,
                                   identity_id=None, location=None, enable_node_public_ip=True):
        # Offline in the SDK too: the real one validates (max_nodes is mandatory, facts §2).
        return RealAmlCompute.provisioning_configuration(
            vm_size=vm_size, vm_priority=vm_priority, min_nodes=min_nodes, max_nodes=max_nodes,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown, admin_username=admin_username,
            admin_user_password=admin_user_password, admin_user_ssh_key=admin_user_ssh_key,
            vnet_resourcegroup_name=vnet_resourcegroup_name, vnet_name=vnet_name, subnet_name=subnet_name,
            tags=tags, description=description, remote_login_port_public_access=remote_login_port_public_access,
            identity_type=identity_type, identity_id=identity_id, location=location,
            enable_node_public_ip=enable_node_public_ip,
        )


class Environment(RealEnvironment):
    """The real (offline) Environment; only `register`, which calls the service, is faked."""

    _azure: FakeAzure

    @sdk_call("Environment.register")
    def register(self, workspace):
        azure = self._azure
        with azure._lock:
            same = [e for e in azure.environments if e.name == self.name]
            definition = self.python.conda_dependencies.serialize_to_string()
            for existing in same:
                if existing.python.conda_dependencies.serialize_to_string() == definition:
                    return existing  # Azure keeps one version per distinct definition
            registered = copy.deepcopy(self)
            registered.version = str(len(same) + 1)
            azure.environments.append(registered)
        return registered


class FileDataset:
    _azure: FakeAzure

    def __init__(self, path: str, name: str | None = None, version: int | None = None) -> None:
        self.path, self.name, self.version = path, name, version
        self.id = None if name is None else f"{name}:{version}"
        self.definition: Any = None  # the real SDK's FileDataset, when from_files could build one

    def as_mount(self, path_on_compute=None):
        return DatasetConsumptionConfig(f"input__{secrets.token_hex(4)}", self, mode="mount",
                                        path_on_compute=path_on_compute)

    def as_download(self, path_on_compute=None):
        return DatasetConsumptionConfig(f"input__{secrets.token_hex(4)}", self, mode="download",
                                        path_on_compute=path_on_compute)

    @sdk_call("FileDataset.register")
    def register(self, workspace, name, description=None, tags=None, create_new_version=False):
        azure = self._azure
        with azure._lock:
            versions = azure.datasets.setdefault(name, [])
            if versions and not create_new_version:
                raise UserErrorException(f'There is already a dataset registered under name "{name}". '
                                         "Specify create_new_version=True to register the dataset as a new version.")
            registered = azure.FileDataset(self.path, name=name, version=len(versions) + 1)
            registered.definition = self.definition
            versions.append(registered)
        return registered


def _real_file_dataset_factory() -> Any:
    """azureml-core's FileDatasetFactory when azureml-dataset-runtime is installed; None otherwise."""
    try:
        import azureml.dataprep  # noqa: F401 - the runtime from_files needs
        from azureml.data.dataset_factory import FileDatasetFactory as Real
    except ImportError:
        return None
    return Real


class FileDatasetFactory:
    _azure: FakeAzure

    @classmethod
    @sdk_call("Dataset.File.from_files")
    def from_files(cls, path, validate=True, partition_format=None, is_file=False):
        if not cls._azure.dataset_runtime_installed:
            raise ImportError(get_dataprep_missing_message())
        if not isinstance(path, str) or not _URL.match(path):
            raise UserErrorException(f"Invalid argument type for path: {path!r}")
        dataset = cls._azure.FileDataset(path)
        # Where azureml-dataset-runtime is installed (the `azure` extra, as in CI), the SDK's own
        # from_files builds the definition: it is lazy, so it runs offline, and it refuses what the
        # SDK refuses. validate=False: validating reads the files from storage, which only Azure has.
        real = _real_file_dataset_factory()
        if real is not None:
            dataset.definition = real.from_files(path, validate=False, partition_format=partition_format,
                                                 is_file=is_file)
        return dataset


class Dataset:
    _azure: FakeAzure
    File: type[FileDatasetFactory]

    @classmethod
    @sdk_call("Dataset.get_by_name")
    def get_by_name(cls, workspace, name, version="latest", **kwargs):
        versions = cls._azure.datasets.get(name, [])
        chosen = versions[-1:] if version == "latest" else [d for d in versions if str(d.version) == str(version)]
        if not chosen:
            raise UserErrorException(f'Cannot find dataset registered with name "{name}" (version: {version})')
        return chosen[0]


# A workspace configured by name with a service principal, as the tests' settings use it.
WORKSPACE_SETTINGS: dict[str, Any] = {
    "azureml_subscription_id": "00000000-0000-0000-0000-000000000000",
    "azureml_resource_group": "runyard-rg",
    "azureml_workspace_name": "runyard-ws",
    "azure_tenant_id": "tenant",
    "azure_client_id": "client",
    "azure_client_secret": "secret",
}
