"""The stubbed v2 workspace's managed online endpoints: `ml_client.online_endpoints` / `online_deployments`.

An endpoint is `Creating` for ENDPOINT_SECONDS of the fake clock, then `Succeeded`; a traffic
update makes it `Updating` for UPDATE_SECONDS, then the new traffic applies. Each endpoint has a
real HTTP server on 127.0.0.1 (its scoring URI, behind its key) that hands each request to the
deployment with all of the traffic; a deployment starts like a v1 web service (tests/fakes/
azureml_serving.py): `Creating`, then `Succeeded` with score.py's init() done, or `Failed` with
the traceback in its log. Entities are azure-ai-ml's own; errors are `HttpResponseError`s built
as its clients build them, or its `ValidationException`.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.ai.ml._utils._endpoint_utils import validate_scoring_script
from azure.ai.ml.entities import EndpointAuthKeys, ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.core.polling import LROPoller, NoPolling

from tests.fakes.azureml_serving import FakeServices, ScoringServer
from tests.fakes.azureml_v2 import FakeAzureV2, _Operations, http_error, sdk_call

ENDPOINT_SECONDS = 2.0
UPDATE_SECONDS = 1.0
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{1,30}[a-zA-Z0-9]$")
STATES = {"Transitioning": "Creating", "Healthy": "Succeeded", "Failed": "Failed"}


@dataclass
class EndpointRecord:
    name: str
    entity: ManagedOnlineEndpoint
    created_at: float
    keys: tuple[str, str] = field(default_factory=lambda: (secrets.token_urlsafe(24), secrets.token_urlsafe(24)))
    traffic: dict[str, int] = field(default_factory=dict)
    pending_traffic: dict[str, int] | None = None
    updated_at: float = float("-inf")
    deployments: dict[str, ManagedOnlineDeployment] = field(default_factory=dict)
    server: ScoringServer | None = None

    def state(self, now: float) -> str:
        if now < self.created_at + ENDPOINT_SECONDS:
            return "Creating"
        if self.pending_traffic is not None:
            if now < self.updated_at + UPDATE_SECONDS:
                return "Updating"
            self.traffic, self.pending_traffic = self.pending_traffic, None
        return "Succeeded"


class OnlineEndpoints:
    """The stub's endpoints and their deployments (the deployments are `FakeServices` records)."""

    def __init__(self, azure: FakeAzureV2) -> None:
        self.azure = azure
        self.records: dict[str, EndpointRecord] = {}
        self.services = FakeServices(azure.clock, serve_http=False)
        self.deleted: list[str] = []

    def record(self, name: str) -> EndpointRecord:
        found = self.records.get(name)
        if found is None:
            raise http_error(404, "UserError", f"Could not find online endpoint {name}")
        return found

    def route(self, record: EndpointRecord) -> Any:
        """The entry script of the deployment taking the traffic (Azure splits by weight; tests use 100/0)."""
        record.state(self.azure.clock())
        chosen = max(record.traffic.items(), key=lambda kv: kv[1], default=(None, 0))
        service = self.services.records.get(f"{record.name}/{chosen[0]}") if chosen[1] > 0 else None
        return service.module if service is not None else None

    def shutdown(self) -> None:
        for record in self.records.values():
            if record.server is not None:
                record.server.stop()
        self.records.clear()
        self.services.shutdown()


def online(azure: FakeAzureV2) -> OnlineEndpoints:
    """The stub's online endpoints (made on first use)."""
    return _stub(azure)


def _stub(azure: FakeAzureV2) -> OnlineEndpoints:
    found: OnlineEndpoints | None = getattr(azure, "online", None)
    if found is None:
        found = OnlineEndpoints(azure)
        azure.online = found  # type: ignore[attr-defined]
    return found


class OnlineEndpointOperations(_Operations):
    @sdk_call("online_endpoints.get")
    def get(self, name, *, local=False):
        stub = _stub(self._azure)
        record = stub.record(name)
        state = record.state(self._azure.clock())
        entity = ManagedOnlineEndpoint(
            name=name, auth_mode=record.entity.auth_mode, tags=dict(record.entity.tags or {}),
            description=record.entity.description, traffic=dict(record.traffic), provisioning_state=state,
            scoring_uri=record.server.uri if state != "Creating" and record.server else None,
        )
        return entity

    @sdk_call("online_endpoints.begin_create_or_update")
    def begin_create_or_update(self, endpoint, *, local=False):
        stub, now = _stub(self._azure), self._azure.clock()
        if not isinstance(endpoint, ManagedOnlineEndpoint):
            raise TypeError("expected a ManagedOnlineEndpoint")
        if not _ENDPOINT_NAME.match(endpoint.name or ""):
            raise http_error(400, "UserError", f"Invalid endpoint name {endpoint.name}")
        record = stub.records.get(endpoint.name)
        if record is None:
            record = EndpointRecord(endpoint.name, endpoint, now)
            record.server = ScoringServer(lambda: stub.route(record), record.keys[0])
            stub.records[endpoint.name] = record
        else:
            state = record.state(now)
            if state in ("Creating", "Updating"):
                # UNVERIFIED against live Azure: the code and wording of an update during an update.
                raise http_error(409, "Conflict", f"Endpoint {endpoint.name} is {state}; try again later")
            traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
            missing = [d for d in traffic if d not in record.deployments]
            if missing or (traffic and sum(traffic.values()) != 100):
                raise http_error(400, "BadArgument", f"Traffic {traffic} is not valid for deployments "
                                                     f"{sorted(record.deployments)}")
            if traffic != record.traffic:
                record.pending_traffic, record.updated_at = traffic, now
        return LROPoller(None, None, lambda _: endpoint, NoPolling())

    @sdk_call("online_endpoints.get_keys")
    def get_keys(self, name):
        record = _stub(self._azure).record(name)
        return EndpointAuthKeys(primary_key=record.keys[0], secondary_key=record.keys[1])

    @sdk_call("online_endpoints.begin_delete")
    def begin_delete(self, name=None, *, local=False):
        stub = _stub(self._azure)
        record = stub.record(name)
        for deployment in record.deployments:
            stub.services.delete(f"{name}/{deployment}")
        if record.server is not None:
            record.server.stop()
        del stub.records[name]
        stub.deleted.append(name)
        return LROPoller(None, None, lambda _: None, NoPolling())


class OnlineDeploymentOperations(_Operations):
    @sdk_call("online_deployments.get")
    def get(self, name, endpoint_name, *, local=False):
        stub = _stub(self._azure)
        record = stub.record(endpoint_name)
        if name not in record.deployments:
            raise http_error(404, "UserError", f"Could not find deployment {name} of endpoint {endpoint_name}")
        service = stub.services.records[f"{endpoint_name}/{name}"]
        entity = record.deployments[name]
        found = ManagedOnlineDeployment(name=name, endpoint_name=endpoint_name, model=entity.model,
                                        instance_type=entity.instance_type, instance_count=entity.instance_count,
                                        tags=dict(entity.tags or {}))
        found._provisioning_state = STATES[stub.services.state(service)]
        return found

    @sdk_call("online_deployments.begin_create_or_update")
    def begin_create_or_update(self, deployment, *, local=False, vscode_debug=False, skip_script_validation=False,
                               local_enable_gpu=False, **kwargs):
        azure, stub = self._azure, _stub(self._azure)
        if not isinstance(deployment, ManagedOnlineDeployment):
            raise TypeError("expected a ManagedOnlineDeployment")
        if not skip_script_validation:
            validate_scoring_script(deployment)  # the SDK's own check: the script parses
        record = stub.record(deployment.endpoint_name)  # the SDK reads the endpoint first (404 when missing)
        if record.state(azure.clock()) == "Creating":
            # UNVERIFIED against live Azure: the refusal of a deployment on an endpoint still being created.
            raise http_error(409, "Conflict", f"Endpoint {record.name} is still being created")
        name, _, version = str(deployment.model).removeprefix("azureml:").partition(":")
        model = next((m for m in azure.models if m.name == name and str(m.version) == version), None)
        if model is None:
            raise http_error(404, "UserError", f"Could not find model {deployment.model}")
        job_name, artifact = str(model.path).removeprefix("azureml://jobs/").split("/outputs/artifacts/paths/", 1)
        files = azure.record(job_name).files(azure.clock())
        prefix = posixpath.dirname(artifact)
        model_files = {posixpath.relpath(f, prefix or "."): content for f, content in files.items()
                       if f == artifact or f.startswith(artifact + "/")}
        code = deployment.code_configuration
        stub.services.create(f"{record.name}/{deployment.name}", source_dir=Path(str(code.code)),
                             entry_script=str(code.scoring_script), model_files=model_files,
                             model_subdir=f"{name}/{version}", auth_enabled=True,
                             details={"deployment": deployment})
        record.deployments[deployment.name] = deployment
        return LROPoller(None, None, lambda _: deployment, NoPolling())

    @sdk_call("online_deployments.get_logs")
    def get_logs(self, name, endpoint_name, lines, *, container_type=None, local=False):
        stub = _stub(self._azure)
        stub.record(endpoint_name)
        service = stub.services.records.get(f"{endpoint_name}/{name}")
        if service is None:
            raise http_error(404, "UserError", f"Could not find deployment {name}")
        return "\n".join(service.logs.splitlines()[-lines:])

    @sdk_call("online_deployments.list")
    def list(self, endpoint_name, *, local=False):
        record = _stub(self._azure).record(endpoint_name)
        return [self.get(name, endpoint_name) for name in record.deployments]

    @sdk_call("online_deployments.begin_delete")
    def begin_delete(self, name, endpoint_name, *, local=False):
        stub = _stub(self._azure)
        record = stub.record(endpoint_name)
        if name not in record.deployments:
            raise http_error(404, "UserError", f"Could not find deployment {name}")
        record.state(self._azure.clock())
        if record.traffic.get(name, 0) > 0 or (record.pending_traffic or {}).get(name, 0) > 0:
            raise http_error(400, "BadArgument", f"Deployment {name} takes traffic; move it first")
        del record.deployments[name]
        stub.services.delete(f"{endpoint_name}/{name}")
        return LROPoller(None, None, lambda _: None, NoPolling())
