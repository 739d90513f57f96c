"""`runyard targets | datasets | environments | experiments`: what a job can name."""

from __future__ import annotations

import typer

from service.cli.common import JsonOption, api_errors, emit_json, out, target, when
from service.cli.render import safe, table


def register(app: typer.Typer) -> None:
    """Add the catalog commands to `app`."""
    for command in (targets, datasets, environments, experiments):
        app.command()(command)


def targets(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List compute targets (what --compute-target takes), their state and active jobs."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.compute()
    if as_json:
        emit_json(list(found))
        return
    grid = table("target", "kind", "state", "active", "slots", "error", whole=("target", "kind", "active", "slots"))
    for t in found:
        slots = "-" if t.max_concurrent is None else str(t.max_concurrent)
        grid.add_row(safe(t.name), t.kind, safe(t.state), str(t.active_jobs), slots, safe(t.error or ""))
    out.print(grid)


def datasets(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List dataset versions (what --dataset NAME[:VERSION] takes)."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.datasets()
    if as_json:
        emit_json(list(found))
        return
    grid = table("dataset", "version", "where", "registered", whole=("version", "registered"))
    for d in found:
        grid.add_row(safe(d.name), str(d.version), safe(d.path or d.uri or "-"), when(d.created_at, short=True))
    out.print(grid if found else "no datasets")


def environments(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List environment versions (what --environment takes)."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.environments()
    if as_json:
        emit_json(list(found))
        return
    grid = table("environment", "version", "python", "packages", whole=("version", "python"))
    for e in found:
        grid.add_row(safe(e.name), str(e.version), e.python_version, safe(" ".join(e.pip_packages + e.conda_packages)))
    out.print(grid if found else "no environments")


def experiments(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List experiments (what --experiment and `jobs --experiment` take)."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.experiments()
    if as_json:
        emit_json(list(found))
        return
    grid = table("experiment", "created", whole=("created",))
    for e in found:
        grid.add_row(safe(e.name), when(e.created_at, short=True))
    out.print(grid if found else "no experiments yet")
