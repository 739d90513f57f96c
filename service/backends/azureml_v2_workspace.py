"""An Azure ML workspace through azure-ai-ml: client, clusters, environments, data inputs, MLflow.

Every call goes through `call_v2` (own thread, timeout, exceptions classified); things that
cost a request to build (the client, MLflow client, registered environments and data) are
built once and reused. The entity classes are azure-ai-ml's own, handed in by `V2Sdk`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from service.backends.azureml_base import (
    COMPUTE_STATES,
    AzureNotFound,
    AzureWorkspaceBase,
    ComputeState,
    ServicePrincipal,
    azure_identity,
)
from service.backends.azureml_v2_sdk import V2Sdk, call_v2
from service.backends.base import DatasetInput, EnvironmentSpec
from service.core.errors import BackendError
from service.core.settings import Settings

log = logging.getLogger(__name__)

REGISTERED_DATA = re.compile(r"^azureml://datasets/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/?$")
# Paths a v2 Input takes as they are (datastore paths included).
DIRECT_URI = re.compile(r"^(https?|wasbs?|abfss?|adl|azureml)://")
INPUT_MODES = {"mount": "ro_mount", "download": "download"}
# A v2 job logs to the workspace's MLflow only if the environment can: added unless listed.
MLFLOW_PACKAGES = ("mlflow-skinny", "azureml-mlflow")


class AzureV2Workspace(AzureWorkspaceBase[V2Sdk]):
    """A lazily connected MLClient; safe to share between the poller, dispatcher and requests."""

    def __init__(
        self, settings: Settings, *, sdk: V2Sdk | Callable[[], V2Sdk], clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(settings, load_sdk=(lambda: sdk) if isinstance(sdk, V2Sdk) else sdk, clock=clock)
        self._mlflow: Any = None
        self._environments: dict[tuple[str, int], Any] = {}
        self._data: dict[tuple[str, int], str] = {}

    def call(self, what: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """One SDK call with its own timeout; SDK errors come out as `BackendError`."""
        return call_v2(what, timeout or self.timeout, fn, *args, **kwargs)

    def client(self) -> Any:
        """The MLClient; after a failure to build it, retried at most every few seconds."""
        return self.connection()

    def _connect(self) -> Any:
        cfg, sdk = self.settings, self.sdk
        credential = self._credential()
        if cfg.azureml_config is not None:
            return sdk.MLClient.from_config(credential, path=str(cfg.azureml_config), cloud=cfg.azureml_cloud)
        return sdk.MLClient(credential, subscription_id=cfg.azureml_subscription_id,
                            resource_group_name=cfg.azureml_resource_group,
                            workspace_name=cfg.azureml_workspace_name, cloud=cfg.azureml_cloud)

    def _credential(self) -> Any:
        """Service principal from AZURE_* variables, else managed identity; never interactive."""
        identity, sdk = azure_identity(self.settings), self.sdk
        if isinstance(identity, ServicePrincipal):
            return sdk.ClientSecretCredential(identity.tenant_id, identity.client_id, identity.secret)
        if identity.client_id:  # a user-assigned identity
            return sdk.ManagedIdentityCredential(client_id=identity.client_id)
        return sdk.ManagedIdentityCredential()

    def mlflow(self) -> Any:
        """An MLflow client on the workspace's tracking URI, where v2 jobs keep metrics and artifacts."""
        if self._mlflow is None:
            client = self.client()
            workspace = self.call("read the workspace", client.workspaces.get, client.workspace_name)
            uri = getattr(workspace, "mlflow_tracking_uri", None)
            if not uri:
                raise BackendError("the workspace has no MLflow tracking URI", transient=False)
            self._mlflow = self.sdk.MlflowClient(tracking_uri=uri)
        return self._mlflow

    def environment(self, spec: EnvironmentSpec) -> Any:
        """The runyard environment as a v2 Environment (conda file on a curated image), created once."""
        key = (spec.name, spec.version)
        found = self._environments.get(key)
        if found is None:
            env = self.sdk.Environment(name=spec.name, version=str(spec.version), conda_file=conda_file(spec),
                                       image=self.settings.azureml_v2_base_image,
                                       description=f"runyard environment {spec.name} v{spec.version}")
            client = self.client()
            found = self.call(f"create environment {spec.name} v{spec.version}", client.environments.create_or_update,
                              env)
            self._environments[key] = found
        return found

    def data_input(self, arg: DatasetInput) -> Any:
        """A dataset argument as a v2 `Input(type="uri_folder")` on a registered data asset or a URI."""
        return self.sdk.Input(type="uri_folder", path=self._data_path(arg), mode=INPUT_MODES[arg.mode])

    def _data_path(self, arg: DatasetInput) -> str:
        key = (arg.name, arg.version)
        found = self._data.get(key)
        if found is not None:
            return found
        if arg.uri is None:
            raise BackendError(
                f"dataset {arg.name} v{arg.version} is a folder on the runyard server ({arg.path}); an Azure ML "
                "target needs a dataset registered with a uri (https://, wasbs://, abfss://, adl://, "
                "azureml://datastores/... or azureml://datasets/NAME[/versions/N])", transient=False)
        client = self.client()
        registered = REGISTERED_DATA.match(arg.uri)
        if registered:
            name, version = registered["name"], registered["version"]
            data = self.call(f"get data asset {name}", client.data.get, name, version=version,
                             label=None if version else "latest")
            found = f"azureml:{data.name}:{data.version}"
        elif DIRECT_URI.match(arg.uri):
            found = self._register_data(client, arg)
        else:
            raise BackendError(f"dataset {arg.name}: {arg.uri!r} is not a uri Azure ML can read", transient=False)
        self._data[key] = found
        return found

    def _register_data(self, client: Any, arg: DatasetInput) -> str:
        """Name the URI in the workspace too; a job works without it, so a refusal only warns."""
        assert arg.uri is not None
        if arg.uri.startswith("azureml://"):
            return arg.uri  # a datastore path: already the workspace's
        data = self.sdk.Data(name=arg.name, version=str(arg.version), path=arg.uri, type="uri_folder",
                             description=f"runyard dataset {arg.name} v{arg.version}")
        try:
            made = self.call(f"register data asset {arg.name}", client.data.create_or_update, data)
        except BackendError as exc:
            if exc.transient:
                raise
            log.warning("dataset %s v%s is used by its uri: %s", arg.name, arg.version, exc.message)
            return arg.uri
        return f"azureml:{made.name}:{made.version}"

    def _ensure_one(self, state: ComputeState) -> None:
        client, spec = self.client(), state.spec
        try:
            state.target = self.call(f"read compute {spec.name}", client.compute.get, spec.name)
        except AzureNotFound:
            cluster = self.sdk.AmlCompute(name=spec.name, size=spec.vm_size, min_instances=spec.min_nodes,
                                          max_instances=spec.max_nodes,
                                          idle_time_before_scale_down=spec.idle_seconds_before_scaledown)
            # The poller returned is dropped: provisioning takes minutes and is read back by refresh.
            self.call(f"create compute {spec.name}", client.compute.begin_create_or_update, cluster)
            state.target = cluster
            log.info("compute target %s created (%s, %d..%d nodes)", spec.name, spec.vm_size, spec.min_nodes,
                     spec.max_nodes)
        state.error = None
        self.refresh_compute(state, force=True)

    def refresh_compute(self, state: ComputeState, *, force: bool = False) -> None:
        """Read the cluster's provisioning state, at most every refresh interval."""
        if not self._due(state, force):
            return
        try:
            cluster = self.call(f"read compute {state.spec.name}", self.client().compute.get, state.spec.name,
                                timeout=min(self.timeout, 5))
        except BackendError as exc:
            state.error = exc.message
            return
        raw = getattr(cluster, "provisioning_state", None)
        state.state = COMPUTE_STATES.get(str(raw).lower(), str(raw).lower()) if raw else "unknown"
        errors = getattr(cluster, "provisioning_errors", None)
        if errors and not isinstance(errors, str):
            errors = "; ".join(str(getattr(e, "message", e)) for e in errors)
        state.error = str(errors) if errors else None


def conda_file(spec: EnvironmentSpec) -> dict[str, Any]:
    """The environment's packages as a conda specification (the dict form azure-ai-ml accepts)."""
    pip = list(spec.pip_packages)
    listed = {re.split(r"[<>=!~\[ ]", p, maxsplit=1)[0].lower() for p in pip}
    pip += [p for p in MLFLOW_PACKAGES if p not in listed]
    dependencies: list[Any] = [f"python={spec.python_version}", "pip", *spec.conda_packages, {"pip": pip}]
    return {"name": spec.name, "channels": ["conda-forge"], "dependencies": dependencies}
