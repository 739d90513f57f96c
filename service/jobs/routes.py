"""Routes under /v1/jobs: submit, read, list, cancel, metrics, logs, files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import FileResponse
from sqlmodel import Session
from sse_starlette import EventSourceResponse

from service.api.deps import Cursor, IntCursor, IntegerText, Limit, RuntimeDep, SessionDep
from service.api.docs import ERRORS, RUN_ELSEWHERE
from service.api.responses import json_response, page_response
from service.core.clock import utcnow
from service.core.errors import InvalidRequest
from service.core.schemas import MAX_OFFSET, RELATIVE_PATH_PATTERN, Page
from service.core.states import JobStatus
from service.db.tables import Job, JobAttempt
from service.jobs import artifacts, hosts, log_stream, public_rows
from service.jobs import service as jobs
from service.jobs.schemas import (
    AttemptPublic,
    FilePublic,
    JobCreate,
    JobPublic,
    LogChunk,
    MetricPointPublic,
    MetricsPublic,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# A path as the run's file list spells it (core/schemas.RELATIVE_PATH_PATTERN); 404 when the run has no such file.
FilePath = Annotated[str, Path(min_length=1, max_length=1024, pattern=RELATIVE_PATH_PATTERN)]
IdempotencyKey = Annotated[
    str | None,
    Header(min_length=1, max_length=255,
           description="non-empty; retries with the same key and body return the same job"),
]


def _public(job: Job, attempts: list[JobAttempt] | None = None) -> JobPublic:
    public = JobPublic.model_validate(job, from_attributes=True)
    public.attempts = [AttemptPublic.model_validate(a, from_attributes=True) for a in attempts or []]
    return public


def _with_attempts(session: Session, page: list[Job]) -> list[JobPublic]:
    attempts = jobs.attempts_of(session, job_ids=[j.id for j in page if j.attempt > 1])
    return [_public(j, attempts.get(j.id)) for j in page]


@router.post(
    "", status_code=status.HTTP_201_CREATED, summary="Submit a training job",
    response_model=JobPublic, responses=ERRORS(403, 404, 409, 413, 422),
)
def submit_job(spec: JobCreate, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Record the job as `queued`; the dispatcher submits it to its compute target."""
    # A plain `def`: the write may wait for SQLite's lock, which must not stall the event loop.
    # The answer is serialised here (api/responses.py), saving FastAPI's second validation and hop.
    with runtime.uow() as tx:
        result = jobs.submit_job(tx, spec=spec, idempotency_key=idempotency_key,
                                 settings=runtime.settings, backends=runtime.backends)
    answer = json_response(_public(result.job), status.HTTP_201_CREATED)
    answer.headers["Location"] = f"/v1/jobs/{result.job.id}"
    if result.replayed:
        answer.headers["Idempotent-Replayed"] = "true"
    return answer


# The three hot reads are `async def` returning bytes serialised once (api/responses.py): the
# models they build are typed already, so FastAPI's second validation, and the worker-thread hop
# it takes for a plain `def` route, bought nothing.
@router.get("", summary="List jobs, newest first", response_model=Page[JobPublic], responses=ERRORS(422))
async def list_jobs(
    runtime: RuntimeDep,
    experiment: Annotated[str | None, Query(max_length=255)] = None,
    status: JobStatus | None = None,
    tag: Annotated[str | None, Query(max_length=1280, pattern="^[^:]+:", description="key:value")] = None,
    sweep_id: Annotated[str | None, Query(max_length=32, description="only this sweep's children")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    def page(session: Session) -> Response:
        rows, next_cursor = jobs.list_job_rows(session, public_rows.SELECT, experiment=experiment, status=status,
                                               tag=tag, limit=limit, cursor=cursor, sweep_id=sweep_id)
        return page_response(public_rows.items(session, rows), next_cursor)

    if jobs.list_is_bounded(experiment=experiment, status=status, tag=tag, sweep_id=sweep_id):
        # A page along an index (on SQLite: on the event loop, as a read by key): the hop to a
        # worker thread, and the GIL handoffs between 32 such threads, cost more than the page.
        return await runtime.db.read(page)
    # A filter by tag, sweep or experiment alone may scan: not on the event loop.
    return await runtime.db.read_in_thread(page)


@router.get("/{job_id}", summary="Read a job", response_model=JobPublic, responses=ERRORS(404))
async def get_job(job_id: str, runtime: RuntimeDep) -> Response:
    def read(session: Session) -> Response:
        return json_response(_with_attempts(session, [jobs.get_job(session, job_id=job_id)])[0])

    return await runtime.db.read(read)  # by primary key


@router.post(
    "/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, summary="Cancel a job",
    responses=ERRORS(404, 409),
)
def cancel_job(job_id: str, runtime: RuntimeDep) -> JobPublic:
    """Idempotent while the job is active; a finished job answers 409."""
    with runtime.uow() as tx:
        job = jobs.cancel_job(tx, job_id=job_id)
    return _public(job)


@router.get("/{job_id}/metrics", summary="Latest value of each metric", responses=ERRORS(404))
def get_metrics(job_id: str, session: SessionDep) -> MetricsPublic:
    job = jobs.get_job(session, job_id=job_id)
    return MetricsPublic(job_id=job.id, metrics=artifacts.latest_metrics(session, job_id=job.id))


@router.get(
    "/{job_id}/metrics/{name}/history", summary="Every logged point of a metric",
    response_model=Page[MetricPointPublic], responses=ERRORS(404, 422),
)
async def get_metric_history(
    job_id: str, name: str, runtime: RuntimeDep, limit: Limit = 500, cursor: IntCursor = None
) -> Response:
    def read(session: Session) -> Response:
        points, next_cursor = artifacts.metric_history(session, job_id=job_id, name=name, limit=limit, cursor=cursor)
        return page_response([p._asdict() for p in points], next_cursor)

    return await runtime.db.read(read)  # one page of an index


@router.get(
    "/{job_id}/logs", summary="Read the run's log, or follow it live (server-sent events)",
    response_model=LogChunk, responses={200: {"content": log_stream.STREAM_DOC}, **ERRORS(404, 422), **RUN_ELSEWHERE},
)
def get_logs(
    job_id: str, session: SessionDep, runtime: RuntimeDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="byte offset"), IntegerText] = 0,
    limit: Annotated[int, Query(ge=1, le=1_048_576, description="bytes"), IntegerText] = 65_536,
    follow: Annotated[bool, Query(description="stream `log` events until an `end` event with the status")] = False,
    # The `id` of a `log` event is a byte offset: what a reconnecting EventSource sends back (empty: none).
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=18, pattern=r"^[0-9]{0,18}$",
                                                description="with follow: resume after this byte offset")] = None,
) -> LogChunk | EventSourceResponse:
    """JSON chunks by byte offset. With `follow=true` the answer is a `text/event-stream`: `log` events
    (`id` = the byte offset after the text: send it back as `Last-Event-ID` to resume), comment
    heartbeats, and one final `end` event whose data has the job's final status."""
    job = jobs.get_job(session, job_id=job_id)
    if follow:
        hosts.run_dir_here(runtime, job, now=utcnow())  # before the stream starts: a problem, not an event
        start = log_stream.resume_offset(offset, last_event_id)
        session.close()  # the stream reads with short sessions of its own; don't pin a connection for hours
        return log_stream.follow(runtime, job.id, offset=start)
    limit = min(limit, runtime.settings.max_log_read_bytes)
    return artifacts.read_log(job, hosts.run_dir_here(runtime, job, now=utcnow()), offset=offset, limit=limit)


@router.get("/{job_id}/files", summary="List the run's files", responses=ERRORS(404, 422))
def list_files(
    job_id: str, session: SessionDep, runtime: RuntimeDep, limit: Limit = 500, cursor: Cursor = None
) -> Page[FilePublic]:
    job = jobs.get_job(session, job_id=job_id)
    # The list is the database's: any replica answers it (sizes where this replica can read the folder).
    items, next_cursor = artifacts.list_files(job, runtime.job_dir(job), limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get(
    "/{job_id}/files/{path:path}", summary="Download one of the run's files",
    response_class=FileResponse, responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS(404, 422),
                                             **RUN_ELSEWHERE},
)
def download_file(job_id: str, path: FilePath, session: SessionDep, runtime: RuntimeDep) -> FileResponse:
    job = jobs.get_job(session, job_id=job_id)
    clean = artifacts.check_file(job, path)
    hosts.run_dir_here(runtime, job, now=utcnow())
    backend = runtime.backends.for_target(job.compute_target)
    local = backend.fetch_file(runtime.run_ref(job), clean)
    # The backend's copy must still be inside the run folder once symlinks are resolved.
    if not local.resolve().is_relative_to(runtime.job_dir(job).root.resolve()) or not local.is_file():
        raise InvalidRequest(f"file {clean!r} is not a regular file inside the run folder")
    return FileResponse(local, filename=local.name, media_type="application/octet-stream")
