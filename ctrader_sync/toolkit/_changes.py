"""What the account mirror tells its listeners: :class:`Change`, callback handles and the
:class:`ChangeStream` iterator behind ``Account.changes()``."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["KINDS", "Change", "ChangeHandle", "ChangeStream"]

KINDS = ("position_opened", "position_changed", "position_closed", "order_placed", "order_changed",
         "order_removed", "balance", "ready")
"""Every ``Change.kind``."""


@dataclass(frozen=True)
class Change:
    """One change of the account mirror.

    ``kind`` is one of ``position_opened``, ``position_changed`` (volume, SL/TP, swap...),
    ``position_closed``, ``order_placed``, ``order_changed``, ``order_removed`` (filled, cancelled,
    expired or rejected), ``balance`` or ``ready`` (the mirror was rebuilt from a reconcile, after
    first use or a reconnect; the changes it found come before it).  ``position``/``order`` are the
    new state (the last known one for a removal), ``balance`` the new balance, ``message`` the
    ``ProtoOAExecutionEvent`` (or other message) behind the change, ``None`` for changes found by a
    rebuild.
    """

    kind: str
    position_id: int | None = None
    order_id: int | None = None
    position: Any = None
    order: Any = None
    balance: Decimal | None = None
    message: Any = field(default=None, repr=False, compare=False)


class ChangeHandle:
    """Returned by ``Account.on_change``: ``remove()`` stops the callback (idempotent)."""

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove: Callable[[], None] | None = remove

    def remove(self) -> None:
        """Stop calling the callback. Safe to call more than once."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()


class ChangeStream:
    """A blocking iterator over mirror changes (like ``client.events``); a context manager.

    Iteration ends after ``timeout`` seconds without a change or when the stream is closed.  At
    most ``maxsize`` changes wait unread; beyond that the oldest is dropped and counted in
    ``dropped``.
    """

    def __init__(self, timeout: float | None, maxsize: int, detach: Callable[[ChangeStream], None]) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.timeout = timeout
        self.maxsize = maxsize
        self.dropped = 0
        """Changes dropped because the reader fell ``maxsize`` behind."""
        self._items: deque[Change] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._detach = detach

    def put(self, change: Change) -> None:
        """Queue one change (called by the mirror)."""
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(change)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Change:
        """The next change, waiting up to ``timeout`` seconds (``None``: the stream's timeout).

        Raises:
            TimeoutError: nothing arrived in time.
            EOFError: the stream is closed and nothing is left.
        """
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while not self._items:
                if self._closed:
                    raise EOFError("the change stream is closed")
                remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError(f"no change within {wait:g} s")
                self._cond.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> Iterator[Change]:
        while True:
            try:
                yield self.get()
            except (TimeoutError, EOFError):
                return

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop receiving; changes already queued can still be read with :meth:`get`."""
        self._detach(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
