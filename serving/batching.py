"""Micro-batching: requests that arrive while the model is busy are scored together.

A ColumnTransformer pipeline costs about the same for 1 row as for 100 (its per-call
overhead dominates), so concurrent single-row requests are queued, and one scoring
thread takes everything waiting, builds one frame per model and predicts once. An
idle server scores a lone request at once; only while requests overlap (the last
pick found company, or more arrived during a predict) does the thread linger up to
`linger_seconds` for a companion, so a couple of clients fall into step instead of
alternating. Requests keep the model they were given: a batch never mixes versions.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from serving import scoring

log = logging.getLogger("serving.batching")


@dataclass
class _Job:
    model: scoring.LoadedModel
    rows: list[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class MicroBatcher:
    """One scoring thread fed by a queue; `predict` awaits this request's share."""

    def __init__(self, *, max_rows: int = 1024, linger_seconds: float = 0.001) -> None:
        self.max_rows = max_rows
        self.linger_seconds = linger_seconds
        self._busy = False
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.batched_requests = 0

    async def predict(self, model: scoring.LoadedModel, rows: list[Any]) -> Any:
        """Predictions for `rows` (validated), computed off the event loop."""
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(model=model, rows=rows, loop=loop, future=future))
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="scoring",
                                                    daemon=True)
                    self._thread.start()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = self._take_waiting(jobs)
            if len(jobs) == 1 and self._busy and not stop and self.linger_seconds > 0:
                try:
                    companion = self._queue.get(timeout=self.linger_seconds)
                except queue.Empty:
                    pass
                else:
                    if companion is None:
                        stop = True
                    else:
                        jobs.append(companion)
                        stop = self._take_waiting(jobs)
            for group in _by_model(jobs):
                self._score(group)
            self._busy = len(jobs) > 1 or not self._queue.empty()
            if stop:
                return

    def _take_waiting(self, jobs: list[_Job]) -> bool:
        """Add what is queued (up to `max_rows`); True when the stop sentinel was seen."""
        size = sum(len(job.rows) for job in jobs)
        while size < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            jobs.append(job)
            size += len(job.rows)
        return False

    def _score(self, jobs: list[_Job]) -> None:
        model = jobs[0].model
        try:
            frame = scoring.frame_of(model, [row for job in jobs for row in job.rows])
            predictions = scoring.run(model, frame)
        except Exception as err:
            if len(jobs) > 1:  # find the request that breaks it; the others still succeed
                for job in jobs:
                    self._score([job])
                return
            if not isinstance(err, scoring.ModelFailure):
                failure = scoring.ModelFailure(f"{type(err).__name__} building the frame")
                failure.__cause__ = err
                err = failure
            _resolve(jobs[0], error=err)
            return
        self.batches += 1
        self.batched_requests += len(jobs)
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            _resolve(job, result=predictions[start:end])
            start = end


def _by_model(jobs: list[_Job]) -> list[list[_Job]]:
    groups: dict[int, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(id(job.model), []).append(job)
    return list(groups.values())


def _resolve(job: _Job, *, result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed (shutdown)
        log.debug("dropped a result: event loop closed")
