"""What the account mirror tells its listeners: :class:`Change`, callback handles and the
:class:`ChangeStream` iterator behind ``Account.changes()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .._bounded import BoundedStream

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


class ChangeStream(BoundedStream[Change]):
    """A blocking iterator over mirror changes (like ``client.events``); a context manager.

    Iteration ends after ``timeout`` seconds without a change or when the stream is closed.  At
    most ``maxsize`` changes wait unread; beyond that the oldest is dropped and counted in
    ``dropped``.
    """

    _noun = "change"

    def __init__(self, timeout: float | None, maxsize: int, detach: Callable[[ChangeStream], None]) -> None:
        super().__init__(maxsize, timeout)
        self._detach = detach

    def put(self, change: Change) -> None:
        """Queue one change (called by the mirror)."""
        self._put(change)

    def close(self) -> None:
        """Stop receiving; changes already queued can still be read with :meth:`get`."""
        self._detach(self)
        self._end()

    def __enter__(self) -> ChangeStream:
        return self
