"""The v2 fake cannot drift from azure-ai-ml or mlflow: every faked call has the real signature,
every v2 job status maps explicitly, and the SDK's exceptions are classified as the backend needs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

# Run in .venv-v2 by `make test` (the azure-v2 extra); elsewhere reported as skipped, not passed.
pytest.importorskip("azure.ai.ml", reason="the azure-v2 extra is not installed: pip install -e .[azure-v2]")
from azure.ai.ml import MLClient
from azure.ai.ml._restclient.arm_ml_service.models import JobStatus as RestJobStatus
from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, ValidationException
from azure.ai.ml.operations import (
    ComputeOperations,
    DataOperations,
    EnvironmentOperations,
    JobOperations,
    ModelOperations,
    WorkspaceOperations,
)
from azure.ai.ml.operations._run_operations import RunOperations
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError, ServiceRequestError
from mlflow.tracking import MlflowClient

from service.backends.azureml_sdk import AzureNotFound
from service.backends.azureml_v2 import V2_STATUS_MAP, from_azure_v2, job_name
from service.backends.azureml_v2_sdk import translate_v2
from service.core.states import JobStatus
from tests.fakes import azureml_v2 as fake

CONTRACT: list[tuple[type, type, str]] = [
    (fake.MLClient, MLClient, "__init__"),
    (fake.MLClient, MLClient, "from_config"),
    (fake.JobOperations, JobOperations, "create_or_update"),
    (fake.JobOperations, JobOperations, "get"),
    (fake.JobOperations, JobOperations, "list"),
    (fake.JobOperations, JobOperations, "begin_cancel"),
    (fake.ComputeOperations, ComputeOperations, "get"),
    (fake.ComputeOperations, ComputeOperations, "begin_create_or_update"),
    (fake.EnvironmentOperations, EnvironmentOperations, "create_or_update"),
    (fake.DataOperations, DataOperations, "get"),
    (fake.DataOperations, DataOperations, "create_or_update"),
    (fake.ModelOperations, ModelOperations, "create_or_update"),
    (fake.ModelOperations, ModelOperations, "list"),
    (fake.WorkspaceOperations, WorkspaceOperations, "get"),
    (fake.RunOperations, RunOperations, "get_run_details"),
    (fake.MlflowClient, MlflowClient, "__init__"),
    (fake.MlflowClient, MlflowClient, "get_run"),
    (fake.MlflowClient, MlflowClient, "get_metric_history"),
    (fake.MlflowClient, MlflowClient, "list_artifacts"),
    (fake.MlflowClient, MlflowClient, "download_artifacts"),
]


def _params(owner: type, name: str) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults (annotations differ: the fakes have none)."""
    member = getattr(owner, name)
    member = getattr(member, "__wrapped__", member)  # azure-ai-ml's telemetry decorators keep the original
    return [(p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values()]


@pytest.mark.parametrize(("fake_owner", "real_owner", "name"), CONTRACT,
                         ids=[f"{r.__name__}.{n}" for _, r, n in CONTRACT])
def test_faked_call_has_the_sdk_signature(fake_owner: type, real_owner: type, name: str) -> None:
    assert _params(fake_owner, name) == _params(real_owner, name)


def test_every_faked_call_is_in_the_contract() -> None:
    checked = {(f, n) for f, _, n in CONTRACT}
    for owner in (fake.MLClient, fake.JobOperations, fake.ComputeOperations, fake.EnvironmentOperations,
                  fake.DataOperations, fake.ModelOperations, fake.WorkspaceOperations, fake.RunOperations,
                  fake.MlflowClient):
        public = {n for n in vars(owner) if not n.startswith("_") or n == "__init__"}
        if owner is fake.WorkspaceOperations:
            public.discard("__init__")  # built by the fake MLClient, never by runyard
        assert {(owner, n) for n in public} <= checked, owner.__name__


def test_run_history_is_where_the_sdk_keeps_a_failed_jobs_error() -> None:
    """The private route the backend takes to a job's error is the SDK's own, and the fake's reply is the SDK's type."""
    from azure.ai.ml._restclient.runhistory.models import RunDetails

    assert isinstance(inspect.getattr_static(JobOperations, "_runs_operations"), property)
    assert inspect.getattr_static(JobOperations, "_runs_operations").fget.__annotations__["return"] in (
        RunOperations, "RunOperations")
    helper = inspect.getsource(__import__("azure.ai.ml.operations._job_ops_helper", fromlist=["_"]))
    assert "_current_details.error.as_dict()" in helper  # jobs.stream() reports a failed job's error from there
    azure = fake.FakeAzureV2()
    azure.add_job("j1", script=fake.RunScript(statuses=[(0, "Failed")], error={"code": "UserError", "message": "m"}))
    details = fake.JobOperations(azure)._runs_operations.get_run_details("j1")
    assert isinstance(details, RunDetails)
    assert details.error.as_dict() == {"error": {"code": "UserError", "message": "m"}}


def test_the_fake_hands_out_the_real_entity_builders() -> None:
    from azure.ai.ml import Input, command
    from azure.ai.ml.entities import AmlCompute, Data, Environment, Model

    sdk = fake.FakeAzureV2().sdk()
    assert (sdk.command, sdk.Input, sdk.Environment, sdk.AmlCompute, sdk.Data, sdk.Model) == (
        command, Input, Environment, AmlCompute, Data, Model)


def test_every_v2_job_status_is_mapped_explicitly() -> None:
    """No status the service can send falls through to the 'unknown: still running' default."""
    assert {s.value for s in RestJobStatus} <= set(V2_STATUS_MAP)
    assert from_azure_v2("Completed") is JobStatus.COMPLETED
    assert from_azure_v2("CancelRequested") is JobStatus.CANCELING
    assert from_azure_v2("Unknown") is JobStatus.RUNNING
    assert from_azure_v2("SomethingNew") is JobStatus.RUNNING


def test_job_names_are_valid_and_the_same_for_the_same_attempt() -> None:
    assert job_name("01M8TQ86.2") == job_name("01M8TQ86.2") == "runyard-01m8tq86-2"
    assert job_name("01M8TQ86.1") != job_name("01M8TQ86.2")


@pytest.mark.parametrize(("error", "transient", "not_found"), [
    (fake.http_error(503, "ServiceUnavailable"), True, False),
    (fake.http_error(429, "TooManyRequests"), True, False),
    (fake.http_error(400, "UserError"), False, False),
    (fake.http_error(404, "NotFound"), False, True),
    (fake.http_error(409, "Conflict"), False, False),
    (ResourceNotFoundError("gone"), False, True),
    (ClientAuthenticationError("AADSTS7000215"), False, False),
    (ServiceRequestError("connection refused"), True, False),
    (ConnectionError("reset"), True, False),
    (ValidationException(message="bad", no_personal_data_message="bad", target=ErrorTarget.JOB,
                         error_category=ErrorCategory.USER_ERROR), False, False),
    (fake.mlflow_not_found("Run 'x' not found"), False, True),
    (RuntimeError("who knows"), True, False),
], ids=["503", "429", "400", "404", "409", "ResourceNotFoundError", "auth", "ServiceRequestError", "ConnectionError",
        "ValidationException", "mlflow-not-found", "other"])
def test_sdk_errors_are_classified(error: Exception, transient: bool, not_found: bool) -> None:
    translated = translate_v2(error, "a call")
    assert (translated.transient, isinstance(translated, AzureNotFound)) == (transient, not_found)
    assert translated.message.startswith("a call: ")


def test_the_fake_raises_what_azure_core_raises_for_a_status() -> None:
    assert isinstance(fake.http_error(404), ResourceNotFoundError)
    assert fake.http_error(503).status_code == 503
