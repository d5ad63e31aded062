"""``Reader``: takes bytes off the current link, decodes them and hands the frames up.

Two kinds of thread read a link, one at a time (whoever holds the **read token**):

* the **reader thread**, for every connection the supervisor attaches;
* a **caller** blocked in ``result()`` (:meth:`Reader.assist`): it reads the socket itself until
  its answer is in.  A round trip then costs one wake-up (the caller's, by the kernel) instead of
  two (the reader thread's, then the caller's).  The reader thread, asked through a wake-up
  socket, hands over the token and stays parked (polling every 2 ms with a plain sleep) until the
  caller is done and 2 ms longer, so the next caller of a request/answer loop finds the token free.

Decoded frames go up through ``handle(link, frames)`` (inbound routing), handed to the reader when
it was built; a broken stream ends the link (:meth:`Link.lose`) with the reason: a
``ProtocolError`` for bytes that break the framing, ``TruncatedStreamError`` when the peer closed
the stream inside a frame, ``ConnectionLostError`` for any other end; TLS bytes to send (a key
update) wake the writer through ``wake_writer``.

Locks: the read token (held while reading; the core lock may be taken under it, never the
reverse); ``_park`` (a condition the parked reader thread waits on; guards ``_link`` and
``_stopping``); ``_lead_lock`` (guards ``_leading``: one caller leads at a time).  ``_park`` and
``_lead_lock`` are leaves.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from ._link import Link
from ._pending import RequestFuture
from ._tls import Interrupted
from ._validate import PROCESS, foreign_process
from .errors import ConnectionLostError, ProtocolError, TruncatedStreamError

__all__ = ["Reader"]

log = logging.getLogger("ctrader_sync")

_WAITING = ("PENDING", "RUNNING")
_LEAD_GRACE = 0.002
"""Seconds the reader thread stays parked after a caller read its own answer (see Reader.assist)."""


def _drain(sock: socket.socket) -> None:
    """Read and discard what a non-blocking wake-up socket holds."""
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass


class Reader:
    """The reader thread and the caller-assisted read of one client."""

    def __init__(self, handle: Callable[[Link, list[Any]], None], wake_writer: Callable[[], None],
                 flush: Callable[[Link], None], where: str) -> None:
        self._handle = handle
        self._wake_writer = wake_writer
        self._flush = flush
        self._where = where
        self.io_idents: frozenset[int | None] = frozenset()
        """The client's own threads: they never read for themselves (set once they started)."""
        self._link: Link | None = None
        self._stopping = False
        self._pid = PROCESS.pid
        self.crash: Callable[[str, BaseException], None] | None = None
        """Told when the reader thread fails unexpectedly (the supervisor's ``crash``)."""
        # Held by whoever reads the link (one reader at a time, so the stream is decoded in
        # order); the core lock may be taken under it, never the reverse.
        # (re-entrant only so that an interrupted caller can tell that it holds it: see _abandon)
        self._read_token = threading.RLock()
        self._park = threading.Condition(threading.Lock())  # guards _link, _stopping; a leaf
        self._lead_lock = threading.Lock()  # guards _leading (one caller leads); a leaf
        self._leading: bool | int = False  # the thread id of the caller that leads, or False
        self._lead_end = 0.0
        self._yield_r, self._yield_w = socket.socketpair()
        self._yield_r.setblocking(False)

    def attach(self, link: Link) -> None:
        """Read ``link`` from now on (a new connection; the previous one is lost)."""
        with self._park:
            self._link = link
            self._park.notify_all()

    def stop(self) -> None:
        """Make the reader thread return, and callers stop assisting."""
        with self._park:
            self._stopping = True
            self._park.notify_all()

    def close_sockets(self) -> None:
        """Release the wake-up sockets (once no thread can use them)."""
        self._yield_r.close()
        self._yield_w.close()

    # -- the reader thread ----------------------------------------------------------------------

    def run(self) -> None:
        """The reader thread: read each attached link until it is lost (until :meth:`stop`); an
        unexpected exception ends the client's requests through ``crash`` (set by the client)."""
        try:
            self._run()
        except BaseException as exc:
            if self.crash is not None:
                self.crash("reader", exc)

    def _run(self) -> None:
        number = 0
        park = self._park
        while True:
            with park:
                while not self._stopping and (self._link is None or self._link.number == number):
                    park.wait(1.0)
                if self._stopping:
                    return
                link = self._link
                assert link is not None
                number = link.number
            self._read_link(link)

    def _read_link(self, link: Link) -> None:
        tls = link.tls
        token = self._read_token
        yield_r = self._yield_r
        sleep, monotonic = time.sleep, time.monotonic
        while True:
            # A caller reads its own answer: stay out of the way until it is done, and a moment
            # longer, so that the next caller of a request/answer loop finds the token free.  A
            # plain sleep, not a condition: this polls every 2 ms while callers keep reading, and
            # Condition.wait() costs ~10x more per wake-up (a new lock each time).  stop() and a
            # lost link are seen within 2 ms.
            while not self._stopping and not link.lost:
                if self._leading:
                    sleep(_LEAD_GRACE)
                    continue
                left = self._lead_end + _LEAD_GRACE - monotonic()
                if left <= 0:
                    break
                sleep(left)
            with token:
                try:
                    ready = tls.wait_readable(1.0, yield_r)
                except Interrupted:
                    return
                except OSError:
                    return  # the connection was closed by Link.lose()
                if ready == 2:
                    _drain(yield_r)
                    continue  # hand the token over (released at the end of this block)
                if not ready:
                    if link.lost:
                        return
                    continue
                if not self.read_once(link):
                    return

    def read_once(self, link: Link) -> bool:
        """Read and handle what the socket has (the caller holds the read token).

        Returns False once the link is lost (the caller stops reading it).
        """
        if link.lost:
            return False
        tls = link.tls
        try:
            data = tls.recv_nowait()
        except EOFError as exc:
            reason: BaseException = ConnectionLostError(str(exc))
            try:
                link.codec.eof()  # the stream must not end inside a frame
            except TruncatedStreamError as truncated:
                reason = TruncatedStreamError(f"{truncated}: {exc}")
            link.lose(reason)
            return False
        except (OSError, ssl.SSLError) as exc:
            if not link.lost:
                link.lose(ConnectionLostError(f"connection error: {exc}"))
            return False
        if data is None:
            return True  # another reader took it
        link.last_rx = time.monotonic()
        if tls.flush_needed:
            self._wake_writer()
        if not data:
            return True
        try:
            frames = link.codec.feed(data)
        except ProtocolError as exc:
            self._handle(link, getattr(exc, "frames", []))
            log.warning("ctrader_sync: protocol error from %s: %s; reconnecting", self._where, exc)
            link.lose(exc)
            return False
        if frames:
            self._handle(link, frames)
        return True

    # -- a caller reads its own answer ------------------------------------------------------------

    def assist(self, future: RequestFuture, deadline: float | None) -> None:
        """Let a caller blocked in ``result()`` read the link itself until its answer is in.

        The reader thread, asked through a wake-up socket, hands over the read token and stays out
        of ``select`` until the caller is done (were both waiting on the socket, the reader's
        needless wake-up would contend for the GIL on the critical path).  Only one caller leads at
        a time, only on a live link, and never a thread of the client's own; otherwise the caller
        simply waits for the reader thread.  Before reading, the caller writes what is queued
        (``flush``), so it does not wait for the writer thread to wake.
        """
        if self._pid != PROCESS.pid:
            raise foreign_process(self._pid)  # the parent's socket: never read it here
        link = self._link
        if link is None or link.lost or threading.get_ident() in self.io_idents:
            return
        try:
            self._lead(future, link, deadline)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """The caller was interrupted (Ctrl-C) at any point of :meth:`assist`: give back what it may
        hold, so the reader thread and the next caller go on (the token, the lead)."""
        token = self._read_token
        while token._is_owned():  # type: ignore[attr-defined]
            token.release()
        with self._lead_lock:
            if self._leading == threading.get_ident():
                self._leading = False
                self._lead_end = time.monotonic()
        with self._park:
            self._park.notify_all()

    def _lead(self, future: RequestFuture, link: Link, deadline: float | None) -> None:
        """:meth:`assist`, once the caller may read (see there)."""
        lead = self._lead_lock
        # ``with``, not acquire()/try: an interrupt (Ctrl-C) right after acquire() returned would
        # leave the lock held for good (see _abandon).
        with lead:
            if self._leading or self._stopping:
                return
            self._leading = threading.get_ident()
        token = self._read_token
        try:
            self._flush(link)
            if not token.acquire(blocking=False):
                try:
                    self._yield_w.send(b"y")  # the reader thread is in select(): ask it to step aside
                except OSError:
                    return
                while not token.acquire(timeout=0.05):
                    if future._state not in _WAITING or link.lost or (
                            deadline is not None and time.monotonic() >= deadline):
                        return
            try:
                self._read_for(future, link, deadline)
            finally:
                token.release()
        finally:
            with lead:
                self._leading = False
                self._lead_end = time.monotonic()

    def _read_for(self, future: RequestFuture, link: Link, deadline: float | None) -> None:
        """Read ``link`` until ``future`` is done, the link is lost or ``deadline`` passed (the
        caller holds the read token)."""
        tls = link.tls
        while future._state in _WAITING and not link.lost:
            wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if wait <= 0:
                return
            try:
                if not tls.wait_readable(wait):
                    continue
            except (Interrupted, OSError):
                return
            try:
                if not self.read_once(link):
                    return
            except Exception as exc:
                # A bug met while reading (the codec, a handler): the same one would meet the
                # reader thread next, so the client ends as it would there (item 2), and the
                # caller sees its future's error, not the bare exception.
                if self.crash is None:
                    raise
                self.crash("reader", exc)
                return
            except BaseException as exc:
                # KeyboardInterrupt (Ctrl-C in a notebook) between taking bytes off the socket
                # and handing out what they held would leave the stream half-consumed: drop
                # the link (in-flight requests fail, queued ones go on the next connection).
                link.lose(ConnectionLostError(
                    f"interrupted ({type(exc).__name__}) while reading the connection"))
                raise
