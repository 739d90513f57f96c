"""Service configuration; the only module that reads the environment."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]


class AzureComputeSpec(BaseModel):
    """An Azure ML cluster runyard attaches, or creates with these settings when missing."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{1,23}$")
    vm_size: str = "STANDARD_D2_V2"
    min_nodes: int = Field(default=0, ge=0)
    # azureml-core's provisioning_configuration refuses a missing max_nodes (facts §2).
    max_nodes: int = Field(default=4, ge=1)
    idle_seconds_before_scaledown: int = Field(default=1800, ge=0)
    # Which Azure ML SDK serves this cluster; None: RUNYARD_AZUREML_SDK.
    sdk: Literal["v1", "v2"] | None = None

    @model_validator(mode="after")
    def _valid(self) -> AzureComputeSpec:
        if self.name.lower() in {"local", "amlcompute", "containerinstance"}:
            raise ValueError(f"{self.name!r} is a reserved compute target name")
        if self.max_nodes < self.min_nodes:
            raise ValueError("max_nodes must be >= min_nodes")
        return self


class AzureInferenceSpec(BaseModel):
    """Where endpoints on Azure are served: Azure Container Instances (the tutorial's part 2), an attached AKS
    cluster (SDK v1), or a managed online endpoint (SDK v2)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{1,23}$")
    # v1: `aci` (no compute target) or `aks` (deploys to the attached cluster `aks_cluster`); v2: `managed`.
    kind: Literal["aci", "aks", "managed"] = "aci"
    aks_cluster: str | None = None
    cpu_cores: float = Field(default=1.0, gt=0)  # ACI/AKS: AciWebservice.deploy_configuration(cpu_cores, memory_gb)
    memory_gb: float = Field(default=1.0, gt=0)
    instance_type: str = "Standard_DS3_v2"  # managed online deployments
    instance_count: int = Field(default=1, ge=1)

    @property
    def sdk(self) -> Literal["v1", "v2"]:
        return "v2" if self.kind == "managed" else "v1"

    @model_validator(mode="after")
    def _valid(self) -> AzureInferenceSpec:
        if self.name.lower() == "local":
            raise ValueError("'local' is the local target's name")
        if self.kind == "aks" and not self.aks_cluster:
            raise ValueError("an aks inference target needs aks_cluster (the attached AKS compute's name)")
        return self


def _half_the_fd_limit() -> int:
    # Each connection is a file descriptor; the rest are for the database, logs and runs.
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft // 2) if soft != resource.RLIM_INFINITY else 4096


def _azure_credential(variable: str) -> SecretStr | None:
    # Read without the RUNYARD_ prefix: these are the names every Azure SDK and CLI uses.
    return Field(default=None, validation_alias=AliasChoices(variable, variable.lower()))


@lru_cache(maxsize=1)
def _hostname() -> str:
    """The machine's name, read once: a replica's host must not change under it (and the poller
    asks once per active job: 10,000 system calls a tick)."""
    return socket.gethostname()


class Settings(BaseSettings):
    """Every knob of the service, from `RUNYARD_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".runyard")
    database_url: str | None = None
    local_max_concurrent: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Local runs start as forks of a prestarted interpreter that has imported numpy and scikit-learn
    # (backends/local_prestart.py); off: each run starts a new interpreter.
    local_prestart: bool = True
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    # Replicas on one database: each names itself; a job's submit and polling belong to one
    # replica for `lease_seconds`, renewed while it lives, taken over by another when it lapses.
    replica_id: str | None = Field(default=None, min_length=1, max_length=255)
    # The machine whose data folder holds this replica's local runs: replicas sharing one data
    # folder on one host share it (and adopt each other's local runs); another host's local runs
    # are failed or re-queued once that host has stopped renewing them.
    host_id: str | None = Field(default=None, min_length=1, max_length=255)
    lease_seconds: float = Field(default=30.0, ge=1)
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    # No job stays active forever: limits on waiting, running, silence and unconfirmed cancels.
    queue_timeout_seconds: float = Field(default=86_400.0, gt=0)
    max_run_duration_seconds: int = Field(default=2_592_000, gt=0)  # Azure ML's own default: 30 days
    not_responding_timeout_seconds: float = Field(default=1_800.0, gt=0)
    cancel_confirm_seconds: float = Field(default=120.0, gt=0)
    cancel_abandon_seconds: float = Field(default=3_600.0, gt=0)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    # /readyz says not ready when the data dir's disk has less free space than this.
    min_free_disk_mb: float = Field(default=100.0, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_log_read_bytes: int = Field(default=1_048_576, ge=1024)
    # Delete the run folders (`run`) or only the logs (`logs`) of jobs ended more than this many days
    # ago; never those of jobs a registered model came from. Unset: keep everything.
    retention_days: float | None = Field(default=None, gt=0)
    retention_scope: Literal["run", "logs"] = "run"
    # Metric points stored per job; more are counted on the job (`metrics_dropped`), not stored.
    max_metric_points_per_job: int = Field(default=1_000_000, ge=1)
    # Comma-separated keys or a JSON list; or their SHA-256 hex digests, so no plain key sits in the environment.
    api_keys: SecretStr | None = None
    api_key_hashes: list[str] = Field(default_factory=list)
    # With keys configured, also ask for one on /metrics (Prometheus can send a bearer token)...
    metrics_require_key: bool = False
    # ...and on /docs, /redoc and /openapi.json (a browser then needs a proxy that adds the header).
    docs_require_key: bool = False
    # Variables of the service's environment a local run may see besides PATH, locale, TZ, TMPDIR
    # and the BLAS thread limits (CUDA_VISIBLE_DEVICES, HTTPS_PROXY...); never the service's own.
    job_env_passthrough: list[str] = Field(default_factory=list)
    # Extra server-side script folders a job may name as its `source`.
    sources: dict[str, Path] = Field(default_factory=dict)
    # Folders a dataset registered by path may live in (besides data_dir).
    dataset_roots: list[Path] = Field(default_factory=lambda: [Path("/usr/share/datasets")])
    log_level: str = "INFO"
    # One JSON object per line for log shippers; "text" for reading in a terminal; "auto": text on a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Comment lines sent on an idle `logs?follow=true` stream so proxies and clients see it alive.
    log_follow_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Open `logs?follow=true` streams, in all and per job; past either a new one gets 503.
    max_log_followers: int = Field(default=256, ge=1)
    max_log_followers_per_job: int = Field(default=32, ge=1)
    # The HTTP server: open connections (more get 503), and how long a client may take to send
    # a request's headers, its body, or the next request on an idle keep-alive connection.
    max_connections: int = Field(default_factory=_half_the_fd_limit, ge=1)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1)
    # Endpoints (served model versions): rows per score request, workers per endpoint, and each
    # worker's address-space limit; the batcher's row budget and how long it waits for company.
    endpoint_max_rows: int = Field(default=1000, ge=1)
    endpoint_max_replicas: int = Field(default=4, ge=1)
    endpoint_memory_limit_mb: int = Field(default=1024, ge=0)
    endpoint_batch_max_rows: int = Field(default=4096, ge=1)
    endpoint_batch_window_ms: float = Field(default=1.0, ge=0)
    # Requests of at most this many rows to a linear model are scored in the service itself (0: never);
    # at most the 128 probe rows its copy of the model is checked on (models/endpoints/linear.py).
    endpoint_inline_max_rows: int = Field(default=100, ge=0, le=128)
    endpoint_load_timeout_seconds: float = Field(default=120.0, gt=0)
    endpoint_predict_timeout_seconds: float = Field(default=30.0, gt=0)
    # A ready endpoint on an inference target: how often its service's state is read again.
    endpoint_recheck_seconds: float = Field(default=60.0, gt=0)

    # Azure ML: a config.json path, or subscription + resource group + workspace name.
    # Unset: the local target only, and azureml is never imported.
    azureml_config: Path | None = None
    azureml_subscription_id: str | None = None
    azureml_resource_group: str | None = None
    azureml_workspace_name: str | None = None
    azureml_cloud: str = "AzureCloud"
    azureml_compute_targets: list[AzureComputeSpec] = Field(
        default_factory=lambda: [AzureComputeSpec(name="cpu-cluster")]
    )
    # Inference targets endpoints deploy to (Model.deploy to ACI by default, as the tutorial's part 2).
    azureml_inference_targets: list[AzureInferenceSpec] = Field(
        default_factory=lambda: [AzureInferenceSpec(name="aci")]
    )
    # Every SDK call runs in its own thread and is abandoned after this long.
    azureml_call_timeout_seconds: float = Field(default=60.0, gt=0)
    # Per poll cycle, at most this many runs get their metrics, log and files read...
    azureml_poll_detail_budget: int = Field(default=10, ge=1)
    # ...and a running run's are re-read at most this often (status changes are read at once).
    azureml_detail_refresh_seconds: float = Field(default=10.0, ge=0)
    # v1: azureml-core (ScriptRunConfig); v2: azure-ai-ml (command jobs). A cluster's own `sdk` wins.
    azureml_sdk: Literal["v1", "v2"] = "v1"
    # The curated image a v2 job's environment builds its conda file on.
    azureml_v2_base_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    azure_tenant_id: SecretStr | None = _azure_credential("AZURE_TENANT_ID")
    azure_client_id: SecretStr | None = _azure_credential("AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = _azure_credential("AZURE_CLIENT_SECRET")

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("job_env_passthrough")
    @classmethod
    def _no_service_secrets(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.isidentifier() or name.upper().startswith(("RUNYARD_", "AZURE_")):
                raise ValueError(f"{name!r} cannot be passed to jobs: RUNYARD_* and AZURE_* belong to the service")
        return names

    @model_validator(mode="after")
    def _whole_azure_workspace(self) -> Settings:
        named = [self.azureml_subscription_id, self.azureml_resource_group, self.azureml_workspace_name]
        if self.azureml_config is None and any(named) and not all(named):
            raise ValueError("set all of RUNYARD_AZUREML_SUBSCRIPTION_ID, _RESOURCE_GROUP and _WORKSPACE_NAME")
        names = [t.name for t in self.azureml_compute_targets]
        if len(set(names)) != len(names):
            raise ValueError("azureml_compute_targets has duplicate names")
        inference = [t.name for t in self.azureml_inference_targets]
        if len(set(inference)) != len(inference) or set(inference) & set(names):
            raise ValueError("azureml_inference_targets names must be unique and differ from the clusters'")
        return self

    def plain_api_keys(self) -> list[str]:
        """The keys of `RUNYARD_API_KEYS`: a JSON list (as every list setting), or comma-separated."""
        raw = self.api_keys.get_secret_value().strip() if self.api_keys else ""
        if raw.startswith("["):
            keys = json.loads(raw)  # checked by _api_keys_list below
            return [str(k).strip() for k in keys if str(k).strip()]
        return [k.strip() for k in raw.split(",") if k.strip()]

    def resolved_log_format(self) -> Literal["json", "text"]:
        """`auto` is text when stderr is a terminal (a person reads it), JSON otherwise (a collector does)."""
        if self.log_format == "auto":
            return "text" if sys.stderr.isatty() else "json"
        return self.log_format

    @field_validator("api_keys")
    @classmethod
    def _api_keys_list(cls, value: SecretStr | None) -> SecretStr | None:
        raw = value.get_secret_value().strip() if value else ""
        if raw.startswith("["):
            try:
                keys = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc}); give a JSON list of strings or comma-separated keys") \
                    from None
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError("give a JSON list of strings or comma-separated keys")
        return value

    @property
    def azureml_configured(self) -> bool:
        """True when an Azure ML workspace is configured."""
        return self.azureml_config is not None or bool(self.azureml_workspace_name)

    def azureml_targets(self, sdk: Literal["v1", "v2"]) -> list[AzureComputeSpec]:
        """The declared clusters that `sdk` serves."""
        return [t for t in self.azureml_compute_targets if (t.sdk or self.azureml_sdk) == sdk]

    def azureml_uses(self, sdk: Literal["v1", "v2"]) -> bool:
        """Whether `sdk`'s backend is needed: a cluster uses it, or an inference target set explicitly does
        (the default `aci` target alone never brings in azureml-core)."""
        explicit = "azureml_inference_targets" in self.model_fields_set
        return bool(self.azureml_targets(sdk)) or (explicit and any(
            t.sdk == sdk for t in self.azureml_inference_targets))

    def for_azureml_sdk(self, sdk: Literal["v1", "v2"]) -> Settings:
        """These settings with only the clusters and inference targets `sdk` serves (each backend sees its own)."""
        return self.model_copy(update={
            "azureml_compute_targets": self.azureml_targets(sdk),
            "azureml_inference_targets": [t for t in self.azureml_inference_targets if t.sdk == sdk],
        })

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'runyard.db'}"

    @property
    def effective_host_id(self) -> str:
        """The host this replica runs local jobs on: set, or the machine's hostname."""
        return self.host_id or _hostname()

    @property
    def effective_replica_id(self) -> str:
        """This replica's name: set, or host and port (stable across restarts, unique per host)."""
        return self.replica_id or f"{self.effective_host_id}:{self.port}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    def source_folders(self) -> dict[str, Path]:
        """Named script folders; `trainer` (this repo's trainer/) is built in."""
        return {"trainer": REPO_ROOT / "trainer", **self.sources}


EXPECTS = {
    "sources": 'a JSON object of name -> folder, e.g. {"mine": "/srv/scripts"}',
    "dataset_roots": 'a JSON list of folders, e.g. ["/srv/data"]',
    "api_key_hashes": 'a JSON list of SHA-256 hex digests',
    "azureml_compute_targets": 'a JSON list of objects, e.g. [{"name": "cpu-cluster"}]',
    "azureml_inference_targets": 'a JSON list of objects, e.g. [{"name": "aci"}]',
}


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"RUNYARD_{field.upper()}"


def describe_error(exc: Exception) -> str:
    """A bad setting as one line per problem: the RUNYARD_* variable, what is wrong, what it expects."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = env_name(field) if field else "settings"
            detail = ".".join(str(p) for p in error["loc"][1:])
            expects = f" (expects {EXPECTS[field]})" if field in EXPECTS else ""
            lines.append(f"{where}{'.' + detail if detail else ''}: {error['msg']}{expects}")
        return "\n".join(lines)
    found = re.search(r'field "(\w+)"', str(exc))
    field = found.group(1) if found else ""
    if field in Settings.model_fields:
        expects = EXPECTS.get(field, "JSON")
        return f"{env_name(field)}: not valid JSON; expects {expects}"
    return str(exc)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `overrides`); a bad value raises `InvalidSettings` naming its variable."""
    try:
        return Settings(**overrides)
    except (ValidationError, SettingsError) as exc:
        raise InvalidSettings(describe_error(exc)) from None


class InvalidSettings(ValueError):
    """A RUNYARD_* variable does not parse; the message names it and what it expects."""


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings` instead."""
    return load_settings()
