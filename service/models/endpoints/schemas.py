"""API models of endpoints, scoring and evaluation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.schemas import MAX_VERSION, Name, Strict

Version = Annotated[int, Field(ge=1, le=MAX_VERSION)] | Literal["latest"]


class EndpointCreate(Strict):
    name: Name
    model: Name
    version: Version = "latest"
    # `local` or a configured inference target; another name is not found (404).
    compute: Name = "local"
    # At most RUNYARD_ENDPOINT_MAX_REPLICAS: the document states it (api/openapi.py), the service checks it.
    replicas: int = Field(default=1, ge=1)


class EndpointUpdate(Strict):
    """Move the endpoint to another version of its model."""

    version: Version


class WorkerPublic(BaseModel):
    pid: int
    rss_bytes: int | None


class EndpointPublic(BaseModel):
    name: str
    model: str
    version: int
    compute: str
    replicas: int
    status: str
    error: str | None
    scoring_uri: str
    # Live, while the endpoint is served by this process: its workers and their memory.
    n_features: int | None = None
    workers: list[WorkerPublic] = Field(default_factory=list)
    memory_bytes: int | None = None
    # On an inference target (Azure ML): the web service runyard forwards to, its state there, and a
    # version being deployed beside it (PATCH) or why that failed.
    service: str | None = None
    backend_state: str | None = None
    pending_version: int | None = None
    switch_error: str | None = None
    created_at: datetime
    updated_at: datetime


class ScoreRequest(BaseModel):
    """The tutorial's body: `{"data": [[feature, ...], ...]}`; numbers only, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # At most RUNYARD_ENDPOINT_MAX_ROWS rows: the document states it (api/openapi.py), the route checks it.
    data: Annotated[list[Annotated[list[float], Field(min_length=1)]], Field(min_length=1)]
    probabilities: bool = False


class ScoreResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    model: str
    version: int


class EvaluateRequest(Strict):
    dataset: Name
    dataset_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
