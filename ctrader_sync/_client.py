"""``Client``: the public face of one cTrader Open API connection, and the wiring of its parts.

The client owns no I/O logic; it configures and connects units that each own their state::

    send()  ->  Outbox (pending table, queues, limits, deadlines)  ->  Writer (thread, inline
            writes, caller's flush)  ->  Link (TLS channel + codec of one connection)
    Link  ->  Reader (thread, caller-assisted read)  ->  Inbound (matching, errors, retries)
            ->  Outbox (answers) / SessionManager (session changes) / EventBus (callbacks)
    Supervisor: the connection life cycle (ClientState), reconnects, recovery, deadlines, loss.

Sending flows down and receiving flows up; a lower unit tells an upper one something only
through a callable handed to it when it was built.  Threads: supervisor, writer, reader and
dispatcher, named ``ctrader_sync-<role>-<n>``.  Locks and their order: see ``_outbox``.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from ._codec import DEFAULT_MAX_FRAME_SIZE, TcpProtocol
from ._dispatch import Dispatcher
from ._events import EventBus, EventHandle, EventStream, is_event
from ._inbound import Inbound
from ._keepalive import keep_alive
from ._lifecycle import Parts, shutdown, wait_ended, weak
from ._outbox import Outbox
from ._pending import REQUEST_KINDS, FutureHooks, RequestFuture, send_arguments
from ._reader import Reader
from ._reconnect import RateLimitRetry, ReconnectPolicy
from ._session import SessionManager, SessionState
from ._supervisor import ClientState, Supervisor
from ._tls import client_ssl_context
from ._validate import PROCESS, client_msg_id, foreign_process, optional_seconds, port_number, positive_seconds
from ._writer import Writer
from .errors import RequestTimeoutError
from .messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent, ProtoMessage
from .messages.OpenApiMessages_pb2 import ProtoOARefreshTokenRes
from .messages.OpenApiModelMessages_pb2 import ProtoOACtidTraderAccount
from .protobuf import HISTORICAL_PAYLOAD_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from .toolkit import Account

__all__ = ["HISTORICAL_PAYLOAD_TYPES", "Client", "ClientState", "EventHandle"]

log = logging.getLogger("ctrader_sync")

_client_numbers = itertools.count(1)


def _forward(unit: str, name: str, doc: str) -> Any:
    """A setting kept by one unit, read and written through the client (changes apply at once)."""
    return property(lambda self: getattr(getattr(self, unit), name),
                    lambda self, value: setattr(getattr(self, unit), name, value), doc=doc)



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
        rate_limit_retry: the whole re-send policy (a :class:`RateLimitRetry`: count and delays);
            when given, ``rate_limit_retries`` is ignored.
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
        rate_limit_retry: RateLimitRetry | None = None,
        dangerously_skip_tls_verification: bool = False,
    ) -> None:
        self.host = host
        self.port = port_number(port)
        self.connect_timeout = positive_seconds("connect_timeout", connect_timeout)
        self.response_timeout = positive_seconds("response_timeout", response_timeout)
        heartbeat_interval = optional_seconds("heartbeat_interval", heartbeat_interval)
        receive_timeout = optional_seconds("receive_timeout", receive_timeout)
        self.server_hostname = server_hostname
        self.max_frame_size = max_frame_size
        self.max_pending = max_pending
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_retry = rate_limit_retry or RateLimitRetry(retries=rate_limit_retries)
        self._protocol = protocol
        self._encoder = protocol(max_frame_size=max_frame_size)
        self._ssl_context = client_ssl_context(ssl_context, dangerously_skip_tls_verification, host, self.port)
        self._number = number = next(_client_numbers)
        self._pid = PROCESS.pid
        where = f"{host}:{self.port}"

        # The wiring: each unit gets the objects below it and callables for what it reports up.
        self._dispatcher = Dispatcher(f"ctrader_sync-dispatcher-{number}", max_events, is_event)
        self._bus = EventBus(self, self._dispatcher)
        self._outbox = outbox = Outbox(number, max_pending, numberOfMessagesToSendPerSecond, historical_per_second,
                                       rate_limit_margin, HISTORICAL_PAYLOAD_TYPES, self._encoder.encode)
        self._lock = outbox.lock
        self._writer = Writer(outbox, self._encoder.encode(ProtoHeartbeatEvent()), float(heartbeat_interval or 0.0))
        self._sessions = SessionManager(outbox.lock, weak(self.request), weak(self.send), weak(self._send_priority),
                                        self.response_timeout)
        self._inbound = Inbound(outbox, self.rate_limit_retry,
                                self._sessions.answered, self._sessions.events, self._bus.post)
        self._reader = Reader(self._inbound.handle, outbox.wake_writer, self._writer.flush_from_caller, where)
        self._supervisor = Supervisor(
            outbox, self._reader.attach, self._sessions.recover, self._bus.connected, self._bus.disconnected,
            host=host, port=self.port, ssl_context=self._ssl_context, server_hostname=server_hostname,
            connect_timeout=self.connect_timeout, receive_timeout=float(receive_timeout or 0.0),
            reconnect=reconnect, codec=lambda: protocol(max_frame_size=max_frame_size))
        self._writer.crash = self._reader.crash = self._supervisor.crash
        keep_alive(self._sessions, self._supervisor, outbox, weak(self.send), self._dispatcher.post,
                   self._bus.post_local)
        self._hooks = FutureHooks(self._reader.assist, outbox.cancelled, self._dispatcher.post)
        # Hot path of send(): the outbox's id counter, sequence and admission, looked up once.
        self._ids, self._id_prefix, self._seq = outbox.ids, outbox.id_prefix, outbox.seq
        self._encode = self._encoder.encode
        self._enqueue = outbox.enqueue
        self._write_inline = self._writer.write_inline
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._parts = Parts(self._lock, self._supervisor, self._writer, self._reader, self._bus, self._dispatcher,
                            self._threads, self._pid, self._closed)
        self._finalizer = weakref.finalize(self, shutdown, self._parts)  # closes a forgotten client

    # -- configuration ----------------------------------------------------------------------

    heartbeat_interval = _forward("_writer", "heartbeat_interval", "Seconds without a write before a heartbeat.")
    receive_timeout = _forward("_supervisor", "receive_timeout", "Seconds of silence after which the peer is dead.")
    reconnect = _forward("_supervisor", "reconnect", "The :class:`ReconnectPolicy`, or ``None`` to never reconnect.")

    def __repr__(self) -> str:
        return f"<ctrader_sync.Client {self.host}:{self.port} {self._supervisor.state.value}>"

    def setConnectedCallback(self, callback: Callable[[Client], Any] | None) -> None:
        """Call ``callback(client)`` on the dispatcher thread each time a connection is up."""
        self._bus.on_connected = callback

    def setDisconnectedCallback(self, callback: Callable[[Client, BaseException], Any] | None) -> None:
        """Call ``callback(client, reason)`` once per lost connection; ``reason`` is the exception."""
        self._bus.on_disconnected = callback

    def setMessageReceivedCallback(self, callback: Callable[[Client, ProtoMessage], Any] | None) -> None:
        """Call ``callback(client, envelope)`` on the dispatcher thread for every message received, in
        order, heartbeats included, as the old SDK did.

        ``envelope`` is the ``ProtoMessage`` as it came on the wire: ``payloadType``,
        ``clientMsgId`` (``""`` when the server sent none) and ``payload`` (the inner message's
        bytes); ``Protobuf.extract(envelope)`` gives the inner message.  :meth:`on`,
        :meth:`events` and futures give extracted messages.
        """
        self._bus.set_message_callback(callback)

    def on(self, message_type: type[Message] | int | str | None, callback: Callable[[Any], Any], *,
           envelope: bool = False) -> EventHandle:
        """Call ``callback(message)`` on the dispatcher thread for every received message of a type.

        ``message_type`` is a message class, a payload type number or name, or ``None`` for all
        messages.  With ``envelope=True`` the callback receives the ``ProtoMessage`` envelope
        instead (``payloadType``, ``clientMsgId``, ``payload``): the way to tell which request a
        later event belongs to, e.g. ``ORDER_FILLED`` after the ``ORDER_ACCEPTED`` a new order's
        future resolved to.  Returns a handle whose ``remove()`` unregisters the callback.
        """
        return self._bus.on(message_type, callback, envelope)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once. Use :meth:`wait_connected` to wait."""
        if not self._supervisor.start():
            return
        self._dispatcher.start()
        for role, target in (("supervisor", self._supervisor.run), ("writer", self._writer.run),
                             ("reader", self._reader.run)):
            thread = threading.Thread(target=target, name=f"ctrader_sync-{role}-{self._number}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        # The supervisor waits for answers during recovery: it must not read the socket itself.
        self._reader.io_idents = frozenset(thread.ident for thread in self._threads)

    startService = start
    """Old-SDK name of :meth:`start`."""

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until a connection is up and its session recovered.

        Raises:
            ConnectError: the client gave up connecting (the cause is chained).
            ConnectTimeoutError: (a ``ConnectError`` and ``TimeoutError``) not connected within ``timeout``.
            ClientClosedError: the client was closed.
        """
        self._supervisor.wait_connected(timeout)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until :meth:`close` was called (from any thread, e.g. a callback: the old
        ``reactor.stop()``) or the reconnect policy gave up: the old ``reactor.run()`` of a
        callback-driven program.  True once ended (threads finished), False after ``timeout`` s.
        Not from a callback: it would hold up every later callback."""
        return wait_ended(self._closed, lambda: self._supervisor.state is ClientState.GAVE_UP, self.threads,
                           timeout)

    @property
    def state(self) -> ClientState:
        """Where the client is in its life cycle (:class:`ClientState`)."""
        return self._supervisor.state

    @property
    def is_connected(self) -> bool:
        """True while a connection is up and its session recovered."""
        link = self._outbox.link
        return link is not None and link.ready

    @property
    def isConnected(self) -> bool:
        """Old-SDK name of :attr:`is_connected`."""
        return self.is_connected

    @property
    def connection_count(self) -> int:
        """How many connections this client has established so far."""
        return self._supervisor.connections

    @property
    def dropped_events(self) -> int:
        """Pushed events dropped because callbacks did not keep up (see ``max_events``)."""
        return self._dispatcher.dropped

    @property
    def pending_count(self) -> int:
        """Requests queued or written and not yet answered."""
        return len(self._outbox.pending)

    def threads(self) -> list[threading.Thread]:
        """The client's threads (for diagnostics)."""
        return [*self._threads, self._dispatcher.thread]

    def close(self) -> None:
        """Stop the client: fail what is queued with ``ClientClosedError`` and what is in flight
        (written, unanswered) with ``ClosedInFlightError``, close the connection, end every thread.
        Returns within about a second; idempotent; callable from any thread, including a callback.
        A forgotten client is closed this way when collected; in a forked child it does nothing."""
        shutdown(self._parts)

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

        Raises:
            InvalidRequestError: not a request message, required fields missing, or ``clientMsgId``
                already pending (also a ``ValueError``).
            QueueFullError: ``max_pending`` requests are already queued or in flight.
            ClientClosedError: the client is closed.
            ConnectError: the client gave up connecting.

        The future fails with ``ServerError`` (or ``RateLimitError``, ``OrderError``,
        ``AuthenticationError``) for an error answer, ``RequestTimeoutError`` when no answer comes in
        time, ``ConnectionLostError`` when the connection drops after the request was written.
        The errors under *Raises* come at once, and nothing is queued then.
        """
        if self._pid != PROCESS.pid:
            raise foreign_process(self._pid)
        kind = REQUEST_KINDS.get(type(message))
        if kind is None or fields or timeout is not None or responseTimeoutInSeconds is not None:
            message, kind, wait = send_arguments(message, kind, timeout, responseTimeoutInSeconds, fields,
                                                 self.response_timeout)
        else:  # the common case: a request message, default timeout (kept short: once per request)
            wait = self.response_timeout
        pt, expect = kind
        # A generated id that a user id already took is replaced in _enqueue (under the lock).
        cid = self._id_prefix + str(next(self._ids)) if clientMsgId is None else client_msg_id(clientMsgId)
        request = RequestFuture(cid, pt, self._lock, self._hooks, self._encode(message, cid),  # type: ignore[arg-type]
                                expect, pt in HISTORICAL_PAYLOAD_TYPES, wait, next(self._seq), message)
        try:
            inline = self._enqueue(request, clientMsgId is None)
            if inline is not None:
                self._write_inline(inline, [request])
        except BaseException:  # an error, or Ctrl-C at any line: nothing may stay claimed
            self._writer.abandon_send(request)
            raise
        return request

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

    # -- session ------------------------------------------------------------------------------

    def login(self, clientId: str, clientSecret: str, accessToken: str, accounts: list[int] | None = None,
              timeout: float = 30.0, *, refresh_token: str | None = None, expires_in: float | None = None,
              on_token_refreshed: Callable[[ProtoOARefreshTokenRes], Any] | None = None,
              ) -> list[ProtoOACtidTraderAccount]:
        """Authorize the application and trading accounts; keep the session authorized.

        Runs application auth, the account list by access token, and account auth for ``accounts``
        (default: every account the token grants).  Every new connection redoes it, with the
        subscriptions made since, before any queued request is written; on a live connection an
        account the server logs out is authorized again (see README, "Reconnect and session
        recovery").  With ``refresh_token`` and ``expires_in`` (seconds) the token is refreshed
        ahead of expiry and ``on_token_refreshed(ProtoOARefreshTokenRes)`` gets every new pair (on
        the dispatcher); a refused refresh is a :class:`~ctrader_sync.TokenRefreshFailed` event.

        Returns:
            the authorized accounts (``ProtoOACtidTraderAccount``: id, ``isLive``, login, broker).

        Raises:
            AuthenticationError: wrong client id/secret, invalid token.
            InvalidRequestError: an account in ``accounts`` is not granted by the token.
            RequestTimeoutError, ConnectionLostError, ClientClosedError: as for any request.
        """
        return self._sessions.login(clientId, clientSecret, accessToken, accounts, timeout, refresh_token,
                                    expires_in, on_token_refreshed)

    def refresh_access_token(self, refreshToken: str, timeout: float = 30.0) -> ProtoOARefreshTokenRes:
        """Exchange a refresh token for a new access token (``ProtoOARefreshTokenReq``).

        The new tokens replace the old ones in the session; the accounts the server logs out for the
        old token are authorized with the new one at once.  Returns the response (``accessToken``,
        ``refreshToken``, ``expiresIn``, ``tokenType``).

        Raises:
            TokenRefreshError: the server refused the refresh token (an ``AuthenticationError``).
        """
        return self._sessions.refresh_access_token(refreshToken, timeout)

    @property
    def authorized_accounts(self) -> list[int]:
        """Accounts authorized on the current connection through :meth:`login` (sorted)."""
        return self._sessions.authorized_accounts

    @property
    def _session(self) -> SessionState | None:
        """The session kept for recovery (``None`` before :meth:`login`); for diagnostics."""
        return self._sessions.state

    def account(self, ctidTraderAccountId: int | None = None) -> Account:
        """The toolkit's :class:`~ctrader_sync.toolkit.Account` for one trading account (by default
        the only one authorized through :meth:`login`); the same object on every call."""
        from .toolkit import account_of

        return account_of(self, ctidTraderAccountId)

    def events(self, *types: type[Message] | int | str, maxsize: int = 10_000,
               timeout: float | None = None, envelope: bool = False) -> EventStream:
        """A blocking iterator over received messages of ``types`` (all messages if none given).

        With ``envelope=True`` it yields ``ProtoMessage`` envelopes (``payloadType``,
        ``clientMsgId``, ``payload``) instead of extracted messages.

        Use it as a context manager so the subscription ends with the block::

            with client.events(ProtoOASpotEvent, timeout=5) as spots:
                for spot in spots:          # ends after 5 s without an event, or when closed
                    print(spot.bid)

        When ``maxsize`` events wait unread, the oldest is dropped and counted in ``dropped``.
        """
        return EventStream(self._bus, types, maxsize, timeout, envelope)

    def _send_priority(self, message: Message, timeout: float | None = None) -> RequestFuture:
        """Send a session request that is written before ordinary requests (used during recovery)."""
        pt, expect = REQUEST_KINDS[type(message)]
        cid = self._id_prefix + str(next(self._ids))
        request = future = RequestFuture(cid, pt, self._lock, self._hooks, self._encoder.encode(message, cid),
                                         expect, pt in HISTORICAL_PAYLOAD_TYPES, timeout or self.response_timeout,
                                         next(self._seq), message)
        request.priority = True
        self._enqueue(request)
        return future
