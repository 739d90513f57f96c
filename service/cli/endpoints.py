"""`runyard deploy | score | endpoints | evaluate`: serve model versions and judge them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from service.cli.common import EXIT_USAGE, JsonOption, api_errors, emit_json, fail, out, target, when
from service.models.endpoints.schemas import EndpointPublic

VersionOption = Annotated[str, typer.Option("--version", help="A version number or `latest`.")]


def register(app: typer.Typer) -> None:
    """Add the endpoint commands to `app`."""
    app.command("deploy")(deploy)
    app.command("score")(score)
    app.command("endpoints")(endpoints)
    app.command("evaluate")(evaluate)


def _version(text: str) -> int | str:
    if text == "latest":
        return text
    if not text.isdigit() or int(text) < 1:
        fail(f"--version {text!r}: a number from 1, or `latest`", EXIT_USAGE)
    return int(text)


def _megabytes(found: EndpointPublic) -> str:
    return "-" if found.memory_bytes is None else f"{found.memory_bytes / 2**20:.0f} MB"


def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The endpoint's name.")],
    model: Annotated[str, typer.Option("--model", help="A registered model.")] = "sklearn_mnist",
    version: VersionOption = "latest",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Worker processes.")] = 1,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until ready or failed.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Serve a model version as an endpoint on the local compute."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.deploy(name, model=model, version=_version(version), replicas=replicas)
        if wait:
            found = client.wait_endpoint(name)
    if as_json:
        emit_json(found)
        return
    if found.status == "failed":
        fail(f"endpoint {name} failed: {found.error}")
    out.print(f"endpoint [bold]{name}[/] serves {found.model} version {found.version}: {found.status}"
              f" ({found.scoring_uri})")  # fmt: skip


def _rows(file: Path) -> Any:
    try:
        text = file.read_text() if str(file) != "-" else typer.get_text_stream("stdin").read()
        body = json.loads(text)
    except (OSError, ValueError) as exc:
        fail(f"--file {file}: {exc}", EXIT_USAGE)
    # The tutorial's body ({"data": [[...]]}) or just the rows.
    return body["data"] if isinstance(body, dict) and "data" in body else body


def score(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A ready endpoint.")],
    file: Annotated[Path, typer.Option("--file", help='JSON: {"data": [[...], ...]} or the rows; `-` for stdin.')],
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also each class's probability.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Score rows on an endpoint; prints one prediction a line."""
    data = _rows(file)
    where = target(ctx)
    with api_errors(where), where.client() as client:
        answer = client.score(name, data, probabilities=probabilities)
    if as_json:
        emit_json(answer)
        return
    for index, prediction in enumerate(answer.predictions):
        extra = f"\t{max(answer.probabilities[index]):.4f}" if answer.probabilities else ""
        out.print(f"{prediction}{extra}")


def endpoints(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this endpoint only.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List endpoints: model, version, status, workers and their memory."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = [client.endpoint(name)] if name else client.endpoints()
    if as_json:
        items: list[BaseModel] = list(found)
        emit_json(items[0] if name else items)
        return
    table = Table("endpoint", "model", "version", "status", "workers", "memory", "updated", header_style="bold")
    for e in found:
        status = e.status if e.error is None else f"{e.status}: {e.error}"
        table.add_row(e.name, e.model, str(e.version), status, str(len(e.workers)), _megabytes(e), when(e.updated_at))
    out.print(table if found else "no endpoints yet")


def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A registered model.")],
    version: VersionOption = "latest",
    dataset: Annotated[str, typer.Option("--dataset", help="Its test split is scored.")] = "digits",
    as_json: JsonOption = False,
) -> None:
    """Score a dataset's test split with a model version: accuracy and the confusion matrix."""
    where = target(ctx)
    with api_errors(where), where.client() as client:
        found = client.evaluate(model, _version(version), dataset=dataset)
    if as_json:
        emit_json(found)
        return
    result = found.evaluation or {}
    out.print(f"{found.name} version {found.version} on {dataset} (test, {result.get('samples')} samples): "
              f"accuracy {result.get('accuracy', float('nan')):.4f}")  # fmt: skip
    labels = [str(label) for label in result.get("labels", [])]
    table = Table("true \\ predicted", *labels, header_style="bold")
    for label, row in zip(labels, result.get("confusion_matrix", []), strict=False):
        table.add_row(label, *(str(n) for n in row))
    out.print(table)
