"""The dispatcher thread: runs user callbacks in arrival order, off the I/O threads.

A slow or raising callback never stalls the reader: callbacks run here, exceptions are logged
(``SystemExit`` and ``KeyboardInterrupt`` from a callback too: they end neither the thread nor
the work queued behind them).  The queue is bounded for pushed events: when ``max_events`` items
wait already, new events are dropped, counted in ``dropped`` and reported by a logged warning.
Answers, heartbeats, completion callbacks of futures and connection callbacks are never dropped
(they are bounded by the number of requests).  The thread starts with the client (``start``);
``stop`` lets it finish the queue, even after a callback that was stuck at ``close()``.
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

_NEW, _RUNNING, _ENDED = "new", "running", "ended"


class Dispatcher:
    """A thread that runs queued callables one after another, in the order they were posted."""

    def __init__(self, name: str, max_events: int, droppable: Callable[[Any], bool] | None = None) -> None:
        self.max_events = max_events
        self.dropped = 0
        """Pushed events dropped because the queue was full."""
        self._droppable = droppable
        self._items: deque[Item] = deque()
        self._events = 0
        # Guards _items, _events, _stopping and _state; a leaf lock (no callback runs under it).
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._state = _NEW
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        """The dispatcher thread."""
        return self._thread

    def start(self) -> None:
        """Start the thread (with the client); what was posted before runs first.  Idempotent."""
        with self._cond:
            if self._state is not _NEW or self._stopping:
                return
            self._state = _RUNNING
        self._thread.start()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; never dropped.  Once the thread has ended (or when the client is
        stopped without ever starting it), ``fn`` runs at once on the caller's thread instead."""
        with self._cond:
            if self._state is not _ENDED:
                self._items.append((fn, args, 0))
                self._cond.notify()
                return
        _call(fn, args)

    def post_events(self, fn: Callable[[list[Any]], Any], events: list[Any]) -> None:
        """Queue ``fn(events)`` as one item (one wake-up for a whole read).  Beyond the limit, the
        newest *droppable* items (pushed events) are dropped and counted; the others (answers,
        heartbeats) are kept."""
        dropped = 0
        cond = self._cond
        with cond:  # not acquire()/try: an interrupt right after acquire() would leave it held
            if self._stopping:
                return
            room = self.max_events - self._events
            if room < len(events):
                events, dropped = self._trim(events, max(room, 0))
            if events:
                self._events += len(events)
                self._items.append((fn, (events,), len(events)))
                cond.notify()
        if dropped:
            before = self.dropped
            self.dropped += dropped
            if before == 0 or before // 1000 != self.dropped // 1000:
                log.warning("ctrader_sync: event queue full (%d waiting): %d events dropped so far; "
                            "callbacks are too slow for the event rate", self.max_events, self.dropped)

    def _trim(self, events: list[Any], room: int) -> tuple[list[Any], int]:
        """Keep every item that may not be dropped and the first ``room`` droppable ones."""
        droppable = self._droppable
        if droppable is None:
            return events[:room], len(events) - room
        kept: list[Any] = []
        dropped = 0
        for event in events:
            if droppable(event):
                if room <= 0:
                    dropped += 1
                    continue
                room -= 1
            kept.append(event)
        return kept, dropped

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
                    self._state = _ENDED
                    return
                batch = self._items
                self._items = deque()
                self._events = 0
            for fn, args, _ in batch:
                _call(fn, args)

    def stop(self, timeout: float) -> None:
        """Run what is queued (within ``timeout``), then end the thread; callable from any thread.

        A callback still running at the deadline is left to finish on its own: the thread then
        runs what is still queued (every done-callback runs) and ends.  Never started, the queue
        runs on the caller's thread."""
        with self._cond:
            self._stopping = True
            never_started = self._state is _NEW
            if never_started:
                self._state = _ENDED
                batch, self._items = self._items, deque()
            self._cond.notify()
        if never_started:
            for fn, args, _ in batch:
                _call(fn, args)
            return
        if threading.current_thread() is not self._thread and self._thread.ident is not None:
            self._thread.join(timeout)


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run one callback; whatever it raises is logged, ``SystemExit`` and ``KeyboardInterrupt``
    included (a callback cannot end the dispatcher, and no later callback is lost)."""
    try:
        fn(*args)
    except BaseException:
        log.exception("ctrader_sync: a callback raised (%s); I/O continues", getattr(fn, "__qualname__", fn))
