"""API models of the model registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.core.schemas import Name, RelPath, Strict, Tags


class ModelRegister(Strict):
    model_name: Name
    model_path: RelPath
    tags: Tags = Field(default_factory=dict)


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    job_id: str | None
    run_id: str | None
    experiment: str | None
    model_path: str
    tags: dict[str, str]
    metrics: dict[str, Any]
    # The latest `evaluate` on a test split: accuracy, labels, confusion matrix (true x predicted).
    evaluation: dict[str, Any] | None = None
    created_at: datetime


class ModelPublic(BaseModel):
    name: str
    latest_version: int
    versions: int
