"""The one gate for a sweep's status: every change is checked, stamped and explained here."""

from __future__ import annotations

from datetime import datetime

from service.core.states import SweepStatus
from service.db.tables import Sweep


def set_status(sweep: Sweep, to: SweepStatus, *, now: datetime, error: str | None = None) -> None:
    """Move `sweep` to `to` (raises `IllegalTransition`); `error` says why, when given."""
    sweep.status.check_transition(to)
    sweep.status = to
    sweep.updated_at = now
    if error is not None:
        sweep.error = error
    if to.is_terminal():
        sweep.ended_at = now
    elif to is SweepStatus.CANCELING:
        sweep.cancel_requested_at = sweep.cancel_requested_at or now
