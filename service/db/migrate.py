"""Brings the database schema to the newest Alembic revision: the only way it is made.

Replicas starting together must not race the migration: on PostgreSQL the upgrade runs under a
session advisory lock, on SQLite under an exclusive lock on a file beside the database.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, pool, text

from service.core.settings import REPO_ROOT

# Any constant shared by every runyard process; "runy" in ASCII.
MIGRATION_LOCK_KEY = 0x72756E79


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """Alembic's config for this repo, pointed at `database_url` (or run on `connection`)."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def sqlite_file(database_url: str) -> Path | None:
    """The file of a file-backed SQLite URL; None for other engines and in-memory databases."""
    if not database_url.startswith("sqlite:///") or ":memory:" in database_url:
        return None
    return Path(database_url.removeprefix("sqlite:///"))


def upgrade(database_url: str) -> None:
    """Run `alembic upgrade head` against `database_url`, one process at a time."""
    if database_url.startswith("sqlite"):
        db_file = sqlite_file(database_url)
        if db_file is None:
            command.upgrade(alembic_config(database_url), "head")
            return
        db_file.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(db_file.with_name(db_file.name + ".migrate.lock")):
            command.upgrade(alembic_config(database_url), "head")
        return
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection, _advisory_lock(connection):
            command.upgrade(alembic_config(database_url, connection), "head")
            connection.commit()
    finally:
        engine.dispose()


@contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    # A session-level lock: it outlives the migration's own transactions and dies with the
    # connection, so a replica killed mid-migration releases it.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
