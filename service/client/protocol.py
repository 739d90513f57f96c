"""What the runyard clients share: errors, the API's requests as values, and the SSE log-stream format."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from service.api.schemas import Health
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
from service.models.schemas import ModelPublic, ModelVersionPublic

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "runyard-client/0.1.0"
# The server sends a heartbeat every 15 s by default: this much silence means the connection is dead.
STREAM_READ_TIMEOUT = 60.0
T = TypeVar("T")
JobSpec = JobCreate | Mapping[str, Any] | None


class ApiError(Exception):
    """The service answered with an error; `problem` is its RFC 9457 document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title", "Error"))
        self.detail = str(problem.get("detail", ""))
        super().__init__(f"{status} {self.title}: {self.detail}")


class StreamInterrupted(Exception):
    """A log stream kept failing to reconnect before the job's `end` event arrived."""


class WaitTimeout(TimeoutError):
    """`wait()` gave up before the job reached a terminal state."""


@dataclass(frozen=True)
class LogText:
    """Output of the run; `next_offset` is the byte offset just after it."""

    text: str
    next_offset: int


@dataclass(frozen=True)
class LogAttempt:
    """The job failed and is being run again; the new attempt's log starts at offset 0."""

    attempt: int


@dataclass(frozen=True)
class LogEnd:
    """The last event of a log stream: the job's final state."""

    status: JobStatus
    exit_code: int | None
    error: str | None
    next_offset: int


LogEvent = LogText | LogAttempt | LogEnd


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@dataclass
class SseParser:
    """Turns text/event-stream lines into events, as the WHATWG EventSource algorithm does."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None
    _retry: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its terminator); return an event when a blank line ends one."""
        if not line:
            if not self._data:
                self._event, self._retry = "", None
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._event, self._data, self._retry = "", [], None
            return event
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def to_log_event(event: SseEvent) -> LogEvent | None:
    """A `log` or `end` event of the follow stream as a typed value (others are skipped)."""
    if event.event == "log":
        return LogText(text=event.data, next_offset=int(event.id or 0))
    if event.event == "attempt":
        return LogAttempt(attempt=int(json.loads(event.data)["attempt"]))
    if event.event == "end":
        body = json.loads(event.data)
        return LogEnd(status=JobStatus(body["status"]), exit_code=body.get("exit_code"),
                      error=body.get("error"), next_offset=int(body.get("next_offset", 0)))
    if event.event == "error":
        raise ApiError(410, {"title": "Stream error", **json.loads(event.data)})
    return None


def raise_for_problem(response: httpx.Response) -> None:
    """Raise `ApiError` for a 4xx/5xx answer, with the problem document (or a made-up one)."""
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase or "Error", "detail": response.text[:500]}
    raise ApiError(response.status_code, body)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer; shared by the sync and async clients."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None


def _model(kind: type[BaseModel] | Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    return lambda response: adapter.validate_python(response.json())


def _job_body(spec: JobSpec) -> dict[str, Any]:
    if spec is None:
        return dict(TUTORIAL_JOB)
    if isinstance(spec, JobCreate):
        return spec.model_dump(mode="json", exclude_unset=True)
    return dict(spec)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _query(**params: Any) -> dict[str, Any]:
    return {k: v.value if isinstance(v, JobStatus) else v for k, v in params.items() if v is not None}


class Calls:
    """The requests of the API, as `Call` values."""

    @staticmethod
    def submit(spec: JobSpec, idempotency_key: str | None) -> Call[JobPublic]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Call("POST", "/v1/jobs", _model(JobPublic), body=_job_body(spec), headers=headers)

    @staticmethod
    def get(job_id: str) -> Call[JobPublic]:
        return Call("GET", f"/v1/jobs/{_seg(job_id)}", _model(JobPublic))

    @staticmethod
    def list_jobs(experiment: str | None, status: JobStatus | str | None, tag: str | None, limit: int,
                  cursor: str | None) -> Call[Page[JobPublic]]:
        params = _query(experiment=experiment, status=status, tag=tag, limit=limit, cursor=cursor)
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
    def health() -> Call[Health]:
        return Call("GET", "/healthz", _model(Health))


def client_headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {**headers, **(extra or {})}


def follow_request(job_id: str, start: int, resume_from: int | None) -> tuple[str, dict[str, Any], dict[str, str]]:
    headers = {"Accept": "text/event-stream"}
    if resume_from is not None:
        headers["Last-Event-ID"] = str(resume_from)
    return f"/v1/jobs/{_seg(job_id)}/logs", {"follow": "true", "offset": start}, headers


def retryable(exc: Exception) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.status >= 500)


