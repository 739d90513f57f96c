"""Shared pieces of the OpenAPI description."""

from __future__ import annotations

from typing import Any

from service.api.schemas import Problem

_TEXT = {
    401: "Missing or wrong API key",
    404: "The resource does not exist",
    409: "Conflicts with the resource's current state",
    413: "The request body is too large",
    422: "The request is not valid",
    503: "A backend cannot be reached",
}


def ERRORS(*codes: int) -> dict[int | str, dict[str, Any]]:  # noqa: N802 - reads as a constant
    """OpenAPI `responses` entries for problem+json errors."""
    return {
        code: {"model": Problem, "description": _TEXT[code], "content": {"application/problem+json": {}}}
        for code in codes
    }
