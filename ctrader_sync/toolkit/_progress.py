"""Progress of a long download: a callback, a bar on stderr, or a bar only when it is worth it.

``progress=`` of every download takes:

* a callable ``(done, total)``: called once before the first request with ``(0, total)`` and once
  after every answer; ``total`` is the number of requests expected so far (it can grow while
  the download learns how much data there is) and equals ``done`` at the end;
* ``True``: a bar on stderr (``tqdm`` when it is installed, else a plain text bar);
* ``False``: nothing;
* ``None`` (default): a bar on stderr only when stderr is a terminal and the download has been
  running for more than :data:`AUTO_AFTER` seconds.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["AUTO_AFTER", "Progress", "Reporter", "TextBar", "reporter"]

AUTO_AFTER = 2.0
"""Seconds after which the default progress shows a bar (when stderr is a terminal)."""

Progress = Callable[[int, int], Any] | bool | None
"""What ``progress=`` takes (see the module docs)."""


class Reporter:
    """Receives (done, total) updates; this base class ignores them."""

    def update(self, done: int, total: int) -> None:
        """Record progress."""

    def close(self) -> None:
        """The download ended (successfully or not)."""


class _Callback(Reporter):
    def __init__(self, callback: Callable[[int, int], Any]) -> None:
        self._callback = callback

    def update(self, done: int, total: int) -> None:
        self._callback(done, max(total, done))


class TextBar(Reporter):
    """A one-line text bar redrawn in place on a stream (stderr): ``label [####----] 12/40 requests``."""

    WIDTH = 30
    """Characters of the bar itself."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._started = time.monotonic()
        self._drawn = 0.0
        self._last: tuple[int, int] | None = None
        self._shown = False

    def update(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` requests; redraw at most every ``interval`` seconds (and at the end)."""
        self._last = (done, max(total, done))
        now = time.monotonic()
        if now - self._drawn >= self.interval or done >= total:
            self._draw(now)

    def _draw(self, now: float) -> None:
        if self._last is None:
            return
        done, total = self._last
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} requests {now - self._started:5.1f} s")
        self.stream.flush()
        self._drawn = now
        self._shown = True

    def close(self) -> None:
        """Draw the final state and end the line (nothing when the bar was never drawn)."""
        if self._shown:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


class _Tqdm(Reporter):
    def __init__(self, label: str, tqdm: Any) -> None:
        self._bar = tqdm(total=0, desc=label, unit="req", file=sys.stderr, leave=True)

    def update(self, done: int, total: int) -> None:
        bar = self._bar
        if bar.total != max(total, done):
            bar.total = max(total, done)
        bar.update(done - bar.n)

    def close(self) -> None:
        self._bar.close()


def _bar(label: str) -> Reporter:
    try:
        module = importlib.import_module("tqdm")  # optional: a nicer bar when installed
    except ImportError:
        return TextBar(label)
    return _Tqdm(label, module.tqdm)


class _Auto(Reporter):
    """Shows a bar once the download has run for ``after`` seconds, if stderr is a terminal."""

    def __init__(self, label: str, after: float) -> None:
        self._label = label
        self._deadline = time.monotonic() + after
        self._bar: Reporter | None = None
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            if not self._tty or time.monotonic() < self._deadline:
                return
            self._bar = _bar(self._label)
        self._bar.update(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def reporter(progress: Progress, label: str) -> Reporter:
    """The :class:`Reporter` for a ``progress=`` argument (see the module docs)."""
    if progress is None:
        return _Auto(label, AUTO_AFTER)
    if progress is True:
        return _bar(label)
    if progress is False:
        return Reporter()
    if callable(progress):
        return _Callback(progress)
    raise TypeError(f"progress must be a callable(done, total), True, False or None, not {type(progress).__name__}")
