"""Small repository helpers that let the database, not the process, decide under concurrency.

On SQLite every writer holds the write lock, so these never retry there; on PostgreSQL two
replicas (or two requests) can race for the same name or number, and the unique constraints
settle it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from service.core.errors import Conflict

T = TypeVar("T", bound=SQLModel)
# Each lost race means another writer committed its number, so this bounds contention, not luck.
NUMBERING_ATTEMPTS = 100


def insert_if_absent(session: Session, table: type[SQLModel], **values: Any) -> None:
    """`INSERT ... ON CONFLICT DO NOTHING`: create a row unless one with its key exists."""
    if session.get_bind().dialect.name == "postgresql":
        # Imported only here: the PostgreSQL dialect costs ~0.1 s of every SQLite start-up.
        from sqlalchemy.dialects import postgresql

        session.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())


def serialize(session: Session, scope: str) -> None:
    """Make writers of `scope` (a model name, say) take turns until this transaction ends.

    On PostgreSQL a transaction advisory lock keyed by the scope: a dozen replicas registering one
    model at once would otherwise all read the same latest number and retry in a herd, each round
    settling one of them. On SQLite the writer already holds the database's only write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"), {"scope": scope})


def add_numbered(session: Session, *, latest: Callable[[], int | None], make: Callable[[int], T]) -> T:
    """Add `make(n)` with n one past `latest()`, retrying when a concurrent writer took n first."""
    if session.get_bind().dialect.name == "sqlite":
        # The writer holds the database's only write lock: nobody can take the number meanwhile
        # (and a savepoint would hide a full disk's error behind "no such savepoint").
        row = make((latest() or 0) + 1)
        session.add(row)
        session.flush()
        return row
    for _ in range(NUMBERING_ATTEMPTS):
        row = make((latest() or 0) + 1)
        try:
            with session.begin_nested():  # a savepoint: a lost race undoes only this insert
                session.add(row)
        except IntegrityError:
            continue
        return row
    raise Conflict(f"could not number a new {type(row).__name__}: {NUMBERING_ATTEMPTS} concurrent writers won; retry")
