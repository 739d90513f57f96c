"""Brings the database schema to the newest Alembic revision: the only way it is made.

Replicas starting together must not race the migration: on PostgreSQL the upgrade runs under a
session advisory lock, on SQLite under an exclusive lock on a file beside the database.
"""

from __future__ import annotations

import ast
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.exc import SQLAlchemyError

from service.core.settings import REPO_ROOT

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = REPO_ROOT / "migrations"

# Any constant shared by every runyard process; "runy" in ASCII.
MIGRATION_LOCK_KEY = 0x72756E79


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """Alembic's config for this repo, pointed at `database_url` (or run on `connection`)."""
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
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


def head_revisions(versions: Path = MIGRATIONS / "versions") -> frozenset[str]:
    """The head revisions of the migration scripts, read from their `revision`/`down_revision` lines.

    Parsed, not imported through Alembic: this runs on every start, and Alembic with its
    script machinery costs ~0.3 s of start-up that a current schema does not need.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        for node in ast.parse(script.read_text()).body:
            target: ast.expr | None = None
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                target, expression = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, expression = node.targets[0], node.value
            if not isinstance(target, ast.Name) or target.id not in ("revision", "down_revision"):
                continue
            value = ast.literal_eval(expression)
            if target.id == "revision":
                revisions.add(str(value))
            elif target.id == "down_revision" and value is not None:
                parents.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - parents)


def is_current(database_url: str) -> bool:
    """True when the database is stamped with exactly the scripts' heads (nothing to upgrade)."""
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            stamped = {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}
    except SQLAlchemyError:
        return False  # no database or no alembic_version yet: a new data dir
    finally:
        engine.dispose()
    return bool(stamped) and stamped == head_revisions()


def upgrade(database_url: str) -> None:
    """Run `alembic upgrade head` against `database_url`, one process at a time."""
    if is_current(database_url):
        return
    from alembic import command

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
