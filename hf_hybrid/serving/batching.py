"""Dynamic batching: the papers of requests that arrive together are classified in one call of the model.

Requests wait in a queue bounded by a number of papers (a request that would overflow it is refused at once with
`Overloaded`). One task takes batches from the queue: the first waiting request and those behind it, up to
`max_batch_size` papers, waiting at most `max_wait` seconds after the first one arrived for the batch to fill (a
request that waited while the model was busy is past that already, so under load batches form without waiting).
The model runs in one thread beside the event loop, which keeps taking requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class Overloaded(Exception):
    """The queue has no room for a request's papers: the client should try again later."""


@dataclass(eq=False)  # a job is itself: two requests for the same papers are two jobs
class Job:
    papers: list[dict]
    options: dict
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Classifies the papers of concurrent `classify` calls in batches, with `classify_jobs(jobs)` (run in a thread
    of its own: each job's results, in order, or an exception for all of them).

    `on_batch(papers)` is told the size of each batch; `waiting_papers` is the number of papers waiting.
    """

    def __init__(
        self,
        classify_jobs: Callable[[list[Job]], list[list[dict]]],
        max_batch_size: int,
        max_wait: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda papers: None,
    ):
        self.classify_jobs, self.on_batch = classify_jobs, on_batch
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait, max_queue
        self.waiting: deque[Job] = deque()
        self.waiting_papers = 0
        self.arrival = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-hybrid-model")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="hf-hybrid-batcher")

    async def stop(self) -> None:
        """Stops taking batches (the server has answered every request by then) and ends the model's thread."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.thread.shutdown(wait=True)

    async def classify(self, papers: list[dict], options: dict) -> list[dict]:
        """The results of `papers` with the pipeline `options`, once their batch has run; `Overloaded` when the
        queue has no room for them. Cancelled (a timeout), the papers are dropped unless their batch has started."""
        if self.waiting_papers + len(papers) > self.max_queue:
            raise Overloaded(f"{self.waiting_papers} papers are waiting, the queue holds {self.max_queue}")
        job = Job(papers, options, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self.waiting_papers += len(papers)
        self.arrival.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            if job in self.waiting:  # its place in the queue is free again
                self.waiting.remove(job)
                self.waiting_papers -= len(papers)
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.waiting:
                self.arrival.clear()
                await self.arrival.wait()
            deadline = self.waiting[0].arrived + self.max_wait
            while self.waiting_papers < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                self.arrival.clear()
                try:
                    await asyncio.wait_for(self.arrival.wait(), left)
                except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                    break
            batch, size = [], 0
            while self.waiting and (not batch or size + len(self.waiting[0].papers) <= self.max_batch_size):
                job = self.waiting.popleft()
                self.waiting_papers -= len(job.papers)
                batch.append(job)
                size += len(job.papers)
            if not batch:
                continue
            self.on_batch(size)
            try:
                results = await loop.run_in_executor(self.thread, self.classify_jobs, batch)
            except Exception as error:  # the model failed: every request of the batch is answered with the error
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job, records in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(records)
