"""`list_run_records` / `run_of_record` on the real azureml-core, offline.

The poller reads listed `RunDto`s instead of a `Run` per listed run (issue 17); the fake replaces
both calls, so this checks the real SDK's side: the entry points exist with the shape runyard
calls, and a `Run` built from a listed DTO carries the id, status and tags the poller reads —
with no request (the service endpoints and tokens below make any request fail loudly).
"""

from __future__ import annotations

import base64
import inspect
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azureml._restclient import service_context
from azureml._restclient.models import RunDto
from azureml._run_impl.run_history_facade import RunHistoryFacade
from azureml.core import Experiment, Run, Workspace
from azureml.core.authentication import ServicePrincipalAuthentication

from service.backends import azureml_sdk

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class _OfflineAuth(ServicePrincipalAuthentication):  # type: ignore[misc]
    """Tokens without a tenant: `Run.__init__` asks for an ARM token (core/_portal.py)."""

    token = ".".join([_b64({"alg": "none"}), _b64({"exp": 4102444800, "oid": "x", "tid": "t"}), "s"])

    def _get_arm_token(self) -> str:
        return self.token

    def _get_azureml_client_token(self) -> str:
        return self.token

    def _get_all_subscription_ids(self) -> tuple[list[str], list[str]]:
        return [SUBSCRIPTION], ["t"]


@pytest.fixture
def experiment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Experiment:
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK writes ~/.azureml
    keys = service_context._ServiceKeys.get_discovery_keys()
    # An unroutable endpoint: building a Run must not need it; a request would fail, not pass.
    monkeypatch.setattr(service_context.ServiceContext, "_fetch_endpoints",
                        lambda _self: dict.fromkeys(keys, "https://unreachable.invalid"))
    ws = Workspace(SUBSCRIPTION, "rg", "ws", auth=_OfflineAuth("t", "sp", "pw"), _disable_service_check=True,
                   _workspace_id=str(uuid.uuid4()), _location="westeurope")
    return Experiment(ws, "exp", _create_in_cloud=False, _id=str(uuid.uuid4()))


def test_the_listing_entry_point_takes_the_experiment_as_runyard_passes_it() -> None:
    assert isinstance(inspect.getattr_static(RunHistoryFacade, "get_runs"), staticmethod)
    inspect.signature(RunHistoryFacade.get_runs).bind(object())
    assert isinstance(inspect.getattr_static(Run, "_dto_to_run"), staticmethod)
    inspect.signature(Run._dto_to_run).bind(object(), object(), clean_up=False)


def test_a_run_built_from_a_listed_record_carries_what_the_poller_reads(experiment: Experiment) -> None:
    # The fields the run history service always fills in a listed run (see bench/azure_sdk_cost.py).
    record = RunDto(run_id="exp_1700000000_ab12", root_run_id="exp_1700000000_ab12", status="Running",
                    experiment_id=experiment.id, run_type="azureml.scriptrun", tags={"runyard_job_id": "J1"},
                    properties={}, run_number=7, data_container_id="dcid.exp_1700000000_ab12", hidden=False)

    run = azureml_sdk.run_of_record(experiment, record)

    assert isinstance(run, Run)
    assert (run.id, run.status, run.tags["runyard_job_id"]) == ("exp_1700000000_ab12", "Running", "J1")
    assert run.experiment is experiment
