"""`runyard`: the command line for the runyard service (console script `runyard = service.cli.main:app`).

Each group of commands lives in its own `service/cli/*.py` module with a `register(app)`;
adding a group is one import and one line below.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from service.cli import catalog as cli_catalog
from service.cli import endpoints as cli_endpoints
from service.cli import gc as cli_gc
from service.cli import jobs as cli_jobs
from service.cli import models as cli_models
from service.cli import serve as cli_serve
from service.cli import sweeps as cli_sweep
from service.cli.common import Target
from service.client.http import DEFAULT_URL

GLOBAL_OPTIONS = ("--url", "--api-key")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--url`/`--api-key` given after the command to before it, where the callback reads them."""
    head: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):  # options before the command
        take = 2 if args[i] in GLOBAL_OPTIONS else 1
        head += args[i:i + take]
        i += take
    if i >= len(args):
        return head
    command, rest, moved = args[i], args[i + 1:], []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        item = rest[j]
        if item == "--":
            kept += rest[j:]
            break
        if item in GLOBAL_OPTIONS and j + 1 < len(rest):
            moved += rest[j:j + 2]
            j += 2
            continue
        if item.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in item:
            moved.append(item)
        else:
            kept.append(item)
        j += 1
    return [*head, *moved, command, *kept]


class Command(TyperCommand):
    """A command whose --help lists `--help` itself as a flag, not as taking a `<bool>`."""

    def get_help_option(self, ctx: Any) -> Any:  # typer's vendored click types
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Runyard(typer.Typer):
    """The app; accepts the global options after the command too (`runyard jobs --api-key K`)."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "args" not in kwargs:
            kwargs["args"] = hoist_global_options(sys.argv[1:])
        return super().__call__(*args, **kwargs)


app = Runyard(
    name="runyard",
    help="Submit, watch and register training runs on a runyard service.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="RUNYARD_URL", help="The service's base URL.")] = DEFAULT_URL,
    api_key: Annotated[str | None, typer.Option(
        envvar="RUNYARD_API_KEY", help="API key, sent as Authorization: Bearer (before or after the command).",
        show_default=False)] = None,
) -> None:
    """Submit, watch and register training runs on a runyard service."""
    ctx.obj = Target(url=url, api_key=api_key or None)


for module in (cli_serve, cli_jobs, cli_models, cli_endpoints, cli_sweep, cli_catalog, cli_gc):
    module.register(app)


if __name__ == "__main__":
    app()
