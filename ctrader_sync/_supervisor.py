"""``Supervisor``: the connection life cycle of one client, as an explicit state machine.

::

    NEW --start()--> CONNECTING --TLS up--> RECOVERING --session restored--> READY
                        ^   |                    |                             |
                        |   v (failed)           +------(connection lost)------+
                     BACKING_OFF <-----------------------------+
                        |
                        v (the reconnect policy gives up)
                     GAVE_UP                 any state --close()--> CLOSED

The supervisor thread connects (TLS, with the reconnect policy's backoff), builds a :class:`Link`
for each connection and hands it to the outbox (for the writer) and to the reader, runs the
session recovery (``recover``), then watches the link: it fails requests whose response deadline
passed and ends a link that stayed silent for ``receive_timeout``.  :meth:`Supervisor.lose` is
the one way a link ends; every link is built with it as its loss handler.

Lock: ``state``, ``connections``, ``gave_up``, the outbox's ``link`` and ``Link.ready``/``lost``
change only under the core lock (``_outbox``); ``scond`` announces each change.
"""

from __future__ import annotations

import enum
import logging
import socket
import ssl
import time
from collections.abc import Callable

from ._codec import TcpProtocol
from ._link import Link
from ._outbox import Outbox
from ._pending import Request
from ._reconnect import ReconnectPolicy
from ._tls import Interrupted, open_tls_connection
from ._validate import PROCESS, foreign_process
from .errors import (
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    RequestTimeoutError,
)

__all__ = ["ClientState", "Supervisor"]

log = logging.getLogger("ctrader_sync")


class ClientState(enum.Enum):
    """Where a :class:`~ctrader_sync.Client` is in its life cycle (``Client.state``)."""

    NEW = "new"
    """Made, not started."""
    CONNECTING = "connecting"
    """Opening a TCP + TLS connection."""
    RECOVERING = "recovering"
    """Connected; restoring the session (auth, subscriptions) before ordinary requests go out."""
    READY = "connected"
    """Connected and recovered: requests are written."""
    BACKING_OFF = "backing off"
    """Waiting before the next connection attempt (after a failure or a loss)."""
    GAVE_UP = "gave up"
    """The reconnect policy gave up: requests fail with ``ConnectError``."""
    CLOSED = "closed"
    """``close()`` was called."""


_ENDED = (ClientState.CLOSED, ClientState.GAVE_UP)


def _certificate_failure(error: BaseException | None) -> bool:
    """True for a connect failure no retry is likely to fix: the server's certificate or host name
    was rejected."""
    return isinstance(error, ConnectError) and isinstance(error.__cause__, ssl.SSLCertVerificationError)


class Supervisor:
    """The supervisor thread and the connection state of one client."""

    def __init__(self, outbox: Outbox, attach: Callable[[Link], None], recover: Callable[[int], None],
                 connected: Callable[[], None], disconnected: Callable[[BaseException], None], *,
                 host: str, port: int, ssl_context: ssl.SSLContext, server_hostname: str | None,
                 connect_timeout: float, receive_timeout: float, reconnect: ReconnectPolicy | None,
                 codec: Callable[[], TcpProtocol]) -> None:
        self._outbox = outbox
        self._lock = outbox.lock
        self._scond = outbox.scond
        self._attach = attach
        self._recover = recover
        self._connected = connected
        self._disconnected = disconnected
        self.host, self.port = host, port
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.receive_timeout = receive_timeout
        self.reconnect = reconnect
        self._codec = codec
        self.state = ClientState.NEW
        self.pid = PROCESS.pid
        """The process that made the client (after ``fork()`` the child must not use it)."""
        self.connections = 0
        """How many connections were established so far."""
        self.last_error: BaseException | None = None
        self.gave_up: BaseException | None = None
        self.tick: Callable[[], float] | None = None
        """Fires the session's timers (re-authorization retries, token refresh) from the watch loop;
        returns the seconds until the next one (set by the client)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self.state is ClientState.CLOSED

    def _set(self, state: ClientState) -> None:
        """Move to ``state`` unless closed or given up (under the core lock)."""
        if self.state not in _ENDED:
            self.state = state

    # -- called by the client -------------------------------------------------------------------

    def start(self) -> bool:
        """NEW -> CONNECTING; False if already started.  Raises ``ClientClosedError`` when closed."""
        if self.pid != PROCESS.pid:
            raise foreign_process(self.pid)
        with self._lock:
            if self.state is ClientState.CLOSED:
                raise ClientClosedError("this client is closed; create a new Client")
            if self.state is not ClientState.NEW:
                return False
            self.state = ClientState.CONNECTING
            return True

    def close(self) -> tuple[bool, list[Request], Link | None]:
        """-> CLOSED (under the core lock, which the caller may hold): refuse new requests; return
        whether it was closed already, what was pending, and the current link."""
        with self._lock:
            already = self.state is ClientState.CLOSED
            self.state = ClientState.CLOSED
            link = self._outbox.link
            requests = self._outbox.close()
            self._outbox.wcond.notify_all()
            self._scond.notify_all()
        return already, requests, link

    def interrupt(self) -> None:
        """Wake every blocking wait on a connection (connect, select, a blocked write)."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close_sockets(self) -> None:
        """Release the wake-up sockets (once no thread can use them)."""
        self._wake_r.close()
        self._wake_w.close()

    def wait_connected(self, timeout: float | None) -> None:
        """See :meth:`Client.wait_connected`."""
        if self.pid != PROCESS.pid:
            raise foreign_process(self.pid)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._scond:
            while True:
                link = self._outbox.link
                if link is not None and link.ready:
                    return
                if self.gave_up is not None:
                    raise ConnectError(f"gave up connecting to {self.host}:{self.port}: {self.gave_up}") \
                        from self.gave_up
                if self.state is ClientState.CLOSED:
                    raise ClientClosedError("the client is closed")
                if self.state is ClientState.NEW:
                    raise ConnectError("the client is not started; call start() first")
                if _certificate_failure(self.last_error):
                    # Not transient: say so now (attempts go on by the reconnect policy).
                    raise ConnectError(f"cannot connect to {self.host}:{self.port}: {self.last_error}") \
                        from self.last_error
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    last = f"; last error: {self.last_error}" if self.last_error else ""
                    raise ConnectTimeoutError(
                        f"not connected to {self.host}:{self.port} within {timeout:g} s{last}")
                self._scond.wait(min(remaining, 1.0))

    # -- the supervisor thread ------------------------------------------------------------------

    def run(self) -> None:
        """The supervisor thread: connect, recover, watch; reconnect after a loss (until closed).

        Whatever it raises unexpectedly ends the client's requests (see :meth:`crash`)."""
        try:
            self._run()
        except BaseException as exc:
            self.crash("supervisor", exc)

    def crash(self, role: str, exc: BaseException) -> None:
        """A client thread (``role``) failed unexpectedly: nothing would write, read or watch any
        more, so the client gives up (queued and written requests fail with an error whose cause is
        ``exc``, ``send()`` and ``wait_connected()`` raise ``ConnectError``) instead of leaving its
        futures stranded."""
        if self.state in _ENDED:
            return
        log.error("ctrader_sync: internal error in the %s thread (%s: %s); the client stops", role,
                  type(exc).__name__, exc, exc_info=exc)
        reason = ConnectError(f"the client stopped after an internal error in its {role} thread: {exc!r}")
        reason.__cause__ = exc
        link = self._outbox.link
        self._give_up(reason)
        if link is not None:
            link.lose(reason)

    @property
    def _stopped(self) -> bool:
        """Closed or given up: the supervisor thread ends."""
        return self.state in _ENDED

    def _run(self) -> None:
        attempt = 0  # consecutive failed connects (max_attempts counts these)
        lost = 0  # 1 once a connection was lost: the delays go on growing from the loss's
        while not self._stopped:
            if attempt and not self._back_off(attempt, attempt + lost):
                return
            with self._lock:
                self._set(ClientState.CONNECTING)
            try:
                tls = open_tls_connection(self.host, self.port, self._ssl_context, self._server_hostname,
                                          self.connect_timeout, self._wake_r)
            except Interrupted:
                return
            except ConnectError as exc:
                if getattr(exc, "permanent", False):  # a host name TLS cannot use: no retry helps
                    self.last_error = exc
                    self._give_up(exc)
                    return
                attempt += 1
                self.last_error = exc
                # The first failure of a streak is a warning; the retries that follow are info.
                log.log(logging.WARNING if attempt == 1 else logging.INFO,
                        "ctrader_sync: connect to %s:%d failed (attempt %d): %s", self.host, self.port, attempt, exc)
                with self._scond:
                    self._set(ClientState.BACKING_OFF)
                    self._scond.notify_all()
                continue
            link = Link(tls, self._codec(), self.connections + 1, self.lose)
            with self._scond:
                if self._stopped:
                    tls.close()
                    return
                self.connections += 1
                self._outbox.attach(link)
                self.last_error = None
                self._set(ClientState.RECOVERING)
                self._attach(link)
                self._scond.notify_all()
                self._outbox.wcond.notify()
            log.info("ctrader_sync: connected to %s:%d (%s, connection %d)", self.host, self.port,
                     tls.version, link.number)
            self._connected()
            try:
                self._recover(link.number)
            except Exception as exc:
                if not link.lost:
                    log.warning("ctrader_sync: session recovery failed: %s", exc)
                    link.lose(ConnectionLostError(f"session recovery failed: {exc}"))
            with self._lock:
                if not link.lost:
                    link.ready = True
                    self._set(ClientState.READY)
                    self._scond.notify_all()
                    self._outbox.wcond.notify()
            self._watch(link)
            if self._stopped:
                return
            # The loss itself is no failed attempt: the policy's max_attempts counts reconnect
            # attempts, as many after a loss as at start (the first waits delay(1) all the same).
            attempt, lost = 0, 1
            self.last_error = link.reason
            if not self._back_off(0, 1):
                return

    def _back_off(self, attempt: int, step: int) -> bool:
        """Wait the policy's delay number ``step`` after ``attempt`` consecutive failed connects
        (0: right after a lost connection, which is no failed attempt); False to stop (gave up or
        closed)."""
        policy = self.reconnect
        if policy is None or (attempt and policy.gives_up(attempt)):
            self._give_up(self.last_error or ConnectError("connection lost"))
            return False
        delay = policy.delay(step)
        log.info("ctrader_sync: reconnecting to %s:%d in %.2f s (attempt %d)",
                 self.host, self.port, delay, attempt + 1)
        with self._scond:
            self._set(ClientState.BACKING_OFF)
            end = time.monotonic() + delay
            while not self._stopped and time.monotonic() < end:
                self._scond.wait(min(1.0, end - time.monotonic()))
        return not self._stopped

    def _watch(self, link: Link) -> None:
        """Until the link is lost: fail timed-out requests, detect a silent (dead) peer."""
        outbox = self._outbox
        while True:
            dead = False
            timer = self.tick() if self.tick is not None else 1.0  # session timers, outside the lock
            with self._scond:
                if self._stopped or link.lost:
                    return
                now = time.monotonic()
                expired, wait = outbox.expire(now)
                wait = min(wait, timer)
                if self.receive_timeout:
                    silent = now - link.last_rx
                    if silent >= self.receive_timeout:
                        dead = True
                    else:
                        wait = min(wait, self.receive_timeout - silent)
                if not expired and not dead:
                    self._scond.wait(max(0.001, wait))
                    continue
            for request in expired:
                request._fail(RequestTimeoutError(
                    f"no answer to {request.cid} (payload type {request.payloadType}) within "
                    f"{request.timeout:g} s of writing it"))
            if dead:
                log.warning("ctrader_sync: nothing received from %s:%d for %.1f s; reconnecting",
                            self.host, self.port, self.receive_timeout)
                link.lose(ConnectionLostError(
                    f"nothing received for {self.receive_timeout:g} s (half-open connection)"))

    def lose(self, link: Link, reason: BaseException) -> None:
        """End a link once: fail what was written on it, keep what was not, notify."""
        outbox = self._outbox
        with self._lock:
            if link.lost:
                return
            link.lost = True
            link.reason = reason
            if outbox.link is link:
                outbox.link = None
                self._set(ClientState.BACKING_OFF)
            written = outbox.take_written()
            self._scond.notify_all()
            outbox.wcond.notify()
        link.tls.close()
        if not isinstance(reason, ClientClosedError):
            log.info("ctrader_sync: connection %d to %s:%d lost: %s", link.number, self.host, self.port, reason)
        for request in written:
            error = ConnectionLostError(
                f"connection lost after {request.cid} was written and before its answer ({reason}); "
                "it was not re-sent")
            error.__cause__ = reason
            request._fail(error)
        self._disconnected(reason)

    def _give_up(self, reason: BaseException) -> None:
        """No more reconnects: fail everything queued."""
        with self._lock:
            self.gave_up = reason
            self._set(ClientState.GAVE_UP)
            requests = self._outbox.give_up(reason)
            self._scond.notify_all()
        log.warning("ctrader_sync: not reconnecting to %s:%d: %s", self.host, self.port, reason)
        for request in requests:
            error: BaseException
            if self.connections:
                error = ConnectionLostError(f"connection lost and not re-established: {reason}")
            else:
                error = ConnectError(f"could not connect to {self.host}:{self.port}: {reason}")
            error.__cause__ = reason
            request._fail(error)
