"""The Python client of the runyard API: `from service.client import Client` (or `AsyncClient`)."""

from service.client.aio import AsyncClient
from service.client.http import Client
from service.client.protocol import DEFAULT_URL, ApiError, LogAttempt, LogEnd, LogText, StreamInterrupted, WaitTimeout

__all__ = [
    "DEFAULT_URL", "ApiError", "AsyncClient", "Client", "LogAttempt", "LogEnd", "LogText", "StreamInterrupted",
    "WaitTimeout",
]
