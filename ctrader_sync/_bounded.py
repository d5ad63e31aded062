"""A bounded, drop-oldest queue read by blocking calls: what ``EventStream`` (client events) and
the toolkit's ``ChangeStream`` (account-mirror changes) share.

One producer thread puts, a reader thread gets with a timeout; when full the oldest item is dropped
and counted.  Standard library only, so any layer may use it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["BoundedStream"]

T = TypeVar("T")


class BoundedStream(Generic[T]):
    """At most ``maxsize`` unread items (beyond that the oldest is dropped and counted in
    ``dropped``); a blocking :meth:`get`, an iterator that ends on a timeout or close, and a context
    manager.  ``_noun`` names the items in errors; subclasses close with :meth:`_end`.
    """

    _noun = "item"

    def __init__(self, maxsize: int, timeout: float | None) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self.timeout = timeout
        self.dropped = 0
        """Items dropped because the reader fell ``maxsize`` behind."""
        self._items: deque[T] = deque()
        self._cond = threading.Condition()  # guards _items, _closed and dropped; a leaf
        self._closed = False

    def _put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def _ended(self) -> bool:
        """True when nothing more will arrive (called with the condition held)."""
        return self._closed

    def get(self, timeout: float | None = None) -> T:
        """Return the next item, waiting up to ``timeout`` seconds (``None``: the stream's timeout).

        Raises:
            TimeoutError: nothing arrived in time.
            EOFError: the stream (for client events: or the client) is closed and nothing is left.
        """
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while not self._items:
                if self._ended():
                    raise EOFError(f"the {self._noun} stream is closed")
                remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError(f"no {self._noun} within {wait:g} s")
                self._cond.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except (TimeoutError, EOFError):
                return

    def __len__(self) -> int:
        return len(self._items)

    def _end(self) -> None:
        """Take no more items and wake the reader; queued items can still be read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop receiving; items already queued can still be read with :meth:`get`."""
        self._end()

    def __enter__(self) -> BoundedStream[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
