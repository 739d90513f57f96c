"""A stubbed Azure ML workspace for azure-ai-ml (SDK v2): fakes of exactly the calls runyard makes.

`FakeAzureV2().sdk()` is a `V2Sdk` whose `MLClient` (with its `jobs`, `compute`, `environments`,
`data`, `models` and `workspaces` operations) and `MlflowClient` are fakes with the real
signatures (tests/unit/test_azureml_v2_contract.py compares them), while `command`, `Input`,
`Environment`, `AmlCompute`, `Data` and `Model` are azure-ai-ml's own entity classes: the fake
`jobs.create_or_update` receives the real `Command` Azure would be sent. Errors are the SDK's
own (`HttpResponseError` and its subclasses built from an HTTP response as azure-core does,
`ValidationException`, `MlflowException`). Jobs move on a `FakeClock`; every call is counted.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.ai.ml import Input, command
from azure.ai.ml._restclient.runhistory._utils.model_base import _deserialize
from azure.ai.ml._restclient.runhistory.models import RunDetails
from azure.ai.ml.constants import ListViewType
from azure.ai.ml.entities import (
    AmlCompute,
    CodeConfiguration,
    Command,
    Data,
    Environment,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
)
from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, ValidationException
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse
from azure.core.polling import LROPoller, NoPolling
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from mlflow.entities import FileInfo, Metric, Run, RunData, RunInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from service.backends.azureml_v2_sdk import V2Sdk
from tests.fakes.azureml import (
    EPOCH,
    LOG_FILE,
    PROVISION_SECONDS,
    TERMINAL,
    FakeClock,
    FaultSwitches,
    RunScript,
    Timeline,
)
from tests.fakes.azureml import tutorial_script as tutorial_script

PAGE_SIZE = 100  # jobs per page of a workspace job listing
TRACKING_URI = "azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/" \
               "Microsoft.MachineLearningServices/workspaces/runyard-ws"

_ERROR_MAP = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError,
              304: ResourceNotModifiedError}


def http_error(status: int, code: str = "ServiceError", message: str = "the service said no") -> HttpResponseError:
    """The exception an azure-ai-ml operation raises for an HTTP `status` reply.

    As its generated clients do: `map_error` with their usual error map, else `HttpResponseError`.
    """
    reply = requests.Response()
    reply.status_code = status
    reply._content = json.dumps({"error": {"code": code, "message": message}}).encode()
    reply.headers["Content-Type"] = "application/json"
    response = RequestsTransportResponse(HttpRequest("GET", "https://management.azure.com/fake"), reply)
    try:
        map_error(status_code=status, response=response, error_map=_ERROR_MAP)
    except HttpResponseError as mapped:  # 401, 404, 409 and 304 have their own classes
        return mapped
    return HttpResponseError(response=response)


def mlflow_not_found(message: str) -> MlflowException:
    return MlflowException(message, error_code=RESOURCE_DOES_NOT_EXIST)


def default_script(job: Command) -> RunScript:
    """The tutorial run, with the `--regularization` the job's command line gives."""
    words = str(job.command).split()
    reg = float(words[words.index("--regularization") + 1]) if "--regularization" in words[:-1] else 0.01
    return tutorial_script(regularization=reg)


@dataclass
class JobRecord(Timeline):
    """A job as the fake workspace stores it."""

    name: str
    job: Command
    submitted_at: float
    number: int
    script: RunScript
    cancel_at: float | None = None

    def millis(self, at: float) -> int:
        return int((EPOCH.timestamp() + self.submitted_at + at) * 1000)

    def entity(self, now: float) -> Command:
        """What the service returns for the job: the submitted Command with its current status."""
        job = copy.copy(self.job)
        job._status = self.status(now)
        return job


class FakeAzureV2(FaultSwitches):
    """The stub workspace behind the fake clients: jobs, compute, assets, faults, call counts."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FakeClock()
        self.jobs: dict[str, JobRecord] = {}
        self.created: list[Command] = []
        self.computes: dict[str, dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], Environment] = {}
        self.data: dict[str, list[Data]] = {}
        self.models: list[Model] = []
        self.credentials: list[Any] = []
        self.script_for: Callable[[Command], RunScript] = default_script
        self.MLClient = type("MLClient", (MLClient,), {"_azure": self, "__module__": MLClient.__module__})
        self.MlflowClient = type("MlflowClient", (MlflowClient,), {"_azure": self,
                                                                   "__module__": MlflowClient.__module__})

    def sdk(self) -> V2Sdk:
        return V2Sdk(MLClient=self.MLClient, MlflowClient=self.MlflowClient, command=command, Input=Input,
                     Environment=Environment, AmlCompute=AmlCompute, Data=Data, Model=Model,
                     ClientSecretCredential=ClientSecretCredential, ManagedIdentityCredential=ManagedIdentityCredential,
                     ManagedOnlineEndpoint=ManagedOnlineEndpoint, ManagedOnlineDeployment=ManagedOnlineDeployment,
                     CodeConfiguration=CodeConfiguration)

    # -- test controls -------------------------------------------------------------

    def add_compute(self, name: str, *, state: str = "Succeeded") -> None:
        self.computes[name] = {"state": state, "created_at": self.clock(), "cluster": None}

    def add_job(self, name: str, *, experiment: str = "tests", script: RunScript | None = None) -> JobRecord:
        """A job made outside this process (another runyard, a person)."""
        job = command(name=name, command="python train.py", environment="azureml:env:1", compute="cpu-cluster",
                      experiment_name=experiment)
        with self._lock:
            record = JobRecord(name, job, self.clock(), len(self.jobs) + 1, script or RunScript())
            self.jobs[name] = record
        return record

    # -- what the fakes use --------------------------------------------------------

    def record(self, name: str) -> JobRecord:
        found = self.jobs.get(name)
        if found is None:
            raise http_error(404, "UserError", f"Job {name} not found")
        return found


def sdk_call(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count the call, apply hangs and faults; `functools.wraps` keeps the signature."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(owner: Any, *args: Any, **kwargs: Any) -> Any:
            azure: FakeAzureV2 = owner._azure
            azure.enter(name)
            result = fn(owner, *args, **kwargs)
            azure.leave(name)
            return result

        return wrapper

    return decorate


# -- the fake clients (azure-ai-ml's and mlflow's names and signatures) -------------------


class MLClient:
    _azure: FakeAzureV2

    def __init__(self, credential, subscription_id=None, resource_group_name=None, workspace_name=None,
                 registry_name=None, **kwargs):
        if credential is None:
            raise ValueError("credential can not be None")  # as MLClient says; never interactive login
        self.subscription_id, self.resource_group_name = subscription_id, resource_group_name
        self.workspace_name, self.cloud = workspace_name, kwargs.get("cloud")
        self._azure.credentials.append(credential)
        self.jobs = JobOperations(self._azure)
        self.compute = ComputeOperations(self._azure)
        self.environments = EnvironmentOperations(self._azure)
        self.data = DataOperations(self._azure)
        self.models = ModelOperations(self._azure)
        self.workspaces = WorkspaceOperations(self._azure, workspace_name)
        from tests.fakes.azureml_v2_serving import OnlineDeploymentOperations, OnlineEndpointOperations

        self.online_endpoints = OnlineEndpointOperations(self._azure)
        self.online_deployments = OnlineDeploymentOperations(self._azure)

    @classmethod
    def from_config(cls, credential, *, path=None, file_name=None, **kwargs):
        config_path = Path(path or ".")
        if config_path.is_dir():
            config_path = config_path / (file_name or "config.json")
        if not config_path.is_file():
            raise ValidationException(message=f"config file not found in {path}",
                                      no_personal_data_message="config file not found",
                                      target=ErrorTarget.GENERAL, error_category=ErrorCategory.USER_ERROR)
        data = json.loads(config_path.read_text())
        return cls(credential, data["subscription_id"], data["resource_group"], data["workspace_name"], **kwargs)


class _Operations:
    def __init__(self, azure: FakeAzureV2) -> None:
        self._azure = azure


class JobOperations(_Operations):
    @property
    def _runs_operations(self) -> RunOperations:
        # azure-ai-ml builds its Run History operations lazily behind this private property too.
        return RunOperations(self._azure)

    @sdk_call("jobs.create_or_update")
    def create_or_update(self, job, *, description=None, compute=None, tags=None, experiment_name=None,
                         skip_validation=False, **kwargs):
        azure = self._azure
        if not isinstance(job, Command):
            raise TypeError(f"expected a Command job, got {type(job).__name__}")
        if not job.code or not Path(str(job.code)).is_dir():
            raise ValidationException(message=f"code path {job.code} does not exist",
                                      no_personal_data_message="code path does not exist",
                                      target=ErrorTarget.JOB, error_category=ErrorCategory.USER_ERROR)
        script = str(job.command).split()[1] if len(str(job.command).split()) > 1 else ""
        if not (Path(str(job.code)) / script).is_file():
            raise http_error(400, "UserError", f"{script} not found in the code snapshot")
        with azure._lock:
            if job.name in azure.jobs:
                raise http_error(409, "Conflict", f"a job named {job.name} already exists")
            record = JobRecord(job.name, job, azure.clock(), len(azure.jobs) + 1, azure.script_for(job))
            azure.jobs[job.name] = record
            azure.created.append(job)
        return record.entity(azure.clock())

    @sdk_call("jobs.get")
    def get(self, name):
        return self._azure.record(name).entity(self._azure.clock())

    @sdk_call("jobs.list")
    def list(self, *, parent_job_name=None, list_view_type=ListViewType.ACTIVE_ONLY, **kwargs):
        azure = self._azure
        records = sorted(azure.jobs.values(), key=lambda r: r.number, reverse=True)

        def pages() -> Iterator[Command]:
            for index, record in enumerate(records):
                if index and index % PAGE_SIZE == 0:
                    azure.calls["jobs.list:next_page"] += 1
                yield record.entity(azure.clock())

        return pages()

    @sdk_call("jobs.begin_cancel")
    def begin_cancel(self, name, **kwargs):
        azure = self._azure
        record, now = azure.record(name), azure.clock()
        if record.status(now) in TERMINAL:
            raise http_error(400, "UserError", f"job {name} has already ended")
        if record.cancel_at is None:
            record.cancel_at = now
        return LROPoller(None, None, lambda _: None, NoPolling())


class RunOperations(_Operations):
    """azure-ai-ml's `operations/_run_operations.py RunOperations`: Run History, where a job's error is kept."""

    @sdk_call("runs.get_run_details")
    def get_run_details(self, run_id):
        azure = self._azure
        record, now = azure.record(run_id), azure.clock()
        status = record.status(now)
        reply: dict[str, Any] = {"runId": run_id, "status": status, "target": record.job.compute,
                                 "logFiles": {LOG_FILE: f"https://store.blob.core.windows.net/{run_id}/{LOG_FILE}"}}
        if status == "Failed" and record.script.error is not None:
            reply["error"] = {"error": record.script.error}
        # As Run History's `RunsOperations.get_details` makes it from the service's JSON reply.
        return _deserialize(RunDetails, json.loads(json.dumps(reply)))


class ComputeOperations(_Operations):
    @sdk_call("compute.get")
    def get(self, name):
        azure = self._azure
        found = azure.computes.get(name)
        if found is None:
            raise http_error(404, "NotFound", f"compute {name} not found")
        if found["state"] == "Creating" and azure.clock() >= found["created_at"] + PROVISION_SECONDS:
            found["state"] = "Succeeded"
        cluster = copy.copy(found["cluster"]) or AmlCompute(name=name, size="STANDARD_D2_V2", max_instances=4)
        cluster._provisioning_state = found["state"]
        return cluster

    @sdk_call("compute.begin_create_or_update")
    def begin_create_or_update(self, compute):
        azure = self._azure
        if not isinstance(compute, AmlCompute):
            raise TypeError("expected an AmlCompute")
        if compute.name.lower() in {"local", "amlcompute"}:
            raise http_error(400, "UserError", f"{compute.name} is a reserved name")
        azure.computes[compute.name] = {"state": "Creating", "created_at": azure.clock(), "cluster": compute}
        return LROPoller(None, None, lambda _: compute, NoPolling())


class EnvironmentOperations(_Operations):
    @sdk_call("environments.create_or_update")
    def create_or_update(self, environment):
        azure = self._azure
        key = (environment.name, str(environment.version))
        with azure._lock:
            existing = azure.environments.get(key)
            if existing is not None:
                if existing.conda_file != environment.conda_file or existing.image != environment.image:
                    raise http_error(400, "UserError", f"environment {key} exists with a different definition")
                return existing
            azure.environments[key] = copy.deepcopy(environment)
            return azure.environments[key]


class DataOperations(_Operations):
    @sdk_call("data.get")
    def get(self, name, version=None, label=None):
        versions = self._azure.data.get(name, [])
        chosen = versions[-1:] if label == "latest" else [d for d in versions if str(d.version) == str(version)]
        if not chosen:
            raise http_error(404, "UserError", f"data {name} (version {version or label}) not found")
        return chosen[0]

    @sdk_call("data.create_or_update")
    def create_or_update(self, data):
        azure = self._azure
        with azure._lock:
            versions = azure.data.setdefault(data.name, [])
            same = next((d for d in versions if str(d.version) == str(data.version)), None)
            if same is not None:
                if same.path != data.path:
                    raise http_error(409, "Conflict", f"data {data.name}:{data.version} exists with another path")
                return same
            stored = copy.deepcopy(data)
            versions.append(stored)
            return stored


class ModelOperations(_Operations):
    @sdk_call("models.list")
    def list(self, name=None, stage=None, *, list_view_type=ListViewType.ACTIVE_ONLY):
        # A name with no versions lists nothing (the versions listing of an unknown container is empty).
        return iter([copy.deepcopy(m) for m in self._azure.models if name is None or m.name == name])

    @sdk_call("models.create_or_update")
    def create_or_update(self, model):
        azure = self._azure
        prefix = "azureml://jobs/"
        path = str(model.path)
        if not path.startswith(prefix) or "/outputs/artifacts/paths/" not in path:
            raise http_error(400, "UserError", f"unsupported model path {path}")
        job_name, artifact = path[len(prefix):].split("/outputs/artifacts/paths/", 1)
        record = azure.record(job_name)
        if artifact not in record.files(azure.clock()):
            raise http_error(400, "UserError", f"no artifact {artifact} in job {job_name}")
        with azure._lock:
            stored = copy.deepcopy(model)
            stored.version = str(1 + sum(1 for m in azure.models if m.name == model.name))
            azure.models.append(stored)
        return stored


class WorkspaceOperations(_Operations):
    def __init__(self, azure: FakeAzureV2, workspace_name: str | None) -> None:
        super().__init__(azure)
        self._name = workspace_name

    @sdk_call("workspaces.get")
    def get(self, name=None, **kwargs):
        from azure.ai.ml.entities import Workspace

        return Workspace(name=name or self._name or "runyard-ws", mlflow_tracking_uri=TRACKING_URI)


class MlflowClient:
    _azure: FakeAzureV2

    def __init__(self, tracking_uri=None, registry_uri=None, workspace_store_uri=None):
        if tracking_uri != TRACKING_URI:
            raise MlflowException(f"unknown tracking uri {tracking_uri}")
        self.tracking_uri = tracking_uri

    def _record(self, run_id: str) -> JobRecord:
        found = self._azure.jobs.get(run_id)
        if found is None:
            raise mlflow_not_found(f"Run '{run_id}' not found")
        return found

    def _points(self, record: JobRecord) -> dict[str, list[Metric]]:
        now, points = self._azure.clock(), {}
        for at, key, value in record.script.metrics:
            if record.happened(at, now):
                history = points.setdefault(key, [])
                history.append(Metric(key, float(value), record.millis(at), len(history)))
        return points

    @sdk_call("mlflow.get_run")
    def get_run(self, run_id):
        record, now = self._record(run_id), self._azure.clock()
        status = record.status(now)
        running = next((at for at, s in record.script.statuses if s == "Running"), None)
        start = record.millis(running) if running is not None and record.happened(running, now) else None
        end = int((EPOCH.timestamp() + min(now, record.end())) * 1000) if status in TERMINAL else None
        metrics = [history[-1] for history in self._points(record).values()]
        info = RunInfo(run_id, "1", "runyard", "FINISHED" if status in TERMINAL else "RUNNING", start, end, "active")
        return Run(info, RunData(metrics=metrics))

    @sdk_call("mlflow.get_metric_history")
    def get_metric_history(self, run_id, key):
        return self._points(self._record(run_id)).get(key, [])

    @sdk_call("mlflow.list_artifacts")
    def list_artifacts(self, run_id, path=None):
        files = self._record(run_id).files(self._azure.clock())
        prefix = f"{path.rstrip('/')}/" if path else ""
        entries: dict[str, FileInfo] = {}
        for name, content in files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix):].partition("/")
            full = prefix + head
            entries[full] = FileInfo(full, True, None) if rest else FileInfo(full, False, len(content))
        return sorted(entries.values(), key=lambda f: f.path)

    @sdk_call("mlflow.download_artifacts")
    def download_artifacts(self, run_id, path, dst_path=None):
        files = self._record(run_id).files(self._azure.clock())
        if path not in files:
            raise mlflow_not_found(f"artifact {path} not found in run {run_id}")
        target = Path(dst_path or ".") / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[path])
        return str(target)


# The same workspace-by-name settings the v1 tests use, with every cluster on SDK v2.
V2_SETTINGS: dict[str, Any] = {"azureml_sdk": "v2"}
