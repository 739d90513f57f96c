"""Building blocks every feature's API models share: name rules, strict bodies, pages."""

from __future__ import annotations

import functools
import re
import types
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ExperimentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")]
# A plain relative path, exactly what core/rundir.clean_relative keeps: segments that are not
# empty, `.` or `..`, no leading `/`, no backslash or control character; a trailing `/` names a
# folder. (A newline could not even reach a route: Starlette's `{path:path}` stops at one.)
_NOT = r"/\\\x00-\x1f\x7f"  # never in a segment
_SEGMENT = rf"(?:[^{_NOT}.][^{_NOT}]*|\.[^{_NOT}.][^{_NOT}]*|\.\.[^{_NOT}]+)"
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*/?$"

RelPath = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=RELATIVE_PATH_PATTERN)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
TagValue = Annotated[str, StringConstraints(max_length=1024)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]

# Integers the API takes are bounded so every one fits the database's column (a larger one
# would be an OverflowError deep in the driver: a 500). Versions are INTEGER; offsets BIGINT.
MAX_VERSION = 2**31 - 1
MAX_OFFSET = 2**62
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
# An integer argument: JSON integers have no bound, but every client language holds an int64, and an
# unbounded one would be a long value copied into each run's argv and each sweep child's plan. A
# longer JSON number is still a number: the float branch of the argument unions reads it (1e+300).
ArgInt = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def bounded_int(text: str, *, maximum: int) -> int | None:
    """`text` as an int in [0, maximum] when it is plain ASCII digits, else None.

    `str.isdigit()` is no guard: it accepts `²` and `٣`, which `int()` then refuses or reads.
    """
    if not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None


T = TypeVar("T")


class Strict(BaseModel):
    """A request body read as its schema says: no unknown fields, no coercion (`false` is not 0,
    `"1"` is not 1), and JSON Schema's integers, which include `2.0`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        ints = _int_fields(cls)
        return {
            key: int(value) if key in ints and isinstance(value, float) and value.is_integer() else value
            for key, value in data.items()
        }


@functools.cache
def _int_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields taking an integer and no other number (`int`, `int | None`, `int | Literal[...]`)."""
    fields = model.model_fields.items()
    return frozenset(name for name, field in fields if _kinds(field.annotation) & {int, float} == {int})


def _kinds(annotation: Any) -> set[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    return {annotation}


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next."""

    items: list[T]
    next_cursor: str | None
