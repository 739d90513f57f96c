"""The SQL engine (SQLite in WAL mode with a busy timeout, or PostgreSQL, pooled) and session factories."""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic_core
from anyio.to_thread import run_sync
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, create_engine

# SQLite's words for "try again later": another writer holds the lock, the disk (or the
# file-descriptor table) is full. Other databases' OperationalErrors are lost connections.
_BUSY = ("database is locked", "database table is locked")
_FULL = ("database or disk is full", "disk i/o error")
_NO_FILE = ("unable to open database file",)
_OS_UNAVAILABLE = {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE}
# Connections SQLite keeps open between requests: as many as requests can run queries at once
# (anyio's 40 worker threads, plus the event loop and the background loops). A smaller pool
# closes and reopens a connection (and its four PRAGMAs) on most requests under concurrency.
SQLITE_POOL_SIZE = 48
T = TypeVar("T")


def read_json(text: str) -> Any:
    """A JSON column's value: pydantic's parser, ~4x json.loads (a list page reads two per job).

    It gives what json.loads gives (big integers, NaN and Infinity, the last of duplicate keys);
    the one text it refuses that json.loads reads, a lone surrogate escape, goes to json.loads.
    """
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


@dataclass(frozen=True)
class StorageProblem:
    """Why storage refused a request, and when a client should try again."""

    reason: str
    retry_after_seconds: int


def storage_problem(exc: BaseException) -> StorageProblem | None:
    """The problem behind `exc` when it means storage is unavailable for now, else None."""
    if isinstance(exc, OperationalError | PoolTimeout):
        text = str(exc.orig if isinstance(exc, OperationalError) else exc).lower()
        if any(words in text for words in _BUSY):
            return StorageProblem("the database is busy (another writer holds its lock)", 2)
        if any(words in text for words in _FULL):
            return StorageProblem("the disk holding the database is full or failing", 30)
        if any(words in text for words in _NO_FILE):
            return StorageProblem("the database file cannot be opened (out of file descriptors?)", 5)
        return StorageProblem("the database is unavailable", 5)
    if isinstance(exc, OSError) and exc.errno in _OS_UNAVAILABLE:
        return StorageProblem(f"storage is unavailable: {exc.strerror}", 30 if exc.errno != errno.EMFILE else 5)
    return None


class WriteHealth:
    """The outcome of the latest write: readiness reports a failure until a write succeeds again."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.failed_at = 0.0  # time.monotonic()

    def failed(self, reason: str) -> None:
        self.failure, self.failed_at = reason, time.monotonic()

    def succeeded(self) -> None:
        self.failure = None

    def recent_failure(self, within_seconds: float) -> str | None:
        """The failure, if the last write failed less than `within_seconds` ago."""
        if self.failure is None or time.monotonic() - self.failed_at > within_seconds:
            return None
        return self.failure


class Database:
    """Owns the engine; hands out read sessions and write sessions."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"check_same_thread": False} if self.is_sqlite else {}
        # A request must never wait for a pooled SQLite connection (they are cheap to open): a
        # waiter blocks a worker thread that the holders need to finish, so a bounded pool stalls
        # ~40 concurrent requests for the whole pool timeout.
        pool: dict[str, Any] = (
            {"pool_size": SQLITE_POOL_SIZE, "max_overflow": -1} if self.is_sqlite and ":memory:" not in url else {}
        )
        if url.startswith("postgresql"):
            # A server connection costs the server a process: keep a bounded pool per replica,
            # large enough for the loops plus a burst of requests.
            pool = {"pool_size": 10, "max_overflow": 20, "pool_timeout": 10}
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite,
                                            json_deserializer=read_json, **pool)
        self.writes = WriteHealth()
        _track_writes(self.engine, self.writes)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        # Writers take the lock up front: a deferred transaction that upgrades from read
        # to write fails at once with "database is locked" instead of waiting its turn.
        self._write_engine = self.engine.execution_options(runyard_immediate=True)
        self._local = threading.local()
        # SQLite admits one writer; a writer that finds the lock taken polls it in sleeps that grow
        # to 100 ms, and a newcomer may take it first: at 32 concurrent creates p99 was 5x the
        # median. This process's writers queue here instead and each wakes as the last one ends.
        # Other processes (the CLI's gc, another service on the file) still meet busy_timeout.
        self._write_lock: threading.RLock | None = threading.RLock() if self.is_sqlite else None
        self._write_wait_s = busy_timeout_ms / 1000

    @property
    def writing(self) -> bool:
        """True while this thread holds a write session: the moment not to call a backend."""
        return bool(getattr(self._local, "depth", 0))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (and for writes where no read precedes them)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    async def read(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` for a short, bounded read, from a coroutine.

        On SQLite it runs on the event loop itself: in WAL mode a reader never waits for a writer,
        and a page read by key takes less CPU than the round trip to a worker thread and back
        (which also grew with concurrency: measured 3.4 -> 5.6 ms per metric history at 32
        connections). Other databases answer over a socket, so it runs in a worker thread there.
        Only for reads bounded by an index and a page size: the loop serves nothing meanwhile.
        """
        if self.is_sqlite:
            return self._read(fn)
        return await run_sync(self._read, fn)

    async def read_in_thread(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` in one worker thread, for a read whose cost has no bound (a scan)."""
        return await run_sync(self._read, fn)

    def _read(self, fn: Callable[[Session], T]) -> T:
        with self.session() as session:
            return fn(session)

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its first statement until it ends.

        Keep it open only around the work that writes: every other writer waits meanwhile.
        """
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=self._write_wait_s):
            # What SQLite would have raised after its busy timeout, and readiness hears of it the
            # same way (handle_error does not see an error raised outside SQLAlchemy).
            busy = OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
            _record_failure(self.writes, busy)
            raise busy
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            with Session(self._write_engine, expire_on_commit=False) as session:
                yield session
        finally:
            self._local.depth -= 1
            if lock is not None:
                lock.release()

    def dispose(self) -> None:
        self.engine.dispose()


def _track_writes(engine: Engine, writes: WriteHealth) -> None:
    # Only a commit that changed rows proves writes work: an empty one succeeds on a full disk.
    @event.listens_for(engine, "after_cursor_execute")
    def _on_execute(conn: Any, _cursor: Any, _statement: Any, _params: Any, context: Any, _many: Any) -> None:
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            conn.info["runyard_wrote"] = True

    @event.listens_for(engine, "commit")
    def _on_commit(conn: Any) -> None:
        if conn.info.pop("runyard_wrote", False):
            writes.succeeded()

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        conn.info.pop("runyard_wrote", None)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        _record_failure(writes, context.sqlalchemy_exception or context.original_exception)


def _record_failure(writes: WriteHealth, exc: BaseException) -> None:
    problem = storage_problem(exc)
    if problem is not None:
        writes.failed(problem.reason)


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
