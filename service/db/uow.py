"""The unit of work: one write transaction, committed once, then what was queued for after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from sqlmodel import Session

from service.core.events import Event, Events
from service.db.engine import Database


@dataclass
class UnitOfWork:
    """A write session plus the side effects that must wait for its commit."""

    session: Session
    events: Events
    _after: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the transaction has committed; never if it rolls back."""
        self._after.append(fn)

    def start_over(self) -> None:
        """Roll back what this unit did so far, and forget what it queued for after the commit.

        For a use case that lost a race (a unique constraint) and reads the winner instead.
        """
        self.session.rollback()
        self._after.clear()

    def publish(self, event: Event, subject: str | None = None) -> None:
        """Tell the event's subscribers, after the commit."""
        self.after_commit(partial(self.events.publish, event, subject))


@contextmanager
def uow(db: Database, events: Events | None = None) -> Iterator[UnitOfWork]:
    """`with uow(db) as tx:` ... commits on a clean exit, rolls back on an error, then runs callbacks.

    Use cases take the `UnitOfWork` and never commit; the boundary (route, loop) opens it.
    """
    with db.write_session() as session:
        tx = UnitOfWork(session, events or Events())
        try:
            yield tx
            session.commit()
        except BaseException:
            session.rollback()
            raise
    for fn in tx._after:
        fn()
