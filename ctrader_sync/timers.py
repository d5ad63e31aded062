"""Repeating calls without a reactor: :func:`every` replaces Twisted's ``task.LoopingCall``.

``reactor.callLater(seconds, fn, *args)`` needs no helper: ``threading.Timer(seconds, fn, args)``
(``.start()``, ``.cancel()``) does it.  A loop that calls a function every few seconds (a
heartbeat of your own, polling the account, printing P&L) is :func:`every`::

    from ctrader_sync import every

    loop = every(5.0, print_positions, client)     # calls print_positions(client) now, then every 5 s
    ...
    loop.stop()                                    # or: with every(5.0, fn) as loop: ...

Each loop runs on its own daemon thread (``ctrader_sync-every-N``); calls never overlap.  The
schedule is fixed-rate, as ``LoopingCall``'s: a call that overruns skips the ticks it missed rather
than bunching them.  Unlike ``LoopingCall`` (which stopped on the first exception), an exception is
logged and the loop goes on.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Every", "every"]

log = logging.getLogger("ctrader_sync")

_numbers = itertools.count(1)


class Every:
    """A running repeating call, returned by :func:`every`; :meth:`stop` ends it."""

    def __init__(self, seconds: float, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], now: bool) -> None:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a positive number, not {seconds!r}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        self.seconds = float(seconds)
        self.calls = 0
        """How many times the function has been called so far."""
        self.errors = 0
        """How many of those calls raised (each one is logged)."""
        self._fn, self._args, self._kwargs, self._now = fn, args, kwargs, now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ctrader_sync-every-{next(_numbers)}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        tick = 0 if self._now else 1
        while True:
            delay = start + tick * self.seconds - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            try:
                self._fn(*self._args, **self._kwargs)
            except Exception:
                self.errors += 1
                log.exception("ctrader_sync: the function called by every(%g, %s) raised; the loop goes on",
                              self.seconds, getattr(self._fn, "__qualname__", self._fn))
            self.calls += 1
            # The next tick on the fixed schedule that is still ahead (missed ticks are skipped).
            tick = max(tick + 1, math.floor((time.monotonic() - start) / self.seconds) + 1)

    @property
    def running(self) -> bool:
        """True until :meth:`stop` was called and the thread ended."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the loop: no call starts after this returns (one already running finishes first).

        Waits up to ``timeout`` seconds for a running call to end; callable from the called
        function itself.  Idempotent.  Returns True if the thread has ended.
        """
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return False

    def __enter__(self) -> Every:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ctrader_sync.Every {self.seconds:g} s {getattr(self._fn, '__qualname__', self._fn)} {state}>"


def every(seconds: float, fn: Callable[..., Any], *args: Any, now: bool = True, **kwargs: Any) -> Every:
    """Call ``fn(*args, **kwargs)`` every ``seconds`` on a thread of its own; return the handle.

    The replacement of ``task.LoopingCall(fn, *args).start(seconds, now=True)``: the first call is
    made at once (``now=False``: after ``seconds``), then on a fixed-rate schedule.  Stop it with
    ``handle.stop()`` or by using the handle as a context manager.

    Raises:
        ValueError: ``seconds`` is not a positive finite number.
        TypeError: ``fn`` is not callable.
    """
    return Every(seconds, fn, args, kwargs, now)
