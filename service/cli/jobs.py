"""`runyard submit | jobs | show | logs | cancel | metrics`: the job commands."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    EXIT_USAGE,
    JsonOption,
    TimeoutOption,
    api_errors,
    duration,
    emit_json,
    fail,
    flag,
    load_json,
    metrics_table,
    out,
    pairs,
    parse_dataset,
    scalar,
    split_pair,
    styled,
    tags_text,
    target,
    when,
)
from service.cli.follow import follow_job, wait_job
from service.cli.render import plain, safe, table
from service.core.states import JobStatus
from service.jobs.schemas import TUTORIAL_JOB

LIST_LIMIT = 20
WIDE = 110  # columns from which `runyard jobs` also shows when each job was created and how long it took

JobId = Annotated[str, typer.Argument(help="The job's id.")]


def register(app: typer.Typer) -> None:
    """Add the job commands to `app`."""
    for command in (submit, jobs, show, logs, cancel, metrics):
        app.command()(command)


def submit(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment name \\[tutorial: Tutorial-sklearn-mnist].")] = None,
    regularization: Annotated[float | None, typer.Option(help="Sets --regularization \\[tutorial: 0.5].")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Dataset bound to --data-folder, NAME or NAME:VERSION \\[tutorial: digits].")] = None,
    compute_target: Annotated[str | None, typer.Option(help="Compute target \\[tutorial: local].")] = None,
    environment: Annotated[str | None, typer.Option(help="Environment name \\[tutorial: tutorial-env].")] = None,
    source: Annotated[str | None, typer.Option(help="Script folder on the server \\[tutorial: trainer].")] = None,
    script: Annotated[str | None, typer.Option(help="Script inside the source \\[tutorial: train.py].")] = None,
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", help="Set a script argument, NAME=VALUE (becomes --NAME VALUE); repeatable.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="Add a tag, KEY=VALUE (or KEY:VALUE); repeatable.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="A job request as JSON (see POST /v1/jobs) instead of the tutorial job.")] = None,
    no_tutorial_args: Annotated[bool, flag(
        "--no-tutorial-args", help="Start from no script arguments instead of the tutorial's.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Retries with the same key return the same job.")] = None,
    follow: Annotated[bool, flag("--follow", "-f", help="Print the output live, then the result.")] = False,
    wait: Annotated[bool, flag("--wait", "-w", help="Wait for the job to end, then print the result.")] = False,
    timeout: TimeoutOption = None,
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
            raise typer.Exit(follow_job(client, job.id, as_json=as_json, timeout=timeout))
        if wait:
            raise typer.Exit(wait_job(client, job, timeout, as_json=as_json))
        if as_json:
            emit_json(job)
        else:
            out.print(f"submitted job [bold]{job.id}[/] ({styled(job.status)}) on {safe(job.compute_target)}")
            out.print(f"  follow it: runyard logs -f {job.id}")


def jobs(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag, KEY=VALUE (or KEY:VALUE).")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only the children of this sweep.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = LIST_LIMIT,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    tag_filter = ":".join(split_pair(tag, "--tag")) if tag is not None else None
    where = target(ctx)
    with api_errors(where), where.client() as client:
        page = client.list_jobs(experiment=experiment, status=status, tag=tag_filter, sweep_id=sweep, limit=limit,
                                cursor=cursor)
    if as_json:
        emit_json(page)
        return
    # Ids, states, names and targets whole (an id is pasted into the next command); tags wrap. Under
    # WIDE columns the times go: `runyard show` has them, and the rest then fits 80 columns.
    wide = out.width >= WIDE
    columns = ("id", "status", "experiment", "target", *(("created", "took") if wide else ()), "tags")
    grid = table(*columns, whole=("id", "status", "experiment", "target", "created", "took"))
    for job in page.items:
        times = (when(job.created_at, short=True), duration(job)) if wide else ()
        grid.add_row(job.id, styled(job.status), safe(job.experiment), safe(job.compute_target), *times,
                     tags_text(job.tags))
    out.print(grid if page.items else "no jobs")
    if page.next_cursor:
        given = (("--experiment", experiment), ("--status", status.value if status else None), ("--tag", tag),
                 ("--sweep", sweep), ("--limit", str(limit) if limit != LIST_LIMIT else None))
        again = "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value is not None)
        out.print(safe(f"more: runyard jobs{again} --cursor {page.next_cursor}"), soft_wrap=True)


def show(ctx: typer.Context, job_id: JobId, as_json: JsonOption = False) -> None:
    """Show one job: state, run, timestamps, error and latest metrics."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        job = client.get(job_id)
        values = client.metrics(job_id)
    if as_json:
        emit_json({"job": job.model_dump(mode="json"), "metrics": values})
        return
    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    rows = [
        ("id", job.id), ("status", styled(job.status)), ("backend status", safe(job.backend_status or "-")),
        ("experiment", safe(job.experiment)), ("script", safe(f"{job.source}/{job.script}")),
        ("arguments", safe(json.dumps(job.arguments))), ("compute target", safe(job.compute_target)),
        ("environment", safe(f"{job.environment}:{job.environment_version}")), ("run id", safe(job.run_id or "-")),
        ("created", when(job.created_at)), ("started", when(job.started_at)), ("ended", when(job.ended_at)),
        ("took", duration(job)), ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
        ("tags", tags_text(job.tags) or "-"),
        ("attempt", f"{job.attempt} of {job.max_retries + 1}"),
    ]
    if job.error:
        rows.append(("error", f"[red]{safe(job.error)}[/]"))
    if job.last_error:
        rows.append(("last problem", safe(job.last_error)))
    for name, value in rows:
        grid.add_row(f"[bold]{name}[/]", value)
    out.print(grid)
    if job.attempts:
        attempts = table("attempt", "status", "exit", "run id", "ended", "error", whole=("attempt", "status", "exit"))
        for a in job.attempts:
            attempts.add_row(str(a.attempt), styled(a.status), "-" if a.exit_code is None else str(a.exit_code),
                             safe(a.run_id or "-"), when(a.ended_at, short=True), safe(a.error or "-"))
        out.print(attempts)
    if values:
        out.print(metrics_table(values))


def logs(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[bool, flag("--follow", "-f", help="Stream until the job ends, then the result.")] = False,
    offset: Annotated[int, typer.Option(min=0, help="Start at this byte offset.")] = 0,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the run's log (stdout and stderr of the script); -f follows it live.

    With --json: {"job_id", "text", "next_offset", "eof"}; with -f --json the log goes to stderr
    and the final job and metrics to stdout, as with `submit --follow --json`.
    """
    where = target(ctx)
    with api_errors(where), where.client() as client:
        if follow:
            raise typer.Exit(follow_job(client, job_id, as_json=as_json, offset=offset, timeout=timeout))
        texts: list[str] = []
        while True:
            chunk = client.logs(job_id, offset=offset, limit=1_048_576)
            if as_json:
                texts.append(chunk.text)
            else:
                typer.echo(plain(chunk.text), nl=False)
            if chunk.eof or chunk.next_offset == offset:
                break
            offset = chunk.next_offset
    if as_json:
        emit_json({"job_id": job_id, "text": "".join(texts), "next_offset": chunk.next_offset, "eof": chunk.eof})


def cancel(ctx: typer.Context, job_id: JobId, as_json: JsonOption = False) -> None:
    """Cancel a job (it may take the run a few seconds to stop); repeating it is harmless."""
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
    grid = table("step", "value", "time", whole=("step", "value", "time"))
    for point in points:
        grid.add_row("-" if point.step is None else str(point.step), f"{point.value:.6g}", when(point.timestamp))
    out.print(grid)


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

