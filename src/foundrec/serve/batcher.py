"""Micro-batching: concurrent requests share one encoder forward pass and one index search.

One worker task takes every query waiting in the queue (up to `max_batch`), waits at most `window`
seconds for more, then encodes and searches in a worker thread, so the event loop keeps accepting
requests meanwhile. Requests that arrive during a forward pass form the next batch: under load batches
grow by themselves, and a lone request waits only `window`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import torch

from foundrec.models.base import UserBatch
from foundrec.serve.bundle import Bundle
from foundrec.serve.index import ItemIndex


@dataclass
class Query:
    user: int  # the user's vocabulary index (factor models need it); 0 when only the history matters
    history: np.ndarray  # int64 item indices, time order
    n: int  # candidates wanted
    done: asyncio.Future[tuple[np.ndarray, np.ndarray]]


class EncoderBatcher:
    def __init__(self, bundle: Bundle, index: ItemIndex, window: float = 0.001, max_batch: int = 64) -> None:
        self.bundle = bundle
        self.index = index
        self.window = window
        self.max_batch = max_batch
        self.queue: asyncio.Queue[Query] = asyncio.Queue()
        self.batch_sizes: list[int] = []  # recent batch sizes, read by /metrics
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish the queries already queued (a reload must not drop them), then end the worker."""
        await self.queue.join()
        if self.task is not None:
            self.task.cancel()

    async def search(self, user: int, history: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item indices) of the top-n items for one user or history."""
        done = asyncio.get_running_loop().create_future()
        await self.queue.put(Query(user, history, n, done))
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
                results = await asyncio.to_thread(self._encode_and_search, batch)
                for query, result in zip(batch, results, strict=True):
                    if not query.done.done():
                        query.done.set_result(result)
            except Exception as exc:  # one bad batch fails its requests, not the worker
                for query in batch:
                    if not query.done.done():
                        query.done.set_exception(exc)
            finally:
                self.batch_sizes.append(len(batch))
                del self.batch_sizes[:-1000]
                for _ in batch:
                    self.queue.task_done()

    def _encode_and_search(self, batch: list[Query]) -> list[tuple[np.ndarray, np.ndarray]]:
        histories = [q.history[-self.bundle.max_len :] if self.bundle.max_len else q.history for q in batch]
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        users = UserBatch(
            users=torch.tensor([q.user for q in batch], dtype=torch.int64),
            items=torch.from_numpy(np.concatenate(histories).astype(np.int64)),
            offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)])),
        )
        queries = self.bundle.model.user_vectors(users).numpy()
        scores, items = self.index.search(queries, max(q.n for q in batch))
        return [(scores[i, : q.n], items[i, : q.n]) for i, q in enumerate(batch)]
