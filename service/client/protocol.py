"""What the runyard clients share, sans I/O: errors, typed log events, the log-follow and wait state machines.

`Client` and `AsyncClient` only move bytes and sleep; every decision (what to request, how to read
the answer, when to reconnect or give up) is made here, once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from service.client.sse import LineSplitter, SseDecoder, SseEvent, SseParser
from service.core.states import JobStatus

__all__ = [
    "DEFAULT_URL", "ApiError", "Call", "LineSplitter", "LogAttempt", "LogEnd", "LogEvent", "LogFollow", "LogText",
    "Poll", "SseDecoder", "SseEvent", "SseParser", "StreamInterrupted", "WaitTimeout", "client_headers",
    "raise_for_problem", "retryable", "to_log_event",
]

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "runyard-client/0.1.0"
# The server sends a heartbeat every 15 s by default: this much silence means the connection is dead.
STREAM_READ_TIMEOUT = 60.0
MAX_RECONNECT_PAUSE = 10.0
T = TypeVar("T")


class ApiError(Exception):
    """The service answered with an error; `problem` is its RFC 9457 document.

    `str()` carries the title, the detail and each of the problem's `errors[]` (where and why),
    so a 422 says which field is wrong without reading the document.
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title", "Error"))
        self.detail = str(problem.get("detail", ""))
        self.reasons = problem_reasons(self.problem)
        # The detail, then each reason it does not already say (runyard's detail names the first few).
        self.explained = self.detail + "".join(f"\n  {r}" for r in self.reasons if r not in self.detail)
        super().__init__(f"{status} {self.title}: {self.explained}")


def problem_reasons(problem: Mapping[str, Any]) -> list[str]:
    """`body.experiment: String should match pattern ...` for each entry of a problem's `errors[]`."""
    errors = problem.get("errors")
    if not isinstance(errors, list):
        return []
    reasons = []
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        loc = error.get("loc")
        where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
        message = str(error.get("msg", ""))
        reasons.append(f"{where}: {message}" if where else message)
    return reasons


class StreamInterrupted(Exception):
    """A log stream kept failing to reconnect before the job's `end` event arrived."""


class WaitTimeout(TimeoutError):
    """`wait()` gave up before the job (or sweep) reached a terminal state; it keeps going on the service."""


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


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer; shared by the sync and async clients."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None
    accept: tuple[int, ...] = ()  # error statuses whose body is still the answer (503 from /readyz)

    def read(self, response: httpx.Response) -> T:
        if response.status_code not in self.accept:
            raise_for_problem(response)
        return self.parse(response)


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


def client_headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {**headers, **(extra or {})}


def retryable(exc: Exception) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.status >= 500)


@dataclass
class LogFollow:
    """Following one job's log across reconnects: what to ask for, what each byte means, when to give up.

    A stream cut before `end` is resumed with `Last-Event-ID` (no gap, no repeat), waiting
    `reconnect_delay` (or the server's `retry`) times the failures so far, up to `max_reconnects`
    failures in a row; then `StreamInterrupted`. The stream never ends quietly.
    """

    job_id: str
    offset: int = 0
    max_reconnects: int = 10
    reconnect_delay: float = 1.0
    done: bool = False
    _failures: int = 0
    _resume_from: int | None = None
    _decoder: SseDecoder = field(default_factory=SseDecoder)

    def request(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        """Path, query and headers of the next connection (each starts a fresh parser)."""
        self._decoder = SseDecoder()
        headers = {"Accept": "text/event-stream"}
        if self._resume_from is not None:
            headers["Last-Event-ID"] = str(self._resume_from)
        return f"/v1/jobs/{quote(self.job_id, safe='')}/logs", {"follow": "true", "offset": self.offset}, headers

    def feed(self, chunk: bytes) -> list[LogEvent]:
        """The typed events in this piece of the body; after a `LogEnd`, `done` is set and the rest ignored."""
        found: list[LogEvent] = []
        for sse in self._decoder.feed(chunk):
            if self.done:
                break
            if sse.retry is not None:
                self.reconnect_delay = sse.retry / 1000
            item = to_log_event(sse)
            if isinstance(item, LogText):
                self._failures, self.offset, self._resume_from = 0, item.next_offset, item.next_offset
            elif isinstance(item, LogAttempt):
                self.offset, self._resume_from = 0, 0
            elif isinstance(item, LogEnd):
                self.done = True
            if item is not None:
                found.append(item)
        return found

    def lost(self, cause: Exception | None) -> float:
        """The connection ended before `end` (`cause` None: it closed cleanly): seconds to wait, or raise."""
        if cause is not None and not retryable(cause):
            raise cause
        reason = cause if cause is not None else StreamInterrupted("the stream closed before its end event")
        self._failures += 1
        self._resume_from = self.offset
        if self._failures > self.max_reconnects:
            raise StreamInterrupted(
                f"log stream of job {self.job_id} lost {self._failures} times: {reason}") from reason
        return min(self.reconnect_delay * self._failures, MAX_RECONNECT_PAUSE)


@dataclass
class Poll:
    """Polling until something ends: how long to pause next, or `WaitTimeout` once `timeout` is spent."""

    timeout: float | None
    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _started: float | None = None

    def pause(self, finished: bool, state: str) -> float | None:
        """None when `finished`; else seconds to sleep before the next look. `state` names what is still going."""
        now = self.clock()
        if self._started is None:
            self._started = now
        if finished:
            return None
        if self.timeout is None:
            return self.interval
        left = self._started + self.timeout - now
        if left <= 0:
            raise WaitTimeout(f"{state} after {self.timeout:g}s; it keeps going on the service")
        return min(self.interval, left)
