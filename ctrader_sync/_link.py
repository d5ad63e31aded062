"""``Link``: one live connection, its TLS channel, its decoder and its loss.

A link is built by the supervisor for each connection and handed down to the writer (through the
outbox) and to the reader.  Whoever finds the connection broken (the reader on EOF or a protocol
error, the writer on a failed write, inbound routing on a server-side disconnect, the supervisor
on a silent peer) calls :meth:`Link.lose`; the supervisor's loss handler, handed to the link when
it was built, ends the connection exactly once.  The link itself never calls up otherwise.

State: ``ready`` and ``lost`` are written only under the client's core lock (see ``_outbox``);
``last_rx`` only by whoever holds the read token (see ``_reader``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._codec import TcpProtocol
from ._tls import TLSConnection

__all__ = ["Link"]


class Link:
    """One live connection: its TLS channel, its decoder and its state."""

    __slots__ = ("_on_lost", "codec", "last_rx", "lost", "number", "ready", "reason", "tls")

    def __init__(self, tls: TLSConnection, codec: TcpProtocol, number: int,
                 on_lost: Callable[[Link, BaseException], None]) -> None:
        self.tls = tls
        self.codec = codec
        self.number = number
        self.ready = False      # session recovered: ordinary requests may be written
        self.lost = False
        self.reason: BaseException | None = None
        self.last_rx = time.monotonic()
        self._on_lost = on_lost

    def lose(self, reason: BaseException) -> None:
        """End this connection (once; later calls do nothing): what was written on it fails with
        ``ConnectionLostError``, what was only queued waits for the next connection."""
        self._on_lost(self, reason)

    def __repr__(self) -> str:
        state = "lost" if self.lost else ("ready" if self.ready else "recovering")
        return f"<Link {self.number} {state}>"
