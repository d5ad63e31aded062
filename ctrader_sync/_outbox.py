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
* the state of every ``RequestFuture`` of the client (they share this lock), except that the
  claimant of a plain answer sets it without the lock when nobody waits (``_finish_claimed``);
* ``writing``/``writing_link`` (who writes; one writer at a time): a caller that set them (an
  inline send, a flush) and is interrupted (Ctrl-C) gives them back in its handler
  (:meth:`release_write`, which also puts back what it had taken off the queues);
* ``Link.ready``/``Link.lost``, the supervisor's state and the session state (the supervisor and
  the session manager are handed this lock).

Two conditions share it: ``wcond`` wakes the writer (a request queued, a retry due, a flush
needed, a new connection, close); ``scond`` wakes the supervisor and ``wait_connected`` callers
(an earlier deadline, connection state changes).

Lock order (a thread holding one lock may take only those to its right)::

    read token (_reader)  ->  core lock  ->  TLS lock (_tls), dispatcher lock (_dispatch)

The TLS and dispatcher locks are leaves, as are the reader's park lock and lead lock; no I/O and
no user code runs under the core lock.  Every lock is taken with ``with`` (an interrupt right
after a bare ``acquire()`` would leave it held).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

from ._link import Link
from ._pending import EXPECT_NOTHING, Request, RequestFuture
from ._ratelimit import SlidingWindowLimiter
from .errors import ClientClosedError, ConnectError, InvalidRequestError, QueueFullError

__all__ = ["Outbox"]

_INF = float("inf")

_MAX_BATCH_BYTES = 256 * 1024
_MAX_BATCH_FRAMES = 256
_COMPACT_MIN = 4096
"""The deadline heap is never compacted below this size (compaction is O(n): amortized)."""


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
        # Response deadlines: one heap of (deadline, cid) for every written request, whatever its
        # timeout.  Entries hold only the id, never the request, so an answered request is freed at
        # once; its entry is dropped lazily (when its deadline comes, or when the heap is compacted
        # because stale entries outnumber the requests in flight), so the heap's size follows the
        # requests in flight, not the number of distinct timeouts.
        self.timers: list[tuple[float, str]] = []
        self._compact_at = _COMPACT_MIN
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
        self.writing: bool | int = False
        """Who is writing to the socket: ``True`` for the writer thread, the thread id of a caller
        writing inline (``send()``) or flushing before it waits, ``False`` for nobody."""
        self.writing_link: Link | None = None
        """The link a caller is writing to (see :meth:`release_write`)."""
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
        lock = self.lock
        with lock:  # not acquire()/try: an interrupt right after acquire() would leave it held
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
                    # Claimed first: if an interrupt (Ctrl-C) lands anywhere from here to the end
                    # of the write, the caller's handler finds the claim (see release_write).
                    self.writing = threading.get_ident()
                    self.writing_link = link
                    pending[request.cid] = request
                    request._claim()
                    self.mark_written(request, now)
                    if limiter is not None:
                        limiter.record(now)
                        if request.historical and hlimiter is not None:
                            hlimiter.record(now)
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

    def wake_supervisor(self) -> None:
        """Wake the supervisor (a session timer was set: it recomputes its wait)."""
        with self.scond:
            self.scond.notify_all()

    def wake_writer(self) -> None:
        """Wake the writer thread (TLS has bytes of its own to send, e.g. a key update)."""
        with self.wcond:
            self.wcond.notify()

    def cancelled(self, future: RequestFuture) -> bool:
        """``cancel()`` claims ``future`` (under the lock): its id is free again.  False if a written
        request was claimed already (by its answer, a timeout or the connection's loss)."""
        pending = self.pending
        if pending.get(future.cid) is future:
            # Only the reader removes entries without the lock, and it only pops.
            return pending.pop(future.cid, None) is future
        return not future.written

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
        earliest = timers[0][0] if timers else _INF
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
                heappush(timers, (deadline, request.cid))
            batch.append(request)
            size += len(request.frame)
        if timers and timers[0][0] < earliest:
            self.scond.notify_all()  # an earlier deadline: the supervisor recomputes its wait
        if len(timers) > self._compact_at:
            self._compact()
        return batch

    def mark_written(self, request: Request, now: float) -> None:
        """Bookkeeping for a claimed request about to be written (under the lock)."""
        if request.expect == EXPECT_NOTHING:
            del self.pending[request.cid]
            return
        request.deadline = deadline = now + request.timeout
        timers = self.timers
        heappush(timers, (deadline, request.cid))
        if timers[0][1] is request.cid:
            self.scond.notify_all()  # the earliest deadline now: the supervisor recomputes its wait
        if len(timers) > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop the deadline entries of requests no longer in flight (under the lock)."""
        pending = self.pending
        live = []
        for entry in self.timers:
            request = pending.get(entry[1])
            if request is not None and request._written and request.deadline == entry[0]:
                live.append(entry)
        heapq.heapify(live)
        self.timers = live
        self._compact_at = max(_COMPACT_MIN, 2 * len(live))

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
        self.writing_link = None
        self.stamp_written(batch)
        if (not complete or self.queue or self.pqueue or self.hqueue) and self.writer_waiting:
            self.writer_waiting = False
            self.wcond.notify()

    # -- ending requests (under the lock) -------------------------------------------------------

    def expire(self, now: float) -> tuple[list[Request], float]:
        """Pop the written requests whose deadline passed; return them and the wait until the next
        deadline (at most 1 s).  Entries of requests already ended are dropped from the top of the
        heap as well, so they do not wait there for their deadline."""
        expired: list[Request] = []
        pending, timers = self.pending, self.timers
        while timers and timers[0][0] <= now:
            deadline, cid = heappop(timers)
            request = pending.get(cid)
            if (request is not None and request.written and request.deadline == deadline
                    and pending.pop(cid, None) is request):  # the reader may have won
                expired.append(request)
        return expired, min(1.0, timers[0][0] - now) if timers else 1.0

    def release_write(self, ident: int) -> Link | None:
        """Thread ``ident`` was interrupted (Ctrl-C) while it held the write (an inline send or a
        caller's flush): release it, and return the link it was writing to, which must be dropped
        (part of a TLS record may have left); ``None`` if that thread held nothing."""
        with self.lock:
            if self.writing is True or self.writing is False or self.writing != ident:
                return None
            link, self.writing, self.writing_link = self.writing_link, False, None
            self._requeue_taken()
            self.writer_waiting = False
            self.wcond.notify()
            return link

    def _requeue_taken(self) -> None:
        """After an interrupt in a caller's write (under the lock): a request taken off its queue
        and not yet written (``take_batch`` interrupted between popping and claiming it, or
        between its two state changes) would be in no queue and never written nor failed: put it
        back at the head of its queue, unclaimed (its frame never left: the write comes after
        the take).  O(pending), on an interrupt only."""
        held = {id(r) for q in (self.queue, self.hqueue, self.pqueue) for r in q}
        held.update(id(entry[2]) for entry in self.retry)
        lost = [r for r in self.pending.values() if not r._written and id(r) not in held]
        for request in sorted(lost, key=lambda r: r.seq, reverse=True):
            if request._state == "RUNNING":
                request._state = "PENDING"  # claimed, never written
            if request._state != "PENDING":
                continue
            if request.priority:
                self.pqueue.appendleft(request)
            elif request.historical and self.hlimiter is not None:
                self.hqueue.appendleft(request)
            else:
                self.queue.appendleft(request)

    def take_written(self) -> list[Request]:
        """Pop every written request (its connection is lost); queued ones stay."""
        pending = self.pending
        written = [r for r in list(pending.values())
                   if r.written and pending.pop(r.cid, None) is r]  # the reader may pop concurrently
        self.timers.clear()  # every written request just failed
        self._compact_at = _COMPACT_MIN
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
