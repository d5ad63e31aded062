"""The dispatcher thread: runs user callbacks in arrival order, off the I/O threads.

A slow or raising callback never stalls the reader: callbacks run here, exceptions are logged.
The queue is bounded for pushed events: when ``max_events`` event items wait already, new events
are dropped, counted in ``dropped`` and reported by a logged warning.  Completion callbacks of
futures and connection callbacks are never dropped (they are bounded by the number of requests).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Dispatcher"]

log = logging.getLogger("ctrader_sync")

Item = tuple[Callable[..., Any], tuple[Any, ...], int]
"""(callable, arguments, how many pushed events it carries: 0 for items that are never dropped)."""


class Dispatcher:
    """A thread that runs queued callables one after another, in the order they were posted."""

    def __init__(self, name: str, max_events: int) -> None:
        self.max_events = max_events
        self.dropped = 0
        """Pushed events dropped because the queue was full."""
        self._items: deque[Item] = deque()
        self._events = 0
        # Guards _items, _events and _stopping; a leaf lock (no callback runs under it).
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The dispatcher thread."""
        return self._thread

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; never dropped."""
        with self._cond:
            if self._stopping:
                return
            self._items.append((fn, args, 0))
            self._cond.notify()

    def post_events(self, fn: Callable[[list[Any]], Any], events: list[Any]) -> None:
        """Queue ``fn(events)`` as one item (one wake-up for a whole read); events beyond the limit
        (the newest ones) are dropped and counted."""
        dropped = 0
        with self._cond:
            if self._stopping:
                return
            room = self.max_events - self._events
            if room < len(events):
                dropped = len(events) - max(room, 0)
                events = events[:max(room, 0)]
            if events:
                self._events += len(events)
                self._items.append((fn, (events,), len(events)))
                self._cond.notify()
        if dropped:
            before = self.dropped
            self.dropped += dropped
            if before == 0 or before // 1000 != self.dropped // 1000:
                log.warning("ctrader_sync: event queue full (%d waiting): %d events dropped so far; "
                            "callbacks are too slow for the event rate", self.max_events, self.dropped)

    def pending(self) -> int:
        """Items waiting to run."""
        return len(self._items)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._items and not self._stopping:
                    cond.wait(1.0)
                if not self._items:
                    return
                batch = self._items
                self._items = deque()
                self._events = 0
            for fn, args, _ in batch:
                try:
                    fn(*args)
                except Exception:
                    log.exception("ctrader_sync: a callback raised (%s); I/O continues",
                                  getattr(fn, "__qualname__", fn))

    def stop(self, timeout: float) -> None:
        """Run what is queued (within ``timeout``), then end the thread; callable from any thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                with self._cond:
                    self._items.clear()  # a callback is stuck: abandon the rest
