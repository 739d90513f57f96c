"""One place that turns every error into an RFC 9457 problem+json response."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from service.api.allow import allowed_methods
from service.core.errors import BackendError, Overloaded, RunyardError
from service.db.engine import storage_problem

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, title: str, detail: str, request: Request, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"https://runyard.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body was expected and came with another media type: FastAPI then reads it as text, not JSON."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    return not is_json and any(list(e.get("loc", ()))[:1] == ["body"] for e in exc.errors())


def _where(loc: list[Any]) -> str:
    """`body.arguments.1`: the location without pydantic's labels of validator chains."""
    return ".".join(str(part) for part in loc if not (isinstance(part, str) and "[" in part))


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(RunyardError)
    async def _domain(request: Request, exc: RunyardError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
        return problem(exc.status_code, exc.title, exc.detail, request, headers=headers, **exc.extra)

    @app.exception_handler(BackendError)
    async def _backend(request: Request, exc: BackendError) -> JSONResponse:
        # A request that needed the backend itself (a file download, a model registration).
        if exc.transient:
            return problem(503, "Backend unavailable", exc.message, request)
        return problem(502, "Backend error", exc.message, request)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        found = storage_problem(exc)
        if found is None:
            return await _unexpected(request, exc)
        # Clients retry these with the same Idempotency-Key: a submit that did commit is replayed.
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem(503, "Storage unavailable", f"{found.reason}; retry later", request,
                       headers={"Retry-After": str(found.retry_after_seconds)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_json(request, exc):
            given = request.headers.get("content-type") or "none"
            return problem(415, "Unsupported media type",
                           f"send the body as JSON with the header Content-Type: application/json (got {given})",
                           request)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        # A value that fits no member of a union (a job argument) gets one error per member; the
        # ones saying "not a boolean", "not a number" only tell which member it was not, so the
        # reason it was refused comes first.
        errors.sort(key=lambda e: str(e["type"]).endswith("_type"))
        # The detail alone says what to fix: where and why, for the first few errors (all are in `errors`).
        reasons = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        detail = f"the request does not match the schema: {reasons}{more}" if reasons else "the request is invalid"
        return problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(exc.status_code, "Error")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            # Starlette's `Allow` names one route's methods; RFC 9110 wants every one of the path's.
            allow = allowed_methods(request, headers.get("Allow"))
            if allow:
                headers["Allow"] = allow
        return problem(exc.status_code, title, str(exc.detail), request, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged", request)
