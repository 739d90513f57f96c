"""A pool of workers for one model version, fed by a batcher.

Concurrent score calls queue up; each free worker takes everything queued (up to a row budget,
waiting a moment for more when requests are arriving together) as one predict call. Under load
this turns N small predicts into one; a lone request pays no wait. Small requests to a model the
service can score itself (linear.py) never queue: the pool's `inline` copy answers them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.models.endpoints.worker_client import ModelInfo, Worker, WorkerFailed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from service.models.endpoints.linear import LinearModel

log = logging.getLogger(__name__)


class PoolClosed(Exception):
    """The pool stopped taking requests (the endpoint moved to another version or went away)."""


class ModelRejected(Exception):
    """The model raised on the caller's rows."""


@dataclass
class _Pending:
    rows: npt.NDArray[np.float64]
    probabilities: bool
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


@dataclass(frozen=True)
class BatchLimits:
    max_rows: int
    window_seconds: float
    call_timeout_seconds: float
    inline_max_rows: int = 0  # requests up to this many rows are scored in the service, when it can


class Pool:
    """`replicas` workers of one model version behind one queue."""

    def __init__(
        self,
        workers: list[Worker],
        *,
        version: int,
        limits: BatchLimits,
        respawn: Callable[[], Awaitable[Worker]],
        on_broken: Callable[[str], None],
        inline: LinearModel | None = None,
    ) -> None:
        self.workers = list(workers)
        self.version = version
        self.info: ModelInfo = workers[0].info
        # Belongs to this pool, so a request sees one version whichever path scores it.
        self.inline = inline
        self._limits = limits
        self._respawn = respawn
        self._on_broken = on_broken
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        for worker in workers:
            self._idle.put_nowait(worker)
        self._carry: _Pending | None = None
        self._gathering: list[_Pending] = []  # taken off the queue, not yet sent to a worker
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False
        # Workers that died and were (or are being) replaced: never handed a batch again.
        self._replaced: set[Worker] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        for worker in workers:
            self._watch_exit(worker)
        self._loop_task = asyncio.create_task(self._batch_loop())

    async def score(self, rows: npt.NDArray[np.float64], *, probabilities: bool) -> dict[str, Any]:
        """Predictions (and probabilities if asked) for `rows`, computed in some worker's batch."""
        if self._closing:
            raise PoolClosed
        inline = self.inline
        if inline is not None and rows.shape[0] <= self._limits.inline_max_rows:
            # Tens of microseconds of numpy: cheaper on the event loop than a thread or a worker's pipe.
            return inline.score(rows, probabilities=probabilities)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, probabilities, future))
        return await future

    def memory(self) -> list[dict[str, Any]]:
        return [{"pid": w.pid, "rss_bytes": w.rss_bytes()} for w in self.workers]

    async def close(self, *, drain: bool = True) -> None:
        """Stop taking requests, finish the queued ones (if `drain`), stop the workers."""
        self._closing = True
        self.inline = None
        if drain:
            while not self._queue.empty() or self._carry is not None or self._gathering or self._running:
                await asyncio.sleep(0.002)
        self._loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop_task
        for watcher in list(self._watchers):
            watcher.cancel()
        for task in list(self._running):
            task.cancel()
        self._fail_queued(PoolClosed())
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    def _fail_queued(self, exc: Exception) -> None:
        pending = [self._carry] if self._carry else []
        self._carry = None
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _next(self) -> _Pending:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return await self._queue.get()

    def _take(self, batch: list[_Pending], budget: int) -> int:
        """Move queued requests into `batch` while they fit; returns the rows left in the budget."""
        width = batch[0].rows.shape[1]
        while self._carry is None and not self._queue.empty():
            item = self._queue.get_nowait()
            if item.rows.shape[0] > budget or item.rows.shape[1] != width:
                self._carry = item  # first in the next batch
                break
            batch.append(item)
            budget -= item.rows.shape[0]
        return budget

    async def _batch_loop(self) -> None:
        while True:
            worker = await self._idle.get()
            if worker in self._replaced:
                continue
            first = await self._next()
            if worker in self._replaced:  # died while waiting for this request: the next worker takes it
                self._carry = first
                continue
            batch = self._gathering = [first]
            budget = self._take(batch, self._limits.max_rows - first.rows.shape[0])
            if len(batch) > 1 and budget > 0 and self._limits.window_seconds > 0:
                # Requests are arriving together: a short wait usually fills the batch further.
                try:
                    await asyncio.sleep(self._limits.window_seconds)
                except asyncio.CancelledError:
                    # Closed while gathering: these callers retry on the endpoint's next pool.
                    for item in batch:
                        item.future.set_exception(PoolClosed())
                    raise
                self._take(batch, budget)
            self._gathering = []
            task = asyncio.create_task(self._run(worker, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, worker: Worker, batch: list[_Pending]) -> None:
        try:
            await self._predict(worker, batch)
        except WorkerFailed as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            await self._replace(worker, exc.reason)
            return
        if worker not in self._replaced:
            self._idle.put_nowait(worker)

    async def _predict(self, worker: Worker, batch: list[_Pending]) -> None:
        import numpy as np  # loaded by the first score (routes.score), not at start-up

        rows = batch[0].rows if len(batch) == 1 else np.concatenate([item.rows for item in batch])
        probabilities = any(item.probabilities for item in batch)
        header = {"op": "predict", "rows": rows.shape[0], "cols": rows.shape[1], "probabilities": probabilities}
        reply = await worker.call(header, np.ascontiguousarray(rows).tobytes(), self._limits.call_timeout_seconds)
        if not reply.get("ok"):
            if len(batch) > 1 and reply.get("kind") == "input":
                # One caller's rows broke the batch: score each alone so only that caller hears of it.
                for item in batch:
                    await self._predict(worker, [item])
                return
            error = ModelRejected(str(reply.get("error")))
            for item in batch:
                item.future.set_exception(error)
            return
        start = 0
        for item in batch:
            end = start + item.rows.shape[0]
            result = {"predictions": reply["predictions"][start:end]}
            if item.probabilities:
                result["probabilities"] = reply["probabilities"][start:end]
            if not item.future.done():
                item.future.set_result(result)
            start = end

    def _watch_exit(self, worker: Worker) -> None:
        task = asyncio.create_task(self._watch(worker))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: Worker) -> None:
        """Replace a worker as soon as its process ends, not when the next batch finds it dead: small
        requests are scored in the service (`inline`), so a batch may be long in coming."""
        code = await worker.process.wait()
        if not self._closing:
            await self._replace(worker, f"the model worker exited (code {code})")

    async def _replace(self, dead: Worker, reason: str) -> None:
        if dead in self._replaced or self._closing:
            return  # the watcher and a failed call both saw it die: one replacement
        self._replaced.add(dead)
        log.warning("model worker %s of version %s died: %s", dead.pid, self.version, reason)
        try:
            fresh = await self._respawn()
        except WorkerFailed as exc:
            self._on_broken(f"{reason}; restarting it failed: {exc.reason}")
            return
        if self._closing:
            await fresh.stop()
            return
        self.workers = [fresh if w is dead else w for w in self.workers]
        self._watch_exit(fresh)
        self._idle.put_nowait(fresh)
