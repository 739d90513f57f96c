"""Shared pieces of the OpenAPI description."""

from __future__ import annotations

from typing import Any

from service.api.schemas import Problem

_TEXT = {
    401: "Missing or wrong API key",
    403: "An argument or path names a server folder outside the dataset roots (RUNYARD_DATASET_ROOTS)",
    404: "The resource does not exist",
    409: "Conflicts with the resource's current state",
    413: "The request body is too large",
    422: "The request is not valid",
    502: "The endpoint's web service failed or refused runyard",
    503: "A backend cannot be reached",
    504: "The endpoint's web service gave no answer in time",
}


def ERRORS(*codes: int) -> dict[int | str, dict[str, Any]]:  # noqa: N802 - reads as a constant
    """OpenAPI `responses` entries for problem+json errors."""
    return {
        code: {"model": Problem, "description": _TEXT[code], "content": {"application/problem+json": {}}}
        for code in codes
    }


# A local run's folder is on one host: another host's replica says which (GET logs, download a file).
RUN_ELSEWHERE: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Problem,
        "description": "The job's local run folder is on another host (`host`), and no replica there holds the job "
                       "now; only a replica on that host can serve it",
        "content": {"application/problem+json": {}},
    },
    503: {
        "model": Problem,
        "description": "The job's local run folder is on another host (`host`) whose replica is running it: retry "
                       "after Retry-After (through the load balancer another try may reach that host); also "
                       "storage or a backend unavailable for now",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        "content": {"application/problem+json": {}},
    },
}
