"""Requests in flight: the future a caller holds, and the record the client keeps for it.

Cancel semantics (as the old SDK documents them, made exact):

* not yet written: ``cancel()`` returns True, the request is never written, ``CancelledError``;
* written but not answered: ``cancel()`` returns True, the late answer is discarded, ``CancelledError``;
* answered: ``cancel()`` returns False and changes nothing.

``concurrent.futures.Future`` refuses to cancel a RUNNING future, so :class:`RequestFuture` changes
exactly that: RUNNING here means "written", and cancelling it only drops the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import (  # the states are part of Future's documented life cycle
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any

__all__ = ["EXPECT_EXECUTION", "EXPECT_NOTHING", "EXPECT_RESPONSE", "Request", "RequestFuture"]

EXPECT_RESPONSE = 0
"""The request has a ``...Res`` answer."""
EXPECT_EXECUTION = 1
"""A trading request: answered by the first ``ProtoOAExecutionEvent`` with its ``clientMsgId``."""
EXPECT_NOTHING = 2
"""No answer (a heartbeat): the future resolves to ``None`` once the frame is written."""


class RequestFuture(Future):  # type: ignore[type-arg]
    """The future ``Client.send()`` returns: a ``concurrent.futures.Future`` for the answer.

    Attributes:
        clientMsgId: the ``clientMsgId`` the request carries on the wire.
        payloadType: the request's payload type.
    """

    __slots__ = ("_on_cancel", "_post", "cancelled_before_write", "clientMsgId", "payloadType")

    def __init__(self, clientMsgId: str, payloadType: int,
                 post: Callable[[Callable[[], None]], None] | None = None) -> None:
        super().__init__()
        self.clientMsgId = clientMsgId
        self.payloadType = payloadType
        self._post = post
        self._on_cancel: Callable[[RequestFuture], None] | None = None
        self.cancelled_before_write: bool | None = None
        """After a successful ``cancel()``: True if the request had not been written (it never will
        be), False if it had (its answer is discarded); ``None`` if not cancelled."""

    def __repr__(self) -> str:
        return f"<RequestFuture {self.clientMsgId} type={self.payloadType} state={self._state}>"

    @property
    def written(self) -> bool:
        """True once the request was handed to the connection (it may have reached the server)."""
        return self._state != PENDING

    def cancel(self) -> bool:
        """Cancel the request; see the module docs. Returns False only if it was already answered."""
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self.cancelled_before_write = self._state == PENDING
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        hook = self._on_cancel
        if hook is not None:
            hook(self)
        self._invoke_callbacks()
        return True

    def set_running_or_notify_cancel(self) -> bool:
        """Claim the request for writing: False if it was cancelled (it must not be written)."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
                return True
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            return False

    def _claim(self) -> bool:
        # Writer fast path: PENDING -> RUNNING; the state read and write are atomic under the GIL
        # only with the condition held, so take it.
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
                return True
            return False

    def _unclaim(self) -> bool:
        """Put a written request back to "not written" (for a re-send); False if it was cancelled."""
        with self._condition:
            if self._state == RUNNING:
                self._state = PENDING
                return True
            return False

    def _invoke_callbacks(self) -> None:
        # Done-callbacks run on the client's dispatcher thread, never on the reader.
        pending: list[Callable[[Future[Any]], object]] = self._done_callbacks  # type: ignore[has-type]
        if pending and self._post is not None:
            callbacks = pending
            self._done_callbacks = []  # type: ignore[var-annotated]
            self._post(lambda: _run_callbacks(self, callbacks))
            return
        super()._invoke_callbacks()  # type: ignore[misc]

    def _resolve(self, result: Any) -> bool:
        """Set the result unless cancelled or done; True if it was set."""
        with self._condition:
            if self._state not in (PENDING, RUNNING):
                return False
            self._result = result
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True

    def _fail(self, exc: BaseException) -> bool:
        """Set the exception unless cancelled or done; True if it was set."""
        with self._condition:
            if self._state not in (PENDING, RUNNING):
                return False
            self._exception = exc
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_exception(self)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True


def _run_callbacks(future: RequestFuture, callbacks: list[Callable[[Future[Any]], object]]) -> None:
    import logging

    for callback in callbacks:
        try:
            callback(future)
        except Exception:
            logging.getLogger("ctrader_sync").exception("ctrader_sync: a future's done-callback raised")


class Request:
    """The client's record of one request, from ``send()`` until it ends."""

    __slots__ = (
        "cid",
        "deadline",
        "expect",
        "frame",
        "future",
        "historical",
        "message",
        "not_before",
        "priority",
        "retries",
        "seq",
        "timeout",
        "written",
    )

    def __init__(self, cid: str, frame: bytes, future: RequestFuture, expect: int, historical: bool,
                 timeout: float, seq: int, priority: bool = False) -> None:
        self.cid = cid
        self.frame = frame
        self.future = future
        self.expect = expect
        self.historical = historical
        self.timeout = timeout
        self.deadline = 0.0
        self.retries = 0
        self.not_before = 0.0
        self.seq = seq
        self.priority = priority
        self.written = False
        self.message: Any = None  # kept only for requests whose success the session records
