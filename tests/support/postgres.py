"""Scratch PostgreSQL databases for tests: one per use, dropped afterwards.

The server is the machine's (127.0.0.1:5432, trust authentication; `RUNYARD_TEST_POSTGRES_URL`
points elsewhere). Where none answers, the tests that need it are skipped with that reason on a
developer machine and fail in CI (`CI` set), so a missing server is never a silent pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, pool, text
from sqlalchemy.exc import OperationalError

ADMIN_URL = os.environ.get("RUNYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL is needed and not reachable at {make_url(ADMIN_URL).render_as_string()}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty database on the test server; yields its URL and drops it afterwards."""
    try:
        import psycopg  # noqa: F401 - the driver the URL names
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _unavailable(f"the psycopg driver is not installed ({exc})")
    admin = create_engine(ADMIN_URL, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    name = f"runyard_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(str(exc.orig or exc).strip().splitlines()[0])
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
