"""Following a job to its end: the live log (`submit --follow`, `logs -f`) or a spinner (`--wait`)."""

from __future__ import annotations

import itertools

import typer

from service.cli.common import (
    EXIT_TIMEOUT,
    Expired,
    emit_json,
    err,
    exit_code,
    summary,
    time_limit,
)
from service.cli.render import plain
from service.client.http import Client, LogAttempt, LogEnd, LogEvent, LogText, WaitTimeout
from service.jobs.schemas import JobPublic


def follow_job(client: Client, job_id: str, *, as_json: bool, offset: int = 0, timeout: float | None = None) -> int:
    """Print the log live (a spinner until the first output), then the result; returns the exit code."""
    ended_with_newline = True
    try:
        with time_limit(timeout):
            events = client.follow_logs(job_id, offset=offset)
            with err.status(f"waiting for job {job_id} to start...", spinner="dots"):
                first: LogEvent | None = next(events, None)
            for event in itertools.chain([first] if first else [], events):
                if isinstance(event, LogText):
                    # With --json the log goes to stderr so stdout stays one JSON document.
                    typer.echo(plain(event.text), nl=False, err=as_json)
                    ended_with_newline = event.text.endswith("\n")
                elif isinstance(event, LogAttempt):
                    err.print(f"[bold]--- job {job_id} failed; attempt {event.attempt} ---[/]")
                elif isinstance(event, LogEnd) and not ended_with_newline:
                    typer.echo("", err=as_json)
    except Expired:
        if not ended_with_newline:
            typer.echo("", err=as_json)
        job = client.get(job_id)
        err.print(f"job {job_id} still {job.status.value} after {timeout:g}s; it keeps running on the service; "
                  f"follow it: runyard logs -f {job_id}", soft_wrap=True)
        return EXIT_TIMEOUT
    return _report(client, client.get(job_id), as_json=as_json)


def wait_job(client: Client, job: JobPublic, timeout: float | None, *, as_json: bool) -> int:
    """A spinner with the job's state until it ends (or `timeout`), then the result."""
    job_id = job.id
    with err.status(f"job {job_id} {job.status.value}...", spinner="dots") as spinner:
        try:
            for job in client.watch(job_id, timeout):
                spinner.update(f"job {job_id} {job.status.value}...")
        except WaitTimeout as exc:
            err.print(f"{exc}; follow it: runyard logs -f {job_id}", soft_wrap=True)
            return EXIT_TIMEOUT
    return _report(client, job, as_json=as_json)


def _report(client: Client, job: JobPublic, *, as_json: bool) -> int:
    values = client.metrics(job.id)
    if as_json:
        emit_json({"job": job.model_dump(mode="json"), "metrics": values})
    else:
        summary(job, values)
    return exit_code(job.status)
