"""The Azure ML workspace and what jobs need from it: experiments, compute, environments, datasets.

Every SDK call goes through `call_with_timeout`; objects that cost a request to build
(workspace, experiments, registered environments and datasets) are built once and reused.
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
from service.backends.azureml_sdk import AzureSdk, call_with_timeout, quiet_cancel
from service.backends.base import DatasetInput, EnvironmentSpec
from service.core.errors import BackendError
from service.core.settings import Settings

log = logging.getLogger(__name__)

REGISTERED_DATASET = re.compile(r"^azureml://datasets/(?P<name>[^/]+)(?:/versions/(?P<version>\d+))?/?$")
OPEN_DATASET = re.compile(r"^azureml://opendatasets/(?P<name>[a-z0-9_-]+)/?$")


class AzureWorkspace(AzureWorkspaceBase[AzureSdk]):
    """A lazily connected azureml-core Workspace; safe to share between the poller, dispatcher and requests."""

    def __init__(
        self, settings: Settings, *, sdk: AzureSdk | Callable[[], AzureSdk],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        load: Callable[[], AzureSdk] = (lambda: sdk) if isinstance(sdk, AzureSdk) else sdk

        def load_quietly() -> AzureSdk:
            quiet_cancel()  # before the SDK reads its settings
            return load()

        super().__init__(settings, load_sdk=load_quietly, clock=clock)
        self._experiments: dict[str, Any] = {}
        self._environments: dict[tuple[str, int], Any] = {}
        self._datasets: dict[tuple[str, int], Any] = {}

    def call(self, what: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """One SDK call with its own timeout; SDK errors come out as `BackendError`."""
        return call_with_timeout(what, timeout or self.timeout, fn, *args, **kwargs)

    def workspace(self) -> Any:
        """The connected Workspace; after a failure, retried at most every few seconds."""
        return self.connection()

    def _connect(self) -> Any:
        cfg, sdk = self.settings, self.sdk
        auth = self._auth()
        if cfg.azureml_config is not None:
            return sdk.Workspace.from_config(path=str(cfg.azureml_config), auth=auth)
        return sdk.Workspace.get(
            name=cfg.azureml_workspace_name, auth=auth, subscription_id=cfg.azureml_subscription_id,
            resource_group=cfg.azureml_resource_group, cloud=cfg.azureml_cloud,
        )

    def _auth(self) -> Any:
        """Service principal from AZURE_* variables, else managed identity; never interactive."""
        cfg, sdk = self.settings, self.sdk
        identity = azure_identity(cfg)
        if isinstance(identity, ServicePrincipal):
            return sdk.ServicePrincipalAuthentication(
                tenant_id=identity.tenant_id, service_principal_id=identity.client_id,
                service_principal_password=identity.secret, cloud=cfg.azureml_cloud,
            )
        # The cloud is named so the SDK never fetches cloud metadata (a 30 s timeout offline).
        if identity.client_id:  # a user-assigned identity
            return sdk.MsiAuthentication(cloud=cfg.azureml_cloud, identity_config={"client_id": identity.client_id})
        return sdk.MsiAuthentication(cloud=cfg.azureml_cloud)

    def experiment(self, name: str) -> Any:
        """The experiment `name` (created on first use by the SDK), built once per process."""
        found = self._experiments.get(name)
        if found is None:
            found = self.call(f"open experiment {name!r}", self.sdk.Experiment, workspace=self.workspace(), name=name)
            self._experiments[name] = found
        return found

    def environment(self, spec: EnvironmentSpec) -> Any:
        """The runyard environment as a registered azureml Environment, registered once per version."""
        key = (spec.name, spec.version)
        found = self._environments.get(key)
        if found is None:
            sdk = self.sdk
            env = sdk.Environment(spec.name)
            env.python.conda_dependencies = sdk.CondaDependencies.create(
                pip_packages=list(spec.pip_packages), conda_packages=list(spec.conda_packages),
                python_version=spec.python_version,
            )
            found = self.call(f"register environment {spec.name} v{spec.version}", env.register, self.workspace())
            self._environments[key] = found
        return found

    def dataset_input(self, arg: DatasetInput) -> Any:
        """A dataset argument as the DatasetConsumptionConfig the script's argv carries."""
        dataset = self._dataset(arg)
        return dataset.as_mount() if arg.mode == "mount" else dataset.as_download()

    def _dataset(self, arg: DatasetInput) -> Any:
        key = (arg.name, arg.version)
        found = self._datasets.get(key)
        if found is not None:
            return found
        if arg.uri is None:
            raise BackendError(
                f"dataset {arg.name} v{arg.version} is a folder on the runyard server ({arg.path}); an Azure ML "
                "target needs a dataset registered with a uri (https://, wasbs://, abfss://, adl:// or "
                "azureml://datasets/NAME[/versions/N])", transient=False)
        sdk, ws = self.sdk, self.workspace()
        registered = REGISTERED_DATASET.match(arg.uri)
        opendataset = OPEN_DATASET.match(arg.uri)
        if opendataset and sdk.open_file_dataset is not None:
            # The tutorial: MNIST.get_file_dataset(), registered as `mnist_opendataset` (create_new_version).
            files = self.call(f"define open dataset {opendataset['name']}", sdk.open_file_dataset,
                              opendataset["name"])
            found = self._register_dataset(files, arg)
        elif registered:
            version = registered["version"] or "latest"
            found = self.call(f"get dataset {registered['name']}", sdk.Dataset.get_by_name, ws,
                              registered["name"], version=version)
        elif arg.uri.startswith("azureml://"):
            raise BackendError(f"dataset {arg.name}: only azureml://datasets/NAME[/versions/N] and "
                               "azureml://opendatasets/mnist uris are supported", transient=False)
        else:
            files = self.call(f"define dataset {arg.name}", sdk.Dataset.File.from_files, path=arg.uri)
            found = self._register_dataset(files, arg)
        self._datasets[key] = found
        return found

    def _register_dataset(self, files: Any, arg: DatasetInput) -> Any:
        """Name the FileDataset in the workspace too; submit works without it, so failures only warn."""
        try:
            return self.call(f"register dataset {arg.name}", files.register, self.workspace(), arg.name,
                             description=f"runyard dataset {arg.name} v{arg.version}",
                             tags={"runyard_version": str(arg.version)}, create_new_version=True)
        except BackendError as exc:
            if exc.transient:
                raise
            log.warning("dataset %s v%s is used unregistered: %s", arg.name, arg.version, exc.message)
            return files

    def _ensure_one(self, state: ComputeState) -> None:
        sdk, ws, spec = self.sdk, self.workspace(), state.spec
        try:
            state.target = self.call(f"attach compute {spec.name}", sdk.ComputeTarget, workspace=ws, name=spec.name)
        except AzureNotFound:
            config = sdk.AmlCompute.provisioning_configuration(
                vm_size=spec.vm_size, min_nodes=spec.min_nodes, max_nodes=spec.max_nodes,
                idle_seconds_before_scaledown=spec.idle_seconds_before_scaledown,
            )
            state.target = self.call(f"create compute {spec.name}", sdk.ComputeTarget.create, ws, spec.name, config)
            log.info("compute target %s created (%s, %d..%d nodes)", spec.name, spec.vm_size, spec.min_nodes,
                     spec.max_nodes)
        state.error = None
        self.refresh_compute(state, force=True)

    def refresh_compute(self, state: ComputeState, *, force: bool = False) -> None:
        """Read the cluster's provisioning state and node count, at most every refresh interval."""
        if not self._due(state, force):
            return
        try:
            status = self.call(f"read compute {state.spec.name}", state.target.get_status, timeout=min(self.timeout, 5))
        except BackendError as exc:
            state.error = exc.message
            return
        # AmlCompute.get_status() is None until the cluster reports (it prints instead).
        raw = getattr(status, "provisioning_state", None) or getattr(state.target, "provisioning_state", None)
        raw = status if isinstance(status, str) else raw
        state.state = COMPUTE_STATES.get(str(raw).lower(), str(raw).lower()) if raw else "unknown"
        nodes = getattr(status, "current_node_count", None)
        state.current_nodes = nodes if isinstance(nodes, int) else None
        errors = getattr(status, "errors", None)
        state.error = "; ".join(str(getattr(e, "message", e)) for e in errors) if errors else None
