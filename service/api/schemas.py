"""API models of the service itself: problems and health."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    # On a job's logs or files from a replica of another host: the host whose data folder holds the run.
    host: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
    # Shown to trusted callers, like the checks: which replica answered, on which database kind.
    replica: str | None = None
    host: str | None = None  # RUNYARD_HOST_ID: the machine whose data folder holds this replica's local runs
    database: Literal["postgresql", "sqlite"] | None = None
