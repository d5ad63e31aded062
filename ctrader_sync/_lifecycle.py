"""How a client ends: ``close()``, or the finaliser of a client collected without it.

The client's threads hold only its units (never the client), and the units hold the client's own
methods only through :func:`weak`; so a client nobody references any more is collected, and
``weakref.finalize`` runs :func:`shutdown` on its :class:`Parts`, exactly as ``close()`` does.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._dispatch import Dispatcher
from ._events import EventBus
from ._reader import Reader
from ._supervisor import Supervisor
from ._validate import PROCESS
from ._writer import Writer
from .errors import ClientClosedError, ClosedInFlightError

__all__ = ["Parts", "shutdown", "wait_ended", "weak"]

log = logging.getLogger("ctrader_sync")


class Parts:
    """What :func:`_shutdown` needs: the client's units, never the client (so a forgotten client
    can be collected, and its finaliser close them)."""

    __slots__ = ("bus", "closed", "dispatcher", "lock", "pid", "reader", "supervisor", "threads", "writer")

    def __init__(self, lock: threading.RLock, supervisor: Supervisor, writer: Writer, reader: Reader,
                 bus: EventBus, dispatcher: Dispatcher, threads: list[threading.Thread], pid: int,
                 closed: threading.Event) -> None:
        self.lock = lock
        self.supervisor = supervisor
        self.writer = writer
        self.reader = reader
        self.bus = bus
        self.dispatcher = dispatcher
        self.threads = threads
        self.pid = pid
        self.closed = closed


def shutdown(parts: Parts) -> None:
    """``Client.close()``, and the finaliser of a client collected without it."""
    if parts.pid != PROCESS.pid:
        return  # a forked child: nothing here is ours to touch
    with parts.lock:
        already, requests, link = parts.supervisor.close()
        parts.writer.stop()
    parts.reader.stop()
    parts.bus.closed = True
    parts.closed.set()
    if not already:
        parts.supervisor.interrupt()
        for request in requests:
            if request.written:
                request._fail(ClosedInFlightError(
                    f"the client was closed after {request.cid} was written and before its answer: "
                    "it may have reached the server"))
            else:
                request._fail(ClientClosedError("the client was closed before the request was written"))
        if link is not None:
            link.lose(ClientClosedError("the client was closed"))
    deadline = time.monotonic() + 0.9
    me = threading.current_thread()
    for thread in parts.threads:
        # A thread not started yet (close() from a callback during start()) exits on its own.
        if thread is not me and thread.ident is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
    parts.dispatcher.stop(max(0.05, deadline - time.monotonic()))
    if not already:
        alive = [t.name for t in [*parts.threads, parts.dispatcher.thread] if t.is_alive() and t is not me]
        if alive:
            log.warning("ctrader_sync: threads still running after close(): %s", alive)
        else:
            parts.supervisor.close_sockets()
            parts.reader.close_sockets()


def weak(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (of the client) called through a weak reference: units hold these, so that they
    never keep a forgotten client alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        if bound is None:
            raise ClientClosedError("the client was garbage-collected")
        return bound(*args, **kwargs)

    return call


def wait_ended(closed: threading.Event, gave_up: Callable[[], bool],
               threads: Callable[[], list[threading.Thread]], timeout: float | None) -> bool:
    """:meth:`Client.wait_closed`: poll ``gave_up`` while waiting on ``closed``; after a close, join
    the threads (close() from a callback cannot join the thread it runs on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not gave_up():
        remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
        if closed.wait(max(0.0, remaining)):
            end = time.monotonic() + 1.0
            for thread in threads():
                if thread is not threading.current_thread() and thread.ident is not None:
                    thread.join(max(0.0, end - time.monotonic()))
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
    return True
