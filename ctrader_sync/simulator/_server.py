"""``Simulator``: a local TLS server speaking the cTrader Open API protocol, for tests and demos."""

from __future__ import annotations

import logging
import secrets
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType

from google.protobuf.message import Message

from .._codec import DEFAULT_MAX_FRAME_SIZE, TcpProtocol
from ..messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOAVersionRes
from ._accounts import Account
from ._connection import FAULT_KINDS, Connection, Fault, frame
from ._market import SYMBOLS, SymbolInfo
from ._recording import ConnectionRecord

__all__ = ["Simulator", "SimulatorOptions", "certs_dir"]

log = logging.getLogger("ctrader_sync.simulator")

_FLOOD_BLOCK_EVENTS = 1024


def certs_dir() -> Path:
    """Return the directory of the bundled TEST-ONLY certificates."""
    return Path(str(resources.files("ctrader_sync.simulator") / "certs"))


@dataclass(frozen=True)
class SimulatorOptions:
    """The simulator's settings (see :class:`Simulator` for their meaning)."""

    seed: int = 1
    spot_interval: float = 0.1
    heartbeat_interval: float = 10.0
    idle_timeout: float = 30.0
    request_limit: int = 50
    historical_limit: int = 5
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    benchmark: bool = False
    record: bool = True
    flood_count: int = 100_000
    host: str = "127.0.0.1"
    port: int = 0


class Simulator:
    """A local cTrader Open API server over TLS, running in background threads.

    Use it as a context manager; it listens as soon as it is constructed::

        with Simulator(seed=1) as sim:
            ctx = sim.client_ssl_context()
            ...  # connect to (sim.host, sim.port) with server_hostname="localhost"

    Args:
        seed: seeds the spot price walks and the historical data (same seed, same prices).
        spot_interval: seconds between pushed ``ProtoOASpotEvent`` per subscription (0: none).
        heartbeat_interval: seconds between the server's ``ProtoHeartbeatEvent`` (0: none).
        idle_timeout: close a connection after this many seconds without an inbound message (0: never).
        request_limit: requests per sliding 1 s window per connection (0: no limit).
        historical_limit: historical-data requests per sliding 1 s window per connection (0: no limit).
        max_frame_size: the largest inbound frame body; a bigger one gets ``FRAME_TOO_LONG`` and a
            disconnect (0: no limit).
        benchmark: no limits, no recording, a fast path for ``ProtoOAVersionReq`` and a flood of
            ``flood_count`` spot events on each spot subscription.
        record: keep every message in and out on :attr:`connections` (ignored in benchmark mode).
        flood_count: spot events sent per spot subscription in benchmark mode.
        host: the interface to listen on.
        port: the port to listen on (0: any free port).
        accounts: how many demo accounts to create (at least 2); the last one is a live account.
    """

    def __init__(self, *, seed: int = 1, spot_interval: float = 0.1, heartbeat_interval: float = 10.0,
                 idle_timeout: float = 30.0, request_limit: int = 50, historical_limit: int = 5,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, benchmark: bool = False, record: bool = True,
                 flood_count: int = 100_000, host: str = "127.0.0.1", port: int = 0, accounts: int = 2) -> None:
        if accounts < 2:
            raise ValueError("the simulator needs at least 2 accounts")
        self.options = SimulatorOptions(
            seed=seed, spot_interval=spot_interval, heartbeat_interval=heartbeat_interval,
            idle_timeout=idle_timeout, request_limit=request_limit, historical_limit=historical_limit,
            max_frame_size=max_frame_size, benchmark=benchmark, record=record and not benchmark,
            flood_count=flood_count, host=host, port=port)
        self.seed = seed
        self.version = "91"
        certs = certs_dir()
        self.ca_file = str(certs / "ca.pem")
        """Path of the TEST-ONLY CA certificate that signed the server's certificate."""
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.minimum_version = ssl.TLSVersion.TLSv1_2
        # server-key.pem is server.key under a name the package data (certs/*.pem) ships
        self._server_context.load_cert_chain(str(certs / "server.pem"), str(certs / "server-key.pem"))
        # credentials
        self.client_id = f"{1000 + seed}_simulatorClientId"
        self.client_secret = "sim-secret-" + secrets.token_hex(8)
        self.access_token = "sim-access-" + secrets.token_hex(12)
        self.refresh_token = "sim-refresh-" + secrets.token_hex(12)
        self._access_tokens = {self.access_token}
        self._refresh_tokens = {self.refresh_token}
        self._accounts: dict[int, Account] = {}
        for i in range(accounts):
            account_id = 40_000_000 + i + 1
            self._accounts[account_id] = Account(account_id=account_id, is_live=i == accounts - 1,
                                                 trader_login=9_000_000 + i + 1)
        self.account_ids: list[int] = list(self._accounts)
        """The simulated ``ctidTraderAccountId`` values (the last one is a live account)."""
        self.symbols: tuple[SymbolInfo, ...] = SYMBOLS
        """The symbol table: ids, names, digits, base prices."""
        self._symbols_by_id = {s.symbol_id: s for s in SYMBOLS}
        self._last_quote: dict[int, tuple[int, int]] = {}
        # prebuilt bytes for the benchmark fast paths
        self._version_res_body = TcpProtocol.encode_body(ProtoOAVersionRes(version=self.version))
        self._flood_block, self._flood_offsets = self._build_flood_block()
        # threads and connections
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._conn_cond = threading.Condition(self._lock)
        self._live: list[Connection] = []
        self.connections: list[ConnectionRecord] = []
        """Every accepted connection's record, in accept order (kept after close)."""
        self._future_faults: dict[int, list[Fault]] = {}
        self._listener = socket.create_server((host, port), backlog=128)
        self._listener.setblocking(False)
        self.host: str = host
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="ctrader_sync-sim-accept",
                                               daemon=True)
        self._closed = False
        self._accept_thread.start()
        log.debug("simulator listening on %s:%d", self.host, self.port)

    def __repr__(self) -> str:
        return f"<Simulator {self.host}:{self.port} connections={len(self.connections)}>"

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """Return a client ``SSLContext`` that trusts the test CA (hostname checking on)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = True
        return context

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` connections were accepted; return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._conn_cond:
            while len(self.connections) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._conn_cond.wait(remaining)
            return True

    def inject(self, kind: str, *, after: int = 0, connection: int | None = None,
               payload_type: int | None = None, delay: float = 0.0) -> None:
        """Inject a fault.

        Args:
            kind: one of ``close`` (no TLS close_notify), ``freeze`` (neither read nor write, never
                close), ``stop_reading``, ``delay`` (every answer ``delay`` s late), ``drop`` (never
                answer ``payload_type``; every request when it is None), ``reorder`` (answer the next
                two requests in reverse order), ``garbage`` (a frame whose body is not a
                ProtoMessage), ``huge_length`` (a 2 GiB length prefix), ``bad_payload`` (a
                ProtoMessage whose payload does not parse), ``client_disconnect_event`` (push
                ``ProtoOAClientDisconnectEvent`` then close), ``token_invalidated`` (push
                ``ProtoOAAccountsTokenInvalidatedEvent`` for the connection's accounts and log them
                out), ``account_disconnect`` (push ``ProtoOAAccountDisconnectEvent`` for its first
                account and log it out).
            after: trigger on the ``after``-th message the connection receives from now (that
                message is not handled for close/freeze/stop_reading/client_disconnect_event; for
                the other kinds it is the first one affected). 0: now.
            connection: the 1-based index of one connection (existing or future) instead of every
                open connection.
            payload_type: for ``drop``.
            delay: for ``delay``, in seconds.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if kind == "delay" and delay <= 0:
            raise ValueError("a delay fault needs delay > 0")

        def make() -> Fault:
            return Fault(kind, after=after, payload_type=payload_type, delay=delay)

        with self._lock:
            if connection is None:
                targets = list(self._live)
            else:
                if connection < 1:
                    raise ValueError("connection is 1-based")
                if connection > len(self.connections):
                    self._future_faults.setdefault(connection, []).append(make())
                    return
                targets = [c for c in self._live if c.record.index == connection]
        for conn in targets:  # armed on each I/O thread before inject() returns
            fault = make()
            conn.call(lambda c=conn, f=fault: c.add_fault(f))  # type: ignore[misc]

    def clear_faults(self) -> None:
        """Remove every pending fault and undo the lasting ones (delay, drop, freeze, ...)."""
        with self._lock:
            self._future_faults.clear()
            live = list(self._live)
        for conn in live:
            conn.call(conn.clear_faults)

    def max_requests_in_window(self, window: float = 1.0, historical: bool = False) -> int:
        """Return the most requests any one connection sent within ``window`` seconds."""
        return max((c.max_requests_in_window(window, historical) for c in list(self.connections)), default=0)

    def close(self) -> None:
        """Stop listening, close every connection and join every thread (returns promptly)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._accept_thread.join(timeout=5.0)
        with self._lock:
            live = list(self._live)
        for conn in live:
            conn.thread.join(timeout=5.0)
        try:
            self._listener.close()
        except OSError:  # pragma: no cover
            pass

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- internals used by connections ---------------------------------------------------------

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            return token in self._access_tokens

    def _refresh(self, refresh_token: str) -> tuple[str, str] | None:
        with self._lock:
            if refresh_token not in self._refresh_tokens:
                return None
            access = "sim-access-" + secrets.token_hex(12)
            refresh = "sim-refresh-" + secrets.token_hex(12)
            self._access_tokens.add(access)
            self._refresh_tokens.add(refresh)
            return access, refresh

    def _broadcast(self, account_id: int, events: Sequence[Message], exclude: Connection) -> None:
        """Push ``events`` (without clientMsgId) to the other connections holding ``account_id``."""
        items = [frame(e) for e in events]
        with self._lock:
            targets = [c for c in self._live if c is not exclude]
        for conn in targets:
            def deliver(c: Connection = conn) -> None:
                if account_id in c.session.authorized:
                    c.write_items(items)
            conn.post(deliver)

    def _build_flood_block(self) -> tuple[bytes, list[int]]:
        block = bytearray()
        offsets = [0]
        symbol = SYMBOLS[0]
        account_id = 40_000_001
        now_ms = int(time.time() * 1000)
        for i in range(_FLOOD_BLOCK_EVENTS):
            bid = symbol.base_price + (i % 50)
            data, _, _ = frame(ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol.symbol_id,
                                                bid=bid, ask=bid + symbol.spread, timestamp=now_ms + i))
            block += data
            offsets.append(len(block))
        return bytes(block), offsets

    def _fill_flood(self, conn: Connection) -> None:
        """Append up to one block of prebuilt spot events to ``conn``'s send buffer."""
        n = min(conn.flood_remaining, _FLOOD_BLOCK_EVENTS)
        conn.outbuf += self._flood_block[:self._flood_offsets[n]] if n < _FLOOD_BLOCK_EVENTS else self._flood_block
        conn.flood_remaining -= n

    # -- accept thread -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if not sel.select(0.05):
                    continue
                while True:
                    try:
                        raw, _ = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # pragma: no cover - e.g. too many open files
                        log.warning("simulator accept failed: %s", exc)
                        break
                    self._start_connection(raw)
        finally:
            sel.close()

    def _start_connection(self, raw: socket.socket) -> None:
        with self._lock:
            if self._stop.is_set():
                raw.close()
                return
            index = len(self.connections) + 1
            record = ConnectionRecord(index, record=self.options.record)
            faults = self._future_faults.pop(index, [])
            try:
                conn = Connection(self, raw, record, [])
            except OSError:  # pragma: no cover - the peer vanished already
                raw.close()
                return
            for fault in faults:  # armed before the I/O thread starts
                conn.add_fault(fault)
            self._live = [c for c in self._live if c.thread.is_alive()] + [conn]
            self.connections.append(record)
            conn.thread.start()
            self._conn_cond.notify_all()


