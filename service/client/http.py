"""A typed Python client for the runyard HTTP API: `Client` (sync) and `AsyncClient`, over httpx.

    with Client("http://127.0.0.1:8000", api_key="...") as runyard:
        job = runyard.submit()                      # the tutorial job
        for event in runyard.follow_logs(job.id):   # LogText as the run prints, then LogEnd
            print(event)
        runyard.register_model(job.id, model_name="sklearn_mnist",
                               model_path="outputs/sklearn_mnist_model.pkl")

Errors from the service raise `ApiError` carrying its problem+json document.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import httpx

from service.api.schemas import Health
from service.client.protocol import (
    DEFAULT_URL,
    STREAM_READ_TIMEOUT,
    ApiError,
    Call,
    Calls,
    JobSpec,
    LogAttempt,
    LogEnd,
    LogEvent,
    LogText,
    SseParser,
    StreamInterrupted,
    T,
    WaitTimeout,
    client_headers,
    follow_request,
    raise_for_problem,
    retryable,
    to_log_event,
)
from service.core.schemas import Page
from service.core.states import JobStatus
from service.jobs.schemas import FilePublic, JobPublic, LogChunk, MetricPointPublic
from service.models.schemas import ModelPublic, ModelVersionPublic

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
        raise_for_problem(response)
        return call.parse(response)

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

    def submit(self, spec: JobSpec = None, *, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job (the tutorial job when `spec` is None)."""
        return self._send(Calls.submit(spec, idempotency_key))

    def get(self, job_id: str) -> JobPublic:
        """Read a job."""
        return self._send(Calls.get(job_id))

    def list_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                  tag: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[JobPublic]:
        """One page of jobs, newest first."""
        return self._send(Calls.list_jobs(experiment, status, tag, limit, cursor))

    def iter_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                  tag: str | None = None, page_size: int = 100) -> Iterator[JobPublic]:
        """Every matching job, newest first, following the cursors."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(experiment=experiment, status=status, tag=tag, limit=page_size, cursor=cursor)
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
        """`LogText` events as the run writes them, then one `LogEnd`.

        A stream cut before `end` is resumed with `Last-Event-ID` (no gap, no repeat), waiting
        `reconnect_delay` (or the server's `retry`) times the failures so far, up to
        `max_reconnects` failures in a row; then `StreamInterrupted`. The stream never ends quietly.
        """
        failures, resume_from, delay = 0, None, reconnect_delay
        while True:
            path, params, headers = follow_request(job_id, offset, resume_from)
            try:
                timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
                with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as r:
                    if not r.is_success:
                        r.read()
                        raise_for_problem(r)
                    parser = SseParser()
                    for line in r.iter_lines():
                        sse = parser.feed(line)
                        if sse is None:
                            continue
                        delay = sse.retry / 1000 if sse.retry is not None else delay
                        item = to_log_event(sse)
                        if isinstance(item, LogText):
                            failures, offset, resume_from = 0, item.next_offset, item.next_offset
                            yield item
                        elif isinstance(item, LogAttempt):
                            offset, resume_from = 0, 0
                            yield item
                        elif isinstance(item, LogEnd):
                            yield item
                            return
            except (httpx.TransportError, ApiError) as exc:
                if not retryable(exc):
                    raise
                cause: Exception = exc
            else:
                cause = StreamInterrupted("the stream closed before its end event")
            failures += 1
            resume_from = offset
            if failures > max_reconnects:
                raise StreamInterrupted(f"log stream of job {job_id} lost {failures} times: {cause}") from cause
            time.sleep(min(delay * failures, 10.0))

    def wait(self, job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> JobPublic:
        """Poll until the job is completed, failed or canceled; `WaitTimeout` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status.is_terminal():
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status.value} after {timeout}s")
            time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))

    def files(self, job_id: str) -> list[FilePublic]:
        """The run's output files."""
        return self._collect(lambda cursor: Calls.files(job_id, cursor))

    def download(self, job_id: str, path: str) -> bytes:
        """The bytes of one of the run's files."""
        return self._send(Calls.download(job_id, path))

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

    def health(self) -> Health:
        """Liveness of the service."""
        return self._send(Calls.health())


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
        raise_for_problem(response)
        return call.parse(response)

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

    async def submit(self, spec: JobSpec = None, *, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job (the tutorial job when `spec` is None)."""
        return await self._send(Calls.submit(spec, idempotency_key))

    async def get(self, job_id: str) -> JobPublic:
        """Read a job."""
        return await self._send(Calls.get(job_id))

    async def list_jobs(self, *, experiment: str | None = None, status: JobStatus | str | None = None,
                        tag: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[JobPublic]:
        """One page of jobs, newest first."""
        return await self._send(Calls.list_jobs(experiment, status, tag, limit, cursor))

    async def health(self) -> Health:
        """Liveness of the service."""
        return await self._send(Calls.health())

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
        """`LogText` events as the run writes them, then one `LogEnd`.

        A stream cut before `end` is resumed with `Last-Event-ID` (no gap, no repeat), waiting
        `reconnect_delay` (or the server's `retry`) times the failures so far, up to
        `max_reconnects` failures in a row; then `StreamInterrupted`. The stream never ends quietly.
        """
        failures, resume_from, delay = 0, None, reconnect_delay
        while True:
            path, params, headers = follow_request(job_id, offset, resume_from)
            try:
                async with self._http.stream(
                    "GET", path, params=params, headers=headers,
                    timeout=httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT),
                ) as r:
                    if not r.is_success:
                        await r.aread()
                        raise_for_problem(r)
                    parser = SseParser()
                    async for line in r.aiter_lines():
                        sse = parser.feed(line)
                        if sse is None:
                            continue
                        delay = sse.retry / 1000 if sse.retry is not None else delay
                        item = to_log_event(sse)
                        if isinstance(item, LogText):
                            failures, offset, resume_from = 0, item.next_offset, item.next_offset
                            yield item
                        elif isinstance(item, LogAttempt):
                            offset, resume_from = 0, 0
                            yield item
                        elif isinstance(item, LogEnd):
                            yield item
                            return
            except (httpx.TransportError, ApiError) as exc:
                if not retryable(exc):
                    raise
                cause: Exception = exc
            else:
                cause = StreamInterrupted("the stream closed before its end event")
            failures += 1
            resume_from = offset
            if failures > max_reconnects:
                raise StreamInterrupted(f"log stream of job {job_id} lost {failures} times: {cause}") from cause
            await asyncio.sleep(min(delay * failures, 10.0))

    async def wait(self, job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0) -> JobPublic:
        """Poll until the job is completed, failed or canceled; `WaitTimeout` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.status.is_terminal():
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status.value} after {timeout}s")
            pause = poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic()))
            await asyncio.sleep(pause)

    async def download(self, job_id: str, path: str) -> bytes:
        """The bytes of one of the run's files."""
        return await self._send(Calls.download(job_id, path))

    async def register_model(self, job_id: str, *, model_name: str, model_path: str,
                             tags: Mapping[str, str] | None = None) -> ModelVersionPublic:
        """Register a file of a completed job as the next version of `model_name`."""
        return await self._send(Calls.register_model(job_id, model_name, model_path, tags))

    async def files(self, job_id: str) -> list[FilePublic]:
        """The run's output files."""
        return await self._collect(lambda cursor: Calls.files(job_id, cursor))

    async def models(self) -> list[ModelPublic]:
        """Every registered model with its latest version."""
        return await self._collect(Calls.models)

    async def model_versions(self, name: str) -> list[ModelVersionPublic]:
        """Every version of one model, oldest first."""
        return await self._collect(lambda cursor: Calls.model_versions(name, cursor))

    async def model_version(self, name: str, version: int | str = "latest") -> ModelVersionPublic:
        """One version of a model (a number or `latest`)."""
        return await self._send(Calls.model_version(name, version))
