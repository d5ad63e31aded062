"""Download a time range as many requests, as fast as the historical budget allows.

A :class:`Download` takes windows (``Job``), sends a request for each, and hands each answer to a
:class:`Pager`, which keeps what it holds and returns the follow-up windows (the next page of a
window that ``hasMore``, or the rest of a window split into pieces that one answer can hold).
Requests are handed to the client evenly spaced at the historical budget (5 per second), without
waiting for earlier answers, so the server is never idle and never sees a burst. No window is
asked twice; a window the server refuses as too wide is split in two, a few times at most; a
window whose answer was lost (the connection dropped, or no answer in time) is asked again once
the client has reconnected, a few times at most: history requests change nothing on the server.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..errors import ConnectionLostError, RequestTimeoutError, ServerError
from ._api import ClientLike
from ._progress import Reporter

__all__ = ["IN_FLIGHT", "SPLIT_CODES", "Download", "Job", "Pager", "pieces", "windows"]

log = logging.getLogger("ctrader_sync")

IN_FLIGHT = 12
"""The most requests handed to the client and not yet answered."""

HISTORICAL_PER_SECOND = 5
"""The server's budget of historical requests per second and connection."""

PACE_MARGIN = 0.05
"""Extra share of a second per budget, as the client's own limiter keeps (5 requests per 1.05 s)."""

SPLIT_CODES = frozenset({"INCORRECT_BOUNDARIES", "INVALID_REQUEST"})
"""Error codes on which a window is split in two and asked again (a server with tighter limits)."""

_MAX_SPLITS = 4

RETRIES = 3
"""How often a window whose answer was lost is asked again."""


@dataclass(frozen=True)
class Job:
    """One request to make: the window ``[lo, hi]`` in Unix ms (both ends as the request carries them)."""

    lo: int
    hi: int
    kind: str = "window"
    """``window`` (a first request), ``page`` (after ``hasMore``), ``piece`` (a split remainder) or ``split``."""
    splits: int = 0
    tag: str = ""
    """Which series the window belongs to when one download runs several (``bid``/``ask``)."""
    attempt: int = 0
    """How often this window's answer was lost before."""


class Pager(Protocol):
    """What a :class:`Download` needs to know about one kind of history."""

    def request(self, job: Job) -> Any:
        """The request message for a window."""

    def take(self, job: Job, response: Any) -> list[Job]:
        """Keep the answer's rows; return the follow-up windows (none when the window is drained)."""

    def estimate(self, job: Job) -> int:
        """How many requests a window not yet answered will probably take (at least 1)."""


class Download:
    """Run the jobs of one pager to the end; see the module docs.

    Args:
        client: the client (its public ``send``).
        pager: the kind of history.
        reporter: progress, called with (requests done, requests expected) after each answer.
        timeout: each request's response timeout (the client's default when ``None``).
        in_flight: the most requests handed to the client and not yet answered.
        per_second: requests handed to the client per second at most, evenly spaced (default
            :data:`HISTORICAL_PER_SECOND`; 0: as fast as ``in_flight`` allows, leaving the pacing
            to the client).

    Requests are handed to the client evenly spaced at the historical budget (one every 0.21 s)
    rather than five at once and then a pause: the server sees the same rate, never a burst, so
    its own clock cannot see six in a second when it is slow to read a burst; the download still
    takes about ``requests / 5`` seconds.
    """

    def __init__(self, client: ClientLike, pager: Pager, reporter: Reporter, *,
                 timeout: float | None = None, in_flight: int = IN_FLIGHT,
                 per_second: float | None = None) -> None:
        self.client = client
        self.pager = pager
        self.reporter = reporter
        self.timeout = timeout
        self.in_flight = max(1, in_flight)
        rate = HISTORICAL_PER_SECOND if per_second is None else per_second
        self.interval = (1.0 + PACE_MARGIN) / rate if rate else 0.0
        self.requests = 0
        """Requests answered so far."""
        self.asked: set[tuple[int, int, str]] = set()
        self.seconds = 0.0
        """Wall time of :meth:`run`."""

    def run(self, jobs: list[Job]) -> None:
        """Ask every window and its follow-ups; return when all are drained.

        Raises:
            ServerError, RequestTimeoutError, ConnectionLostError, ClientClosedError: a request
                failed (the other requests of the download are cancelled).
        """
        started = time.monotonic()
        queue: deque[Job] = deque(jobs)
        running: dict[Future[Any], Job] = {}
        report = self.reporter
        try:
            report.update(0, self._expected(queue, running))
            next_at = 0.0
            while queue or running:
                now = time.monotonic()
                while queue and len(running) < self.in_flight and now >= next_at:
                    job = queue.popleft()
                    if not self._is_new(job):
                        continue
                    running[self.client.send(self.pager.request(job), timeout=self.timeout)] = job
                    next_at = now + self.interval
                pause = max(0.0, next_at - time.monotonic()) if queue and len(running) < self.in_flight else 0.5
                if not running:
                    if queue:
                        time.sleep(pause)
                    continue
                done, _ = wait(list(running), timeout=min(pause, 0.5) if queue else 0.5,
                               return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f].hi, reverse=True):
                    job = running.pop(future)
                    queue.extendleft(reversed(self._answer(job, future)))
                    self.requests += 1
                    report.update(self.requests, self._expected(queue, running))
        finally:
            for future in running:
                future.cancel()
            self.seconds = time.monotonic() - started
            report.close()

    def _is_new(self, job: Job) -> bool:
        """False for a window asked before (its answer would be the same): never ask twice."""
        key = (job.lo, job.hi, job.tag)
        if key in self.asked:
            log.debug("ctrader_sync: window %s already asked", job)
            return False
        self.asked.add(key)
        return True

    def _answer(self, job: Job, future: Future[Any]) -> list[Job]:
        try:
            response = future.result()
        except ServerError as exc:
            if exc.error_code in SPLIT_CODES and job.splits < _MAX_SPLITS and job.hi - job.lo > 60_000:
                middle = job.lo + (job.hi - job.lo) // 2
                log.warning("ctrader_sync: the server refused the window %d..%d (%s); asking its halves",
                            job.lo, job.hi, exc.error_code)
                return [Job(middle, job.hi, "split", job.splits + 1, job.tag),
                        Job(job.lo, middle, "split", job.splits + 1, job.tag)]
            raise
        except (ConnectionLostError, RequestTimeoutError) as exc:
            if job.attempt >= RETRIES:
                raise
            log.warning("ctrader_sync: the answer for the window %d..%d was lost (%s); asking again",
                        job.lo, job.hi, type(exc).__name__)
            self.asked.discard((job.lo, job.hi, job.tag))
            return [replace(job, attempt=job.attempt + 1)]
        return self.pager.take(job, response)

    def _expected(self, queue: deque[Job], running: dict[Future[Any], Job]) -> int:
        estimate = self.pager.estimate
        return self.requests + len(running) + sum(estimate(job) for job in queue)


def windows(lo: int, hi: int, width: int) -> list[Job]:
    """Split ``[lo, hi]`` into windows at most ``width`` ms wide, newest first."""
    jobs: list[Job] = []
    top = hi
    while top > lo:
        bottom = max(lo, top - width)
        jobs.append(Job(bottom, top))
        top = bottom
    return jobs


def pieces(lo: int, hi: int, width: int, kind: str = "piece", most: int | None = None) -> list[Job]:
    """Split ``[lo, hi]`` into pieces ``width`` ms wide, newest first; with ``most``, the last
    (oldest) piece takes whatever is left."""
    jobs = windows(lo, hi, max(1, width))
    if most is not None and len(jobs) > most:
        jobs = [*jobs[:most - 1], Job(lo, jobs[most - 2].lo)]
    return [Job(j.lo, j.hi, kind) for j in jobs]

