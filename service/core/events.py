"""What happened, told to whoever cares: the loops wake and the counters count after a commit.

The composition root (service/app.py) subscribes the handlers; the code that changes the data
only publishes, usually through `UnitOfWork.publish`, so nothing is told before the commit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


class Event(StrEnum):
    JOB_ACCEPTED = "job_accepted"  # POST /v1/jobs took a new job; subject: its compute target
    JOB_QUEUED = "job_queued"  # a new job waits for the dispatcher; subject: its compute target
    CANCEL_REQUESTED = "cancel_requested"  # a job is canceling: the poller stops its run
    RUN_SUBMITTED = "run_submitted"  # a job has a backend run to poll now
    RUN_EXITED = "run_exited"  # a backend saw one of its runs end (before any poll)
    JOB_ENDED = "job_ended"  # a job reached its end or a retry: a slot is free
    SWEEP_CHANGED = "sweep_changed"  # a sweep was created or canceled: the sweeper acts


@dataclass(frozen=True)
class Notice:
    event: Event
    subject: str | None = None


Handler = Callable[[Notice], None]


class Events:
    """A synchronous hub; a handler's error is logged, never passed to the publisher."""

    def __init__(self) -> None:
        self._handlers: dict[Event, list[Handler]] = defaultdict(list)

    def subscribe(self, event: Event, handler: Handler) -> None:
        self._handlers[event].append(handler)

    def publish(self, event: Event, subject: str | None = None) -> None:
        notice = Notice(event, subject)
        for handler in list(self._handlers[event]):
            try:
                handler(notice)
            except Exception:
                # The change is committed already: a failing listener must not turn it into an error.
                log.exception("handler of %s failed", event.value)


def waker(wake: Callable[[], None]) -> Handler:
    """A handler that ignores the notice and wakes a loop."""
    return lambda _notice: wake()
