"""The SQL engine: SQLite in WAL mode with a busy timeout, and session factories."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine


class Database:
    """Owns the engine; hands out read sessions and write sessions."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"check_same_thread": False} if self.is_sqlite else {}
        # A request must never wait for a pooled SQLite connection (they are cheap to open): a
        # waiter blocks a worker thread that the holders need to finish, so a bounded pool stalls
        # ~40 concurrent requests for the whole pool timeout. Ten are kept open between bursts.
        pool: dict[str, Any] = {"pool_size": 10, "max_overflow": -1} if self.is_sqlite and ":memory:" not in url else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite, **pool)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        # Writers take the lock up front: a deferred transaction that upgrades from read
        # to write fails at once with "database is locked" instead of waiting its turn.
        self._write_engine = self.engine.execution_options(runyard_immediate=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (and for writes where no read precedes them)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its first statement until it ends.

        Keep it open only around the work that writes: every other writer waits meanwhile.
        """
        with Session(self._write_engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("runyard_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
