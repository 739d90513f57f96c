"""`AsyncClient`: the runyard API for asyncio code, the same methods as `Client`, on the same shared protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from service.api.schemas import Health
from service.catalog.schemas import (
    ComputePublic,
    DatasetCreate,
    DatasetPublic,
    EnvironmentCreate,
    EnvironmentPublic,
    ExperimentPublic,
)
from service.client.calls import Calls, JobSpec, SweepSpec
from service.client.protocol import (
    DEFAULT_URL,
    STREAM_READ_TIMEOUT,
    ApiError,
    Call,
    LogEvent,
    LogFollow,
    Poll,
    T,
    client_headers,
    raise_for_problem,
)
from service.core.schemas import Page
from service.core.states import JobStatus
from service.jobs.schemas import FilePublic, JobPublic, LogChunk, MetricPointPublic
from service.models.endpoints.schemas import EndpointPublic, ScoreResponse
from service.models.schemas import ModelPublic, ModelVersionPublic
from service.sweeps.schemas import SweepDetail, SweepPublic, SweepStatus


class AsyncClient:
    """The same API as `Client`, for asyncio code."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=client_headers(api_key, headers),
                                  timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        response = await self._http.request(call.method, call.path, params=call.params, json=call.body,
                                            headers=call.headers)
        return call.read(response)

    async def _collect(self, page_call: Callable[[str | None], Call[Page[T]]]) -> list[T]:
        """Every item of a paged list, following `next_cursor`."""
        items: list[T] = []
        cursor: str | None = None
        while True:
            page = await self._send(page_call(cursor))
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    # jobs

    async def submit(self, spec: JobSpec = None, *, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job (the tutorial job when `spec` is None)."""
        return await self._send(Calls.submit(spec, idempotency_key))

    async def get(self, job_id: str) -> JobPublic:
        """Read a job."""
        return await self._send(Calls.get(job_id))

    async def list_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                  tag: str | None = None, sweep_id: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> Page[JobPublic]:
        """One page of jobs, newest first."""
        return await self._send(Calls.list_jobs(experiment, status, tag, limit, cursor, sweep_id))

    async def iter_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                        tag: str | None = None, sweep_id: str | None = None,
                        page_size: int = 100) -> AsyncIterator[JobPublic]:
        """Every matching job, newest first, following the cursors."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(experiment=experiment, status=status, tag=tag, sweep_id=sweep_id,
                                  limit=page_size, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobPublic:
        """Ask a job to stop (409 `ApiError` when it already ended)."""
        return await self._send(Calls.cancel(job_id))

    async def metrics(self, job_id: str) -> dict[str, float]:
        """The latest value of each metric."""
        return await self._send(Calls.metrics(job_id))

    async def metric_history(self, job_id: str, name: str) -> list[MetricPointPublic]:
        """Every logged point of one metric."""
        return await self._collect(lambda cursor: Calls.metric_history(job_id, name, cursor))

    async def logs(self, job_id: str, *, offset: int = 0, limit: int = 65_536) -> LogChunk:
        """Up to `limit` bytes of the log from byte `offset`."""
        return await self._send(Calls.logs(job_id, offset, limit))

    async def follow_logs(
        self, job_id: str, *, offset: int = 0, max_reconnects: int = 10, reconnect_delay: float = 1.0
    ) -> AsyncIterator[LogEvent]:
        """`LogText` events as the run writes them, then one `LogEnd` (see `protocol.LogFollow`)."""
        follow = LogFollow(job_id, offset, max_reconnects, reconnect_delay)
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        while True:
            path, params, headers = follow.request()
            cause: Exception | None = None
            try:
                async with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as r:
                    if not r.is_success:
                        await r.aread()
                        raise_for_problem(r)
                    async for chunk in r.aiter_bytes():
                        for event in follow.feed(chunk):
                            yield event
                        if follow.done:
                            return
            except (httpx.TransportError, ApiError) as exc:
                cause = exc
            await asyncio.sleep(follow.lost(cause))

    async def watch(self, job_id: str, timeout: float | None = None, *,
                    poll_interval: float = 1.0) -> AsyncIterator[JobPublic]:
        """The job at each poll, the last one terminal; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            job = await self.get(job_id)
            yield job
            pause = poll.pause(job.status.is_terminal(), f"job {job_id} still {job.status.value}")
            if pause is None:
                return
            await asyncio.sleep(pause)

    async def wait(self, job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> JobPublic:
        """Poll until the job is completed, failed or canceled; `WaitTimeout` after `timeout` seconds."""
        return await _last(self.watch(job_id, timeout, poll_interval=poll_interval))

    async def files(self, job_id: str) -> list[FilePublic]:
        """The run's output files."""
        return await self._collect(lambda cursor: Calls.files(job_id, cursor))

    async def download(self, job_id: str, path: str) -> bytes:
        """The bytes of one of the run's files."""
        return await self._send(Calls.download(job_id, path))

    # models

    async def register_model(self, job_id: str, *, model_name: str, model_path: str,
                       tags: Mapping[str, str] | None = None) -> ModelVersionPublic:
        """Register a file of a completed job as the next version of `model_name`."""
        return await self._send(Calls.register_model(job_id, model_name, model_path, tags))

    async def models(self) -> list[ModelPublic]:
        """Every registered model with its latest version."""
        return await self._collect(Calls.models)

    async def model_versions(self, name: str) -> list[ModelVersionPublic]:
        """Every version of one model, oldest first."""
        return await self._collect(lambda cursor: Calls.model_versions(name, cursor))

    async def model_version(self, name: str, version: int | str = "latest") -> ModelVersionPublic:
        """One version of a model (a number or `latest`)."""
        return await self._send(Calls.model_version(name, version))

    async def evaluate(self, name: str, version: int | str, *, dataset: str,
                 dataset_version: int | None = None) -> ModelVersionPublic:
        """Score the dataset's test split; the version keeps the accuracy and confusion matrix."""
        return await self._send(Calls.evaluate(name, version, dataset, dataset_version))

    # endpoints

    async def deploy(self, name: str, *, model: str, version: int | str = "latest", compute: str = "local",
               replicas: int = 1) -> EndpointPublic:
        """Serve a model version as endpoint `name` (status `creating`, then `ready` or `failed`)."""
        return await self._send(Calls.deploy(name, model, version, compute, replicas))

    async def endpoints(self) -> list[EndpointPublic]:
        """Every endpoint."""
        return await self._collect(Calls.endpoints)

    async def endpoint(self, name: str) -> EndpointPublic:
        """One endpoint, with its workers' memory."""
        return await self._send(Calls.endpoint(name))

    async def update_endpoint(self, name: str, *, version: int | str) -> EndpointPublic:
        """Serve another version of the endpoint's model (requests keep being answered)."""
        return await self._send(Calls.update_endpoint(name, version))

    async def delete_endpoint(self, name: str) -> None:
        """Stop serving and forget the endpoint."""
        await self._send(Calls.delete_endpoint(name))

    async def score(self, name: str, data: Any, *, probabilities: bool = False) -> ScoreResponse:
        """Predictions for `data` (rows of numbers) from a ready endpoint."""
        return await self._send(Calls.score(name, data, probabilities))

    async def wait_endpoint(self, name: str, timeout: float | None = None, *,
                      poll_interval: float = 0.5) -> EndpointPublic:
        """Poll until the endpoint is `ready` or `failed`; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            found = await self.endpoint(name)
            pause = poll.pause(found.status != "creating", f"endpoint {name} still {found.status}")
            if pause is None:
                return found
            await asyncio.sleep(pause)

    # catalog

    async def create_experiment(self, name: str) -> ExperimentPublic:
        """Create an experiment (submitting a job creates its experiment too)."""
        return await self._send(Calls.create_experiment(name))

    async def experiments(self) -> list[ExperimentPublic]:
        """Every experiment."""
        return await self._collect(Calls.experiments)

    async def create_environment(self, spec: EnvironmentCreate | Mapping[str, Any]) -> EnvironmentPublic:
        """Register the next version of an environment."""
        return await self._send(Calls.create_environment(spec))

    async def environments(self) -> list[EnvironmentPublic]:
        """Every environment version."""
        return await self._collect(Calls.environments)

    async def create_dataset(self, spec: DatasetCreate | Mapping[str, Any]) -> DatasetPublic:
        """Register the next version of a dataset (a server folder, or a URI for Azure targets)."""
        return await self._send(Calls.create_dataset(spec))

    async def datasets(self) -> list[DatasetPublic]:
        """Every dataset version."""
        return await self._collect(Calls.datasets)

    async def compute(self) -> list[ComputePublic]:
        """The compute targets and their state."""
        return await self._send(Calls.compute())

    # sweeps

    async def create_sweep(self, spec: SweepSpec, *, idempotency_key: str | None = None) -> SweepDetail:
        """Start a sweep."""
        return await self._send(Calls.create_sweep(spec, idempotency_key))

    async def list_sweeps(self, *, experiment: str | None = None, status: SweepStatus | str | None = None,
                    limit: int = 50, cursor: str | None = None) -> Page[SweepPublic]:
        """One page of sweeps, newest first."""
        return await self._send(Calls.list_sweeps(experiment, status, limit, cursor))

    async def get_sweep(self, sweep_id: str) -> SweepDetail:
        """A sweep with its children."""
        return await self._send(Calls.get_sweep(sweep_id))

    async def cancel_sweep(self, sweep_id: str) -> SweepDetail:
        """Cancel a sweep: no more children start, running ones are canceled."""
        return await self._send(Calls.cancel_sweep(sweep_id))

    async def watch_sweep(self, sweep_id: str, timeout: float | None = None, *,
                    poll_interval: float = 1.0) -> AsyncIterator[SweepDetail]:
        """The sweep at each poll, the last one terminal; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            sweep = await self.get_sweep(sweep_id)
            yield sweep
            pause = poll.pause(sweep.status.is_terminal(), f"sweep {sweep_id} still {sweep.status.value}")
            if pause is None:
                return
            await asyncio.sleep(pause)

    async def wait_sweep(self, sweep_id: str, timeout: float | None = None, *,
                         poll_interval: float = 1.0) -> SweepDetail:
        """Poll until the sweep ends; `WaitTimeout` after `timeout` seconds."""
        return await _last(self.watch_sweep(sweep_id, timeout, poll_interval=poll_interval))

    # the service

    async def health(self) -> Health:
        """Liveness of the service."""
        return await self._send(Calls.health())

    async def ready(self) -> Health:
        """Readiness: the database and each backend (`unavailable` rather than an error when down)."""
        return await self._send(Calls.ready())

    async def prometheus_metrics(self) -> str:
        """The service's /metrics, Prometheus text format."""
        return await self._send(Calls.prometheus_metrics())



async def _last(items: AsyncIterator[T]) -> T:
    async for item in items:
        last = item
    return last
