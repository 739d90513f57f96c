"""Every operation of the API as a `Call` value: path, query, body and how to read the answer.

`OPERATIONS` maps each client method to the operation it performs; a test walks `openapi.json`
and fails on an operation no client method covers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from service.api.schemas import Health
from service.catalog.schemas import (
    ComputePublic,
    DatasetCreate,
    DatasetPublic,
    EnvironmentCreate,
    EnvironmentPublic,
    ExperimentPublic,
)
from service.client.protocol import Call
from service.core.schemas import Page
from service.core.states import JobStatus
from service.jobs.schemas import (
    TUTORIAL_JOB,
    FilePublic,
    JobCreate,
    JobPublic,
    LogChunk,
    MetricPointPublic,
    MetricsPublic,
)
from service.models.endpoints.schemas import EndpointPublic, ScoreResponse
from service.models.schemas import ModelPublic, ModelVersionPublic
from service.sweeps.schemas import SweepCreate, SweepDetail, SweepPublic, SweepStatus

JobSpec = JobCreate | Mapping[str, Any] | None
SweepSpec = SweepCreate | Mapping[str, Any]

# client method -> (HTTP method, path template of openapi.json)
OPERATIONS: dict[str, tuple[str, str]] = {
    "submit": ("POST", "/v1/jobs"),
    "list_jobs": ("GET", "/v1/jobs"),
    "get": ("GET", "/v1/jobs/{job_id}"),
    "cancel": ("POST", "/v1/jobs/{job_id}/cancel"),
    "metrics": ("GET", "/v1/jobs/{job_id}/metrics"),
    "metric_history": ("GET", "/v1/jobs/{job_id}/metrics/{name}/history"),
    "logs": ("GET", "/v1/jobs/{job_id}/logs"),
    "follow_logs": ("GET", "/v1/jobs/{job_id}/logs"),
    "files": ("GET", "/v1/jobs/{job_id}/files"),
    "download": ("GET", "/v1/jobs/{job_id}/files/{path}"),
    "register_model": ("POST", "/v1/jobs/{job_id}/models"),
    "models": ("GET", "/v1/models"),
    "model_versions": ("GET", "/v1/models/{name}/versions"),
    "model_version": ("GET", "/v1/models/{name}/versions/{version}"),
    "evaluate": ("POST", "/v1/models/{name}/versions/{version}/evaluate"),
    "deploy": ("POST", "/v1/endpoints"),
    "endpoints": ("GET", "/v1/endpoints"),
    "endpoint": ("GET", "/v1/endpoints/{name}"),
    "update_endpoint": ("PATCH", "/v1/endpoints/{name}"),
    "delete_endpoint": ("DELETE", "/v1/endpoints/{name}"),
    "score": ("POST", "/v1/endpoints/{name}/score"),
    "create_experiment": ("POST", "/v1/experiments"),
    "experiments": ("GET", "/v1/experiments"),
    "create_environment": ("POST", "/v1/environments"),
    "environments": ("GET", "/v1/environments"),
    "create_dataset": ("POST", "/v1/datasets"),
    "datasets": ("GET", "/v1/datasets"),
    "compute": ("GET", "/v1/compute"),
    "create_sweep": ("POST", "/v1/sweeps"),
    "list_sweeps": ("GET", "/v1/sweeps"),
    "get_sweep": ("GET", "/v1/sweeps/{sweep_id}"),
    "cancel_sweep": ("POST", "/v1/sweeps/{sweep_id}/cancel"),
    "health": ("GET", "/healthz"),
    "ready": ("GET", "/readyz"),
    "prometheus_metrics": ("GET", "/metrics"),
}


def _model(kind: type[BaseModel] | Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    # Not strict: a response echoes request models, which refuse coercion (Strict), while the
    # response's datetimes and enums arrive as the JSON strings the server wrote.
    return lambda response: adapter.validate_python(response.json(), strict=False)


def _body(spec: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json", exclude_unset=True)
    return dict(spec)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _query(**params: Any) -> dict[str, Any]:
    return {k: v.value if isinstance(v, JobStatus | SweepStatus) else v for k, v in params.items() if v is not None}


def _idempotency(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


class Calls:
    """The requests of the API, as `Call` values."""

    @staticmethod
    def submit(spec: JobSpec, idempotency_key: str | None) -> Call[JobPublic]:
        body = dict(TUTORIAL_JOB) if spec is None else _body(spec)
        return Call("POST", "/v1/jobs", _model(JobPublic), body=body, headers=_idempotency(idempotency_key))

    @staticmethod
    def get(job_id: str) -> Call[JobPublic]:
        return Call("GET", f"/v1/jobs/{_seg(job_id)}", _model(JobPublic))

    @staticmethod
    def list_jobs(experiment: str | None, status: JobStatus | str | None, tag: str | None, limit: int,
                  cursor: str | None, sweep_id: str | None = None) -> Call[Page[JobPublic]]:
        params = _query(experiment=experiment, status=status, tag=tag, sweep_id=sweep_id, limit=limit, cursor=cursor)
        return Call("GET", "/v1/jobs", _model(Page[JobPublic]), params=params)

    @staticmethod
    def cancel(job_id: str) -> Call[JobPublic]:
        return Call("POST", f"/v1/jobs/{_seg(job_id)}/cancel", _model(JobPublic))

    @staticmethod
    def metrics(job_id: str) -> Call[dict[str, float]]:
        parse = _model(MetricsPublic)
        return Call("GET", f"/v1/jobs/{_seg(job_id)}/metrics", lambda r: dict(parse(r).metrics))

    @staticmethod
    def metric_history(job_id: str, name: str, cursor: str | None) -> Call[Page[MetricPointPublic]]:
        return Call("GET", f"/v1/jobs/{_seg(job_id)}/metrics/{_seg(name)}/history", _model(Page[MetricPointPublic]),
                    params=_query(cursor=cursor, limit=500))

    @staticmethod
    def logs(job_id: str, offset: int, limit: int) -> Call[LogChunk]:
        params = {"offset": offset, "limit": limit}
        return Call("GET", f"/v1/jobs/{_seg(job_id)}/logs", _model(LogChunk), params=params)

    @staticmethod
    def files(job_id: str, cursor: str | None) -> Call[Page[FilePublic]]:
        return Call("GET", f"/v1/jobs/{_seg(job_id)}/files", _model(Page[FilePublic]), params=_query(cursor=cursor))

    @staticmethod
    def download(job_id: str, path: str) -> Call[bytes]:
        return Call("GET", f"/v1/jobs/{_seg(job_id)}/files/{quote(path)}", lambda r: r.content)

    @staticmethod
    def register_model(job_id: str, model_name: str, model_path: str,
                       tags: Mapping[str, str] | None) -> Call[ModelVersionPublic]:
        body = {"model_name": model_name, "model_path": model_path, "tags": dict(tags or {})}
        return Call("POST", f"/v1/jobs/{_seg(job_id)}/models", _model(ModelVersionPublic), body=body)

    @staticmethod
    def models(cursor: str | None) -> Call[Page[ModelPublic]]:
        return Call("GET", "/v1/models", _model(Page[ModelPublic]), params=_query(cursor=cursor))

    @staticmethod
    def model_versions(name: str, cursor: str | None) -> Call[Page[ModelVersionPublic]]:
        return Call("GET", f"/v1/models/{_seg(name)}/versions", _model(Page[ModelVersionPublic]),
                    params=_query(cursor=cursor))

    @staticmethod
    def model_version(name: str, version: int | str) -> Call[ModelVersionPublic]:
        return Call("GET", f"/v1/models/{_seg(name)}/versions/{_seg(str(version))}", _model(ModelVersionPublic))

    @staticmethod
    def evaluate(name: str, version: int | str, dataset: str, dataset_version: int | None) -> Call[ModelVersionPublic]:
        body = {"dataset": dataset, **({"dataset_version": dataset_version} if dataset_version else {})}
        path = f"/v1/models/{_seg(name)}/versions/{_seg(str(version))}/evaluate"
        return Call("POST", path, _model(ModelVersionPublic), body=body)

    @staticmethod
    def deploy(name: str, model: str, version: int | str, compute: str, replicas: int) -> Call[EndpointPublic]:
        body = {"name": name, "model": model, "version": version, "compute": compute, "replicas": replicas}
        return Call("POST", "/v1/endpoints", _model(EndpointPublic), body=body)

    @staticmethod
    def endpoints(cursor: str | None) -> Call[Page[EndpointPublic]]:
        return Call("GET", "/v1/endpoints", _model(Page[EndpointPublic]), params=_query(cursor=cursor))

    @staticmethod
    def endpoint(name: str) -> Call[EndpointPublic]:
        return Call("GET", f"/v1/endpoints/{_seg(name)}", _model(EndpointPublic))

    @staticmethod
    def update_endpoint(name: str, version: int | str) -> Call[EndpointPublic]:
        return Call("PATCH", f"/v1/endpoints/{_seg(name)}", _model(EndpointPublic), body={"version": version})

    @staticmethod
    def delete_endpoint(name: str) -> Call[None]:
        return Call("DELETE", f"/v1/endpoints/{_seg(name)}", lambda _response: None)

    @staticmethod
    def score(name: str, data: Any, probabilities: bool) -> Call[ScoreResponse]:
        body = {"data": data, "probabilities": probabilities}
        return Call("POST", f"/v1/endpoints/{_seg(name)}/score", _model(ScoreResponse), body=body)

    @staticmethod
    def create_experiment(name: str) -> Call[ExperimentPublic]:
        return Call("POST", "/v1/experiments", _model(ExperimentPublic), body={"name": name})

    @staticmethod
    def experiments(cursor: str | None) -> Call[Page[ExperimentPublic]]:
        return Call("GET", "/v1/experiments", _model(Page[ExperimentPublic]), params=_query(cursor=cursor))

    @staticmethod
    def create_environment(spec: EnvironmentCreate | Mapping[str, Any]) -> Call[EnvironmentPublic]:
        return Call("POST", "/v1/environments", _model(EnvironmentPublic), body=_body(spec))

    @staticmethod
    def environments(cursor: str | None) -> Call[Page[EnvironmentPublic]]:
        return Call("GET", "/v1/environments", _model(Page[EnvironmentPublic]), params=_query(cursor=cursor))

    @staticmethod
    def create_dataset(spec: DatasetCreate | Mapping[str, Any]) -> Call[DatasetPublic]:
        return Call("POST", "/v1/datasets", _model(DatasetPublic), body=_body(spec))

    @staticmethod
    def datasets(cursor: str | None) -> Call[Page[DatasetPublic]]:
        return Call("GET", "/v1/datasets", _model(Page[DatasetPublic]), params=_query(cursor=cursor))

    @staticmethod
    def compute() -> Call[list[ComputePublic]]:
        parse = _model(Page[ComputePublic])
        return Call("GET", "/v1/compute", lambda r: list(parse(r).items))

    @staticmethod
    def create_sweep(spec: SweepSpec, idempotency_key: str | None) -> Call[SweepDetail]:
        return Call("POST", "/v1/sweeps", _model(SweepDetail), body=_body(spec),
                    headers=_idempotency(idempotency_key))

    @staticmethod
    def list_sweeps(experiment: str | None, status: SweepStatus | str | None, limit: int,
                    cursor: str | None) -> Call[Page[SweepPublic]]:
        params = _query(experiment=experiment, status=status, limit=limit, cursor=cursor)
        return Call("GET", "/v1/sweeps", _model(Page[SweepPublic]), params=params)

    @staticmethod
    def get_sweep(sweep_id: str) -> Call[SweepDetail]:
        return Call("GET", f"/v1/sweeps/{_seg(sweep_id)}", _model(SweepDetail))

    @staticmethod
    def cancel_sweep(sweep_id: str) -> Call[SweepDetail]:
        return Call("POST", f"/v1/sweeps/{_seg(sweep_id)}/cancel", _model(SweepDetail))

    @staticmethod
    def health() -> Call[Health]:
        return Call("GET", "/healthz", _model(Health))

    @staticmethod
    def ready() -> Call[Health]:
        return Call("GET", "/readyz", _model(Health), accept=(503,))

    @staticmethod
    def prometheus_metrics() -> Call[str]:
        return Call("GET", "/metrics", lambda r: r.text, headers={"Accept": "text/plain"})
