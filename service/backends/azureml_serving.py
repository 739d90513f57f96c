"""Registered models served as azureml-core web services, the tutorial's part 2 way.

`Model.deploy(ws, name, [model], InferenceConfig(entry_script="score.py", environment=env),
AciWebservice.deploy_configuration(cpu_cores, memory_gb))`, never waited on: the deployment's
state is read back (`Webservice(ws, name).state`) by whoever follows it. Every SDK call goes
through the workspace's `call` (own thread, timeout, exceptions classified).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from service.backends.azureml_inference import InferenceTargets, with_log_tail
from service.backends.azureml_sdk import AzureNotFound
from service.backends.azureml_workspace import AzureWorkspace
from service.backends.base import ServeRequest, ServiceState
from service.backends.scoring_script import SCRIPT_NAME, write_score_script
from service.core.errors import BackendError
from service.core.settings import AzureInferenceSpec

log = logging.getLogger(__name__)

# Webservice.state values (azureml-core webservice.py: wait_for_deployment) in runyard's words.
STATES: dict[str, str] = {"Transitioning": "creating", "Healthy": "ready", "Unhealthy": "failed", "Failed": "failed"}
V1_MODEL_ID = re.compile(r"^(?P<name>[^:/]+):(?P<version>\d+)$")


class AzureServing(InferenceTargets):
    """Deploys, reads and deletes the web services of the v1 inference targets (ACI, AKS)."""

    sdk_label = "v1"

    def __init__(self, workspace: AzureWorkspace, targets: Sequence[AzureInferenceSpec]) -> None:
        super().__init__(targets)
        self.workspace = workspace

    def deploy(self, request: ServeRequest) -> None:
        """`Model.deploy` of the registered model with a generated score.py; an existing service is adopted."""
        spec = self._spec(request.target)
        if self._find(request.service) is not None:
            log.info("web service %s already exists: adopted", request.service)
            return
        found = self._check_deployable(request, V1_MODEL_ID)
        ws, sdk = self.workspace, self.workspace.sdk
        model = ws.call(f"read model {request.model_location}", sdk.Model, ws.workspace(), name=found["name"],
                        version=int(found["version"]))
        folder = write_score_script(request.source_dir, endpoint=request.endpoint, model=request.model_location,
                                    model_file=request.model_file)
        inference = sdk.InferenceConfig(entry_script=SCRIPT_NAME, source_directory=str(folder),
                                        environment=ws.environment(request.environment))
        tags = {"runyard_endpoint": request.endpoint, "runyard_model": request.model_location}
        description = f"runyard endpoint {request.endpoint}: {request.model_location}"
        target: Any = None
        if spec.kind == "aks":
            config = sdk.AksWebservice.deploy_configuration(cpu_cores=spec.cpu_cores, memory_gb=spec.memory_gb,
                                                            auth_enabled=True, tags=tags, description=description)
            target = ws.call(f"attach compute {spec.aks_cluster}", sdk.ComputeTarget, workspace=ws.workspace(),
                             name=spec.aks_cluster)
        else:
            config = sdk.AciWebservice.deploy_configuration(cpu_cores=spec.cpu_cores, memory_gb=spec.memory_gb,
                                                            auth_enabled=True, tags=tags, description=description)
        try:
            ws.call(f"deploy web service {request.service}", sdk.Model.deploy, ws.workspace(), request.service,
                    [model], inference_config=inference, deployment_config=config, deployment_target=target)
        except BackendError:
            # A deploy abandoned on its timeout (or answered with an error after acting) may have made it.
            if self._find(request.service) is not None:
                return
            raise

    def service_state(self, target: str, service: str) -> ServiceState:
        """The web service's state; once Healthy its scoring URI and primary key, once failed the reason."""
        self._spec(target)
        svc = self._find(service)
        if svc is None:
            raise AzureNotFound(f"web service {service} does not exist in the workspace")
        raw = str(svc.state or "Transitioning")
        state = STATES.get(raw, "creating")
        if state == "ready":
            if not svc.scoring_uri:
                return ServiceState("creating", raw)
            key = self.workspace.call(f"read the keys of {service}", svc.get_keys)[0] if svc.auth_enabled else None
            return ServiceState("ready", raw, scoring_uri=str(svc.scoring_uri), key=key)
        if state == "failed":
            return ServiceState("failed", raw, error=self._reason(svc, raw))
        return ServiceState("creating", raw)

    def undeploy(self, target: str, service: str) -> None:
        self._spec(target)
        svc = self._find(service)
        if svc is not None:
            self.workspace.call(f"delete web service {service}", svc.delete)

    def _find(self, service: str) -> Any:
        ws = self.workspace
        try:
            return ws.call(f"read web service {service}", ws.sdk.Webservice, ws.workspace(), service)
        except AzureNotFound:
            return None

    def _reason(self, svc: Any, raw: str) -> str:
        """The service's error message, with the last lines of its log (score.py's init() traceback)."""
        error = svc.error
        message = error.get("message") if isinstance(error, dict) else (str(error) if error else None)
        text = f"the web service is {raw}" + (f": {' '.join(str(message).split())}" if message else "")
        return with_log_tail(text, svc.name,
                             lambda: self.workspace.call(f"read the log of {svc.name}", svc.get_logs, num_lines=50))
