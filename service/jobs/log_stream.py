"""`GET /v1/jobs/{id}/logs?follow=true`: the run's log as server-sent events until the job ends.

Events: `log` (data = the text, id = the byte offset after it; send it back as `Last-Event-ID`
to resume with no gap and no repeat), comment heartbeats while nothing happens, `attempt` when
a failed run is retried (the new attempt's log starts again at byte 0), and one final `end`
whose data is JSON with the job's final status. A stream that closes without `end` was
cut (restart, network): the job may still be running, and the client should reconnect.
SSE turns CR and CRLF inside `data` into LF; the offsets always count the file's bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sse_starlette import EventSourceResponse, ServerSentEvent

from service.core.errors import InvalidRequest, Overloaded
from service.core.schemas import MAX_OFFSET, bounded_int
from service.db.tables import Job
from service.jobs import artifacts
from service.jobs.schemas import LogChunk
from service.runtime import Runtime

log = logging.getLogger(__name__)

# How often an idle stream looks for new bytes; reads are a stat and a short file read.
FOLLOW_POLL_SECONDS = 0.5
# Reconnect delay suggested to EventSource clients.
RETRY_MS = 2000
# Retry-After of a stream refused for the follower limits.
RETRY_AFTER_SECONDS = 10
# Routes take slots on worker threads; streams give them back on the event loop.
_COUNT_LOCK = threading.Lock()


def _event(name: str, data: dict[str, Any], description: str) -> dict[str, Any]:
    """One event type as the stream sends it: `data` is text; for JSON events, `contentSchema` is its shape."""
    return {
        "type": "object",
        "description": description,
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", **data},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }


def _json(properties: dict[str, Any]) -> dict[str, Any]:
    return {"contentMediaType": "application/json",
            "contentSchema": {"type": "object", "required": list(properties), "properties": properties}}


# One schema per event (Open API 3.1 reads an event stream's `schema` as each event's).
STREAM_DOC = {
    "text/event-stream": {
        "schema": {
            "oneOf": [
                _event("log", {}, "Log text; `id` is the byte offset after it (send it back as Last-Event-ID)."),
                _event("attempt", _json({"attempt": {"type": "integer", "minimum": 2}}),
                       "A retry started; its log starts again at byte 0 (`id` is 0)."),
                _event("end", _json({
                    "status": {"type": "string"},
                    "exit_code": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                    "next_offset": {"type": "integer", "minimum": 0},
                }), "The last event: the job's final status. A stream closed without it was cut: reconnect."),
                _event("error", _json({"detail": {"type": "string"}}), "The job was deleted while followed."),
            ],
        },
        "example": 'id: 27\nevent: log\ndata: Data folder: /data/digits\n\n'
                   'event: end\nid: 1432\ndata: {"status": "completed", "exit_code": 0, "error": null, '
                   '"next_offset": 1432}\n\n',
    }
}


def resume_offset(offset: int, last_event_id: str | None) -> int:
    """Where a stream starts: `Last-Event-ID` (a reconnect) wins over the `offset` query."""
    if last_event_id is None or not last_event_id.strip():
        return offset
    resumed = bounded_int(last_event_id.strip(), maximum=MAX_OFFSET)
    if resumed is None:
        raise InvalidRequest(f"Last-Event-ID must be a byte offset (an integer from 0 to {MAX_OFFSET})")
    return resumed


def follow(runtime: Runtime, job_id: str, *, offset: int) -> EventSourceResponse:
    """The streaming response for one job's log from byte `offset`; 503 past the follower limits."""
    slot = _take_slot(runtime, job_id)
    stream = _counted(runtime, job_id, offset, slot)
    # A stream cancelled before its first step never runs its `finally`: give the slot back anyway.
    weakref.finalize(stream, slot.release)
    return EventSourceResponse(
        stream,
        ping=runtime.settings.log_follow_heartbeat_seconds,
        headers={"Cache-Control": "no-cache"},
    )


class _Slot:
    """One stream's place in the follower counts; released once."""

    def __init__(self, runtime: Runtime, job_id: str) -> None:
        self._runtime, self._job_id, self._held = runtime, job_id, True

    def release(self) -> None:
        with _COUNT_LOCK:
            if not self._held:
                return
            self._held = False
            followers = self._runtime.log_followers
            followers[self._job_id] -= 1
            if not followers[self._job_id]:
                del followers[self._job_id]


def _take_slot(runtime: Runtime, job_id: str) -> _Slot:
    # Each stream holds a connection (a file descriptor) and reads on a worker thread every half
    # second: unbounded, a crowd of followers starves the database of descriptors and threads.
    settings, followers = runtime.settings, runtime.log_followers
    with _COUNT_LOCK:
        if followers.get(job_id, 0) >= settings.max_log_followers_per_job:
            raise Overloaded(f"{settings.max_log_followers_per_job} streams already follow job {job_id}'s log; "
                             "retry later or read the log without follow", retry_after=RETRY_AFTER_SECONDS)
        if sum(followers.values()) >= settings.max_log_followers:
            raise Overloaded(f"{settings.max_log_followers} log streams are open, the most the server keeps; "
                             "retry later or read the log without follow", retry_after=RETRY_AFTER_SECONDS)
        followers[job_id] = followers.get(job_id, 0) + 1
    return _Slot(runtime, job_id)


async def _counted(runtime: Runtime, job_id: str, offset: int, slot: _Slot) -> AsyncIterator[ServerSentEvent]:
    try:
        async for event in _events(runtime, job_id, offset):
            yield event
    finally:
        slot.release()


async def _events(runtime: Runtime, job_id: str, offset: int) -> AsyncIterator[ServerSentEvent]:
    limit = runtime.settings.max_log_read_bytes
    retry: int | None = RETRY_MS
    attempt: int | None = None  # the attempt being streamed; a retry starts a new log at byte 0
    while True:
        try:
            job, chunk, finished = await asyncio.to_thread(_read, runtime, job_id, offset, limit, attempt)
        except (SQLAlchemyError, OSError) as exc:
            # A locked database or a busy disk must not end a stream while the job runs.
            log.warning("reading the log of job %s failed; retrying: %s", job_id, exc)
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            continue
        if job is None or chunk is None:
            yield ServerSentEvent(json.dumps({"detail": f"job {job_id!r} no longer exists"}), event="error")
            return
        if chunk.text:
            yield ServerSentEvent(chunk.text, event="log", id=str(chunk.next_offset), retry=retry)
            retry = None
        read_bytes = chunk.next_offset - offset
        offset = chunk.next_offset
        if finished:
            # An earlier attempt's log is complete: drain it, then go on with the next attempt.
            if read_bytes == 0 and attempt is not None:
                attempt, offset = attempt + 1, 0
                yield ServerSentEvent(json.dumps({"attempt": attempt}), event="attempt", id="0")
            continue
        attempt = job.attempt
        stalled = read_bytes == 0 and not chunk.text
        # A finished run whose log ends in a cut-off character can make no more progress.
        if chunk.eof or (stalled and job.status.is_terminal()):
            yield ServerSentEvent(_end(job, offset), event="end", id=str(offset))
            return
        if read_bytes < limit:  # caught up with the writer; a full read means more is waiting
            await asyncio.sleep(FOLLOW_POLL_SECONDS)


def _read(
    runtime: Runtime, job_id: str, offset: int, limit: int, attempt: int | None
) -> tuple[Job | None, LogChunk | None, bool]:
    """The job, its next log chunk, and whether that chunk is from an attempt that has ended."""
    # The job is read before the file: a terminal status seen here means the file is complete.
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
    if job is None:
        return None, None, False
    if attempt is not None and attempt < job.attempt:
        earlier = runtime.run_dir(job_id, attempt)
        return job, artifacts.read_log(job, earlier, offset=offset, limit=limit), True
    return job, artifacts.read_log(job, runtime.job_dir(job), offset=offset, limit=limit), False


def _end(job: Job, next_offset: int) -> str:
    return json.dumps({"status": job.status, "exit_code": job.exit_code, "error": job.error,
                       "next_offset": next_offset})
