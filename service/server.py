"""Serve the app with uvicorn: shared by `python -m service` and `runyard serve`."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.core.logs import configure_logging
from service.core.settings import Settings


def serve(settings: Settings) -> None:
    """Configure logging, then run uvicorn on the settings' host and port until stopped."""
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level=settings.log_level.lower(),
        # Our logging setup and our access log (with request ids) replace uvicorn's.
        log_config=None, access_log=False,
    )
