"""``Outbox``: every request from ``send()`` until it is answered, failed or cancelled.

It owns the pending table (``clientMsgId`` -> request), the three send queues (priority for
session recovery, historical, plain), the rate-limit retry heap, the response deadlines, the
rate limiters, and the flags that say who is writing.  It decides which requests may be written
now (under the limits) and marks them written; the writer (``_writer``) moves their bytes.

Locks
-----
``lock`` (an ``RLock``, "the core lock") guards:

* every field of the outbox, except that a plain answer is claimed from ``pending`` without it by
  an atomic ``dict.pop`` (see ``_inbound``); every other remover pops with an identity check, so
  exactly one of them ends a request;
* the state of every ``RequestFuture`` of the client (they share this lock);
* ``Link.ready``/``Link.lost``, the supervisor's state and the session state (the supervisor and
  the session manager are handed this lock).

Two conditions share it: ``wcond`` wakes the writer (a request queued, a retry due, a flush
needed, a new connection, close); ``scond`` wakes the supervisor and ``wait_connected`` callers
(a new timeout value, connection state changes).

Lock order (a thread holding one lock may take only those to its right)::

    read token (_reader)  ->  core lock  ->  TLS lock (_tls), dispatcher lock (_dispatch)

The TLS and dispatcher locks are leaves, as are the reader's park lock and lead lock; no I/O and
no user code runs under the core lock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._link import Link
from ._pending import EXPECT_NOTHING, Request, RequestFuture
from ._ratelimit import SlidingWindowLimiter
from .errors import ClientClosedError, ConnectError, InvalidRequestError, QueueFullError

__all__ = ["Outbox"]

_MAX_BATCH_BYTES = 256 * 1024
_MAX_BATCH_FRAMES = 256


class Outbox:
    """Pending table, queues, retry heap, deadlines and rate limiters of one client."""

    def __init__(self, number: int, max_pending: int, per_second: int | None, historical_per_second: int | None,
                 margin: float, historical: frozenset[int], encode: Callable[[Any, str], bytes]) -> None:
        # The core lock: guards every field below (a plain answer is popped from ``pending``
        # without it), the futures' states, Link.ready/lost, the supervisor's and the session's
        # state.  Taken after the read token; the TLS, dispatcher and reader-park locks after it.
        self.lock = threading.RLock()
        self.wcond = threading.Condition(self.lock)  # wakes the writer
        self.scond = threading.Condition(self.lock)  # wakes the supervisor and wait_connected()
        self.max_pending = max_pending
        self.historical = historical
        self._encode = encode
        self.ids = itertools.count(1)
        self.id_prefix = f"cs{number}-"
        self.seq = itertools.count()
        self.queue: deque[Request] = deque()
        self.hqueue: deque[Request] = deque()
        self.pqueue: deque[Request] = deque()
        self.retry: list[tuple[float, int, Request]] = []
        self.pending: dict[str, Request] = {}
        # Response deadlines: one FIFO per timeout value (deadline = write time + timeout, so each is
        # in order); entries hold only (deadline, cid), never the request, so answered requests are
        # freed at once.
        self.timers: dict[float, deque[tuple[float, str]]] = {}
        if per_second:
            self.limiter: SlidingWindowLimiter | None = SlidingWindowLimiter(per_second, 1.0, margin)
            self.hlimiter: SlidingWindowLimiter | None = (
                SlidingWindowLimiter(historical_per_second, 1.0, margin) if historical_per_second else None)
        else:
            self.limiter = self.hlimiter = None
        self.link: Link | None = None
        """The current connection (set by the supervisor); ``None`` between connections."""
        self.refusal: Callable[[], BaseException] | None = None
        """Set once the client is closed or gave up: builds the error ``send()`` raises."""
        self.writer_waiting = False
        self.writing = False
        """A thread is writing to the socket (the writer, an inline send or a caller's flush)."""
        self.last_write = time.monotonic()

    # -- admission ----------------------------------------------------------------------------

    def new_id(self) -> str:
        """A ``clientMsgId`` not pending now (a user may have chosen one that looks generated)."""
        cid = self.id_prefix + str(next(self.ids))
        while cid in self.pending:
            cid = self.id_prefix + str(next(self.ids))
        return cid

    def enqueue(self, request: Request, generated: bool = True) -> Link | None:
        """Register and queue a request; return the link if the caller must write it inline."""
        with self.lock:
            if self.refusal is not None:
                raise self.refusal()
            pending = self.pending
            if request.cid in pending:
                if not generated:
                    raise InvalidRequestError(f"clientMsgId {request.cid!r} is already pending")
                # A user id already took this generated id: take one that is free.
                request.cid = self.new_id()
                request.frame = self._encode(request.message, request.cid)
            if len(pending) >= self.max_pending:
                raise QueueFullError(f"{len(pending)} requests pending (max_pending={self.max_pending})")
            link = self.link
            if (not pending and link is not None and link.ready and not self.writing and not request.priority
                    and not link.tls.backlog):
                # Fast path for latency: nothing is queued or awaiting an answer and nobody is
                # writing; if the limits allow, the caller's thread writes the frame itself (no
                # hand-off to the writer thread).  With requests in flight the writer thread takes
                # over, batching many frames per TLS write for throughput.
                now = time.monotonic()
                limiter, hlimiter = self.limiter, self.hlimiter
                if ((limiter is None or limiter.wait_time(now) == 0.0)
                        and (not request.historical or hlimiter is None or hlimiter.wait_time(now) == 0.0)):
                    pending[request.cid] = request
                    request._claim()
                    self.mark_written(request, now)
                    if limiter is not None:
                        limiter.record(now)
                        if request.historical and hlimiter is not None:
                            hlimiter.record(now)
                    self.writing = True
                    self.last_write = now
                    return link
            pending[request.cid] = request
            if request.priority:
                self.pqueue.append(request)
            elif request.historical and self.hlimiter is not None:
                self.hqueue.append(request)
            else:
                self.queue.append(request)
            if self.writer_waiting:
                self.writer_waiting = False  # one notify per wait is enough
                self.wcond.notify()
            return None

    def attach(self, link: Link) -> None:
        """A new connection is the current one (under the lock).  The limits are per connection
        (the server's budget starts afresh), so the limiters forget the old connection's writes."""
        self.link = link
        self.last_write = time.monotonic()
        for limiter in (self.limiter, self.hlimiter):
            if limiter is not None:
                limiter.reset()

    def wake_writer(self) -> None:
        """Wake the writer thread (TLS has bytes of its own to send, e.g. a key update)."""
        with self.wcond:
            self.wcond.notify()

    def cancelled(self, future: RequestFuture) -> None:
        """A future was cancelled: if it was never written, its id is free again."""
        with self.lock:
            request = self.pending.get(future.clientMsgId)
            if request is future and not future.written:
                self.pending.pop(future.clientMsgId, None)

    def retry_later(self, request: Request, delay: float) -> None:
        """Queue a refused (unclaimed) request again, not before ``delay`` seconds (under the lock)."""
        request.not_before = time.monotonic() + delay
        heapq.heappush(self.retry, (request.not_before, request.seq, request))
        self.wcond.notify()

    # -- taking requests to write (under the lock) ----------------------------------------------

    def take_batch(self, link: Link, now: float) -> tuple[list[Request], float]:
        """Claim the requests that may be written now (under the lock); return them and the wait
        until the next one may be."""
        limiter, hlimiter = self.limiter, self.hlimiter
        if (limiter is None and link.ready and not self.pqueue and not self.hqueue and not self.retry
                and self.queue):
            return self.take_plain(now), 1.0
        batch: list[Request] = []
        size = 0
        free = limiter.available(now) if limiter is not None else 1 << 30
        hfree = hlimiter.available(now) if hlimiter is not None else 1 << 30
        wait = 1.0
        queues = [self.pqueue]
        if link.ready:
            queues += [self.queue, self.hqueue]
        retry = self.retry
        pending = self.pending
        while size < _MAX_BATCH_BYTES and len(batch) < _MAX_BATCH_FRAMES:
            best: Request | None = None
            source: Any = None
            for q in queues:
                while q and q[0]._state != "PENDING":
                    dead = q.popleft()  # cancelled (or failed) before being written
                    if pending.get(dead.cid) is dead:
                        pending.pop(dead.cid, None)
                if q and (best is None or q[0].seq < best.seq):
                    best, source = q[0], q
            if link.ready and retry:
                while retry and retry[0][2]._state != "PENDING":
                    dead = heapq.heappop(retry)[2]
                    if pending.get(dead.cid) is dead:
                        pending.pop(dead.cid, None)
                if retry:
                    if retry[0][0] <= now:
                        if best is None or retry[0][2].seq < best.seq:
                            best, source = retry[0][2], retry
                    else:
                        wait = min(wait, retry[0][0] - now)
            if best is None:
                break
            if best.historical and hfree <= 0:
                # Historical budget spent: serve ordinary requests behind it meanwhile.
                assert hlimiter is not None
                wait = min(wait, hlimiter.wait_time(now))
                queues = [q for q in queues if q is not self.hqueue]
                if source is retry:
                    break
                continue
            if free <= 0:
                assert limiter is not None
                wait = min(wait, limiter.wait_time(now))
                break
            if source is retry:
                heapq.heappop(retry)
            else:
                source.popleft()
            if not best._claim():
                if pending.get(best.cid) is best:
                    pending.pop(best.cid, None)
                continue
            self.mark_written(best, now)
            if limiter is not None:
                limiter.record(now)
                free -= 1
                if best.historical and hlimiter is not None:
                    hlimiter.record(now)
                    hfree -= 1
            batch.append(best)
            size += len(best.frame)
        return batch, max(wait, 0.0)

    def take_plain(self, now: float) -> list[Request]:
        """Fast path of :meth:`take_batch`: no limits, only ordinary requests queued (under the lock).

        The same steps as ``_claim`` + ``mark_written``, inlined: this loop runs once per request.
        """
        batch: list[Request] = []
        queue, pending, timers = self.queue, self.pending, self.timers
        size = 0
        fifo_timeout, fifo = None, None
        while queue and size < _MAX_BATCH_BYTES and len(batch) < _MAX_BATCH_FRAMES:
            request = queue.popleft()
            if request._state != "PENDING":  # cancelled (or failed) before being written
                if pending.get(request.cid) is request:
                    pending.pop(request.cid, None)
                continue
            request._state = "RUNNING"
            request._written = True
            if request.expect == EXPECT_NOTHING:
                del pending[request.cid]
            else:
                request.deadline = deadline = now + request.timeout
                if request.timeout != fifo_timeout:
                    fifo_timeout = request.timeout
                    fifo = timers.get(fifo_timeout)
                    if fifo is None:
                        fifo = timers[fifo_timeout] = deque()
                        self.scond.notify_all()
                assert fifo is not None
                fifo.append((deadline, request.cid))
            batch.append(request)
            size += len(request.frame)
        return batch

    def mark_written(self, request: Request, now: float) -> None:
        """Bookkeeping for a claimed request about to be written (under the lock)."""
        if request.expect == EXPECT_NOTHING:
            del self.pending[request.cid]
            return
        request.deadline = deadline = now + request.timeout
        fifo = self.timers.get(request.timeout)
        if fifo is None:
            fifo = self.timers[request.timeout] = deque()
            self.scond.notify_all()  # a new timeout value: the supervisor recomputes its wait
        fifo.append((deadline, request.cid))

    def stamp_written(self, batch: list[Request]) -> None:
        """Count the batch's writes at the time they left, not when they were claimed (under the
        lock, before anyone else may claim): a writer delayed in between must not let the server
        see more than the limit in one window."""
        limiter = self.limiter
        if limiter is None or not batch:
            return
        now = time.monotonic()
        limiter.restamp(len(batch), now)
        if self.hlimiter is not None:
            historical = sum(1 for r in batch if r.historical)
            if historical:
                self.hlimiter.restamp(historical, now)

    def done_writing(self, batch: list[Request], complete: bool = True) -> None:
        """A write ended (under the lock): stamp it, and wake the writer if work is left for it."""
        self.writing = False
        self.stamp_written(batch)
        if (not complete or self.queue or self.pqueue or self.hqueue) and self.writer_waiting:
            self.writer_waiting = False
            self.wcond.notify()

    # -- ending requests (under the lock) -------------------------------------------------------

    def expire(self, now: float) -> tuple[list[Request], float]:
        """Pop the written requests whose deadline passed; return them and the wait until the next
        deadline (at most 1 s)."""
        expired: list[Request] = []
        wait = 1.0
        pending = self.pending
        for fifo in self.timers.values():
            while fifo and fifo[0][0] <= now:
                deadline, cid = fifo.popleft()
                request = pending.get(cid)
                if (request is not None and request.written and request.deadline == deadline
                        and pending.pop(cid, None) is request):  # the reader may have won
                    expired.append(request)
            if fifo:
                wait = min(wait, fifo[0][0] - now)
        return expired, wait

    def take_written(self) -> list[Request]:
        """Pop every written request (its connection is lost); queued ones stay."""
        pending = self.pending
        written = [r for r in list(pending.values())
                   if r.written and pending.pop(r.cid, None) is r]  # the reader may pop concurrently
        self.timers.clear()  # every written request just failed
        return written

    def _refuse(self, refusal: Callable[[], BaseException] | None) -> list[Request]:
        """Refuse new requests from now on (unless ``refusal`` is None: keep the earlier one);
        empty every queue and the pending table and return what was pending."""
        if refusal is not None:
            self.refusal = refusal
        requests = list(self.pending.values())
        self.pending.clear()
        self.queue.clear()
        self.hqueue.clear()
        self.pqueue.clear()
        self.retry.clear()
        self.timers.clear()
        return requests

    def close(self) -> list[Request]:
        """The client is closing (under the lock): refuse new requests; return what was pending."""
        return self._refuse(lambda: ClientClosedError("the client is closed"))

    def give_up(self, reason: BaseException) -> list[Request]:
        """No more connections (under the lock): refuse new requests (a closed client keeps saying
        it is closed); return what was pending."""
        return self._refuse(None if self.refusal is not None else
                            lambda: ConnectError(f"the client gave up connecting: {reason}"))
