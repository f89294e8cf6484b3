"""Micro-batching: requests that arrive while the model is busy are scored together.

A ColumnTransformer pipeline costs about the same for 1 row as for 100 (its per-call
overhead dominates), so concurrent single-row requests are queued, and one scoring
thread takes everything waiting, builds one frame per model and predicts once. An
idle server scores a lone request at once; only while requests overlap (the last
pick found company, or more arrived during a predict) does the thread linger up to
`linger_seconds` for a companion, so a couple of clients fall into step instead of
alternating. Requests keep the model they were given: a batch never mixes versions.

One exception to the thread: a small request (`inline_rows`) for a compiled twin
(`takes_columns`) is scored on the event loop when nothing is queued or scoring. The
twin scores a few rows in about a tenth of a millisecond, less than the hand-over to
the scoring thread and back (about 0.3 ms on a small VM), and a graph of standard
operators has no unbounded step to guard against. Under load requests queue as before,
so they still share a predict.

Parsing a large body is admitted the same way: `parse` hands it to one parsing thread
through the same bounded queue, so a burst of big bodies waits (or is refused) like a
burst of predictions, and the request's one deadline covers both its parse and its
prediction. A small body is parsed on the event loop (tens of microseconds).

Backpressure and deadlines: at most `max_queue` requests wait (more are refused with
`Overloaded`, a 503 the client may retry), and each waits at most `deadline_seconds`
from its arrival (`DeadlineExceeded`, a 504). A request whose deadline passed while it
queued is dropped, not parsed or scored. A `predict` that runs past `stuck_seconds` (by default the
deadline) marks the thread stuck: a new scoring thread takes over the queue, and the
stuck one exits when (if ever) its predict returns, answering its requests if they
still wait. `health()` reports a dead or stuck thread and restarts it; a request that
times out behind a predict that held the thread all along restarts it too.

Every age and expiry is read from `clock` (monotonic seconds); the waits themselves
(`asyncio.wait_for`, the queue's linger) stay real. A test gives the batcher a clock it
advances, so "this predict has run past the bound" is a fact the test sets, not a race
between a sleep and a loaded machine's scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from serving import scoring
from serving.errors import DeadlineExceeded, Overloaded
from serving.model import LoadedModel

log = logging.getLogger("serving.batching")
T = TypeVar("T")
J = TypeVar("J")

__all__ = ["DeadlineExceeded", "MicroBatcher", "Overloaded"]


@dataclass
class _Job:
    model: LoadedModel
    rows: list[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    submitted: float  # the batcher's clock
    expires: float  # after this no one waits for the answer
    method: str = scoring.PREDICT  # or another of scoring.METHODS
    predict_started: float | None = None  # when the predict scoring it began


@dataclass
class _Parse:
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    expires: float


class MicroBatcher:
    """One scoring thread fed by a bounded queue; `predict` awaits this request's share.

    `clock` is a public attribute rather than an argument threaded through `create_app`:
    the server always runs on `time.monotonic`, and a test that needs another clock sets
    `app.state.batcher.clock` before its first request, so no production signature grows
    an option that only tests use. Replacing it while requests are in flight would mix
    two time bases.
    """

    def __init__(self, *, max_rows: int = 1024, linger_seconds: float = 0.001,
                 max_queue: int = 256, deadline_seconds: float = 30.0,
                 stuck_seconds: float | None = None, inline_rows: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.max_rows = max_rows
        self.inline_rows = inline_rows
        self.linger_seconds = linger_seconds
        self.max_queue = max_queue
        self.deadline_seconds = deadline_seconds
        self.stuck_seconds = min(stuck_seconds or deadline_seconds, deadline_seconds)
        self._abandoned: list[threading.Thread] = []  # replaced while stuck in a predict
        self._busy = False
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._parses: queue.SimpleQueue[_Parse | None] = queue.SimpleQueue()
        self._waiting = 0  # requests in either queue (the bound applies to these)
        self._thread: threading.Thread | None = None
        self._parser: threading.Thread | None = None
        self._generation = 0  # a thread whose generation is old exits at its next turn
        self._predict_started: float | None = None  # by the clock, while a predict runs
        self._lock = threading.Lock()
        self.batches = 0
        self.batched_requests = 0
        self.inline = 0  # of those, scored on the event loop
        self.parses = 0  # bodies parsed on the parsing thread
        self.overloaded = 0
        self.deadlines_exceeded = 0
        self.expired = 0  # dropped from the queue: their deadline passed before scoring
        self.restarts = 0

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def abandoned_threads(self) -> int:
        """Replaced scoring threads still inside their predict (each holds a core or a lock)."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return len(self._abandoned)

    def deadline(self) -> float:
        """The deadline of a request arriving now, by the batcher's `clock`."""
        return self.clock() + self.deadline_seconds

    async def predict(self, model: LoadedModel, rows: list[Any],
                      method: str = scoring.PREDICT, *,
                      deadline: float | None = None) -> scoring.Outputs:
        """What `method` asks of the model for `rows` (validated), off the loop.

        Or on it, for a small twin request while the scoring thread is idle (see above).
        `deadline` (by `clock`) is the request's, from its arrival; by default from now.
        """
        if self._scores_inline(model, rows):
            return self._score_inline(model, rows, method)
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        now = self.clock()
        expires = now + self.deadline_seconds if deadline is None else deadline
        self._admit(expires, now)
        job = _Job(model=model, rows=rows, loop=loop, future=future, submitted=now,
                   expires=expires, method=method)
        self._queue.put(job)
        try:
            outputs: scoring.Outputs = await asyncio.wait_for(future, expires - now)
        except TimeoutError:
            self.deadlines_exceeded += 1
            self._replace_if_stuck(job)
            raise DeadlineExceeded from None
        return outputs

    async def parse(self, work: Callable[[], T], *, deadline: float | None = None) -> T:
        """`work()` (the parse of a large body) on the parsing thread, admitted by the
        same bounded queue as predictions (`Overloaded`) and within the request's
        `deadline` (`DeadlineExceeded`). What `work` raises is raised here."""
        self._ensure_parser()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        now = self.clock()
        expires = now + self.deadline_seconds if deadline is None else deadline
        self._admit(expires, now)
        self._parses.put(_Parse(work=work, loop=loop, future=future, expires=expires))
        try:
            result: T = await asyncio.wait_for(future, expires - now)
        except TimeoutError:
            self.deadlines_exceeded += 1
            raise DeadlineExceeded from None
        return result

    def _admit(self, expires: float, now: float) -> None:
        """One more request waits, unless the queue is full or its deadline has passed."""
        if expires <= now:
            self.deadlines_exceeded += 1
            raise DeadlineExceeded
        with self._lock:
            if self._waiting >= self.max_queue:
                self.overloaded += 1
                raise Overloaded
            self._waiting += 1

    def _scores_inline(self, model: LoadedModel, rows: list[Any]) -> bool:
        return (len(rows) <= self.inline_rows
                and getattr(model.predictor, "takes_columns", False)
                and self._waiting == 0 and self._predict_started is None)

    def _score_inline(self, model: LoadedModel, rows: list[Any],
                      method: str) -> scoring.Outputs:
        outputs = scoring.score(model, rows, method)
        self.batches += 1
        self.batched_requests += 1
        self.inline += 1
        return outputs

    def health(self) -> str | None:
        """None when the scoring thread can score; else why not (and it is restarted)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return None  # started with the first request
            if not thread.is_alive():
                reason = "the scoring thread died; restarted"
            elif self._stuck():
                reason = (f"a predict has run over {self.stuck_seconds:g} s; "
                          "a new scoring thread was started")
            else:
                return None
            self._start_locked()
        log.error("%s", reason)
        return reason

    def _replace_if_stuck(self, job: _Job) -> None:
        """After `job` timed out: a predict that has held the thread all along is stuck.

        That is the predict scoring `job` itself, or one that began before `job` was
        queued, and it has run for about the stuck bound (a tenth of it is allowed for
        what the request did before it queued: its deadline runs from its arrival, and
        a large body's parse may have used most of it). The next requests get a new
        thread.
        """
        with self._lock:
            started = self._predict_started
            if started is None or self._thread is None \
                    or self.clock() - started < 0.9 * self.stuck_seconds:
                return
            if started == job.predict_started or started <= job.submitted:
                log.error("a predict has run for the whole deadline (%g s); "
                          "starting a new scoring thread", self.deadline_seconds)
                self._start_locked()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            parser, self._parser = self._parser, None
            self._generation += 1
        if thread is not None:
            self._queue.put(None)
            thread.join(5)
        if parser is not None:
            self._parses.put(None)
            parser.join(5)

    def _ensure_parser(self) -> None:
        if self._parser is not None and self._parser.is_alive():
            return
        with self._lock:
            if self._parser is None or not self._parser.is_alive():
                self._parser = threading.Thread(target=self._parse_loop, name="parsing",
                                                daemon=True)
                self._parser.start()

    def _parse_loop(self) -> None:
        """Parse what is queued, one body at a time; a request that expired is skipped."""
        while True:
            job = self._take(self._parses.get())
            if job is None:
                return
            if job.expires <= self.clock():
                self.expired += 1
                continue  # its request has been answered 504
            try:
                result = job.work()
            except Exception as err:
                _settle(job.loop, job.future, error=err)
            else:
                _settle(job.loop, job.future, result=result)
            self.parses += 1

    def _stuck(self) -> bool:
        started = self._predict_started
        return started is not None and self.clock() - started > self.stuck_seconds

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and not self._stuck():
            return
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive() or self._stuck():
                if thread is not None:
                    log.error("scoring thread %s; starting a new one",
                              "stuck" if thread.is_alive() else "died")
                self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is not None:
            self.restarts += 1
            if self._thread.is_alive():
                self._abandoned.append(self._thread)
        self._generation += 1
        self._predict_started = None
        self._thread = threading.Thread(target=self._work, args=(self._generation,),
                                        name=f"scoring-{self._generation}", daemon=True)
        self._thread.start()

    def _take(self, job: J | None) -> J | None:
        if job is not None:
            with self._lock:
                self._waiting -= 1
        return job

    def _work(self, generation: int) -> None:
        try:
            self._loop(generation)
        except BaseException:
            log.exception("the scoring thread failed")
            raise

    def _loop(self, generation: int) -> None:
        while generation == self._generation:
            first = self._take(self._queue.get())
            if first is None:
                return
            if generation != self._generation:  # replaced while waiting: hand it on
                with self._lock:
                    self._waiting += 1
                self._queue.put(first)
                return
            jobs = [first]
            stop = self._take_waiting(jobs)
            if len(jobs) == 1 and self._busy and not stop and self.linger_seconds > 0:
                try:
                    companion = self._take(self._queue.get(timeout=self.linger_seconds))
                except queue.Empty:
                    pass
                else:
                    if companion is None:
                        stop = True
                    else:
                        jobs.append(companion)
                        stop = self._take_waiting(jobs)
            now = self.clock()
            live = [job for job in jobs if job.expires > now]
            self.expired += len(jobs) - len(live)
            try:
                for group in _by_model(live):
                    self._score(group, generation)
            except BaseException as err:  # the thread dies; its requests learn it now
                for job in live:
                    failure = scoring.ModelFailure(f"{type(err).__name__} in the scoring thread")
                    _resolve(job, error=failure)
                raise
            self._busy = len(jobs) > 1 or not self._queue.empty()
            if stop:
                return

    def _take_waiting(self, jobs: list[_Job]) -> bool:
        """Add what is queued (up to `max_rows`); True when the stop sentinel was seen."""
        size = sum(len(job.rows) for job in jobs)
        while size < self.max_rows:
            try:
                job = self._take(self._queue.get_nowait())
            except queue.Empty:
                return False
            if job is None:
                return True
            jobs.append(job)
            size += len(job.rows)
        return False

    def _score(self, jobs: list[_Job], generation: int) -> None:
        model = jobs[0].model
        started = self.clock()
        for job in jobs:
            job.predict_started = started
        if generation == self._generation:
            self._predict_started = started
        try:
            outputs = scoring.score(model, [row for job in jobs for row in job.rows],
                                    jobs[0].method)
        except Exception as err:
            if generation == self._generation:
                self._predict_started = None
            if len(jobs) > 1:  # find the request that breaks it; the others still succeed
                for job in jobs:
                    self._score([job], generation)
                return
            if not isinstance(err, (scoring.ModelFailure, scoring.InputError)):
                failure = scoring.ModelFailure(f"{type(err).__name__} in the scoring thread")
                failure.__cause__ = err
                err = failure
            _resolve(jobs[0], error=err)
            return
        if generation == self._generation:
            self._predict_started = None
        self.batches += 1
        self.batched_requests += len(jobs)
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            _resolve(job, result=outputs.rows(start, end))
            start = end


def _by_model(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs that can share one call: the same model, the same method."""
    groups: dict[tuple[int, str], list[_Job]] = {}
    for job in jobs:
        groups.setdefault((id(job.model), job.method), []).append(job)
    return list(groups.values())


def _resolve(job: _Job, *, result: Any = None, error: BaseException | None = None) -> None:
    _settle(job.loop, job.future, result=result, error=error)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], *,
            result: Any = None, error: BaseException | None = None) -> None:
    """Answer a waiting request from a worker thread, on its event loop."""
    def settle() -> None:
        if future.done():  # the client went away, or its deadline passed
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed (shutdown)
        log.debug("dropped a result: event loop closed")
