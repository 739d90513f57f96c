"""Building blocks every feature's API models share: name rules, strict bodies, pages."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ExperimentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")]
RelPath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
TagValue = Annotated[str, StringConstraints(max_length=1024)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next."""

    items: list[T]
    next_cursor: str | None
