"""GET /v1/jobs/{id}/logs?follow=true: server-sent events until the job ends, resumable, never silent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.client.protocol import SseEvent, SseParser
from service.core.settings import Settings
from tests.support.jobs import script_job, tutorial_job, wait_for

FOLLOW_TIMEOUT = 120.0


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with heartbeats every 0.2 s, so a silent run shows them quickly."""
    fast = settings.model_copy(update={"log_follow_heartbeat_seconds": 0.2})
    with TestClient(create_app(fast)) as test_client:
        yield test_client


def stream(client: TestClient, job_id: str, headers: dict[str, str] | None = None,
           stop_after_log: bool = False, **params: Any) -> tuple[list[SseEvent], list[str]]:
    """Events (and comment lines) of one follow request, until `end` (or the first `log`)."""
    events: list[SseEvent] = []
    comments: list[str] = []
    parser = SseParser()
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    with client.stream("GET", f"/v1/jobs/{job_id}/logs", params={"follow": "true", **params},
                       headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            assert time.monotonic() < deadline, "stream did not end"
            if line.startswith(":"):
                comments.append(line)
            event = parser.feed(line)
            if event is None:
                continue
            events.append(event)
            if event.event == "end" or (stop_after_log and event.event == "log"):
                break
    return events, comments


def logged_text(events: list[SseEvent]) -> str:
    return "".join(e.data for e in events if e.event == "log")


def test_follow_streams_the_whole_log_then_the_final_status(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=tutorial_job()).json()["id"]

    events, _ = stream(client, job_id)

    end = events[-1]
    assert end.event == "end"
    final = json.loads(end.data)
    assert final["status"] == "completed"
    assert final["exit_code"] == 0
    plain = client.get(f"/v1/jobs/{job_id}/logs", params={"limit": 1_048_576}).json()
    assert plain["eof"] is True
    assert logged_text(events) == plain["text"]
    assert "Accuracy is" in logged_text(events)
    # Each id is the byte offset after its text; the end carries the total.
    offsets = [int(e.id or 0) for e in events if e.event == "log"]
    assert offsets == sorted(offsets)
    assert offsets[-1] == final["next_offset"] == plain["next_offset"] == len(plain["text"].encode())
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "completed"


def test_reconnecting_with_last_event_id_gives_no_gap_and_no_repeat(client: TestClient) -> None:
    job_id = client.post(
        "/v1/jobs", json=script_job("sleeper.py", "--steps", 6, "--step-seconds", 0.3)
    ).json()["id"]

    first, _ = stream(client, job_id, stop_after_log=True)  # then the connection drops
    cut_at = first[-1].id
    assert cut_at is not None
    rest, _ = stream(client, job_id, headers={"Last-Event-ID": cut_at})

    whole = client.get(f"/v1/jobs/{job_id}/logs").json()["text"]
    assert logged_text(first) + logged_text(rest) == whole
    assert whole.startswith("sleeper starting")
    assert "step 5" in whole
    assert json.loads(rest[-1].data)["status"] == "completed"


def test_last_event_id_wins_over_the_offset_query(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--steps", 2)).json()["id"]
    wait_for(client, job_id)
    whole = client.get(f"/v1/jobs/{job_id}/logs").json()["text"]

    events, _ = stream(client, job_id, headers={"Last-Event-ID": "9"}, offset=0)

    assert logged_text(events) == whole.encode()[9:].decode()


def test_a_silent_run_gets_heartbeats_and_a_failure_ends_the_stream(client: TestClient) -> None:
    job_id = client.post(
        "/v1/jobs", json=script_job("sleeper.py", "--seconds", 1.5, "--exit-code", 3)
    ).json()["id"]

    events, comments = stream(client, job_id)

    assert comments, "no heartbeat while the script slept"
    final = json.loads(events[-1].data)
    assert (events[-1].event, final["status"], final["exit_code"]) == ("end", "failed", 3)


def test_canceling_a_followed_job_ends_its_stream_with_canceled(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60)).json()["id"]
    wait_for(client, job_id, {"running"})
    threading.Timer(0.5, lambda: client.post(f"/v1/jobs/{job_id}/cancel")).start()

    events, _ = stream(client, job_id)

    assert events[-1].event == "end"
    assert json.loads(events[-1].data)["status"] == "canceled"


def test_following_a_job_that_already_ended_returns_at_once(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    wait_for(client, job_id)
    size = client.get(f"/v1/jobs/{job_id}/logs").json()["next_offset"]

    events, _ = stream(client, job_id, offset=size)

    assert [e.event for e in events] == ["end"]
    assert json.loads(events[0].data)["next_offset"] == size


def test_follow_errors_are_problems(client: TestClient) -> None:
    missing = client.get("/v1/jobs/nope/logs", params={"follow": "true"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    bad = client.get(f"/v1/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert "Last-Event-ID" in bad.json()["detail"]


def test_without_follow_the_json_answer_is_unchanged(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"]
    wait_for(client, job_id)

    chunk = client.get(f"/v1/jobs/{job_id}/logs", params={"offset": 0, "limit": 8})

    assert chunk.headers["content-type"] == "application/json"
    assert chunk.json() == {"job_id": job_id, "offset": 0, "next_offset": 8, "text": "sleeper ", "eof": False}


def test_a_retried_job_streams_each_attempt_from_its_first_byte(client: TestClient, tmp_path: Path) -> None:
    body = script_job("flaky.py", "--marker", str(tmp_path / "marker"), "--succeed-on", 2, max_retries=1)
    job_id = client.post("/v1/jobs", json=body).json()["id"]

    events, _ = stream(client, job_id)

    kinds = [e.event for e in events]
    assert kinds.count("attempt") == 1
    split = kinds.index("attempt")
    assert (json.loads(events[split].data), events[split].id) == ({"attempt": 2}, "0")
    assert "flaky run 1" in logged_text(events[:split])
    second = logged_text(events[split:])
    assert second == client.get(f"/v1/jobs/{job_id}/logs").json()["text"]
    assert "flaky run 2" in second
    assert json.loads(events[-1].data)["status"] == "completed"
