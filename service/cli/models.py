"""`runyard models | register`: the model registry commands."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import JsonOption, api_errors, emit_json, out, pairs, target, when
from service.cli.render import safe, table

DEFAULT_MODEL_PATH = "outputs/sklearn_mnist_model.pkl"


def register(app: typer.Typer) -> None:
    """Add the registry commands to `app`."""
    app.command("models")(models)
    app.command("register")(register_model)


def models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this model's versions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List registered models, or every version of one model."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        if name is None:
            found = client.models()
            if as_json:
                emit_json(list(found))
                return
            grid = table("model", "latest version", "versions", whole=("latest version", "versions"))
            for model in found:
                grid.add_row(safe(model.name), str(model.latest_version), str(model.versions))
            out.print(grid if found else "no models registered yet")
            return
        versions = client.model_versions(name)
    if as_json:
        emit_json(list(versions))
        return
    grid = table("version", "job", "metrics", "tags", "registered", whole=("version", "job", "registered"))
    for v in versions:
        numbers = " ".join(f"{k}={val:.4g}" if isinstance(val, float) else f"{k}={val}" for k, val in v.metrics.items())
        tags = " ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))
        grid.add_row(str(v.version), v.job_id or "-", safe(numbers), safe(tags), when(v.created_at, short=True))
    out.print(grid)


def register_model(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A completed job.")],
    name: Annotated[str, typer.Option("--name", help="Model name.")] = "sklearn_mnist",
    path: Annotated[str, typer.Option("--path", help="File (or folder) among the job's outputs.")] = DEFAULT_MODEL_PATH,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE; repeatable.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Register a model from a completed job's outputs; each registration is a new version."""
    tags = pairs(tag or [], "--tag")
    where = target(ctx)
    with api_errors(where), where.client() as client:
        version = client.register_model(job_id, model_name=name, model_path=path, tags=tags)
    if as_json:
        emit_json(version)
    else:
        out.print(f"registered [bold]{safe(version.name)}[/] version {version.version} from job {safe(job_id)}")
