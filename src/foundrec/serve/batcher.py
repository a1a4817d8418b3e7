"""Micro-batching: concurrent requests share one forward pass (retrieval, or the CTR head's ranking).

One worker task takes every query waiting in the queue (up to `max_batch`), waits at most `window`
seconds for more, then runs `work` on the batch in a worker thread, so the event loop keeps accepting
requests meanwhile. Requests that arrive during a forward pass form the next batch: under load batches
grow by themselves, and a lone request waits only `window`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


class MicroBatcher(Generic[Q, R]):
    """`await submit(query)` -> `work([..., query, ...])[its place]`; `work` returns one result per query."""

    def __init__(
        self, work: Callable[[list[Q]], list[R]], window: float = 0.001, max_batch: int = 64
    ) -> None:
        self.work = work
        self.window = window
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Q, asyncio.Future[R]]] = asyncio.Queue()
        self.batch_sizes: list[int] = []  # recent batch sizes
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish the queries already queued (a reload must not drop them), then end the worker."""
        await self.queue.join()
        if self.task is not None:
            self.task.cancel()

    async def submit(self, query: Q) -> R:
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((query, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = time.perf_counter() + self.window
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                results = await asyncio.to_thread(self.work, [query for query, _ in batch])
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
            except Exception as exc:  # one bad batch fails its requests, not the worker
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            finally:
                self.batch_sizes.append(len(batch))
                del self.batch_sizes[:-1000]
                for _ in batch:
                    self.queue.task_done()
