"""`runyard submit | jobs | show | logs | cancel | metrics`: the job commands."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    EXIT_TIMEOUT,
    EXIT_USAGE,
    JsonOption,
    api_errors,
    duration,
    emit_json,
    err,
    exit_code,
    fail,
    load_json,
    metrics_table,
    out,
    pairs,
    parse_dataset,
    scalar,
    styled,
    summary,
    target,
    when,
)
from service.client.http import Client, LogAttempt, LogEnd, LogEvent, LogText, WaitTimeout
from service.core.states import JobStatus
from service.jobs.schemas import TUTORIAL_JOB, JobPublic

JobId = Annotated[str, typer.Argument(help="The job's id.")]


def register(app: typer.Typer) -> None:
    """Add the job commands to `app`."""
    for command in (submit, jobs, show, logs, cancel, metrics):
        app.command()(command)


def submit(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option(help="Experiment name [tutorial: Tutorial-sklearn-mnist].")] = None,
    regularization: Annotated[float | None, typer.Option(help="Sets --regularization [tutorial: 0.5].")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Dataset bound to --data-folder, NAME or NAME:VERSION [tutorial: digits].")] = None,
    compute_target: Annotated[str | None, typer.Option(help="Compute target [tutorial: local].")] = None,
    environment: Annotated[str | None, typer.Option(help="Environment name [tutorial: tutorial-env].")] = None,
    source: Annotated[str | None, typer.Option(help="Script folder on the server [tutorial: trainer].")] = None,
    script: Annotated[str | None, typer.Option(help="Script inside the source [tutorial: train.py].")] = None,
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", help="Set a script argument, NAME=VALUE (becomes --NAME VALUE); repeatable.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Add a tag, KEY=VALUE; repeatable.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="A job request as JSON (see POST /v1/jobs) instead of the tutorial job.")] = None,
    no_tutorial_args: Annotated[bool, typer.Option(
        "--no-tutorial-args", help="Start from no script arguments instead of the tutorial's.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Retries with the same key return the same job.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print the output live, then the result.")] = False,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the job to end, then print the result.")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --wait: give up after this many seconds.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job: the tutorial's (MNIST-style logistic regression on `digits`) unless told otherwise.

    Exit code with --follow/--wait: 0 completed, 1 failed, 3 canceled, 4 API error, 5 timeout.
    """
    body = _job_body(file, no_tutorial_args)
    for key, value in (("experiment", experiment), ("compute_target", compute_target),
                       ("environment", environment), ("source", source), ("script", script)):
        if value is not None:
            body[key] = value
    arguments: list[Any] = list(body.get("arguments", []))
    if dataset is not None:
        _set_arg(arguments, "--data-folder", parse_dataset(dataset))
    if regularization is not None:
        _set_arg(arguments, "--regularization", regularization)
    for item in arg or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip("-"):
            fail(f"--arg {item!r}: expected NAME=VALUE", EXIT_USAGE)
        _set_arg(arguments, name if name.startswith("-") else f"--{name}", scalar(value))
    body["arguments"] = arguments
    body["tags"] = {**body.get("tags", {}), **pairs(tag or [], "--tag")}

    where = target(ctx)
    with api_errors(where), where.client() as client:
        job = client.submit(body, idempotency_key=idempotency_key)
        if follow:
            raise typer.Exit(follow_job(client, job.id, as_json=as_json))
        if wait:
            raise typer.Exit(_wait(client, job, timeout, as_json=as_json))
        if as_json:
            emit_json(job)
        else:
            out.print(f"submitted job [bold]{job.id}[/] ({styled(job.status)}) on {job.compute_target}")
            out.print(f"  follow it: runyard logs -f {job.id}")


def jobs(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag, KEY:VALUE.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        page = client.list_jobs(experiment=experiment, status=status, tag=tag, limit=limit, cursor=cursor)
    if as_json:
        emit_json(page)
        return
    table = Table(header_style="bold")
    table.add_column("id", no_wrap=True)  # whole, to be copied into the next command
    for name in ("experiment", "status", "target"):
        table.add_column(name)
    table.add_column("created", no_wrap=True)
    for name in ("took", "tags"):
        table.add_column(name)
    for job in page.items:
        tags = " ".join(f"{k}={v}" for k, v in sorted(job.tags.items()))
        table.add_row(job.id, job.experiment, styled(job.status), job.compute_target, when(job.created_at),
                      duration(job), tags)
    out.print(table if page.items else "no jobs")
    if page.next_cursor:
        out.print(f"more: runyard jobs --cursor {page.next_cursor}")


def show(ctx: typer.Context, job_id: JobId, as_json: JsonOption = False) -> None:
    """Show one job: state, run, timestamps, error and latest metrics."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        job = client.get(job_id)
        values = client.metrics(job_id)
    if as_json:
        emit_json({"job": job.model_dump(mode="json"), "metrics": values})
        return
    table = Table(box=None, show_header=False)
    rows = [
        ("id", job.id), ("status", styled(job.status)), ("backend status", job.backend_status or "-"),
        ("experiment", job.experiment), ("script", f"{job.source}/{job.script}"),
        ("arguments", json.dumps(job.arguments)), ("compute target", job.compute_target),
        ("environment", f"{job.environment}:{job.environment_version}"), ("run id", job.run_id or "-"),
        ("created", when(job.created_at)), ("started", when(job.started_at)), ("ended", when(job.ended_at)),
        ("took", duration(job)), ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
        ("tags", " ".join(f"{k}={v}" for k, v in sorted(job.tags.items())) or "-"),
    ]
    if job.error:
        rows.append(("error", f"[red]{job.error}[/]"))
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", value)
    out.print(table)
    if values:
        out.print(metrics_table(values))


def logs(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the job ends, then the result.")] = False,
    offset: Annotated[int, typer.Option(min=0, help="Start at this byte offset.")] = 0,
) -> None:
    """Print the run's log (stdout and stderr of the script); -f follows it live."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        if follow:
            raise typer.Exit(follow_job(client, job_id, as_json=False, offset=offset))
        while True:
            chunk = client.logs(job_id, offset=offset, limit=1_048_576)
            typer.echo(chunk.text, nl=False)
            if chunk.eof or chunk.next_offset == offset:
                return
            offset = chunk.next_offset


def cancel(ctx: typer.Context, job_id: JobId, as_json: JsonOption = False) -> None:
    """Cancel a job (it may take the run a few seconds to stop)."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        job = client.cancel(job_id)
    if as_json:
        emit_json(job)
    else:
        out.print(f"job {job.id} {styled(job.status)}")


def metrics(
    ctx: typer.Context,
    job_id: JobId,
    history: Annotated[str | None, typer.Option(help="Every logged point of this metric instead.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Latest value of each metric of a job (or one metric's history)."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        if history is None:
            values = client.metrics(job_id)
            if as_json:
                emit_json(values)
            else:
                out.print(metrics_table(values) if values else "no metrics yet")
            return
        points = client.metric_history(job_id, history)
    if as_json:
        emit_json(list(points))
        return
    table = Table("step", "value", "time", header_style="bold", box=None)
    for point in points:
        table.add_row("-" if point.step is None else str(point.step), f"{point.value:.6g}", when(point.timestamp))
    out.print(table)


def follow_job(client: Client, job_id: str, *, as_json: bool, offset: int = 0) -> int:
    """Print the log live (a spinner until the first output), then the result; returns the exit code."""
    events = client.follow_logs(job_id, offset=offset)
    with err.status(f"waiting for job {job_id} to start...", spinner="dots"):
        first: LogEvent | None = next(events, None)
    ended_with_newline = True
    for event in itertools.chain([first] if first else [], events):
        if isinstance(event, LogText):
            # With --json the log goes to stderr so stdout stays one JSON document.
            typer.echo(event.text, nl=False, err=as_json)
            ended_with_newline = event.text.endswith("\n")
        elif isinstance(event, LogAttempt):
            err.print(f"[bold]--- job {job_id} failed; attempt {event.attempt} ---[/]")
        elif isinstance(event, LogEnd) and not ended_with_newline:
            typer.echo("", err=as_json)
    return _report(client, client.get(job_id), as_json=as_json)


def _wait(client: Client, job: JobPublic, timeout: float | None, *, as_json: bool) -> int:
    with err.status(f"job {job.id} {job.status.value}...", spinner="dots") as spinner:
        job_id = job.id
        try:
            for job in client.watch(job_id, timeout):
                spinner.update(f"job {job_id} {job.status.value}...")
        except WaitTimeout as exc:
            err.print(f"{exc}; follow it: runyard logs -f {job_id}")
            return EXIT_TIMEOUT
    return _report(client, job, as_json=as_json)


def _report(client: Client, job: JobPublic, *, as_json: bool) -> int:
    values = client.metrics(job.id)
    if as_json:
        emit_json({"job": job.model_dump(mode="json"), "metrics": values})
    else:
        summary(job, values)
    return exit_code(job.status)


def _job_body(file: Path | None, no_tutorial_args: bool) -> dict[str, Any]:
    body = copy.deepcopy(TUTORIAL_JOB) if file is None else load_json(file)
    if no_tutorial_args:
        body["arguments"] = []
    return body


def _set_arg(arguments: list[Any], flag: str, value: Any) -> None:
    """Replace the value after `flag`, or append `flag value`."""
    for i, item in enumerate(arguments[:-1]):
        if item == flag:
            arguments[i + 1] = value
            return
    arguments.extend([flag, value])

