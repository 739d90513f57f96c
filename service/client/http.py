"""A typed Python client for the runyard HTTP API: `Client` (sync) here, `AsyncClient` in `aio`, over httpx.

    with Client("http://127.0.0.1:8000", api_key="...") as runyard:
        job = runyard.submit()                      # the tutorial job
        for event in runyard.follow_logs(job.id):   # LogText as the run prints, then LogEnd
            print(event)
        runyard.register_model(job.id, model_name="sklearn_mnist",
                               model_path="outputs/sklearn_mnist_model.pkl")

Errors from the service raise `ApiError` carrying its problem+json document. Both clients are thin:
the requests (`calls`), the stream parsing, reconnecting and waiting (`protocol`) are shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
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
from service.client.aio import AsyncClient
from service.client.calls import Calls, JobSpec, SweepSpec
from service.client.protocol import (
    DEFAULT_URL,
    STREAM_READ_TIMEOUT,
    ApiError,
    Call,
    LogAttempt,
    LogEnd,
    LogEvent,
    LogFollow,
    LogText,
    Poll,
    StreamInterrupted,
    T,
    WaitTimeout,
    client_headers,
    raise_for_problem,
)
from service.core.schemas import Page
from service.core.states import JobStatus
from service.jobs.schemas import FilePublic, JobPublic, LogChunk, MetricPointPublic
from service.models.endpoints.schemas import EndpointPublic, ScoreResponse
from service.models.schemas import ModelPublic, ModelVersionPublic
from service.sweeps.schemas import SweepDetail, SweepPublic, SweepStatus

__all__ = ["DEFAULT_URL", "ApiError", "AsyncClient", "Client", "LogAttempt", "LogEnd", "LogEvent", "LogText",
           "StreamInterrupted", "WaitTimeout"]


class Client:
    """Blocking client; use as a context manager or call `close()`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=client_headers(api_key, headers),
                                  timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        response = self._http.request(call.method, call.path, params=call.params, json=call.body, headers=call.headers)
        return call.read(response)

    def _collect(self, page_call: Callable[[str | None], Call[Page[T]]]) -> list[T]:
        """Every item of a paged list, following `next_cursor`."""
        items: list[T] = []
        cursor: str | None = None
        while True:
            page = self._send(page_call(cursor))
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    # jobs

    def submit(self, spec: JobSpec = None, *, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job (the tutorial job when `spec` is None)."""
        return self._send(Calls.submit(spec, idempotency_key))

    def get(self, job_id: str) -> JobPublic:
        """Read a job."""
        return self._send(Calls.get(job_id))

    def list_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                  tag: str | None = None, sweep_id: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> Page[JobPublic]:
        """One page of jobs, newest first."""
        return self._send(Calls.list_jobs(experiment, status, tag, limit, cursor, sweep_id))

    def iter_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                  tag: str | None = None, sweep_id: str | None = None, page_size: int = 100) -> Iterator[JobPublic]:
        """Every matching job, newest first, following the cursors."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(experiment=experiment, status=status, tag=tag, sweep_id=sweep_id,
                                  limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobPublic:
        """Ask a job to stop (409 `ApiError` when it already ended)."""
        return self._send(Calls.cancel(job_id))

    def metrics(self, job_id: str) -> dict[str, float]:
        """The latest value of each metric."""
        return self._send(Calls.metrics(job_id))

    def metric_history(self, job_id: str, name: str) -> list[MetricPointPublic]:
        """Every logged point of one metric."""
        return self._collect(lambda cursor: Calls.metric_history(job_id, name, cursor))

    def logs(self, job_id: str, *, offset: int = 0, limit: int = 65_536) -> LogChunk:
        """Up to `limit` bytes of the log from byte `offset`."""
        return self._send(Calls.logs(job_id, offset, limit))

    def follow_logs(
        self, job_id: str, *, offset: int = 0, max_reconnects: int = 10, reconnect_delay: float = 1.0
    ) -> Iterator[LogEvent]:
        """`LogText` events as the run writes them, then one `LogEnd` (see `protocol.LogFollow`)."""
        follow = LogFollow(job_id, offset, max_reconnects, reconnect_delay)
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        while True:
            path, params, headers = follow.request()
            cause: Exception | None = None
            try:
                with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as r:
                    if not r.is_success:
                        r.read()
                        raise_for_problem(r)
                    for chunk in r.iter_bytes():
                        yield from follow.feed(chunk)
                        if follow.done:
                            return
            except (httpx.TransportError, ApiError) as exc:
                cause = exc
            time.sleep(follow.lost(cause))

    def watch(self, job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> Iterator[JobPublic]:
        """The job at each poll, the last one terminal; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            job = self.get(job_id)
            yield job
            pause = poll.pause(job.status.is_terminal(), f"job {job_id} still {job.status.value}")
            if pause is None:
                return
            time.sleep(pause)

    def wait(self, job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> JobPublic:
        """Poll until the job is completed, failed or canceled; `WaitTimeout` after `timeout` seconds."""
        return _last(self.watch(job_id, timeout, poll_interval=poll_interval))

    def files(self, job_id: str) -> list[FilePublic]:
        """The run's output files."""
        return self._collect(lambda cursor: Calls.files(job_id, cursor))

    def download(self, job_id: str, path: str) -> bytes:
        """The bytes of one of the run's files."""
        return self._send(Calls.download(job_id, path))

    # models

    def register_model(self, job_id: str, *, model_name: str, model_path: str,
                       tags: Mapping[str, str] | None = None) -> ModelVersionPublic:
        """Register a file of a completed job as the next version of `model_name`."""
        return self._send(Calls.register_model(job_id, model_name, model_path, tags))

    def models(self) -> list[ModelPublic]:
        """Every registered model with its latest version."""
        return self._collect(Calls.models)

    def model_versions(self, name: str) -> list[ModelVersionPublic]:
        """Every version of one model, oldest first."""
        return self._collect(lambda cursor: Calls.model_versions(name, cursor))

    def model_version(self, name: str, version: int | str = "latest") -> ModelVersionPublic:
        """One version of a model (a number or `latest`)."""
        return self._send(Calls.model_version(name, version))

    def evaluate(self, name: str, version: int | str, *, dataset: str,
                 dataset_version: int | None = None) -> ModelVersionPublic:
        """Score the dataset's test split; the version keeps the accuracy and confusion matrix."""
        return self._send(Calls.evaluate(name, version, dataset, dataset_version))

    # endpoints

    def deploy(self, name: str, *, model: str, version: int | str = "latest", compute: str = "local",
               replicas: int = 1) -> EndpointPublic:
        """Serve a model version as endpoint `name` (status `creating`, then `ready` or `failed`)."""
        return self._send(Calls.deploy(name, model, version, compute, replicas))

    def endpoints(self) -> list[EndpointPublic]:
        """Every endpoint."""
        return self._collect(Calls.endpoints)

    def endpoint(self, name: str) -> EndpointPublic:
        """One endpoint, with its workers' memory."""
        return self._send(Calls.endpoint(name))

    def update_endpoint(self, name: str, *, version: int | str) -> EndpointPublic:
        """Serve another version of the endpoint's model (requests keep being answered)."""
        return self._send(Calls.update_endpoint(name, version))

    def delete_endpoint(self, name: str) -> None:
        """Stop serving and forget the endpoint."""
        self._send(Calls.delete_endpoint(name))

    def score(self, name: str, data: Any, *, probabilities: bool = False) -> ScoreResponse:
        """Predictions for `data` (rows of numbers) from a ready endpoint."""
        return self._send(Calls.score(name, data, probabilities))

    def wait_endpoint(self, name: str, timeout: float | None = None, *,
                      poll_interval: float = 0.5) -> EndpointPublic:
        """Poll until the endpoint is `ready` or `failed`; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            found = self.endpoint(name)
            pause = poll.pause(found.status != "creating", f"endpoint {name} still {found.status}")
            if pause is None:
                return found
            time.sleep(pause)

    # catalog

    def create_experiment(self, name: str) -> ExperimentPublic:
        """Create an experiment (submitting a job creates its experiment too)."""
        return self._send(Calls.create_experiment(name))

    def experiments(self) -> list[ExperimentPublic]:
        """Every experiment."""
        return self._collect(Calls.experiments)

    def create_environment(self, spec: EnvironmentCreate | Mapping[str, Any]) -> EnvironmentPublic:
        """Register the next version of an environment."""
        return self._send(Calls.create_environment(spec))

    def environments(self) -> list[EnvironmentPublic]:
        """Every environment version."""
        return self._collect(Calls.environments)

    def create_dataset(self, spec: DatasetCreate | Mapping[str, Any]) -> DatasetPublic:
        """Register the next version of a dataset (a server folder, or a URI for Azure targets)."""
        return self._send(Calls.create_dataset(spec))

    def datasets(self) -> list[DatasetPublic]:
        """Every dataset version."""
        return self._collect(Calls.datasets)

    def compute(self) -> list[ComputePublic]:
        """The compute targets and their state."""
        return self._send(Calls.compute())

    # sweeps

    def create_sweep(self, spec: SweepSpec, *, idempotency_key: str | None = None) -> SweepDetail:
        """Start a sweep."""
        return self._send(Calls.create_sweep(spec, idempotency_key))

    def list_sweeps(self, *, experiment: str | None = None, status: SweepStatus | str | None = None,
                    limit: int = 50, cursor: str | None = None) -> Page[SweepPublic]:
        """One page of sweeps, newest first."""
        return self._send(Calls.list_sweeps(experiment, status, limit, cursor))

    def get_sweep(self, sweep_id: str) -> SweepDetail:
        """A sweep with its children."""
        return self._send(Calls.get_sweep(sweep_id))

    def cancel_sweep(self, sweep_id: str) -> SweepDetail:
        """Cancel a sweep: no more children start, running ones are canceled."""
        return self._send(Calls.cancel_sweep(sweep_id))

    def watch_sweep(self, sweep_id: str, timeout: float | None = None, *,
                    poll_interval: float = 1.0) -> Iterator[SweepDetail]:
        """The sweep at each poll, the last one terminal; `WaitTimeout` after `timeout` seconds."""
        poll = Poll(timeout, poll_interval)
        while True:
            sweep = self.get_sweep(sweep_id)
            yield sweep
            pause = poll.pause(sweep.status.is_terminal(), f"sweep {sweep_id} still {sweep.status.value}")
            if pause is None:
                return
            time.sleep(pause)

    def wait_sweep(self, sweep_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> SweepDetail:
        """Poll until the sweep ends; `WaitTimeout` after `timeout` seconds."""
        return _last(self.watch_sweep(sweep_id, timeout, poll_interval=poll_interval))

    # the service

    def health(self) -> Health:
        """Liveness of the service."""
        return self._send(Calls.health())

    def ready(self) -> Health:
        """Readiness: the database and each backend (`unavailable` rather than an error when down)."""
        return self._send(Calls.ready())

    def prometheus_metrics(self) -> str:
        """The service's /metrics, Prometheus text format."""
        return self._send(Calls.prometheus_metrics())


def _last(items: Iterator[T]) -> T:
    for item in items:
        last = item
    return last
