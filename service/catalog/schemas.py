"""API models of experiments, environments, datasets and compute targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.core.schemas import ExperimentName, Name, Strict


class ExperimentCreate(Strict):
    name: ExperimentName


class ExperimentPublic(BaseModel):
    name: str
    created_at: datetime


class EnvironmentCreate(Strict):
    name: Name
    python_version: Annotated[str, StringConstraints(pattern=r"^3\.[0-9]{1,2}(\.[0-9]{1,3})?$")] = "3.11"
    pip_packages: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=200)
    ] = Field(default_factory=list)
    conda_packages: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=200)
    ] = Field(default_factory=list)


class EnvironmentPublic(BaseModel):
    name: str
    version: int
    python_version: str
    pip_packages: list[str]
    conda_packages: list[str]
    created_at: datetime


class DatasetCreate(Strict):
    """A new version of a file dataset: a server-side folder, or a URL for Azure targets."""

    name: Name
    # An absolute server path (not relative to wherever the service was started); whether it is a
    # folder inside the dataset roots depends on the server: 404 or 403 (catalog.create_dataset).
    path: Annotated[str, StringConstraints(pattern=r"^/[^\x00]*$", max_length=4096)] | None = None
    uri: (
        Annotated[str, StringConstraints(pattern=r"^(https?|wasbs?|abfss?|adl|azureml)://.+", max_length=4096)] | None
    ) = None
    description: Annotated[str, StringConstraints(max_length=4096)] = ""

    # Exactly one of path or uri (catalog.create_dataset refuses both and neither): said in the
    # schema too, so a generated client refuses what the server refuses.
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["path"], "properties": {"path": {"type": "string"}}},
        {"required": ["uri"], "properties": {"uri": {"type": "string"}}},
    ]})


class DatasetPublic(BaseModel):
    name: str
    version: int
    path: str | None
    uri: str | None
    description: str
    created_at: datetime


class ComputePublic(BaseModel):
    name: str
    kind: Literal["local", "amlcompute"]
    state: str
    max_concurrent: int | None = None
    active_jobs: int
    vm_size: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    current_nodes: int | None = None
    error: str | None = None
    sdk: Literal["v1", "v2"] | None = Field(
        default=None, description="the Azure ML SDK that runs jobs on this target (v1: azureml-core, v2: azure-ai-ml)"
    )
