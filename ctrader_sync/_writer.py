"""``Writer``: moves the bytes of requests the outbox lets go onto the current link.

Three ways a frame leaves, all under the same limits and never two at once (the outbox's
``writing`` flag, set under the core lock, says a thread is writing):

* the **writer thread** batches up to 256 frames (256 KiB) per TLS write, and sends a heartbeat
  when nothing was written for ``heartbeat_interval`` seconds;
* an **inline write**: ``send()`` on an idle client writes its own frame from the caller's thread
  (the outbox decides; see ``Outbox.enqueue``);
* a **caller's flush**: a caller about to wait for its answer writes what is queued itself
  (:meth:`Writer.flush_from_caller`, called by the reader's assist).

Inline writes and flushes never block: what the socket does not take now stays in the TLS
channel's backlog, and the writer thread sends it.  A failed write ends the link
(:meth:`Link.lose`).  No lock of its own: the writer works under the outbox's core lock and
writes outside it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

from ._link import Link
from ._outbox import Outbox
from ._pending import EXPECT_NOTHING, Request
from ._tls import Interrupted
from .errors import ConnectionLostError

__all__ = ["Writer"]

log = logging.getLogger("ctrader_sync")


class Writer:
    """The writer thread, inline writes and the caller's flush of one client."""

    def __init__(self, outbox: Outbox, heartbeat: bytes, heartbeat_interval: float) -> None:
        self._outbox = outbox
        self._heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval
        self._stopping = False  # under the core lock
        self.crash: Callable[[str, BaseException], None] | None = None
        """Told when the writer thread fails unexpectedly (the supervisor's ``crash``)."""

    def stop(self) -> None:
        """Make the writer thread return (it is woken at once)."""
        with self._outbox.wcond:
            self._stopping = True
            self._outbox.wcond.notify_all()

    def write_inline(self, link: Link, batch: list[Request]) -> None:
        """Write claimed requests from the caller's thread without blocking (the caller holds the
        outbox's ``writing``); whatever the socket does not take now is left to the writer thread.

        Interrupted (Ctrl-C) before the write is released, it releases nothing itself: the caller's
        handler does (:meth:`abandon`), so an interrupt at any line leaves no claim behind."""
        data = batch[0].frame if len(batch) == 1 else b"".join([r.frame for r in batch])
        try:
            complete = link.tls.send_nowait(data)
        except Interrupted:
            complete = True
        except (OSError, ssl.SSLError) as exc:
            complete = True
            link.lose(ConnectionLostError(f"write failed: {exc}"))
        outbox = self._outbox
        with outbox.lock:  # not acquire()/try: an interrupt right after acquire() would leave it held
            outbox.done_writing(batch, complete)
        for request in batch:
            if request.expect == EXPECT_NOTHING:
                request._finish(None, None)

    def flush_from_caller(self, link: Link) -> None:
        """Write what is queued from the caller's thread before it waits (one TLS write, no hand-off
        to the writer thread); what the socket does not take now is left to the writer."""
        outbox = self._outbox
        if not outbox.queue or outbox.writing:
            return
        try:
            with outbox.lock:
                if outbox.writing or link.lost or not link.ready:
                    return
                outbox.writing = threading.get_ident()  # claimed before anything is taken
                outbox.writing_link = link
                now = time.monotonic()
                batch, _ = outbox.take_batch(link, now)
                if not batch:
                    outbox.writing = False
                    return
                outbox.last_write = now
            self.write_inline(link, batch)
        except BaseException:
            self.abandon()
            raise

    def abandon_send(self, request: Request) -> None:
        """``send()`` raised (an error, or Ctrl-C at any line): release the write if this thread
        held it (see :meth:`abandon`), and cancel the request if it was not written: the caller has
        no future for it."""
        self.abandon()
        if request._state == "PENDING":
            request.cancel()

    def abandon(self) -> None:
        """The calling thread was interrupted (Ctrl-C, or any exception) while it may have held the
        write: release it, and drop the link it was writing to (part of a TLS record may have left,
        and requests were claimed as written: they fail with ``ConnectionLostError``)."""
        link = self._outbox.release_write(threading.get_ident())
        if link is not None:
            log.warning("ctrader_sync: interrupted while writing; the connection is dropped")
            link.lose(ConnectionLostError("interrupted while writing the request (it may have been written)"))

    def run(self) -> None:
        """The writer thread (until :meth:`stop`); an unexpected exception ends the client's
        requests through ``crash`` (set by the client) instead of stranding them."""
        try:
            self._run()
        except BaseException as exc:
            if self.crash is not None:
                self.crash("writer", exc)

    def _run(self) -> None:
        outbox = self._outbox
        wcond = outbox.wcond
        heartbeat = self._heartbeat
        while True:
            with wcond:
                while True:
                    if self._stopping:
                        return
                    link = outbox.link
                    wait = 1.0
                    if link is not None and not link.lost and not outbox.writing:
                        now = time.monotonic()
                        batch, wait = outbox.take_batch(link, now)
                        beat = (self.heartbeat_interval > 0
                                and now - outbox.last_write >= self.heartbeat_interval)
                        if batch or beat or link.tls.flush_needed or link.tls.backlog:
                            outbox.writing = True
                            break
                        if self.heartbeat_interval > 0:
                            wait = min(wait, outbox.last_write + self.heartbeat_interval - now)
                    outbox.writer_waiting = True
                    wcond.wait(max(0.001, min(wait, 1.0)))
                    outbox.writer_waiting = False
                outbox.last_write = now
            if batch:
                data = batch[0].frame if len(batch) == 1 else b"".join([r.frame for r in batch])
            else:
                data = heartbeat if beat else b""
            try:
                link.tls.send(data)
            except Interrupted:
                return
            except (OSError, ssl.SSLError) as exc:
                link.lose(ConnectionLostError(f"write failed: {exc}"))
                continue
            finally:
                with outbox.lock:
                    outbox.writing = False
                    outbox.stamp_written(batch)
            for request in batch:
                if request.expect == EXPECT_NOTHING:
                    request._resolve(None)
            if log.isEnabledFor(logging.DEBUG) and batch:
                log.debug("ctrader_sync: wrote %d request(s): %s", len(batch),
                          ", ".join(f"{r.payloadType}/{r.cid}" for r in batch[:8]))
