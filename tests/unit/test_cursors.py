"""Cursors: each list's documented pattern is exactly what decodes, and ours come back unchanged."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.errors import InvalidRequest
from service.db.pagination import KeyShape, decode_cursor, encode_cursor

EXAMPLES = settings(max_examples=300, deadline=None, database=None)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=300)
INT64 = st.integers(-(2**63), 2**63 - 1)
CURSOR = {shape: st.from_regex(shape.pattern, fullmatch=True).filter(
    lambda c, s=shape: s.min_length <= len(c) <= 2048) for shape in KeyShape}


@given(st.sampled_from(list(KeyShape)).flatmap(lambda shape: st.tuples(st.just(shape), CURSOR[shape])))
@EXAMPLES
def test_every_cursor_of_the_pattern_names_a_position(pair: tuple[KeyShape, str]) -> None:
    shape, cursor = pair
    values = decode_cursor(cursor, shape)
    assert [type(v) for v in values] == [int if kind == "int" else str for kind in shape.kinds]
    for value in values:
        if isinstance(value, int):
            assert -(2**63) <= value < 2**63
        else:
            assert "\x00" not in value
            value.encode("utf-8")  # no lone surrogate: the database can bind it


@given(TEXT, INT64)
@EXAMPLES
def test_our_cursors_round_trip_and_match_their_pattern(text: str, number: int) -> None:
    for shape, values in ((KeyShape.TEXT, [text]), (KeyShape.INT, [number]), (KeyShape.TEXT_INT, [text, number])):
        cursor = encode_cursor(values, shape)
        assert re.fullmatch(shape.pattern, cursor), (shape, cursor)
        assert len(cursor) >= shape.min_length
        assert decode_cursor(cursor, shape) == values


@pytest.mark.parametrize(("shape", "cursor"), [
    (KeyShape.TEXT, "A"), (KeyShape.TEXT, "ABCDE"), (KeyShape.TEXT, "ab+c"), (KeyShape.TEXT, "YQ=="),
    (KeyShape.INT, "AAAAAAAAAA"), (KeyShape.INT, "AAAAAAAAAAAA"), (KeyShape.TEXT_INT, "AAAAAAAAAA"),
])
def test_a_cursor_outside_the_pattern_is_refused(shape: KeyShape, cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor is not valid"):
        decode_cursor(cursor, shape)
