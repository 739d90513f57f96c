"""`runyard`: the command line for the runyard service (console script `runyard = service.cli:app`).

Each group of commands lives in its own `service/cli_*.py` module with a `register(app)`;
adding a group is one import and one line below.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli import endpoints as cli_endpoints
from service.cli import jobs as cli_jobs
from service.cli import models as cli_models
from service.cli import serve as cli_serve
from service.cli import sweeps as cli_sweep
from service.cli.common import Target
from service.client.http import DEFAULT_URL

app = typer.Typer(
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
        envvar="RUNYARD_API_KEY", help="API key, sent as Authorization: Bearer.", show_default=False)] = None,
) -> None:
    """Submit, watch and register training runs on a runyard service."""
    ctx.obj = Target(url=url, api_key=api_key or None)


for module in (cli_serve, cli_jobs, cli_models, cli_endpoints, cli_sweep):
    module.register(app)


if __name__ == "__main__":
    app()
