"""`runyard sweep | sweeps | sweep-show | sweep-cancel`: sweeps from the command line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    EXIT_JOB_CANCELED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    JsonOption,
    api_errors,
    err,
    fail,
    flag,
    load_json,
    out,
    parse_dataset,
    scalar,
    target,
    when,
)
from service.cli.render import safe, table
from service.client.http import Client, WaitTimeout
from service.sweeps.schemas import SweepDetail, SweepPublic, SweepStatus

DEFAULT_MODEL_PATH = "outputs/sklearn_mnist_model.pkl"
# The tutorial's knob over four decades, as in DESIGN.md's example.
DEFAULT_SPACE = {"--regularization": {"type": "loguniform", "low": 0.001, "high": 10}}
EXIT_CODES = {SweepStatus.COMPLETED: EXIT_OK, SweepStatus.CANCELED: EXIT_JOB_CANCELED}
SweepId = Annotated[str, typer.Argument(help="The sweep's id.")]


def register(app: typer.Typer) -> None:
    """Add the sweep commands to `app`."""
    app.command("sweep")(sweep_command)
    app.command("sweeps")(sweeps_command)
    app.command("sweep-show")(show_command)
    app.command("sweep-cancel")(cancel_command)


def sweep_command(
    ctx: typer.Context,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="A search dimension, repeatable: NAME=choice:A,B,C, NAME=uniform:LOW,HIGH or "
                        "NAME=loguniform:LOW,HIGH (default: regularization=loguniform:0.001,10).")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="A sweep request as JSON (see POST /v1/sweeps); options given here override it.")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment of the children (default: Tutorial-sklearn-mnist).")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset bound to --data-folder, NAME or NAME:VERSION.")] = "digits",
    compute_target: Annotated[str | None, typer.Option(help="Compute target (default: local).")] = None,
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", help="A fixed script argument for every child, NAME=VALUE; repeatable.")] = None,
    sampling: Annotated[str | None, typer.Option(
        help="grid or random (default: grid if every param is a choice).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of random sampling.")] = None,
    max_total_runs: Annotated[int | None, typer.Option(
        help="How many children (default: random 8, grid the whole grid).")] = None,
    max_concurrent_runs: Annotated[int | None, typer.Option(help="Children running at once (default: 2).")] = None,
    primary_metric: Annotated[str | None, typer.Option(
        help="The metric that ranks children (default: accuracy).")] = None,
    minimize: Annotated[bool, flag("--minimize", help="Lower is better (default: higher).")] = False,
    early_termination: Annotated[str | None, typer.Option(help="median or bandit.")] = None,
    delay_evaluation: Annotated[int, typer.Option(help="First step early termination applies at.")] = 0,
    slack_factor: Annotated[float, typer.Option(help="Bandit's slack factor.")] = 0.1,
    register_best: Annotated[str | None, typer.Option(
        help="Register the best child's model under this name.")] = None,
    model_path: Annotated[str, typer.Option(help="The model file in the children's outputs.")] = DEFAULT_MODEL_PATH,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Retries with the same key return the same sweep.")] = None,
    wait: Annotated[bool, flag("--wait", "-w", help="Show progress until the sweep ends.")] = False,
    timeout: Annotated[float | None, typer.Option(
        min=0, help="With --wait: give up after this many seconds (the sweep keeps running).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Start a sweep: train the tutorial's model over a search space and keep the best child.

    Exit code with --wait: 0 completed, 1 failed, 3 canceled, 4 API error, 5 timeout.
    """
    body = load_json(file) if file else {}
    job: dict[str, Any] = body.setdefault("job", {"arguments": ["--data-folder", parse_dataset(dataset)]})
    job["experiment"] = experiment or job.get("experiment") or "Tutorial-sklearn-mnist"
    if compute_target is not None:
        job["compute_target"] = compute_target
    job["arguments"] = [*job.get("arguments", []), *_fixed_args(arg or [])]
    if param:
        body["search_space"] = dict(_dimension(p) for p in param)
    body.setdefault("search_space", DEFAULT_SPACE)
    all_choice = all(d.get("type") == "choice" for d in body["search_space"].values())
    body["sampling"] = sampling or body.get("sampling") or ("grid" if all_choice else "random")
    if body["sampling"] == "random":
        body.setdefault("max_total_runs", 8)
    given = (("seed", seed), ("max_total_runs", max_total_runs), ("max_concurrent_runs", max_concurrent_runs),
             ("primary_metric", primary_metric), ("goal", "minimize" if minimize else None))
    body.update({key: value for key, value in given if value is not None})
    body.setdefault("max_concurrent_runs", 2)
    body.setdefault("primary_metric", "accuracy")
    if early_termination:
        policy: dict[str, Any] = {"policy": early_termination, "delay_evaluation": delay_evaluation}
        body["early_termination"] = policy | ({"slack_factor": slack_factor} if early_termination == "bandit" else {})
    if register_best:
        body["register_best"] = {"model_name": register_best, "model_path": model_path}

    where = target(ctx)
    with api_errors(where), where.client() as client:
        sweep = client.create_sweep(body, idempotency_key=idempotency_key)
        if wait:
            raise typer.Exit(_watch(client, sweep, timeout, as_json=as_json))
        if as_json:
            typer.echo(sweep.model_dump_json(indent=2))
        else:
            out.print(f"started sweep [bold]{sweep.id}[/]: {sweep.progress.total} children, "
                      f"{sweep.max_concurrent_runs} at a time")
            out.print(f"  watch it: runyard sweep-show --wait {sweep.id}")


def sweeps_command(
    ctx: typer.Context,
    status: Annotated[SweepStatus | None, typer.Option(help="Only sweeps in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List sweeps, newest first."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        items = client.list_sweeps(status=status, limit=limit).items
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in items], indent=2))
        return
    grid = table("sweep", "status", "progress", "best", "created", whole=("sweep", "status", "progress", "created"))
    for s in items:
        best = f"{s.primary_metric} {s.best_metric:.4g}" if s.best_metric is not None else "-"
        grid.add_row(s.id, s.status.value, f"{s.progress.done}/{s.progress.total}", safe(best),
                     when(s.created_at, short=True))
    out.print(grid if items else "no sweeps yet")


def show_command(
    ctx: typer.Context, sweep_id: SweepId,
    wait: Annotated[bool, flag("--wait", "-w", help="Show progress until the sweep ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --wait: give up after this many seconds.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a sweep and its table of children."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        sweep = client.get_sweep(sweep_id)
        if wait:
            raise typer.Exit(_watch(client, sweep, timeout, as_json=as_json))
    _report(sweep, as_json=as_json)


def cancel_command(ctx: typer.Context, sweep_id: SweepId, as_json: JsonOption = False) -> None:
    """Cancel a sweep: no more children start, running ones are canceled."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        sweep = client.cancel_sweep(sweep_id)
    if as_json:
        typer.echo(sweep.model_dump_json(indent=2))
    else:
        out.print(f"sweep {sweep.id} {sweep.status.value}")


def progress_line(sweep: SweepPublic) -> str:
    """One line: where the sweep is and the best child so far."""
    p = sweep.progress
    line = f"sweep {sweep.id} {sweep.status.value}: {p.done}/{p.total} done, {p.active} active"
    line += "".join(f", {n} {what}" for n, what in ((p.failed, "failed"), (p.early_terminated, "stopped early")) if n)
    if sweep.best_metric is not None:
        line += f"; best {sweep.primary_metric} {sweep.best_metric:.4g} (job {sweep.best_job_id})"
    return line


def children_table(sweep: SweepDetail) -> Table:
    """The children: job, parameters, status, primary metric; the best one starred."""
    metric = safe(sweep.primary_metric)
    grid = table("#", "job", "params", "status", metric, whole=("#", "job", metric))
    for child in sweep.children:
        value = "-" if child.primary_metric is None else f"{child.primary_metric:.4f}"
        star = " *" if child.job_id == sweep.best_job_id else ""
        status = child.status.value + (" (stopped early)" if child.early_terminated else "")
        params = " ".join(f"{k}={v}" for k, v in child.params.items())
        grid.add_row(str(child.index), child.job_id, safe(params), status, value + star)
    return grid


def _watch(client: Client, sweep: SweepDetail, timeout: float | None, *, as_json: bool) -> int:
    """Refresh the progress line until the sweep ends (or `timeout`), then print the table."""
    last = progress_line(sweep)
    with _status(last) as update:
        sweep_id = sweep.id
        try:
            for sweep in client.watch_sweep(sweep_id, timeout):
                if (line := progress_line(sweep)) != last:
                    update(line)
                    last = line
        except WaitTimeout as exc:
            err.print(f"{exc}; watch it: runyard sweep-show --wait {sweep_id}")
            return EXIT_TIMEOUT
    _report(sweep, as_json=as_json)
    return EXIT_CODES.get(sweep.status, EXIT_JOB_FAILED)


def _report(sweep: SweepDetail, *, as_json: bool) -> None:
    if as_json:
        typer.echo(sweep.model_dump_json(indent=2))
        return
    out.print(children_table(sweep))
    out.print(safe(progress_line(sweep)) + (f" [red]{safe(sweep.error)}[/]" if sweep.error else ""))
    if sweep.registered_model:
        out.print(f"registered {safe(sweep.registered_model.name)} version {sweep.registered_model.version}")


@contextlib.contextmanager
def _status(first: str) -> Iterator[Any]:
    """A live status line on a terminal; elsewhere, one printed line per change."""
    if not err.is_terminal:
        err.print(safe(first))
        yield lambda line: err.print(safe(line))
        return
    with err.status(safe(first), spinner="dots") as spinner:
        yield lambda line: spinner.update(safe(line))


def _fixed_args(items: list[str]) -> list[Any]:
    found: list[Any] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip("-"):
            fail(f"--arg {item!r}: expected NAME=VALUE", EXIT_USAGE)
        found += [name if name.startswith("-") else f"--{name}", scalar(value)]
    return found


def _dimension(text: str) -> tuple[str, dict[str, Any]]:
    """`regularization=loguniform:0.001,10` -> ("--regularization", {...})."""
    name, _, spec = text.partition("=")
    kind, _, values = spec.partition(":")
    flag = name if name.startswith("-") else f"--{name}"
    items = [scalar(v) for v in values.split(",") if v]
    if kind == "choice" and items:
        return flag, {"type": "choice", "values": items}
    if kind in ("uniform", "loguniform") and len(items) == 2:
        return flag, {"type": kind, "low": items[0], "high": items[1]}
    fail(f"--param {text!r}: expected NAME=choice:A,B | NAME=uniform:LOW,HIGH | NAME=loguniform:LOW,HIGH", EXIT_USAGE)

