"""Domain errors; each carries the HTTP status one handler turns it into."""

from __future__ import annotations

from typing import Any


class RunyardError(Exception):
    """Base of every error the API reports as problem+json."""

    status_code = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type_slug(self) -> str:
        return self.title.lower().replace(" ", "-")


class NotFound(RunyardError):
    status_code = 404
    title = "Not found"


class Conflict(RunyardError):
    status_code = 409
    title = "Conflict"


class InvalidRequest(RunyardError):
    status_code = 422
    title = "Invalid request"


class IllegalTransition(Conflict):
    title = "Illegal state transition"


class Unauthorized(RunyardError):
    status_code = 401
    title = "Unauthorized"


class Forbidden(RunyardError):
    status_code = 403
    title = "Forbidden"


class PayloadTooLarge(RunyardError):
    status_code = 413
    title = "Payload too large"


class BackendError(Exception):
    """Raised by backends; `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class Overloaded(RunyardError):
    """A limit the service keeps to stay up; the client should retry after `retry_after` seconds."""

    status_code = 503
    title = "Service overloaded"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class BackendUnavailable(RunyardError):
    status_code = 503
    title = "Backend unavailable"
