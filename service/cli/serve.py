"""`runyard serve`: run the service in this terminal."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.common import EXIT_USAGE, fail


def register(app: typer.Typer) -> None:
    """Add `serve` to `app`."""
    app.command()(serve)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on \\[RUNYARD_HOST, 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[RUNYARD_PORT, 8000].")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Runs, models, db \\[RUNYARD_DATA_DIR, .runyard].")] = None,
    log_format: Annotated[str | None, typer.Option(
        help="auto, json or text \\[RUNYARD_LOG_FORMAT, auto: text on a terminal].")] = None,
) -> None:
    """Start the service (the same as `python -m service`); other settings come from RUNYARD_* variables."""
    # Imported here: the client commands start faster without the server's dependencies. No
    # collection while they load (as `python -m service`; serve() turns it back on).
    gc.disable()
    from service.core.settings import InvalidSettings, load_settings
    from service.server import serve as run_server

    overrides: dict[str, Any] = {k: v for k, v in
                                 {"host": host, "port": port, "data_dir": data_dir, "log_format": log_format}.items()
                                 if v is not None}
    try:
        settings = load_settings(**overrides)
    except InvalidSettings as exc:
        fail(f"invalid setting: {exc}", EXIT_USAGE)
    run_server(settings)

