"""Facts a process may remember once they are committed: rows that, once there, stay for good."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction


class CommittedRows:
    """Keys of rows of one kind that are committed and never deleted, remembered per database.

    Any replica may rely on them: a row that exists for good is a fact no other process can undo.
    A key noted in a transaction counts only once that transaction commits, and is forgotten on any
    rollback in it (a savepoint's too: forgetting costs one more read, never a wrong answer).
    """

    def __init__(self, kind: str) -> None:
        self._pending = f"committed-rows:{kind}"
        self._known: WeakKeyDictionary[Any, set[Hashable]] = WeakKeyDictionary()  # engine -> keys
        event.listen(Session, "after_commit", self._committed)
        event.listen(Session, "after_soft_rollback", self._rolled_back)

    def knows(self, session: Session, key: Hashable) -> bool:
        """Whether `key`'s row was committed in the database `session` uses (as seen by this process)."""
        known = self._known.get(session.get_bind())
        return known is not None and key in known

    def note(self, session: Session, key: Hashable) -> None:
        """`key`'s row exists in this transaction: known to every later one once it commits."""
        session.info.setdefault(self._pending, set()).add(key)

    def _committed(self, session: Session) -> None:
        pending = session.info.pop(self._pending, None)
        if pending:
            self._known.setdefault(session.get_bind(), set()).update(pending)

    def _rolled_back(self, session: Session, previous_transaction: SessionTransaction) -> None:  # noqa: ARG002
        session.info.pop(self._pending, None)
