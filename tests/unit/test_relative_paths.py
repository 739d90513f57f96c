"""The relative-path rule the OpenAPI document states is the one `clean_relative` applies."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from service.core.errors import InvalidRequest
from service.core.rundir import clean_relative
from service.core.schemas import RelPath

SCHEMA = TypeAdapter(RelPath)


@pytest.mark.parametrize("path", ["a", "outputs/model.pkl", "outputs/", ".hidden/x", "..x/y", "é/ü.txt"])
def test_plain_relative_paths_pass_both(path: str) -> None:
    assert SCHEMA.validate_python(path) == path
    assert clean_relative(path)


@pytest.mark.parametrize("path", ["\n", "a\nb", "outputs/\tx", "a\x00b", "a\x7fb", "a\\b", "/etc/passwd", "../x",
                                  "a/../../b"])
def test_control_characters_backslashes_and_escapes_fail_both(path: str) -> None:
    # A newline never reaches a route intact (Starlette's {path:path} stops at one), so the
    # document must not call it valid: schemathesis found the mismatch (ST202, a 422 for "\n").
    with pytest.raises(ValidationError):
        SCHEMA.validate_python(path)
    with pytest.raises(InvalidRequest):
        clean_relative(path)
