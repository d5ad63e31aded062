"""``ExecutionWatch``: one account's execution events, collected from before a request is sent.

A trading request is answered by several events (ORDER_ACCEPTED, then ORDER_PARTIAL_FILL /
ORDER_FILLED ...); the client's future resolves to the first.  The watch is registered with
``client.on`` *before* the request is written, so none of the later events can slip past, and
the caller's thread waits on it with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InvalidRequestError
from ..messages.OpenApiMessages_pb2 import ProtoOAExecutionEvent

__all__ = ["ExecutionWatch", "LostConnection", "refuse_client_thread"]

T = TypeVar("T")
_RECHECK = 0.25  # how often a waiter looks at the connection while no event comes


def refuse_client_thread(client: Any, what: str) -> None:
    """Raise ``InvalidRequestError`` when called on one of the client's own threads (a callback).

    Those calls wait for events that the calling thread itself would deliver: they could only
    time out.  Run them on your own thread instead.
    """
    threads = getattr(client, "threads", None)
    if threads is not None and threading.current_thread() in threads():
        raise InvalidRequestError(f"{what} waits for events the client's callback thread delivers: do not call "
                                  "it from a callback (client.on, on_change...); use your own thread")


class LostConnection(Exception):
    """Internal: the connection changed while waiting; the answer may be lost."""


class ExecutionWatch:
    """Collect ``ProtoOAExecutionEvent`` of one account from now until :meth:`close`."""

    def __init__(self, client: Any, account_id: int) -> None:
        self._client = client
        self.account_id = account_id
        self._cond = threading.Condition()
        self._events: list[Any] = []
        self.connection = client.connection_count
        """The connection number when the watch started (a change means the answer may be lost)."""
        self._handle = client.on(ProtoOAExecutionEvent, self._put)

    def _put(self, event: Any) -> None:
        if int(event.ctidTraderAccountId) != self.account_id:
            return
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def events(self) -> list[Any]:
        """Every event collected so far, in arrival order."""
        with self._cond:
            return list(self._events)

    def wait(self, decide: Callable[[list[Any]], T | None], deadline: float, *,
             watch_connection: bool = True) -> T | None:
        """Call ``decide(events)`` each time events arrive until it returns something; return it.

        Returns ``None`` at ``deadline``.  Raises :class:`LostConnection` when the client's
        connection changed since the watch started (events on the old one may be lost) and
        ``decide`` has not decided with what arrived.
        """
        client = self._client
        seen = -1
        with self._cond:
            while True:
                if len(self._events) != seen:
                    seen = len(self._events)
                    result = decide(list(self._events))
                    if result is not None:
                        return result
                if watch_connection and (client.connection_count != self.connection or not client.is_connected):
                    raise LostConnection()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, _RECHECK))

    def rebase(self) -> None:
        """Accept the current connection as the one to watch (after a lookup on it)."""
        self.connection = self._client.connection_count

    def close(self) -> None:
        """Stop collecting."""
        self._handle.remove()

    def __enter__(self) -> ExecutionWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
