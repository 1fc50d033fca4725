"""Micro-batching: requests that arrive together share one model call.

Each request submits its windows and awaits a future. One worker task takes the first waiting
request, keeps collecting for ``wait_s`` (or until ``max_windows`` windows), runs ``run_batch`` on
the model thread and hands each request its own slice of the result. A model forward costs
nearly the same for 1 or 16 windows on a GPU (and less per window on a CPU), so under load this
raises throughput at the price of at most ``wait_s`` latency. ``enabled=False`` runs one request
per call (for comparison: bench/serve_load.py --no-batching).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class _Job:
    windows: Any  # (W, 12, n) array
    key: Any  # requests are only batched with ones of the same key (e.g. the beam width)
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, run_batch: Callable[[list, Any], list], executor: Executor, max_windows: int = 64,
                 wait_s: float = 0.005, enabled: bool = True):
        """``run_batch(list of windows, key) -> list of results``, one per entry, run in ``executor``."""
        self.run_batch, self.executor = run_batch, executor
        self.max_windows, self.wait_s, self.enabled = max_windows, wait_s, enabled
        self.calls = 0  # model calls made (tests check that batching happened)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker on the running event loop (the app's lifespan does this)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, windows, key=None):
        if self._task is None:
            raise RuntimeError("Batcher.start() was not called (the app's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(windows, key, future))
        return await future

    async def _collect(self) -> list[_Job]:
        """The first waiting job, plus those of the same key already queued (they arrived while the
        model was busy) and, with ``wait_s`` > 0, those arriving within wait_s."""
        jobs = [await self._queue.get()]
        if not self.enabled:
            return jobs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        held = []  # jobs of another key wait for the next call, in order
        count = len(jobs[0].windows)
        while count < self.max_windows:
            if not self._queue.empty():
                job = self._queue.get_nowait()
            elif (left := deadline - loop.time()) > 0:
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                break
            if job.key == jobs[0].key:
                jobs.append(job)
                count += len(job.windows)
            else:
                held.append(job)
        for job in held:
            self._queue.put_nowait(job)
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            jobs = [job for job in jobs if not job.future.cancelled()]  # a client that went away
            if not jobs:
                continue
            self.calls += 1
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch,
                                                     [job.windows for job in jobs], jobs[0].key)
            except Exception as error:  # the model failed: every request of the batch gets the error
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)
