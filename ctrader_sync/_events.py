"""``EventStream``: received messages as a blocking iterator, for scripts and notebooks."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client, EventHandle

__all__ = ["EventStream"]


class EventStream:
    """Messages of chosen types, queued by the dispatcher and read by the caller's thread.

    Overflow policy: a bounded queue (``maxsize``); when it is full the *oldest* event is dropped
    (for prices the newest matters most) and counted in :attr:`dropped`.  Iteration ends when no
    event arrived for ``timeout`` seconds (if given), when the stream is closed, or when the client
    is closed.  Use :meth:`get` for one event with its own timeout.  With ``envelope=True`` the
    stream holds ``ProtoMessage`` envelopes (``payloadType``, ``clientMsgId``, ``payload``) instead
    of extracted messages.
    """

    def __init__(self, client: Client, types: tuple[type[Message] | int | str, ...], maxsize: int,
                 timeout: float | None, envelope: bool = False) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self.timeout = timeout
        self.dropped = 0
        """Events dropped because the reader fell ``maxsize`` behind."""
        self._items: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._client = client
        self._handles: list[EventHandle] = [client.on(t, self._put, envelope=envelope) for t in types] if types else [
            client.on(None, self._put, envelope=envelope)]

    def _put(self, message: Message) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(message)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Message:
        """Return the next event, waiting up to ``timeout`` seconds (``None``: the stream's timeout).

        Raises:
            TimeoutError: nothing arrived in time.
            EOFError: the stream or the client is closed and nothing is left.
        """
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while not self._items:
                if self._closed or self._client._closed:
                    raise EOFError("the event stream is closed")
                remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError(f"no event within {wait:g} s")
                self._cond.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.get()
            except (TimeoutError, EOFError):
                return

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop receiving; events already queued can still be read with :meth:`get`."""
        for handle in self._handles:
            handle.remove()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
