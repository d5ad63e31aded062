"""Requests in flight: the future a caller holds, and the record the client keeps for it.

Cancel semantics (as the old SDK documents them, made exact):

* not yet written: ``cancel()`` returns True, the request is never written, ``CancelledError``;
* written but not answered: ``cancel()`` returns True, the late answer is discarded, ``CancelledError``;
* answered: ``cancel()`` returns False and changes nothing.  "Answered" starts when the client
  claims the answer (or the timeout, or the connection's loss) for the request, an instant before
  the future shows it: a ``cancel()`` in that instant also returns False, and ``result()`` then
  returns the answer.

``concurrent.futures.Future`` refuses to cancel a RUNNING future, so :class:`RequestFuture` changes
exactly that: RUNNING here means "written", and cancelling it only drops the answer.

Cost: a stock ``Future`` builds a ``threading.Condition`` (about 1.3 KB and a few microseconds)
for every request.  A ``RequestFuture`` instead guards its state with its client's lock (an
``RLock`` shared by all of that client's futures) and makes a condition only when a thread
actually waits on it, so 100,000 pending requests stay well under 1 KB each.  Everything that
``concurrent.futures.wait``/``as_completed`` rely on (``_condition``, ``_waiters``, the states) is
kept, so those functions work unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import (  # the states are part of Future's documented life cycle
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from .errors import ConnectionLostError, InvalidRequestError
from .messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent
from .protobuf import REGISTRY, TYPE_OF, Protobuf

__all__ = ["ANSWER_TYPES", "EXPECT_EXECUTION", "EXPECT_NOTHING", "EXPECT_RESPONSE", "REQUEST_KINDS", "FutureHooks",
           "Request", "RequestFuture", "send_arguments"]

log = logging.getLogger("ctrader_sync")

EXPECT_RESPONSE = 0
"""The request has a ``...Res`` answer."""
EXPECT_EXECUTION = 1
"""A trading request: answered by the first ``ProtoOAExecutionEvent`` with its ``clientMsgId``."""
EXPECT_NOTHING = 2
"""No answer (a heartbeat): the future resolves to ``None`` once the frame is written."""

_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)


def _not_a_deferred(name: str) -> property:
    """A property that fails like a missing attribute, with the migration step in its message."""

    def hint(self: Any) -> Any:
        raise AttributeError(
            f"RequestFuture has no {name}(): send() returns a concurrent.futures.Future, not a Twisted "
            "Deferred. Use future.result(timeout) (or client.request(msg)), or "
            "future.add_done_callback(fn), where fn(future) calls future.result() (answers arrive "
            "extracted) and catches the ServerError it raises for an error answer; see the README, "
            "'Migrating from the old SDK'.")

    return property(hint, doc=f"Not available: the Twisted ``Deferred.{name}`` of the old SDK (raises "
                              "``AttributeError`` naming the replacement).")


@dataclass(frozen=True, slots=True)
class FutureHooks:
    """What a future may ask of its client, and nothing more (handed to every future it makes)."""

    assist: Callable[[RequestFuture, float | None], None]
    """Called by a thread about to wait in ``result()`` (with its deadline): it may read the
    connection itself until the answer is in (see ``_reader.Reader.assist``)."""
    cancelled: Callable[[RequestFuture], bool]
    """Called (under the client's lock) by ``cancel()`` before anything changes: claims the request
    from the pending table (which frees its id); False if another remover claimed it first (its
    answer, a timeout or the connection's loss is ending it), and then ``cancel()`` fails."""
    post: Callable[[Callable[[], Any]], None]
    """Runs a callable on the client's dispatcher thread (done-callbacks never run on I/O threads)."""


class RequestFuture(Future):  # type: ignore[type-arg]
    """The future ``Client.send()`` returns: a ``concurrent.futures.Future`` for the answer.

    Attributes:
        payloadType: the request's payload type.
        cancelled_before_write: after a successful ``cancel()``, True if the request had not been
            written (it never will be), False if it had (its answer is discarded); else ``None``.
    """

    # The future is also the client's record of the request (one object per request, not two).
    # Attributes most requests never change are class-level defaults rather than slots, so
    # creating a request sets as few as possible (assigning one creates the instance dict).
    __slots__ = ("_cond", "_done_callbacks", "_exception", "_hooks", "_lock", "_result", "_state", "_wl",
                 "_written", "cid", "deadline", "expect", "frame", "historical", "message", "payloadType",
                 "seq", "timeout")
    retries = 0
    not_before = 0.0
    priority = False
    cancelled_before_write: bool | None = None

    def __init__(self, clientMsgId: str, payloadType: int, lock: threading.RLock | None = None,
                 hooks: FutureHooks | None = None, frame: bytes = b"", expect: int = EXPECT_RESPONSE,
                 historical: bool = False, timeout: float = 30.0, seq: int = 0, message: Any = None) -> None:
        # Future.__init__ is deliberately not called: it would build a Condition per request.
        # Without ``hooks`` (a future made outside a client), callbacks run inline.
        self._lock = lock if lock is not None else threading.RLock()
        self._hooks = hooks
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._wl: list[Any] | None = None
        self._done_callbacks: list[Callable[[Future[Any]], object]] | None = None
        self._written = False
        self.cid = clientMsgId
        self.payloadType = payloadType
        self.frame = frame
        self.expect = expect
        self.historical = historical
        self.timeout = timeout
        self.deadline = 0.0
        self.seq = seq
        self.message: Any = message  # the request, kept while pending (re-encoding, session bookkeeping)

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]  # for concurrent.futures.wait()
        waiters = self._wl
        if waiters is None:
            waiters = self._wl = []
        return waiters

    @property
    def clientMsgId(self) -> str:
        """The ``clientMsgId`` the request carries on the wire."""
        return self.cid

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        # Created on first use (a thread waits, or concurrent.futures.wait() inspects the future);
        # it shares the client's lock, so state changes and waits never miss each other.
        cond = self._cond
        if cond is None:
            with self._lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(self._lock)
        return cond

    def __repr__(self) -> str:
        return f"<RequestFuture {self.clientMsgId} type={self.payloadType} state={self._state}>"

    # Old code calling Deferred methods gets the migration step instead of a bare AttributeError.
    addCallback = _not_a_deferred("addCallback")
    addCallbacks = _not_a_deferred("addCallbacks")
    addErrback = _not_a_deferred("addErrback")
    addBoth = _not_a_deferred("addBoth")
    addTimeout = _not_a_deferred("addTimeout")

    # -- state queries ------------------------------------------------------------------------

    @property
    def written(self) -> bool:
        """True once the request was handed to the connection (it may have reached the server)."""
        return self._written

    def cancelled(self) -> bool:
        """True if the request was cancelled."""
        return self._state in _CANCELLED

    def running(self) -> bool:
        """True while the request is written and not yet answered."""
        return self._state == RUNNING

    def done(self) -> bool:
        """True if the future is answered, failed or cancelled."""
        return self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED)

    # -- waiting ------------------------------------------------------------------------------

    def _wait_done(self, timeout: float | None) -> None:
        """Wait (holding the lock) until done or ``timeout``; raise TimeoutError on timeout."""
        if self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED):
            return
        cond = self._condition
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state not in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED):
            if deadline is None:
                cond.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                cond.wait(remaining)

    def result(self, timeout: float | None = None) -> Any:
        """Return the answer, waiting up to ``timeout`` seconds.

        Raises:
            CancelledError: the request was cancelled.
            TimeoutError: ``timeout`` passed (the request stays pending).
            Exception: the request's failure (``ServerError``, ``RequestTimeoutError``, ...).
        """
        state = self._state
        if state == FINISHED:  # fast path, no lock: FINISHED is final
            if self._exception is not None:
                raise self._exception
            return self._result
        hooks = self._hooks
        if hooks is not None and state in (PENDING, RUNNING):
            deadline = None if timeout is None else time.monotonic() + timeout
            hooks.assist(self, deadline)
            if self._state == FINISHED and self._exception is None:
                return self._result  # the caller read its own answer (the common case): no lock
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        with self._lock:
            self._wait_done(timeout)
            if self._state in _CANCELLED:
                raise CancelledError()
            if self._exception is not None:
                try:
                    raise self._exception
                finally:
                    self = None  # type: ignore[assignment]  # break the traceback cycle
            return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the request's failure (or ``None`` if it was answered), waiting up to ``timeout``."""
        with self._lock:
            self._wait_done(timeout)
            if self._state in _CANCELLED:
                raise CancelledError()
            return self._exception

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        """Call ``fn(future)`` when done, on the client's dispatcher thread (after the callbacks
        queued there before it) -- also when the future is done already."""
        with self._lock:
            if self._state not in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED):
                if self._done_callbacks is None:
                    self._done_callbacks = [fn]
                else:
                    self._done_callbacks.append(fn)
                done = False
            else:
                done = True
        if not done:
            if self._state == FINISHED:  # answered without the lock meanwhile (see _finish_claimed)
                self._invoke_callbacks()
            return
        hooks = self._hooks
        if hooks is not None:
            hooks.post(lambda: _run_callbacks(self, [fn]))
        else:
            _run_callbacks(self, [fn])

    # -- transitions --------------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the request; see the module docs. Returns False only if it was already answered."""
        with self._lock:
            state = self._state
            if state == FINISHED:
                return False
            if state in _CANCELLED:
                return True
            if self._hooks is not None and not self._hooks.cancelled(self):
                return False  # being answered (or failed) right now: see _finish_claimed
            self.cancelled_before_write = state == PENDING
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._wl or ():
                waiter.add_cancelled(self)
            if self._cond is not None:
                self._cond.notify_all()
        self._invoke_callbacks()
        return True

    def set_running_or_notify_cancel(self) -> bool:
        """Claim the request for writing: False if it was cancelled (it must not be written)."""
        with self._lock:
            return self._claim()

    def _claim(self) -> bool:
        """PENDING -> RUNNING (written). Caller holds the lock."""
        if self._state == PENDING:
            self._state = RUNNING
            self._written = True
            return True
        return False

    def _unclaim(self) -> bool:
        """RUNNING -> PENDING, for a re-send after a rate-limit refusal. Caller holds the lock."""
        if self._state == RUNNING:
            self._state = PENDING
            self._written = False
            return True
        return False

    def set_result(self, result: Any) -> None:
        """Resolve the future (as ``concurrent.futures.Future.set_result``; the client itself uses
        :meth:`_resolve`, which never raises).

        Raises:
            concurrent.futures.InvalidStateError: the future is already done or cancelled.
        """
        if not self._resolve(result):
            raise InvalidStateError(f"{self._state}: {self!r}")

    def set_exception(self, exception: BaseException | None) -> None:
        """Fail the future (as ``concurrent.futures.Future.set_exception``).

        Raises:
            concurrent.futures.InvalidStateError: the future is already done or cancelled.
        """
        if not self._fail(exception or RuntimeError("no exception given")):
            raise InvalidStateError(f"{self._state}: {self!r}")

    def _resolve(self, result: Any) -> bool:
        """Set the result unless cancelled or done; True if it was set."""
        return self._finish(result, None)

    def _fail(self, exc: BaseException) -> bool:
        """Set the exception unless cancelled or done; True if it was set."""
        return self._finish(None, exc)

    def _finish(self, result: Any, exc: BaseException | None) -> bool:
        with self._lock:
            if self._state not in (PENDING, RUNNING):
                return False
            self._result = result
            self._exception = exc
            self._state = FINISHED
            for waiter in self._wl or ():
                if exc is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            if self._cond is not None:
                self._cond.notify_all()
            callbacks = self._done_callbacks
        if callbacks:
            self._invoke_callbacks()
        return True

    def _finish_claimed(self, result: Any) -> None:
        """Resolve a request its caller claimed from the pending table (the reader, for a plain
        answer), without the lock in the common case.

        The claim excludes every other finisher, and ``cancel()`` too (it claims first, under the
        lock).  Whoever waits makes itself known before it reads the state (``result()`` creates
        ``_cond``, ``concurrent.futures.wait`` does too, ``add_done_callback`` checks the state
        again after registering), and this method reads those after writing the state: so either
        the waiter sees FINISHED, or this sees the waiter and notifies it under the lock.
        """
        self._result = result
        self._state = FINISHED
        if self._cond is None and not self._wl and self._done_callbacks is None:
            return
        with self._lock:
            for waiter in self._wl or ():
                waiter.add_result(self)
            if self._cond is not None:
                self._cond.notify_all()
            callbacks = self._done_callbacks
        if callbacks:
            self._invoke_callbacks()

    def _settle_interrupted(self, exc: BaseException) -> None:
        """Whoever claimed this request was interrupted (Ctrl-C in a caller reading its own answer)
        before it ended it, or after it set FINISHED without the lock and before it woke the
        waiters (see :meth:`_finish_claimed`): end it with a ``ConnectionLostError`` (the link is
        dropped for the interrupt too) and wake whoever waits, so no future is stranded."""
        if self._fail(ConnectionLostError(
                f"interrupted ({type(exc).__name__}) while the answer was being handled")):
            return
        with self._lock:
            if self._cond is not None:
                self._cond.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()

    def _invoke_callbacks(self) -> None:
        # Done-callbacks run on the client's dispatcher thread, never on the reader.
        with self._lock:
            callbacks, self._done_callbacks = self._done_callbacks, None
        if not callbacks:
            return
        if self._hooks is not None:
            self._hooks.post(lambda: _run_callbacks(self, callbacks))
        else:
            _run_callbacks(self, callbacks)


def _run_callbacks(future: RequestFuture, callbacks: list[Callable[[Future[Any]], object]]) -> None:
    for callback in callbacks:
        try:
            callback(future)
        except BaseException:  # SystemExit too: the callbacks after it still run
            log.exception("ctrader_sync: a future's done-callback raised")


Request = RequestFuture
"""The client's record of a request is its future (see ``RequestFuture.__slots__``)."""


def request_kinds(registry: dict[int, type[Any]], heartbeat: int,
                  trading: frozenset[str]) -> dict[type[Any], tuple[int, int]]:
    """Message class -> (payload type, what answers it) for every message ``send()`` accepts:
    each ``...Req`` and the heartbeat; ``trading`` names the requests an execution event answers."""
    kinds: dict[type[Any], tuple[int, int]] = {}
    for pt, cls in registry.items():
        name = cls.__name__
        if name in trading:
            kinds[cls] = (pt, EXPECT_EXECUTION)
        elif name.endswith("Req"):
            kinds[cls] = (pt, EXPECT_RESPONSE)
        elif pt == heartbeat:
            kinds[cls] = (pt, EXPECT_NOTHING)
    return kinds


TRADING_REQUESTS = frozenset({"ProtoOANewOrderReq", "ProtoOACancelOrderReq", "ProtoOAAmendOrderReq",
                              "ProtoOAAmendPositionSLTPReq", "ProtoOAClosePositionReq"})
"""Requests answered by the first ``ProtoOAExecutionEvent`` carrying their ``clientMsgId``."""
REQUEST_KINDS = request_kinds(REGISTRY, TYPE_OF[ProtoHeartbeatEvent], TRADING_REQUESTS)
"""Message class -> (payload type, what answers it), for ``send()``."""


def send_arguments(message: Message | int | str, kind: tuple[int, int] | None, timeout: float | None,
                   old_timeout: float | None, fields: dict[str, Any],
                   default_timeout: float) -> tuple[Message, tuple[int, int], float]:
    """``Client.send()``'s less common arguments (a payload type with fields, an explicit timeout),
    checked: the message, its kind and the response timeout.  The common call never comes here."""
    if kind is None:
        if isinstance(message, (int, str)):
            built: Message = Protobuf.get(message, **fields)
            message = built
            kind = REQUEST_KINDS.get(type(built))
        if kind is None:
            raise InvalidRequestError(f"{type(message).__name__} is not a request: send a ...Req message "
                                      "or a ProtoHeartbeatEvent")
    elif fields:
        # The old SDK ignored keywords given with a message object (ConsoleSample passes
        # fromTimestamp=None, toTimestamp=None): None changes nothing either way, so it is
        # ignored here too; a real value would be silently dropped, so it is refused.
        given = sorted(k for k, v in fields.items() if v is not None)
        if given:
            raise TypeError(
                f"send({type(message).__name__}(...), {'=..., '.join(given)}=...): field keywords are "
                "only applied with a payload type number or name; set them on the message object "
                "(the old SDK silently ignored them here)")
    if timeout is None:
        timeout = old_timeout
    if timeout is None:
        wait = default_timeout
    elif 0 < timeout < math.inf:
        wait = float(timeout)
    else:
        raise InvalidRequestError(f"timeout must be a positive number of seconds, not {timeout!r}")
    assert not isinstance(message, (int, str))
    return message, kind, wait


def answer_types(registry: dict[int, type[Any]]) -> dict[int, int]:
    """Request payload type -> the payload type of its answer (``...Req`` -> ``...Res``), for the
    requests whose answer has that name; an answer of another type (other than an error) is a
    protocol error."""
    by_name = {cls.__name__: pt for pt, cls in registry.items()}
    return {pt: by_name[cls.__name__[:-3] + "Res"] for pt, cls in registry.items()
            if cls.__name__.endswith("Req") and cls.__name__[:-3] + "Res" in by_name}


ANSWER_TYPES = answer_types(REGISTRY)
"""Request payload type -> its answer's payload type."""
