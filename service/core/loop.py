"""A background loop that ticks on an interval or when woken, and never dies of an error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
# The shortest sleep between ticks, however soon the tick says something falls due.
MIN_SLEEP_SECONDS = 0.05
# A tick longer than the interval is followed by a rest of this share of its length, so a loop
# that cannot keep its interval (10,000 Azure runs on a busy machine) does not hold a core.
REST_SHARE = 0.25


def sleep_after(interval: float, *, took: float, due: float | None) -> float:
    """How long a loop sleeps after a tick that took `took` s and said its next thing is `due` s away."""
    rest = max(MIN_SLEEP_SECONDS, interval - took, took * REST_SHARE)
    return rest if due is None else max(MIN_SLEEP_SECONDS, min(rest, due))


class BackgroundLoop:
    """Runs `tick` every `interval` seconds, or sooner after `wake()`, or sooner still when `tick`
    returns the seconds until something of its own falls due (a deadline).

    The interval counts from the start of a tick, not its end: a change a tick finds is seen
    within the interval plus that tick's own duration, not the interval plus two durations."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[float | None]], interval: float) -> None:
        self.name = name
        self._tick = tick
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ticks = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Make the next tick happen now; safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        last_failure: str | None = None
        while True:
            self._wake.clear()
            due: float | None = None
            started = time.monotonic()
            try:
                due = await self._tick()
                last_failure = None
            except Exception as exc:
                failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                # A fault that lasts (a full disk, a held lock) gets one traceback, then one line a tick.
                if failure == last_failure:
                    log.warning("%s tick failed again; retrying next tick: %s", self.name, failure)
                else:
                    log.exception("%s tick failed; retrying next tick", self.name)
                last_failure = failure
            self.ticks += 1
            timeout = sleep_after(self.interval, took=time.monotonic() - started, due=due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
