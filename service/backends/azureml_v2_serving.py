"""Registered models served as managed online endpoints (azure-ai-ml, SDK v2).

One Azure online endpoint per runyard endpoint, one online deployment per served version
(`version-<N>`), the same generated score.py (`CodeConfiguration`). Nothing waits on a poller:
`deploy` creates the endpoint and, once Azure has provisioned it, the deployment; the state is
read back, and when the deployment has succeeded the endpoint's traffic is moved to it (100%),
so a PATCH to another version is a traffic switch between two live deployments.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from service.backends.azureml_inference import InferenceTargets, with_log_tail
from service.backends.azureml_sdk import AzureNotFound
from service.backends.azureml_v2_workspace import AzureV2Workspace
from service.backends.base import ServeRequest, ServiceState
from service.backends.scoring_script import SCRIPT_NAME, write_score_script
from service.core.errors import BackendError
from service.core.settings import AzureInferenceSpec

log = logging.getLogger(__name__)

BUSY = frozenset({"Creating", "Updating", "Provisioning"})
FAILED = frozenset({"Failed", "Canceled"})
V2_MODEL_ID = re.compile(r"^azureml:[^:/]+:[^:/]+$")


def split_service(service: str) -> tuple[str, str]:
    """runyard's service name `<endpoint>-v<N>` as (online endpoint name, deployment name)."""
    endpoint, _, version = service.rpartition("-v")
    return endpoint, f"version-{version}"


class AzureV2Serving(InferenceTargets):
    """Deploys, reads and deletes the managed online deployments of the v2 inference targets."""

    sdk_label = "v2"

    def __init__(self, workspace: AzureV2Workspace, targets: Sequence[AzureInferenceSpec]) -> None:
        super().__init__(targets)
        self.workspace = workspace

    def deploy(self, request: ServeRequest) -> None:
        """Create the online endpoint if missing, then the version's deployment once the endpoint is up."""
        spec = self._spec(request.target)
        self._check_deployable(request, V2_MODEL_ID)
        ws, sdk, client = self.workspace, self.workspace.sdk, self.workspace.client()
        name, deployment = split_service(request.service)
        endpoint = self._endpoint(name)
        if endpoint is None:
            entity = sdk.ManagedOnlineEndpoint(name=name, auth_mode="key", tags={"runyard_endpoint": request.endpoint},
                                               description=f"runyard endpoint {request.endpoint}")
            ws.call(f"create online endpoint {name}", client.online_endpoints.begin_create_or_update, entity)
            raise BackendError(f"online endpoint {name} is being created", transient=True)
        if endpoint.provisioning_state in BUSY:
            raise BackendError(f"online endpoint {name} is {endpoint.provisioning_state}", transient=True)
        if self._deployment(name, deployment) is not None:
            return  # adopted: a restart, or a create abandoned on its timeout that got there
        folder = write_score_script(request.source_dir, endpoint=request.endpoint, model=request.model_location,
                                    model_file=request.model_file)
        entity = sdk.ManagedOnlineDeployment(
            name=deployment, endpoint_name=name, model=request.model_location,
            environment=ws.environment(request.environment),
            code_configuration=sdk.CodeConfiguration(code=str(folder), scoring_script=SCRIPT_NAME),
            instance_type=spec.instance_type, instance_count=spec.instance_count,
            tags={"runyard_endpoint": request.endpoint, "runyard_model": request.model_location},
        )
        ws.call(f"create online deployment {deployment}", client.online_deployments.begin_create_or_update, entity)

    def service_state(self, target: str, service: str) -> ServiceState:
        """Ready once the deployment has succeeded and takes all of the endpoint's traffic."""
        self._spec(target)
        name, deployment = split_service(service)
        found = self._deployment(name, deployment)
        if found is None:
            raise AzureNotFound(f"online deployment {deployment} of endpoint {name} does not exist")
        raw = str(found.provisioning_state or "Creating")
        if raw in FAILED:
            return ServiceState("failed", raw, error=self._reason(name, deployment, raw))
        if raw != "Succeeded":
            return ServiceState("creating", raw)
        endpoint = self._endpoint(name)
        if endpoint is None:
            raise AzureNotFound(f"online endpoint {name} does not exist")
        if (endpoint.traffic or {}).get(deployment) != 100:
            if endpoint.provisioning_state not in BUSY:
                endpoint.traffic = {deployment: 100}
                self.workspace.call(f"move the traffic of {name} to {deployment}",
                                    self.workspace.client().online_endpoints.begin_create_or_update, endpoint)
            return ServiceState("creating", "Succeeded, moving traffic")
        if endpoint.provisioning_state in BUSY or not endpoint.scoring_uri:
            return ServiceState("creating", f"Succeeded, endpoint {endpoint.provisioning_state}")
        keys = self.workspace.call(f"read the keys of {name}", self.workspace.client().online_endpoints.get_keys,
                                   name)
        return ServiceState("ready", raw, scoring_uri=str(endpoint.scoring_uri), key=keys.primary_key)

    def undeploy(self, target: str, service: str) -> None:
        """Delete the deployment; the endpoint too when it has no other (never waited on)."""
        self._spec(target)
        name, deployment = split_service(service)
        client = self.workspace.client()
        if self._endpoint(name) is None:
            return
        listed = self.workspace.call(f"list the deployments of {name}",
                                     lambda: list(client.online_deployments.list(name)))
        others = [d.name for d in listed if d.name != deployment and d.provisioning_state != "Deleting"]
        if not others:
            self.workspace.call(f"delete online endpoint {name}", client.online_endpoints.begin_delete, name=name)
            return
        try:
            self.workspace.call(f"delete online deployment {deployment}", client.online_deployments.begin_delete,
                                name=deployment, endpoint_name=name)
        except AzureNotFound:
            pass

    def _endpoint(self, name: str) -> Any:
        try:
            return self.workspace.call(f"read online endpoint {name}", self.workspace.client().online_endpoints.get,
                                       name)
        except AzureNotFound:
            return None

    def _deployment(self, endpoint: str, deployment: str) -> Any:
        try:
            return self.workspace.call(f"read online deployment {deployment}",
                                       self.workspace.client().online_deployments.get, deployment, endpoint)
        except AzureNotFound:
            return None

    def _reason(self, endpoint: str, deployment: str, raw: str) -> str:
        """The failure with the last lines of the deployment's container log (score.py's init() traceback)."""
        return with_log_tail(f"the online deployment is {raw}", deployment, lambda: self.workspace.call(
            f"read the log of {deployment}", self.workspace.client().online_deployments.get_logs, deployment,
            endpoint, 50))
