"""UTCDateTime reads SQLite's text in one call (issue 17) and every other form as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite

from service.db.tables import UTCDateTime


def _reader(dialect: Any) -> Any:
    return UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)


def _generic_reader(dialect: Any) -> Any:
    """The TypeDecorator's own composition: the dialect's parser, then process_result_value."""

    class Plain(TypeDecorator[datetime]):
        impl = DateTime
        cache_ok = True

        def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
            return UTCDateTime().process_result_value(value, dialect)

    return Plain().dialect_impl(dialect).result_processor(dialect, None)


@pytest.mark.parametrize("text", [
    "2026-11-02 15:11:52.392264",  # as SQLAlchemy writes it
    "2026-11-02 15:11:52.000001",
    "2026-11-02 15:11:52",  # CURRENT_TIMESTAMP's form
    "2026-11-02 15:11:52.5",
    "2026-11-02 15:11:52+02:00",  # an offset: the general path (which drops it, as always)
    "2026-11-02T15:11:52Z",
    "2026-11-02",
])
def test_sqlite_text_reads_as_the_general_path_does(text: str) -> None:
    fast, generic = _reader(sqlite.dialect())(text), _generic_reader(sqlite.dialect())(text)
    assert fast == generic
    assert fast.tzinfo is UTC
    assert generic.utcoffset() == fast.utcoffset()


def test_sqlite_null_and_nonsense() -> None:
    read = _reader(sqlite.dialect())
    assert read(None) is None
    with pytest.raises(ValueError, match="Invalid isoformat"):  # the general parser's own error, as before
        read("not a date")


def test_other_databases_keep_the_general_path() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    read = _reader(postgresql.psycopg.dialect())
    assert read is None or read(naive) == naive.replace(tzinfo=UTC)
    assert UTCDateTime().process_result_value(naive, None) == naive.replace(tzinfo=UTC)
