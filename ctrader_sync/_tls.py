"""One TLS connection that a reader thread and a writer thread share safely.

OpenSSL forbids using one ``SSL`` object from two threads at once, and ``ssl.SSLSocket`` has no
lock.  So the TLS state machine is an ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` s, guarded by one
lock held only for the short in-memory calls; the raw socket is non-blocking and is read only by
the reader and written only by the writer, outside that lock.  Every wait is a ``select`` that
also watches a wake-up socket, so ``close()`` interrupts any of them at once.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any

from .errors import ConnectError

__all__ = ["TLSConnection", "client_ssl_context", "default_ssl_context", "open_tls_connection"]

log = logging.getLogger("ctrader_sync")

_READ_SIZE = 256 * 1024


def _select(rlist: list[socket.socket], wlist: list[socket.socket],
            timeout: float) -> tuple[list[socket.socket], list[socket.socket]]:
    """``select.select`` that reports a socket closed by another thread as an ``OSError``."""
    try:
        r, w, _ = select.select(rlist, wlist, [], timeout)
    except ValueError:  # a socket was closed (fileno() == -1)
        raise OSError(errno.EBADF, "connection closed") from None
    return r, w


def default_ssl_context() -> ssl.SSLContext:
    """The TLS settings the client and :class:`~ctrader_sync.Auth` use by default (one definition).

    Certificates are verified against the ``certifi`` CA bundle, the host name is checked, and
    protocol versions older than TLS 1.2 are refused.
    """
    import certifi

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(given: ssl.SSLContext | None, skip_verification: bool, host: str,
                       port: int) -> ssl.SSLContext:
    """The context a client uses: ``given``, or the verifying default; with ``skip_verification``
    one that accepts any certificate.  Either way of not verifying logs a warning."""
    if skip_verification:
        log.warning("ctrader_sync: TLS verification is OFF for %s:%d; anyone on the path can read "
                    "and alter this session, credentials included", host, port)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if given is not None and (given.verify_mode == ssl.CERT_NONE or not given.check_hostname):
        log.warning("ctrader_sync: the ssl_context given for %s:%d does not verify the server's "
                    "certificate%s; use dangerously_skip_tls_verification=True to say so explicitly",
                    host, port, "" if given.verify_mode == ssl.CERT_NONE else " host name")
    return given or default_ssl_context()


class Interrupted(Exception):
    """The wake-up socket fired (the client is closing)."""


class TLSConnection:
    """A connected, handshaken TLS session over a non-blocking socket.

    ``recv()`` is for the reader thread only; ``send()`` for the writer thread only.
    """

    def __init__(self, sock: socket.socket, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, wake: socket.socket) -> None:
        self.sock = sock
        self._ssl = sslobj
        # SSLObject.read/write/pending are thin Python wrappers around the C object CPython keeps
        # in ``_sslobj`` (same methods, same arguments): call it directly on the hot paths, one
        # Python frame less per call (the public object is kept for everything else).
        self._tls: Any = getattr(sslobj, "_sslobj", None) or sslobj
        self._in = incoming
        self._out = outgoing
        self._wake = wake
        # Guards the SSLObject and its BIOs, held only for in-memory calls (never for socket I/O,
        # never while taking another lock): a leaf.
        self._lock = threading.Lock()
        self._closed = False
        self.peer_closed = False
        """The peer sent a TLS close_notify (see :meth:`recv_nowait`)."""
        self.flush_needed = False
        """Set by the reader when TLS produced bytes to send (e.g. a key update); the writer sends them."""
        self.backlog = b""
        """Encrypted bytes an inline :meth:`send_nowait` could not hand to the socket; sent first by
        the next :meth:`send`."""

    @property
    def version(self) -> str | None:
        """Negotiated TLS version, e.g. ``"TLSv1.3"``."""
        return self._ssl.version()

    # -- reader side ------------------------------------------------------------------------

    def wait_readable(self, timeout: float, other: socket.socket | None = None) -> int:
        """Wait until the socket has bytes (or EOF) to read: 1; or ``other`` is readable: 2;
        0 on timeout.

        Raises:
            Interrupted: the client is closing.
            OSError: the socket was closed by another thread.
        """
        if self.peer_closed:
            return 1  # recv_nowait() reports the end
        watch = [self.sock, self._wake] if other is None else [self.sock, self._wake, other]
        ready = _select(watch, [], timeout)[0]
        if not ready:
            return 0
        if self._wake in ready:
            raise Interrupted()
        return 1 if self.sock in ready else 2

    def recv_nowait(self) -> bytes | None:
        """Read what the socket has and return it decrypted (``b""`` if a record is incomplete);
        ``None`` if the socket had nothing (another reader took it).

        Raises:
            EOFError: the peer closed the connection (TLS close or TCP EOF).
            OSError, ssl.SSLError: transport or TLS failure.
        """
        if self.peer_closed:
            raise EOFError("the server closed the TLS session (close_notify)")
        try:
            data = self.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return None
        if not data:
            raise EOFError("the server closed the connection")
        chunks = []
        lock = self._lock
        with lock:  # not acquire()/try: an interrupt right after acquire() would leave it held
            self._in.write(data)
            while True:
                try:
                    chunk = self._tls.read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    raise EOFError("the server closed the TLS session") from None
                if not chunk:
                    # SSLObject.read() returns b"" (it does not raise) once the peer's close_notify
                    # arrived: the session is over even if TCP stays open.  What came before it is
                    # returned now; the next call (at once: see wait_readable) raises EOFError.
                    self.peer_closed = True
                    break
                chunks.append(chunk)
                if not self._in.pending and not self._tls.pending():
                    break  # all consumed: skip the SSLWantReadError a further read would raise
            if self._out.pending:
                self.flush_needed = True
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- writer side ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` and send it, after any backlog (blocks while the peer does not read;
        close interrupts).  Only one thread at a time may call :meth:`send` or :meth:`send_nowait`.

        Raises:
            OSError, ssl.SSLError: transport or TLS failure.
            Interrupted: the client is closing.
        """
        lock = self._lock
        with lock:  # not acquire()/try: an interrupt right after acquire() would leave it held
            if data:
                self._tls.write(data)
            out = self._out.read()
            self.flush_needed = False
        if self.backlog:
            out, self.backlog = self.backlog + out, b""
        self._send_raw(out)

    def send_nowait(self, data: bytes) -> bool:
        """Encrypt ``data`` and give the socket what it takes now, without waiting.

        Returns True if everything was sent; otherwise the rest is kept in :attr:`backlog` for the
        next :meth:`send` (the caller must then wake the writer).
        """
        lock = self._lock
        with lock:  # not acquire()/try: an interrupt right after acquire() would leave it held
            self._tls.write(data)
            out = self._out.read()
            self.flush_needed = False
        if self.backlog:
            out, self.backlog = self.backlog + out, b""
        try:
            sent = self.sock.send(out)
        except BlockingIOError:
            sent = 0
        if sent < len(out):
            self.backlog = out[sent:]
            return False
        return True

    def _send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        sock = self.sock
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                sent = 0
            if sent:
                view = view[sent:]
                continue
            if self._closed:
                raise OSError(errno.EPIPE, "connection closed")
            if _select([self._wake], [sock], 1.0)[0]:
                raise Interrupted()

    # -- both -------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut the socket down (waking a blocked reader or writer) and close it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def open_tls_connection(host: str, port: int, context: ssl.SSLContext, server_hostname: str | None,
                        timeout: float, wake: socket.socket) -> TLSConnection:
    """Connect to ``host:port`` and complete the TLS handshake within ``timeout`` seconds.

    Raises:
        ConnectError: refused, unreachable, timed out, or the TLS handshake/certificate failed
            (the message says which; the cause is chained).
        Interrupted: the wake-up socket fired.
    """
    deadline = time.monotonic() + timeout
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host}: {exc}") from exc
    except (ValueError, TypeError) as exc:  # UnicodeError (IDNA), NUL in the name
        error = ConnectError(f"invalid host name {host!r}: {exc}")
        error.permanent = True  # type: ignore[attr-defined]  # no retry can fix it
        raise error from exc
    last: BaseException | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise OSError(code, f"{errno.errorcode.get(code, code)}: {where}")
            if code:
                remaining = deadline - time.monotonic()
                ready_r, ready_w = _select([wake], [sock], max(0.0, remaining))
                if ready_r:
                    raise Interrupted()
                if not ready_w:
                    raise TimeoutError(f"TCP connect to {where} timed out after {timeout:g} s")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, f"{errno.errorcode.get(code, code)} ({where})")
            return _handshake(sock, context, server_hostname or host, deadline, wake, where, timeout)
        except Interrupted:
            sock.close()
            raise
        except ConnectError:
            sock.close()
            raise
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
    if isinstance(last, ConnectionRefusedError):
        raise ConnectError(f"connection refused by {where}") from last
    raise ConnectError(f"cannot connect to {where}: {last}") from last


def _handshake(sock: socket.socket, context: ssl.SSLContext, server_hostname: str, deadline: float,
               wake: socket.socket, where: str, timeout: float) -> TLSConnection:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        sslobj = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_hostname)
    except (ValueError, TypeError) as exc:  # UnicodeError (IDNA: empty or 64+ char label), NUL
        error = ConnectError(f"invalid server host name {server_hostname!r} for {where}: {exc}")
        error.permanent = True  # type: ignore[attr-defined]  # no retry can fix it
        raise error from exc
    conn = TLSConnection(sock, sslobj, incoming, outgoing, wake)
    try:
        return _handshake_loop(conn, sslobj, incoming, sock, deadline, wake, where, timeout)
    except OSError as exc:  # reset or broken pipe while handshaking (SSLError is handled inside)
        if isinstance(exc, ssl.SSLError):
            raise
        raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc


def _handshake_loop(conn: TLSConnection, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO, sock: socket.socket,
                    deadline: float, wake: socket.socket, where: str, timeout: float) -> TLSConnection:
    while True:
        try:
            sslobj.do_handshake()
            conn.send(b"")  # flush the last handshake bytes
            return conn
        except ssl.SSLWantReadError:
            conn.send(b"")
            remaining = deadline - time.monotonic()
            ready = _select([sock, wake], [], max(0.0, remaining))[0]
            if wake in ready:
                raise Interrupted() from None
            if not ready:
                raise TimeoutError(f"TLS handshake with {where} timed out after {timeout:g} s") from None
            try:
                data = sock.recv(_READ_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectError(f"{where} closed the connection during the TLS handshake") from None
            incoming.write(data)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectError(f"TLS certificate of {where} rejected: {exc.verify_message}") from exc
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
