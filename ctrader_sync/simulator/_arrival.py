"""When a request reached this host: the kernel's receive timestamp of a socket's next unread bytes.

The request limits count requests at their arrival, as the real server does.  The simulator's I/O
thread may get to a socket long after the bytes arrived (a loaded machine, the GIL: 70 ms and more
were measured), and stamping them when read squeezes requests the client spaced over more than a
second into less than one, so a well-behaved client gets ``REQUEST_FREQUENCY_EXCEEDED``.  Linux
stamps each received segment (``SO_TIMESTAMPNS``); peeking at the head of the receive queue before
each TLS record is read gives the time its bytes arrived.  Where the kernel has no timestamp (other
systems, or data merged into one segment stamped at its newest part) the time read is used, which
is never earlier than the arrival.
"""

from __future__ import annotations

import platform
import socket
import ssl
import struct
import sys
import time

__all__ = ["ARRIVAL_STAMPS", "ArrivalClock", "arrival_time", "enable_arrival_stamps"]

# Python's socket module does not export it; 35 on every Linux architecture below (not on alpha,
# parisc, sparc).  The kernel answers with an SCM_TIMESTAMPNS message of the same number.
_LINUX_SO_TIMESTAMPNS_MACHINES = ("x86_64", "amd64", "i386", "i686", "aarch64", "arm", "riscv", "ppc", "s390")
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", None)
if _SO_TIMESTAMPNS is None and sys.platform == "linux" and \
        platform.machine().lower().startswith(_LINUX_SO_TIMESTAMPNS_MACHINES):
    _SO_TIMESTAMPNS = 35
_ANCILLARY_SIZE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_MAX_AGE = 60.0  # an older stamp means the wall clock jumped: not trusted

ARRIVAL_STAMPS = _SO_TIMESTAMPNS is not None and _ANCILLARY_SIZE > 0
"""Whether this system can stamp requests at their arrival (else: when read)."""


def enable_arrival_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; False where it cannot."""
    if not ARRIVAL_STAMPS:
        return False
    assert _SO_TIMESTAMPNS is not None
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def arrival_time(sock: socket.socket, now: float) -> float:
    """The monotonic time at which the next unread bytes of ``sock`` arrived (``now``: the
    monotonic time of the call, returned when the kernel has no stamp or nothing is queued).

    Reads nothing (``MSG_PEEK`` on the raw socket, below any TLS layer).
    """
    try:
        _, ancillary, _, _ = socket.socket.recvmsg(sock, 1, _ANCILLARY_SIZE, socket.MSG_PEEK)
    except (OSError, ValueError):  # nothing queued (non-blocking), or the socket is closed
        return now
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET or kind != _SO_TIMESTAMPNS:
            continue
        if len(data) >= 16:
            sec, nsec = struct.unpack("@qq", data[:16])
        elif len(data) >= 8:  # pragma: no cover - 32-bit time_t and long
            sec, nsec = struct.unpack("@ll", data[:8])
        else:  # pragma: no cover - not a timespec
            return now
        age = time.time() - (sec + nsec / 1e9)
        return now - age if 0.0 <= age < _MAX_AGE else now
    return now


class ArrivalClock:
    """The arrival times of what one connection reads, never decreasing (its I/O thread only)."""

    def __init__(self, sock: socket.socket, enabled: bool = True) -> None:
        self.enabled = enabled and enable_arrival_stamps(sock)
        self._last = 0.0

    def next(self, sock: ssl.SSLSocket) -> float:
        """The arrival time of what the next ``sock.recv`` returns (the time now if unknown)."""
        now = time.monotonic()
        if not self.enabled:
            return now
        if sock.pending():  # the rest of a record TLS already holds
            return self._last or now
        self._last = max(arrival_time(sock, now), self._last)
        return self._last
