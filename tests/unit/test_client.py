"""The Python client against a scripted HTTP transport: errors, SSE parsing, resuming, waiting."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from service.client.http import (
    ApiError,
    AsyncClient,
    Client,
    LogAttempt,
    LogEnd,
    LogText,
    StreamInterrupted,
    WaitTimeout,
)
from service.client.protocol import LineSplitter, SseParser
from service.core.states import JobStatus
from service.jobs.schemas import TUTORIAL_JOB, JobPublic

Handler = Callable[[httpx.Request], httpx.Response]


def job_json(status: str = "queued", **extra: Any) -> dict[str, Any]:
    """A JobPublic document: each field filled from its JSON schema type, so new fields need no edit here."""
    now = datetime.now(UTC).isoformat()
    filler: dict[str | None, Any] = {"integer": 1, "number": 1.0, "string": "x", "array": [], "object": {},
                                     "boolean": False}
    body: dict[str, Any] = {}
    for name, prop in JobPublic.model_json_schema()["properties"].items():
        options = prop.get("anyOf", [prop])
        if any(o.get("type") == "null" for o in options):
            body[name] = None
        elif any(o.get("format") == "date-time" for o in options):
            body[name] = now
        else:
            body[name] = filler.get(options[0].get("type"))
    return {**body, "id": "J1", "status": status, "created_at": now, "updated_at": now, **extra}


def sse(*events: tuple[str, str, str | None], retry: int | None = None) -> bytes:
    """A text/event-stream body: (event, data, id) triples, CRLF-separated as sse-starlette writes them."""
    out = []
    for name, data, event_id in events:
        lines = [f"id: {event_id}"] if event_id is not None else []
        lines += [f"event: {name}"] + [f"data: {line}" for line in data.split("\n")]
        if retry is not None:
            lines.append(f"retry: {retry}")
        out.append("\r\n".join(lines) + "\r\n\r\n")
    return ": ping - now\r\n\r\n".join(out).encode()


def end(status: str, offset: int, exit_code: int | None = 0) -> tuple[str, str, str]:
    body = {"status": status, "exit_code": exit_code, "error": None, "next_offset": offset}
    return ("end", json.dumps(body), str(offset))


@pytest.fixture
def calls() -> list[httpx.Request]:
    return []


def make_client(handler: Handler, calls: list[httpx.Request], **kwargs: Any) -> Client:
    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return handler(request)

    return Client("http://runyard.test", transport=httpx.MockTransport(record), **kwargs)


def test_submit_sends_the_tutorial_job_with_key_and_idempotency_header(calls: list[httpx.Request]) -> None:
    client = make_client(lambda _: httpx.Response(201, json=job_json()), calls, api_key="s3cret")

    job = client.submit(idempotency_key="k-1")

    assert job.id == "J1"
    assert job.status is JobStatus.QUEUED
    request = calls[0]
    assert (request.method, request.url.path) == ("POST", "/v1/jobs")
    assert json.loads(request.content) == TUTORIAL_JOB
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Idempotency-Key"] == "k-1"


def test_errors_raise_api_error_with_the_problem_document(calls: list[httpx.Request]) -> None:
    problem = {"type": "t", "title": "Not found", "status": 404, "detail": "job 'x' does not exist"}
    problem_json = {"content-type": "application/problem+json"}
    client = make_client(lambda _: httpx.Response(404, json=problem, headers=problem_json), calls)

    with pytest.raises(ApiError) as caught:
        client.get("x")

    assert caught.value.status == 404
    assert caught.value.problem == problem
    assert str(caught.value) == "404 Not found: job 'x' does not exist"


def test_a_non_json_error_still_becomes_an_api_error(calls: list[httpx.Request]) -> None:
    client = make_client(lambda _: httpx.Response(502, text="<html>bad gateway</html>"), calls)
    with pytest.raises(ApiError) as caught:
        client.metrics("J1")
    assert caught.value.status == 502
    assert "bad gateway" in caught.value.detail


def test_sse_parser_follows_the_eventsource_rules() -> None:
    parser = SseParser()
    lines = [": heartbeat", "", "id: 12", "event: log", "data: line one", "data:", "data: line three",
             "retry: 1500", "", "data: no type", "", "event: empty", ""]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]

    assert [(e.event, e.data, e.id) for e in events] == [("log", "line one\n\nline three", "12"),
                                                         ("message", "no type", "12")]
    assert events[0].retry == 1500


def test_follow_logs_resumes_with_last_event_id_after_a_cut(calls: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "Last-Event-ID" not in request.headers:  # first connection: one event, then the line drops
            return httpx.Response(200, content=sse(("log", "hello\n", "6"), retry=1))
        assert request.headers["Last-Event-ID"] == "6"
        return httpx.Response(200, content=sse(("log", "world\n", "12"), end("completed", 12)))

    client = make_client(handler, calls)

    events = list(client.follow_logs("J1"))

    assert events == [LogText("hello\n", 6), LogText("world\n", 12), LogEnd(JobStatus.COMPLETED, 0, None, 12)]
    assert [r.url.params["follow"] for r in calls] == ["true", "true"]
    assert calls[0].headers["Accept"] == "text/event-stream"


def test_follow_logs_raises_instead_of_ending_quietly(calls: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = make_client(handler, calls)
    with pytest.raises(StreamInterrupted):
        list(client.follow_logs("J1", max_reconnects=2, reconnect_delay=0.001))
    assert len(calls) == 3


def test_follow_logs_does_not_retry_a_client_error(calls: list[httpx.Request]) -> None:
    client = make_client(lambda _: httpx.Response(404, json={"title": "Not found", "detail": "no"}), calls)
    with pytest.raises(ApiError):
        list(client.follow_logs("J1", reconnect_delay=0.001))
    assert len(calls) == 1


def test_wait_returns_the_terminal_job_or_times_out(calls: list[httpx.Request]) -> None:
    states: Iterator[str] = iter(["running", "running", "completed"])
    client = make_client(lambda _: httpx.Response(200, json=job_json(next(states))), calls)
    assert client.wait("J1", poll_interval=0.001).status is JobStatus.COMPLETED

    stuck = make_client(lambda _: httpx.Response(200, json=job_json("running")), calls)
    with pytest.raises(WaitTimeout):
        stuck.wait("J1", timeout=0.05, poll_interval=0.01)


def test_paged_lists_follow_the_cursor(calls: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") is None:
            return httpx.Response(200, json={"items": [{"name": "a", "latest_version": 2, "versions": 2}],
                                             "next_cursor": "c1"})
        return httpx.Response(200, json={"items": [{"name": "b", "latest_version": 1, "versions": 1}],
                                         "next_cursor": None})

    assert [m.name for m in make_client(handler, calls).models()] == ["a", "b"]


@pytest.mark.asyncio
async def test_async_client_follows_and_resumes() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(200, content=sse(("log", "a", "1"), retry=1))
        return httpx.Response(200, content=sse(("log", "b", "2"), end("failed", 2, exit_code=3)))

    async with AsyncClient("http://runyard.test", transport=httpx.MockTransport(handler)) as client:
        events = [event async for event in client.follow_logs("J1")]

    assert events == [LogText("a", 1), LogText("b", 2), LogEnd(JobStatus.FAILED, 3, None, 2)]
    assert seen[1].headers["Last-Event-ID"] == "1"


def test_a_retry_restarts_the_offsets_of_follow_logs(calls: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if len(calls) == 1:  # attempt 1 wrote 6 bytes, then attempt 2 began; the line drops
            body = sse(("log", "first\n", "6"), ("attempt", '{"attempt": 2}', "0"), retry=1)
            return httpx.Response(200, content=body)
        assert request.headers["Last-Event-ID"] == "0"
        return httpx.Response(200, content=sse(("log", "again\n", "6"), end("completed", 6)))

    events = list(make_client(handler, calls).follow_logs("J1"))

    assert events == [LogText("first\n", 6), LogAttempt(2), LogText("again\n", 6),
                      LogEnd(JobStatus.COMPLETED, 0, None, 6)]


def test_a_job_printing_unicode_line_separators_cannot_forge_an_end_event(calls: list[httpx.Request]) -> None:
    # What the server sends when a job prints U+2028 around a fake `end`: it splits only on CR/LF,
    # so all of it is one data line of a `log` event; the real end (failed) follows.
    forged = '\u2028\u2028event: end\u2028data: {"status": "completed", "exit_code": 0, "next_offset": 1}\u2028'
    body = sse(("log", forged + "\n", "90"), end("failed", 90, exit_code=3))
    client = make_client(lambda _: httpx.Response(200, content=body), calls)

    events = list(client.follow_logs("J1"))

    assert events == [LogText(forged + "\n", 90), LogEnd(JobStatus.FAILED, 3, None, 90)]


def test_the_stream_splits_lines_on_cr_lf_and_crlf_only_across_chunk_boundaries() -> None:
    splitter = LineSplitter()
    chunks = [b"a\r", b"\nb\rc\n", "d\u2028e\u0085f\x0cg".encode()[:3], "d\u2028e\u0085f\x0cg".encode()[3:] + b"\r\n"]

    lines = [line for chunk in chunks for line in splitter.feed(chunk)]

    assert lines == ["a", "b", "c", "d\u2028e\u0085f\x0cg"]


def test_api_error_says_each_reason_of_a_422() -> None:
    problem = {"title": "Invalid request", "detail": "the request does not match the schema",
               "errors": [{"loc": ["body", "experiment"], "msg": "Field required", "type": "missing"}]}
    error = ApiError(422, problem)
    assert error.reasons == ["body.experiment: Field required"]
    assert "body.experiment: Field required" in str(error)


def test_sweeps_and_the_catalog_go_through_the_same_client(calls: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/compute":
            return httpx.Response(200, json={"items": [{"name": "local", "kind": "local", "state": "ready",
                                                        "active_jobs": 0}], "next_cursor": None})
        return httpx.Response(503, json={"status": "unavailable", "checks": {"database": "unreachable: x"}})

    client = make_client(handler, calls)
    assert [t.name for t in client.compute()] == ["local"]
    assert client.ready().status == "unavailable"  # a 503 from /readyz is an answer, not an error
