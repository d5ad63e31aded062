"""``Client``: one TLS connection to the cTrader Open API, shared by four named threads.

* **supervisor** connects (TLS, with backoff), recovers the session, watches for a dead peer and
  for request timeouts, and reconnects after any loss;
* **writer** takes requests from the queues under the rate limits, batches frames into one TLS
  write, and sends heartbeats when idle;
* **reader** decodes frames, resolves futures by ``clientMsgId`` and hands events to the dispatcher
  in batches;
* **dispatcher** runs user callbacks in arrival order (see ``_dispatch``).

All shared state lives under one lock (``_lock``) with two conditions: ``_wcond`` wakes the writer,
``_scond`` wakes the supervisor, the reader and ``wait_connected`` callers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from ._codec import DEFAULT_MAX_FRAME_SIZE, TcpProtocol
from ._dispatch import Dispatcher
from ._events import EventStream
from ._pending import EXPECT_EXECUTION, EXPECT_NOTHING, EXPECT_RESPONSE, Request, RequestFuture
from ._ratelimit import SlidingWindowLimiter
from ._reconnect import ReconnectPolicy
from ._session import SESSION_TYPES, SessionState
from ._tls import Interrupted, TLSConnection, default_ssl_context, open_tls_connection
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    InvalidRequestError,
    ProtocolError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    server_error_from_message,
)
from .messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOARefreshTokenReq,
    ProtoOARefreshTokenRes,
)
from .messages.OpenApiModelMessages_pb2 import ProtoOACtidTraderAccount
from .protobuf import HISTORICAL_PAYLOAD_TYPES, REGISTRY, Protobuf

__all__ = ["HISTORICAL_PAYLOAD_TYPES", "Client", "EventHandle"]

log = logging.getLogger("ctrader_sync")

# Payload types (numbers are from the schema's payloadType defaults).
_ERROR_RES = 50
_HEARTBEAT = 51
_OA_ERROR_RES = 2142
_ORDER_ERROR_EVENT = 2132
_EXECUTION_EVENT = 2126
_CLIENT_DISCONNECT_EVENT = 2148
_SESSION_EVENTS = frozenset({2147, 2164})  # token invalidated, account disconnected
_SPECIAL_TYPES = _SESSION_EVENTS | {_CLIENT_DISCONNECT_EVENT}
_ERROR_TYPES = frozenset({_ERROR_RES, _OA_ERROR_RES, _ORDER_ERROR_EVENT})


_TRADING = frozenset({"ProtoOANewOrderReq", "ProtoOACancelOrderReq", "ProtoOAAmendOrderReq",
                      "ProtoOAAmendPositionSLTPReq", "ProtoOAClosePositionReq"})


def _drain(sock: socket.socket) -> None:
    """Read and discard what a non-blocking wake-up socket holds."""
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _request_kinds() -> dict[type[Message], tuple[int, int]]:
    kinds: dict[type[Message], tuple[int, int]] = {}
    for pt, cls in REGISTRY.items():
        name = cls.__name__
        if name in _TRADING:
            kinds[cls] = (pt, EXPECT_EXECUTION)
        elif name.endswith("Req"):
            kinds[cls] = (pt, EXPECT_RESPONSE)
        elif pt == _HEARTBEAT:
            kinds[cls] = (pt, EXPECT_NOTHING)
    return kinds


_KINDS = _request_kinds()
_client_numbers = itertools.count(1)
_INF = float("inf")
_WAITING = ("PENDING", "RUNNING")
_LEAD_GRACE = 0.002
"""Seconds the reader thread stays parked after a caller read its own answer (see _assist_read)."""
_MAX_BATCH_BYTES = 256 * 1024
_MAX_BATCH_FRAMES = 256


class EventHandle:
    """Returned by :meth:`Client.on`: ``remove()`` unregisters the callback (idempotent)."""

    __slots__ = ("_callback", "_client", "_key")

    def __init__(self, client: Client, key: int | None, callback: Callable[..., Any]) -> None:
        self._client = client
        self._key = key
        self._callback = callback

    def remove(self) -> None:
        """Stop calling the callback. Safe to call more than once."""
        self._client._remove_handler(self._key, self._callback)


class _Conn:
    """One live connection: its TLS channel, its decoder and its state."""

    __slots__ = ("codec", "last_rx", "lost", "number", "ready", "reason", "tls")

    def __init__(self, tls: TLSConnection, codec: TcpProtocol, number: int) -> None:
        self.tls = tls
        self.codec = codec
        self.number = number
        self.ready = False      # session recovered: ordinary requests may be written
        self.lost = False
        self.reason: BaseException | None = None
        self.last_rx = time.monotonic()


class Client:
    """A thread-safe client for one cTrader Open API connection.

    ``send()`` returns a :class:`concurrent.futures.Future` that resolves to the answer (the
    extracted message, e.g. ``ProtoOAVersionRes``) or fails with a typed error from
    :mod:`ctrader_sync.errors`.  The client connects in the background after :meth:`start`,
    reconnects by itself after any loss, and never re-sends a request that may have been written.

    Args:
        host: server name, e.g. ``EndPoints.PROTOBUF_DEMO_HOST``.
        port: server port, e.g. ``EndPoints.PROTOBUF_PORT`` (5035).
        protocol: the codec class (``TcpProtocol``, as in the old SDK); may be omitted.
        numberOfMessagesToSendPerSecond: the general request limit per sliding second (server: 50).
            ``None`` turns all client-side limits off.
        historical_per_second: the limit for historical requests (trendbars, ticks, deals...; server: 5).
        ssl_context: TLS settings; the default verifies the server with certifi's CA bundle, checks the
            host name, sends SNI and requires TLS >= 1.2.
        connect_timeout: seconds for TCP connect plus TLS handshake.
        response_timeout: seconds to wait for an answer, counted from the moment a request is written.
        heartbeat_interval: send a heartbeat when nothing was written for this long (0/None: never).
        reconnect: a :class:`ReconnectPolicy`, or ``None`` to never reconnect.
        receive_timeout: treat the connection as dead (half-open) after this long without receiving
            anything (default 30 s, three server heartbeat periods; 0/None: never).
        server_hostname: name to verify and send as SNI (default: ``host``).
        max_frame_size: the largest frame accepted from the server.
        max_pending: the most requests queued or awaiting an answer; beyond it ``send()`` raises
            :class:`~ctrader_sync.errors.QueueFullError`.
        max_events: the most pushed events waiting for callbacks; beyond it new events are dropped and
            counted in :attr:`dropped_events`.
        rate_limit_retries: how often a request refused with ``REQUEST_FREQUENCY_EXCEEDED`` /
            ``BLOCKED_PAYLOAD_TYPE`` is re-sent before it fails with ``RateLimitError``.
        rate_limit_margin: extra seconds added to the 1 s window to absorb network and scheduling
            jitter (default 50 ms: at most 50 requests per 1.05 s at full speed).
        dangerously_skip_tls_verification: accept any certificate and host name. Never use it with real
            credentials; it logs a warning.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol: type[TcpProtocol] | Callable[..., TcpProtocol] = TcpProtocol,
        numberOfMessagesToSendPerSecond: int | None = 50,
        historical_per_second: int | None = 5,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        response_timeout: float = 30.0,
        heartbeat_interval: float | None = 10.0,
        reconnect: ReconnectPolicy | None = ReconnectPolicy(),  # noqa: B008 - immutable value
        *,
        receive_timeout: float | None = 30.0,
        server_hostname: str | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_pending: int = 1_000_000,
        max_events: int = 100_000,
        rate_limit_retries: int = 3,
        rate_limit_margin: float = 0.05,
        dangerously_skip_tls_verification: bool = False,
    ) -> None:
        if connect_timeout <= 0 or response_timeout <= 0:
            raise ValueError("connect_timeout and response_timeout must be positive")
        self.host = host
        self.port = int(port)
        self.connect_timeout = float(connect_timeout)
        self.response_timeout = float(response_timeout)
        self.heartbeat_interval = float(heartbeat_interval or 0.0)
        self.receive_timeout = float(receive_timeout or 0.0)
        self.reconnect = reconnect
        self.server_hostname = server_hostname
        self.max_frame_size = max_frame_size
        self.max_pending = max_pending
        self.rate_limit_retries = rate_limit_retries
        self._protocol = protocol
        self._encoder = protocol(max_frame_size=max_frame_size)
        if dangerously_skip_tls_verification:
            log.warning("ctrader_sync: TLS verification is OFF for %s:%d; anyone on the path can read "
                        "and alter this session, credentials included", host, port)
            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        elif ssl_context is not None and (ssl_context.verify_mode == ssl.CERT_NONE
                                          or not ssl_context.check_hostname):
            log.warning("ctrader_sync: the ssl_context given for %s:%d does not verify the server's "
                        "certificate%s; use dangerously_skip_tls_verification=True to say so explicitly",
                        host, port, "" if ssl_context.verify_mode == ssl.CERT_NONE else " host name")
        self._ssl_context = ssl_context or default_ssl_context()

        self._number = next(_client_numbers)
        self._ids = itertools.count(1)
        self._id_prefix = f"cs{self._number}-"

        # One re-entrant lock guards the client's state and the state of all of its futures (see
        # _pending.RequestFuture), so claiming, answering and cancelling a request never race.
        self._lock = threading.RLock()
        self._wcond = threading.Condition(self._lock)
        self._scond = threading.Condition(self._lock)
        self._queue: deque[Request] = deque()
        self._hqueue: deque[Request] = deque()
        self._pqueue: deque[Request] = deque()
        self._retry: list[tuple[float, int, Request]] = []
        self._pending: dict[str, Request] = {}
        # Response deadlines: one FIFO per timeout value (deadline = write time + timeout, so each is
        # in order); entries hold only (deadline, cid), never the request, so answered requests are
        # freed at once.
        self._timers: dict[float, deque[tuple[float, str]]] = {}
        self._seq = itertools.count()
        if numberOfMessagesToSendPerSecond:
            self._limiter: SlidingWindowLimiter | None = SlidingWindowLimiter(
                numberOfMessagesToSendPerSecond, 1.0, rate_limit_margin)
            self._hlimiter: SlidingWindowLimiter | None = (
                SlidingWindowLimiter(historical_per_second, 1.0, rate_limit_margin)
                if historical_per_second else None)
        else:
            self._limiter = self._hlimiter = None
        self._historical = HISTORICAL_PAYLOAD_TYPES
        self._conn: _Conn | None = None
        self._started = False
        self._closed = False
        self._gave_up: BaseException | None = None
        self._last_error: BaseException | None = None
        self._writer_waiting = False
        self._writing = False  # a thread is writing to the socket (the writer or an inline send)
        self._last_write = time.monotonic()
        self._connections = 0
        self._session: SessionState | None = None

        self._on_connected: Callable[[Client], Any] | None = None
        self._on_disconnected: Callable[[Client, BaseException], Any] | None = None
        self._on_message: Callable[[Client, Message], Any] | None = None
        self._handlers: dict[int | None, list[Callable[..., Any]]] = {}
        self._any_handler = False

        self._dispatcher = Dispatcher(f"ctrader_sync-dispatcher-{self._number}", max_events)
        self._post = self._dispatcher.post
        self._cancel_hook = self._cancelled
        self._assist: Callable[[RequestFuture, float | None], None] | None = self._assist_read
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._threads: list[threading.Thread] = []
        self._io_idents: frozenset[int | None] = frozenset()
        self._read_token = threading.Lock()  # held by whoever reads the connection (see _assist_read)
        self._lead = threading.Condition(threading.Lock())  # the parked reader waits on it
        self._lead_lock = threading.Lock()  # guards _leading
        self._leading = False
        self._lead_end = 0.0
        self._yield_r, self._yield_w = socket.socketpair()
        self._yield_r.setblocking(False)

    # -- configuration ----------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.is_connected else
                                               ("connecting" if self._started else "new"))
        return f"<ctrader_sync.Client {self.host}:{self.port} {state}>"

    def setConnectedCallback(self, callback: Callable[[Client], Any] | None) -> None:
        """Call ``callback(client)`` on the dispatcher thread each time a connection is up."""
        self._on_connected = callback

    def setDisconnectedCallback(self, callback: Callable[[Client, BaseException], Any] | None) -> None:
        """Call ``callback(client, reason)`` once per lost connection; ``reason`` is the exception."""
        self._on_disconnected = callback

    def setMessageReceivedCallback(self, callback: Callable[[Client, Message], Any] | None) -> None:
        """Call ``callback(client, message)`` for every message received (extracted, in order)."""
        self._on_message = callback
        self._any_handler = bool(self._handlers) or callback is not None

    def on(self, message_type: type[Message] | int | str | None,
           callback: Callable[[Message], Any]) -> EventHandle:
        """Call ``callback(message)`` on the dispatcher thread for every received message of a type.

        ``message_type`` is a message class, a payload type number or name, or ``None`` for all
        messages.  Returns a handle whose ``remove()`` unregisters the callback.
        """
        key = None if message_type is None else (
            Protobuf.payload_type(message_type) if isinstance(message_type, type) else
            Protobuf.payload_type(Protobuf.get_type(message_type)))
        with self._lock:
            self._handlers = {**self._handlers, key: [*self._handlers.get(key, []), callback]}
            self._any_handler = True
        return EventHandle(self, key, callback)

    def _remove_handler(self, key: int | None, callback: Callable[..., Any]) -> None:
        with self._lock:
            callbacks = [c for c in self._handlers.get(key, []) if c is not callback]
            handlers = dict(self._handlers)
            if callbacks:
                handlers[key] = callbacks
            else:
                handlers.pop(key, None)
            self._handlers = handlers
            self._any_handler = bool(handlers) or self._on_message is not None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once. Use :meth:`wait_connected` to wait."""
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed; create a new Client")
            if self._started:
                return
            self._started = True
        for role, target in (("supervisor", self._supervise), ("writer", self._write_loop),
                             ("reader", self._read_loop)):
            thread = threading.Thread(target=target, name=f"ctrader_sync-{role}-{self._number}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        # The supervisor waits for answers during recovery: it must not read the socket itself.
        self._io_idents = frozenset(thread.ident for thread in self._threads)

    startService = start
    """Old-SDK name of :meth:`start`."""

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until a connection is up and its session recovered.

        Raises:
            ConnectError: the client gave up connecting (the cause is chained).
            ConnectTimeoutError: (a ``ConnectError`` and ``TimeoutError``) not connected within ``timeout``.
            ClientClosedError: the client was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._scond:
            while True:
                conn = self._conn
                if conn is not None and conn.ready:
                    return
                if self._gave_up is not None:
                    raise ConnectError(f"gave up connecting to {self.host}:{self.port}: {self._gave_up}") \
                        from self._gave_up
                if self._closed:
                    raise ClientClosedError("the client is closed")
                if not self._started:
                    raise ConnectError("the client is not started; call start() first")
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    last = f"; last error: {self._last_error}" if self._last_error else ""
                    raise ConnectTimeoutError(
                        f"not connected to {self.host}:{self.port} within {timeout:g} s{last}")
                self._scond.wait(min(remaining, 1.0))

    @property
    def is_connected(self) -> bool:
        """True while a connection is up and its session recovered."""
        conn = self._conn
        return conn is not None and conn.ready

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the client cannot be started again)."""
        return self._closed

    @property
    def connection_count(self) -> int:
        """How many connections this client has established so far."""
        return self._connections

    @property
    def dropped_events(self) -> int:
        """Pushed events dropped because callbacks did not keep up (see ``max_events``)."""
        return self._dispatcher.dropped

    @property
    def pending_count(self) -> int:
        """Requests queued or written and not yet answered."""
        return len(self._pending)

    def threads(self) -> list[threading.Thread]:
        """The client's threads (for diagnostics)."""
        return [*self._threads, self._dispatcher.thread]

    def close(self) -> None:
        """Stop the client: fail what is queued or in flight with ``ClientClosedError``, close the
        connection, and end every thread.  Returns within about a second from any state; idempotent;
        callable from any thread, including a callback."""
        with self._lock:
            already = self._closed
            self._closed = True
            conn = self._conn
            requests = self._drain_locked()
            self._wcond.notify_all()
        with self._lead:
            self._lead.notify_all()
        with self._lock:
            self._scond.notify_all()
        if not already:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
            for request in requests:
                request._fail(ClientClosedError("the client was closed before the answer arrived"))
            if conn is not None:
                self._lose(conn, ClientClosedError("the client was closed"))
        deadline = time.monotonic() + 0.9
        me = threading.current_thread()
        for thread in self._threads:
            # A thread not started yet (close() from a callback during start()) exits on its own.
            if thread is not me and thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._dispatcher.stop(max(0.05, deadline - time.monotonic()))
        if not already:
            alive = [t.name for t in self.threads() if t.is_alive() and t is not me]
            if alive:
                log.warning("ctrader_sync: threads still running after close(): %s", alive)
            else:
                for sock in (self._wake_r, self._wake_w, self._yield_r, self._yield_w):
                    sock.close()

    stopService = close
    """Old-SDK name of :meth:`close`."""

    def __enter__(self) -> Client:
        self.start()
        try:
            self.wait_connected(self.connect_timeout + 5.0)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Message | int | str, clientMsgId: str | None = None,
             timeout: float | None = None, *, responseTimeoutInSeconds: float | None = None,
             **fields: Any) -> RequestFuture:
        """Queue a request and return a future for its answer.  Thread-safe.

        ``message`` is a request message, or a payload type number or name with ``fields`` (as the
        old SDK's ``send("ProtoOAVersionReq")``).  A trading request (new/cancel/amend order, amend
        SL/TP, close position) resolves to the first ``ProtoOAExecutionEvent`` carrying its
        ``clientMsgId``.  A ``ProtoHeartbeatEvent`` resolves to ``None`` once written.

        Args:
            clientMsgId: the id to put on the wire; by default a unique one is assigned.
            timeout: seconds to wait for the answer after the request is written
                (default: ``response_timeout``). ``responseTimeoutInSeconds`` is the old SDK's name.

        The errors below are raised at once, and nothing is queued then.

        Raises:
            InvalidRequestError: not a request message, required fields missing, or ``clientMsgId``
                already pending (also a ``ValueError``).
            QueueFullError: ``max_pending`` requests are already queued or in flight.
            ClientClosedError: the client is closed.
            ConnectError: the client gave up connecting.

        The future fails with ``ServerError`` (or ``RateLimitError``, ``OrderError``,
        ``AuthenticationError``) for an error answer, ``RequestTimeoutError`` when no answer comes in
        time, ``ConnectionLostError`` when the connection drops after the request was written.
        """
        kind = _KINDS.get(type(message))  # type: ignore[arg-type]
        if kind is None:
            if isinstance(message, (int, str)):
                message = Protobuf.get(message, **fields)
                kind = _KINDS.get(type(message))
            if kind is None:
                raise InvalidRequestError(f"{type(message).__name__} is not a request: send a ...Req message "
                                          "or a ProtoHeartbeatEvent")
        elif fields:
            raise TypeError("field keywords are only accepted with a payload type number or name")
        pt, expect = kind
        if timeout is None:
            timeout = responseTimeoutInSeconds
        if timeout is None:
            wait = self.response_timeout
        elif 0 < timeout < _INF:
            wait = float(timeout)
        else:
            raise InvalidRequestError(f"timeout must be a positive number of seconds, not {timeout!r}")
        # A generated id that a user id already took is replaced in _enqueue (under the lock).
        cid = self._id_prefix + str(next(self._ids)) if clientMsgId is None else str(clientMsgId)
        request = future = RequestFuture(cid, pt, self._lock, self,
                                         self._encoder.encode(message, cid),  # type: ignore[arg-type]
                                         expect, pt in self._historical, wait, next(self._seq), message)
        inline = self._enqueue(request, generated=clientMsgId is None)
        if inline is not None:
            self._write_inline(inline, [request])
        return future

    def _new_id(self) -> str:
        """A ``clientMsgId`` not pending now (a user may have chosen one that looks generated)."""
        cid = self._id_prefix + str(next(self._ids))
        while cid in self._pending:
            cid = self._id_prefix + str(next(self._ids))
        return cid

    def _enqueue(self, request: Request, generated: bool = True) -> _Conn | None:
        """Register and queue a request; return the connection if the caller must write it inline."""
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            if self._gave_up is not None:
                raise ConnectError(f"the client gave up connecting: {self._gave_up}")
            pending = self._pending
            if request.cid in pending:
                if not generated:
                    raise InvalidRequestError(f"clientMsgId {request.cid!r} is already pending")
                # A user id already took this generated id: take one that is free.
                request.cid = self._new_id()
                request.frame = self._encoder.encode(request.message, request.cid)
            if len(pending) >= self.max_pending:
                raise QueueFullError(f"{len(pending)} requests pending (max_pending={self.max_pending})")
            conn = self._conn
            if (not pending and conn is not None and conn.ready and not self._writing and not request.priority
                    and not conn.tls.backlog):
                # Fast path for latency: nothing is queued or awaiting an answer and nobody is
                # writing; if the limits allow, the caller's thread writes the frame itself (no
                # hand-off to the writer thread).  With requests in flight the writer thread takes
                # over, batching many frames per TLS write for throughput.
                now = time.monotonic()
                limiter, hlimiter = self._limiter, self._hlimiter
                if ((limiter is None or limiter.wait_time(now) == 0.0)
                        and (not request.historical or hlimiter is None or hlimiter.wait_time(now) == 0.0)):
                    pending[request.cid] = request
                    request._claim()
                    self._mark_written(request, now)
                    if limiter is not None:
                        limiter.record(now)
                        if request.historical and hlimiter is not None:
                            hlimiter.record(now)
                    self._writing = True
                    self._last_write = now
                    return conn
            pending[request.cid] = request
            if request.priority:
                self._pqueue.append(request)
            elif request.historical and self._hlimiter is not None:
                self._hqueue.append(request)
            else:
                self._queue.append(request)
            if self._writer_waiting:
                self._writer_waiting = False  # one notify per wait is enough
                self._wcond.notify()
            return None

    def _stamp_written(self, batch: list[Request]) -> None:
        """Count the batch's writes at the time they left, not when they were claimed (under the
        lock, before anyone else may claim): a writer delayed in between must not let the server
        see more than the limit in one window."""
        limiter = self._limiter
        if limiter is None or not batch:
            return
        now = time.monotonic()
        limiter.restamp(len(batch), now)
        if self._hlimiter is not None:
            historical = sum(1 for r in batch if r.historical)
            if historical:
                self._hlimiter.restamp(historical, now)

    def _write_inline(self, conn: _Conn, batch: list[Request]) -> None:
        """Write claimed requests from the caller's thread without blocking (the caller set
        ``_writing``); whatever the socket does not take now is left to the writer thread."""
        data = batch[0].frame if len(batch) == 1 else b"".join([r.frame for r in batch])
        try:
            complete = conn.tls.send_nowait(data)
        except Interrupted:
            complete = True
        except (OSError, ssl.SSLError) as exc:
            complete = True
            self._lose(conn, ConnectionLostError(f"write failed: {exc}"))
        with self._lock:
            self._writing = False
            self._stamp_written(batch)
            if (not complete or self._queue or self._pqueue or self._hqueue) and self._writer_waiting:
                self._writer_waiting = False
                self._wcond.notify()
        for request in batch:
            if request.expect == EXPECT_NOTHING:
                request._finish(None, None)

    def request(self, message: Message | int | str, timeout: float | None = None, **fields: Any) -> Any:
        """Send and wait: ``send(message, ...).result()``, with ``timeout`` for both queueing and answer.

        Raises what the future raises; ``RequestTimeoutError`` if nothing came in time (the request is
        cancelled then, so a late answer is discarded).
        """
        future = self.send(message, timeout=timeout, **fields)
        limit = None if timeout is None else timeout + 1.0
        try:
            return future.result(limit)
        except TimeoutError as exc:
            if isinstance(exc, RequestTimeoutError):
                raise
            future.cancel()
            raise RequestTimeoutError(f"no answer to {type(message).__name__} within {timeout:g} s") from None

    def _cancelled(self, future: RequestFuture) -> None:
        with self._lock:
            request = self._pending.get(future.clientMsgId)
            if request is future and not future.written:
                self._pending.pop(future.clientMsgId, None)  # never written: the id is free again

    # -- writer -------------------------------------------------------------------------------

    def _take_batch(self, conn: _Conn, now: float) -> tuple[list[Request], float]:
        """Claim the requests that may be written now (under the lock); return them and the wait
        until the next one may be."""
        limiter, hlimiter = self._limiter, self._hlimiter
        if (limiter is None and conn.ready and not self._pqueue and not self._hqueue and not self._retry
                and self._queue):
            return self._take_plain(now), 1.0
        batch: list[Request] = []
        size = 0
        free = limiter.available(now) if limiter is not None else 1 << 30
        hfree = hlimiter.available(now) if hlimiter is not None else 1 << 30
        wait = 1.0
        queues = [self._pqueue]
        if conn.ready:
            queues += [self._queue, self._hqueue]
        retry = self._retry
        pending = self._pending
        while size < _MAX_BATCH_BYTES and len(batch) < _MAX_BATCH_FRAMES:
            best: Request | None = None
            source: Any = None
            for q in queues:
                while q and q[0]._state != "PENDING":
                    dead = q.popleft()  # cancelled (or failed) before being written
                    if pending.get(dead.cid) is dead:
                        pending.pop(dead.cid, None)
                if q and (best is None or q[0].seq < best.seq):
                    best, source = q[0], q
            if conn.ready and retry:
                while retry and retry[0][2]._state != "PENDING":
                    dead = heapq.heappop(retry)[2]
                    if pending.get(dead.cid) is dead:
                        pending.pop(dead.cid, None)
                if retry:
                    if retry[0][0] <= now:
                        if best is None or retry[0][2].seq < best.seq:
                            best, source = retry[0][2], retry
                    else:
                        wait = min(wait, retry[0][0] - now)
            if best is None:
                break
            if best.historical and hfree <= 0:
                # Historical budget spent: serve ordinary requests behind it meanwhile.
                assert hlimiter is not None
                wait = min(wait, hlimiter.wait_time(now))
                queues = [q for q in queues if q is not self._hqueue]
                if source is retry:
                    break
                continue
            if free <= 0:
                assert limiter is not None
                wait = min(wait, limiter.wait_time(now))
                break
            if source is retry:
                heapq.heappop(retry)
            else:
                source.popleft()
            if not best._claim():
                if pending.get(best.cid) is best:
                    pending.pop(best.cid, None)
                continue
            self._mark_written(best, now)
            if limiter is not None:
                limiter.record(now)
                free -= 1
                if best.historical and hlimiter is not None:
                    hlimiter.record(now)
                    hfree -= 1
            batch.append(best)
            size += len(best.frame)
        return batch, max(wait, 0.0)

    def _take_plain(self, now: float) -> list[Request]:
        """Fast path of :meth:`_take_batch`: no limits, only ordinary requests queued (under the lock).

        The same steps as ``_claim`` + ``_mark_written``, inlined: this loop runs once per request.
        """
        batch: list[Request] = []
        queue, pending, timers = self._queue, self._pending, self._timers
        size = 0
        fifo_timeout, fifo = None, None
        while queue and size < _MAX_BATCH_BYTES and len(batch) < _MAX_BATCH_FRAMES:
            request = queue.popleft()
            if request._state != "PENDING":  # cancelled (or failed) before being written
                if pending.get(request.cid) is request:
                    pending.pop(request.cid, None)
                continue
            request._state = "RUNNING"
            request._written = True
            if request.expect == EXPECT_NOTHING:
                del pending[request.cid]
            else:
                request.deadline = deadline = now + request.timeout
                if request.timeout != fifo_timeout:
                    fifo_timeout = request.timeout
                    fifo = timers.get(fifo_timeout)
                    if fifo is None:
                        fifo = timers[fifo_timeout] = deque()
                        self._scond.notify_all()
                assert fifo is not None
                fifo.append((deadline, request.cid))
            batch.append(request)
            size += len(request.frame)
        return batch

    def _mark_written(self, request: Request, now: float) -> None:
        """Bookkeeping for a claimed request about to be written (under the lock)."""
        if request.expect == EXPECT_NOTHING:
            del self._pending[request.cid]
            return
        request.deadline = deadline = now + request.timeout
        fifo = self._timers.get(request.timeout)
        if fifo is None:
            fifo = self._timers[request.timeout] = deque()
            self._scond.notify_all()  # a new timeout value: the supervisor recomputes its wait
        fifo.append((deadline, request.cid))

    def _write_loop(self) -> None:
        heartbeat = self._encoder.encode(Protobuf.get(_HEARTBEAT))
        while True:
            with self._wcond:
                while True:
                    if self._closed:
                        return
                    conn = self._conn
                    wait = 1.0
                    if conn is not None and not conn.lost and not self._writing:
                        now = time.monotonic()
                        batch, wait = self._take_batch(conn, now)
                        beat = (self.heartbeat_interval > 0
                                and now - self._last_write >= self.heartbeat_interval)
                        if batch or beat or conn.tls.flush_needed or conn.tls.backlog:
                            self._writing = True
                            break
                        if self.heartbeat_interval > 0:
                            wait = min(wait, self._last_write + self.heartbeat_interval - now)
                    self._writer_waiting = True
                    self._wcond.wait(max(0.001, min(wait, 1.0)))
                    self._writer_waiting = False
                self._last_write = now
            if batch:
                data = batch[0].frame if len(batch) == 1 else b"".join([r.frame for r in batch])
            else:
                data = heartbeat if beat else b""
            try:
                conn.tls.send(data)
            except Interrupted:
                return
            except (OSError, ssl.SSLError) as exc:
                self._lose(conn, ConnectionLostError(f"write failed: {exc}"))
                continue
            finally:
                with self._lock:
                    self._writing = False
                    self._stamp_written(batch)
            for request in batch:
                if request.expect == EXPECT_NOTHING:
                    request._resolve(None)
            if log.isEnabledFor(logging.DEBUG) and batch:
                log.debug("ctrader_sync: wrote %d request(s): %s", len(batch),
                          ", ".join(f"{r.payloadType}/{r.cid}" for r in batch[:8]))

    # -- reader -------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        number = 0
        while True:
            with self._scond:
                while not self._closed and (self._conn is None or self._conn.number == number):
                    self._scond.wait(1.0)
                if self._closed:
                    return
                conn = self._conn
                assert conn is not None
                number = conn.number
            self._read_connection(conn)

    def _read_connection(self, conn: _Conn) -> None:
        tls = conn.tls
        token, lead = self._read_token, self._lead
        yield_r = self._yield_r
        while True:
            if self._leading or time.monotonic() - self._lead_end < _LEAD_GRACE:
                # A caller reads its own answer: stay out of the way until it is done, and a moment
                # longer, so that the next caller of a request/answer loop finds the token free.
                with lead:
                    while not self._closed and not conn.lost and (
                            self._leading or time.monotonic() - self._lead_end < _LEAD_GRACE):
                        lead.wait(_LEAD_GRACE)
            with token:
                try:
                    ready = tls.wait_readable(1.0, yield_r)
                except Interrupted:
                    return
                except OSError:
                    return  # the connection was closed by _lose()
                if ready == 2:
                    _drain(yield_r)
                    continue  # hand the token over (released at the end of this block)
                if not ready:
                    if conn.lost:
                        return
                    continue
                if not self._read_once(conn):
                    return

    def _read_once(self, conn: _Conn) -> bool:
        """Read and handle what the socket has (the caller holds the read token).

        Returns False once the connection is lost (the caller stops reading it).
        """
        if conn.lost:
            return False
        tls = conn.tls
        try:
            data = tls.recv_nowait()
        except EOFError as exc:
            self._lose(conn, ConnectionLostError(str(exc)))
            return False
        except (OSError, ssl.SSLError) as exc:
            if not conn.lost:
                self._lose(conn, ConnectionLostError(f"connection error: {exc}"))
            return False
        if data is None:
            return True  # another reader took it
        conn.last_rx = time.monotonic()
        if tls.flush_needed:
            with self._wcond:
                self._wcond.notify()
        if not data:
            return True
        try:
            frames = conn.codec.feed(data)
        except ProtocolError as exc:
            self._handle_frames(conn, getattr(exc, "frames", []))
            log.warning("ctrader_sync: protocol error from %s:%d: %s; reconnecting", self.host, self.port, exc)
            self._lose(conn, exc)
            return False
        if frames:
            self._handle_frames(conn, frames)
        return True

    def _assist_read(self, future: RequestFuture, deadline: float | None) -> None:
        """Let a caller blocked in ``result()`` read the connection itself until its answer is in.

        A round trip then costs one wake-up (the caller's, by the kernel) instead of two (the
        reader thread's, then the caller's).  The reader thread, asked through a wake-up socket,
        hands over the read token and stays out of ``select`` until the caller is done (were both
        waiting on the socket, the reader's needless wake-up would contend for the GIL on the
        critical path).  Only one caller leads at a time, only on a live connection, and never a
        thread of the client's own; otherwise the caller simply waits for the reader thread.
        """
        conn = self._conn
        if conn is None or conn.lost or threading.get_ident() in self._io_idents:
            return
        lead = self._lead_lock
        with lead:
            if self._leading or self._closed:
                return
            self._leading = True
        token = self._read_token
        try:
            if self._queue and not self._writing:
                self._flush_from_caller(conn)
            if not token.acquire(blocking=False):
                try:
                    self._yield_w.send(b"y")  # the reader thread is in select(): ask it to step aside
                except OSError:
                    return
                while not token.acquire(timeout=0.05):
                    if future._state not in _WAITING or conn.lost or (
                            deadline is not None and time.monotonic() >= deadline):
                        return
            try:
                tls = conn.tls
                while future._state in _WAITING and not conn.lost:
                    wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                    if wait <= 0:
                        return
                    try:
                        if not tls.wait_readable(wait):
                            continue
                    except (Interrupted, OSError):
                        return
                    try:
                        if not self._read_once(conn):
                            return
                    except BaseException as exc:
                        # KeyboardInterrupt (Ctrl-C in a notebook) between taking bytes off the socket
                        # and handing out what they held would leave the stream half-consumed: drop
                        # the connection (in-flight requests fail, queued ones go on the next one).
                        self._lose(conn, ConnectionLostError(
                            f"interrupted ({type(exc).__name__}) while reading the connection"))
                        raise
            finally:
                token.release()
        finally:
            with lead:
                self._leading = False
                self._lead_end = time.monotonic()

    def _flush_from_caller(self, conn: _Conn) -> None:
        """Write what is queued from the caller's thread before it waits (one TLS write, no hand-off
        to the writer thread); what the socket does not take now is left to the writer."""
        with self._lock:
            if self._writing or conn.lost or not conn.ready:
                return
            now = time.monotonic()
            batch, _ = self._take_batch(conn, now)
            if not batch:
                return
            self._writing = True
            self._last_write = now
        self._write_inline(conn, batch)

    def _handle_frames(self, conn: _Conn, frames: list[Any]) -> None:
        """Match answers to their requests and hand every message to the callbacks.

        The common case (a plain answer) takes no client lock: the request is claimed by an atomic
        ``dict.pop`` on the pending table, which every other remover (cancel, timeout, loss, close)
        also uses with an identity check, so exactly one of them ends the request.  Error answers
        (which may be re-sent) and session-changing answers take the lock.
        """
        pending = self._pending
        specials = []
        for frame in frames:
            pt, cid, message = frame
            if cid is not None:
                request = pending.get(cid)
                if request is not None and request._written:
                    if pt in _ERROR_TYPES or request.payloadType in SESSION_TYPES:
                        with self._lock:
                            if pending.get(cid) is request:
                                self._match_locked(request, pt, message)
                    elif request.expect == EXPECT_EXECUTION and pt != _EXECUTION_EVENT:
                        pass  # not the answer this request waits for; it still reaches the callbacks
                    elif pending.pop(cid, None) is request:
                        request._finish(message, None)
            if pt in _SPECIAL_TYPES:
                specials.append(frame)
        if specials and self._session is not None:
            with self._lock:
                session = self._session
                for pt, _, message in specials:
                    if pt in _SESSION_EVENTS and session is not None:
                        lost = session.event(pt, message)
                        log.warning("ctrader_sync: accounts %s are no longer authorized (%s)", lost,
                                    type(message).__name__)
        if self._any_handler:
            self._dispatcher.post_events(self._deliver, frames)
        for pt, _, message in specials:
            if pt == _CLIENT_DISCONNECT_EVENT:
                reason = getattr(message, "reason", "") or "no reason given"
                self._lose(conn, ConnectionLostError(f"the server ended the session: {reason}"))

    def _deliver(self, frames: list[Any]) -> None:
        """Run the callbacks for received messages, in order (on the dispatcher thread)."""
        on_message = self._on_message
        handlers = self._handlers
        everything = handlers.get(None, ())
        by_type: dict[int, tuple[Callable[..., Any], ...]] = {}
        for pt, _, message in frames:
            if on_message is not None:
                try:
                    on_message(self, message)
                except Exception:
                    log.exception("ctrader_sync: the message callback raised; I/O continues")
            callbacks = by_type.get(pt)
            if callbacks is None:
                callbacks = by_type[pt] = (*handlers.get(pt, ()), *everything)
            for callback in callbacks:
                try:
                    callback(message)
                except Exception:
                    log.exception("ctrader_sync: a callback for %s raised (%s); I/O continues",
                                  type(message).__name__, getattr(callback, "__qualname__", callback))

    def _match_locked(self, request: Request, pt: int, message: Any) -> None:
        """Apply an error answer, or the answer to a session-changing request, to its request (under
        the lock; see _handle_frames for which answers come here)."""
        pending = self._pending
        if pt in _ERROR_TYPES:
            error = server_error_from_message(message)
            if (isinstance(error, RateLimitError) and request.retries < self.rate_limit_retries
                    and request._unclaim()):
                request.retries += 1
                delay = error.retry_after if error.retry_after else min(8.0, 0.5 * 2 ** (request.retries - 1))
                request.not_before = time.monotonic() + delay
                heapq.heappush(self._retry, (request.not_before, request.seq, request))
                log.info("ctrader_sync: %s refused (%s); retry %d in %.2f s", request.cid, error.error_code,
                         request.retries, delay)
                self._wcond.notify()
                return
            del pending[request.cid]
            request._fail(error)
        else:  # a session-changing request (subscribe, account auth...): all have a ...Res
            del pending[request.cid]
            if self._session is not None:
                self._session.answered(request.payloadType, request.message)
            request._resolve(message)

    # -- supervisor ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        attempt = 0
        while not self._closed:
            if attempt:
                policy = self.reconnect
                if policy is None or policy.gives_up(attempt):
                    self._give_up(self._last_error or ConnectError("connection lost"))
                    return
                delay = policy.delay(attempt)
                log.info("ctrader_sync: reconnecting to %s:%d in %.2f s (attempt %d)",
                         self.host, self.port, delay, attempt + 1)
                with self._scond:
                    end = time.monotonic() + delay
                    while not self._closed and time.monotonic() < end:
                        self._scond.wait(min(1.0, end - time.monotonic()))
                if self._closed:
                    return
            try:
                tls = open_tls_connection(self.host, self.port, self._ssl_context, self.server_hostname,
                                          self.connect_timeout, self._wake_r)
            except Interrupted:
                return
            except ConnectError as exc:
                attempt += 1
                self._last_error = exc
                # The first failure of a streak is a warning; the retries that follow are info.
                log.log(logging.WARNING if attempt == 1 else logging.INFO,
                        "ctrader_sync: connect to %s:%d failed (attempt %d): %s", self.host, self.port, attempt, exc)
                with self._scond:
                    self._scond.notify_all()
                continue
            conn = _Conn(tls, self._protocol(max_frame_size=self.max_frame_size), self._connections + 1)
            with self._scond:
                if self._closed:
                    tls.close()
                    return
                self._connections += 1
                self._conn = conn
                self._last_error = None
                self._last_write = time.monotonic()
                self._scond.notify_all()
                self._wcond.notify()
            log.info("ctrader_sync: connected to %s:%d (%s, connection %d)", self.host, self.port,
                     tls.version, conn.number)
            if self._on_connected is not None:
                self._dispatcher.post(self._on_connected, self)
            try:
                self._recover(conn)
            except Exception as exc:
                if not conn.lost:
                    log.warning("ctrader_sync: session recovery failed: %s", exc)
                    self._lose(conn, ConnectionLostError(f"session recovery failed: {exc}"))
            with self._lock:
                if not conn.lost:
                    conn.ready = True
                    self._scond.notify_all()
                    self._wcond.notify()
            self._watch(conn)
            attempt = 1
            self._last_error = conn.reason

    def _recover(self, conn: _Conn) -> None:
        """Restore the session on a new connection before ordinary requests are written.

        Runs on the supervisor thread; requests sent with :meth:`_send_priority` pass the gate.
        Without :meth:`login` there is nothing to restore.
        """
        with self._lock:
            session = self._session
            if session is None:
                return
            session.authorized.clear()
            app_auth, account_auths = session.app_auth(), session.account_auths()
        wait = self.response_timeout + 1.0
        try:
            self._send_priority(app_auth).result(wait)
        except AuthenticationError as exc:
            # Credentials the server refuses will not work on the next connection either: stop
            # recovering (instead of reconnecting forever) and let requests fail with clear errors.
            log.error("ctrader_sync: application auth refused on reconnect (%s); session recovery is "
                      "off until login() is called again", exc.error_code)
            with self._lock:
                if self._session is session:
                    self._session = None
            return
        futures = [(int(getattr(req, "ctidTraderAccountId", 0)), self._send_priority(req)) for req in account_auths]
        for account, future in futures:
            try:
                future.result(wait)
            except ServerError as exc:
                if exc.error_code == "ALREADY_LOGGED_IN":
                    continue
                log.warning("ctrader_sync: account %d could not be re-authorized (%s); it is dropped "
                            "from the session", account, exc.error_code)
                with self._lock:
                    session.forget(account)
        with self._lock:
            subscriptions = session.subscriptions(set(session.authorized))
        for future in [self._send_priority(req) for req in subscriptions]:
            try:
                future.result(wait)
            except ServerError as exc:
                log.warning("ctrader_sync: a subscription could not be restored: %s", exc)
        log.info("ctrader_sync: session recovered on connection %d (%d accounts, %d subscription requests)",
                 conn.number, len(session.authorized), len(subscriptions))

    # -- session ------------------------------------------------------------------------------

    def login(self, clientId: str, clientSecret: str, accessToken: str, accounts: list[int] | None = None,
              timeout: float = 30.0) -> list[ProtoOACtidTraderAccount]:
        """Authorize the application and trading accounts; keep the session for recovery.

        Runs application auth, the account list by access token, and account auth for ``accounts``
        (default: every account the token grants).  After a reconnect the client redoes all of it, and
        restores the spot, live-trendbar and depth subscriptions made since, before any queued request
        is written.

        Returns:
            the authorized accounts (``ProtoOACtidTraderAccount``: id, ``isLive``, login, broker).

        Raises:
            AuthenticationError: wrong client id/secret, invalid token.
            InvalidRequestError: an account in ``accounts`` is not granted by the token.
            RequestTimeoutError, ConnectionLostError, ClientClosedError: as for any request.
        """
        try:
            self.request(ProtoOAApplicationAuthReq(clientId=clientId, clientSecret=clientSecret), timeout)
        except AuthenticationError as exc:
            if exc.error_code != "CH_CLIENT_ALREADY_AUTHENTICATED":
                raise
        listing = self.request(ProtoOAGetAccountListByAccessTokenReq(accessToken=accessToken), timeout)
        available = {int(a.ctidTraderAccountId): a for a in listing.ctidTraderAccount}
        chosen = list(available) if accounts is None else [int(a) for a in accounts]
        unknown = [a for a in chosen if a not in available]
        if unknown:
            raise InvalidRequestError(f"accounts {unknown} are not granted by this access token "
                                      f"(granted: {sorted(available)})")
        session = SessionState(clientId, clientSecret, accessToken)
        with self._lock:
            if self._session is not None and self._session.client_id == clientId:
                # Keep subscriptions recorded so far (a second login on the same client).
                session.spots, session.trendbars, session.depth = (
                    self._session.spots, self._session.trendbars, self._session.depth)
            self._session = session
        futures = [self.send(ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=accessToken),
                             timeout=timeout) for a in chosen]
        for account, future in zip(chosen, futures, strict=True):
            try:
                future.result(timeout + 1.0)
            except AuthenticationError as exc:
                if exc.error_code != "ALREADY_LOGGED_IN":
                    raise
                with self._lock:
                    session.accounts.add(account)
                    session.authorized.add(account)
        return [available[a] for a in chosen]

    def refresh_access_token(self, refreshToken: str, timeout: float = 30.0) -> ProtoOARefreshTokenRes:
        """Exchange a refresh token for a new access token (``ProtoOARefreshTokenReq``).

        The new access token replaces the old one for session recovery.  Returns the response
        (``accessToken``, ``refreshToken``, ``expiresIn``, ``tokenType``).
        """
        response: ProtoOARefreshTokenRes = self.request(ProtoOARefreshTokenReq(refreshToken=refreshToken), timeout)
        with self._lock:
            if self._session is not None:
                self._session.access_token = response.accessToken
        return response

    @property
    def authorized_accounts(self) -> list[int]:
        """Accounts authorized on the current connection through :meth:`login` (sorted)."""
        session = self._session
        return sorted(session.authorized) if session is not None else []

    def events(self, *types: type[Message] | int | str, maxsize: int = 10_000,
               timeout: float | None = None) -> EventStream:
        """A blocking iterator over received messages of ``types`` (all messages if none given).

        Use it as a context manager so the subscription ends with the block::

            with client.events(ProtoOASpotEvent, timeout=5) as spots:
                for spot in spots:          # ends after 5 s without an event, or when closed
                    print(spot.bid)

        When ``maxsize`` events wait unread, the oldest is dropped and counted in ``dropped``.
        """
        return EventStream(self, types, maxsize, timeout)

    def _send_priority(self, message: Message, timeout: float | None = None) -> RequestFuture:
        """Send a session request that is written before ordinary requests (used during recovery)."""
        pt, expect = _KINDS[type(message)]
        cid = self._id_prefix + str(next(self._ids))
        request = future = RequestFuture(cid, pt, self._lock, self, self._encoder.encode(message, cid), expect,
                                         pt in self._historical, timeout or self.response_timeout,
                                         next(self._seq), message)
        request.priority = True
        self._enqueue(request)
        return future

    def _watch(self, conn: _Conn) -> None:
        """Until the connection is lost: fail timed-out requests, detect a silent (dead) peer."""
        while True:
            expired: list[Request] = []
            dead = False
            with self._scond:
                if self._closed or conn.lost:
                    return
                now = time.monotonic()
                wait = 1.0
                pending = self._pending
                for fifo in self._timers.values():
                    while fifo and fifo[0][0] <= now:
                        deadline, cid = fifo.popleft()
                        request = pending.get(cid)
                        if (request is not None and request.written and request.deadline == deadline
                                and pending.pop(cid, None) is request):  # the reader may have won
                            expired.append(request)
                    if fifo:
                        wait = min(wait, fifo[0][0] - now)
                if self.receive_timeout:
                    silent = now - conn.last_rx
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
                self._lose(conn, ConnectionLostError(
                    f"nothing received for {self.receive_timeout:g} s (half-open connection)"))

    def _lose(self, conn: _Conn, reason: BaseException) -> None:
        """End a connection once: fail what was written on it, keep what was not, notify."""
        with self._lock:
            if conn.lost:
                return
            conn.lost = True
            conn.reason = reason
            if self._conn is conn:
                self._conn = None
            pending = self._pending
            written = [r for r in list(pending.values())
                       if r.written and pending.pop(r.cid, None) is r]  # the reader may pop concurrently
            self._timers.clear()  # every written request just failed
            self._scond.notify_all()
            self._wcond.notify()
        conn.tls.close()
        if not isinstance(reason, ClientClosedError):
            log.info("ctrader_sync: connection %d to %s:%d lost: %s", conn.number, self.host, self.port, reason)
        for request in written:
            error = ConnectionLostError(
                f"connection lost after {request.cid} was written and before its answer ({reason}); "
                "it was not re-sent")
            error.__cause__ = reason
            request._fail(error)
        if self._on_disconnected is not None:
            self._dispatcher.post(self._on_disconnected, self, reason)

    def _drain_locked(self) -> list[Request]:
        """Empty every queue and the pending table (under the lock); return what was pending."""
        requests = list(self._pending.values())
        self._pending.clear()
        self._queue.clear()
        self._hqueue.clear()
        self._pqueue.clear()
        self._retry.clear()
        self._timers.clear()
        return requests

    def _give_up(self, reason: BaseException) -> None:
        """No more reconnects: fail everything queued."""
        with self._lock:
            self._gave_up = reason
            requests = self._drain_locked()
            self._scond.notify_all()
        log.warning("ctrader_sync: not reconnecting to %s:%d: %s", self.host, self.port, reason)
        for request in requests:
            error: BaseException
            if self._connections:
                error = ConnectionLostError(f"connection lost and not re-established: {reason}")
            else:
                error = ConnectError(f"could not connect to {self.host}:{self.port}: {reason}")
            error.__cause__ = reason
            request._fail(error)

