"""``Simulator``: a local TLS server speaking the cTrader Open API protocol, for tests and demos."""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType

from .._codec import DEFAULT_MAX_FRAME_SIZE
from ..messages.OpenApiModelMessages_pb2 import BALANCE_DEPOSIT
from ._accounts import Account
from ._bench import BenchAnswers
from ._exchange import Exchange
from ._faults import FAULT_KINDS, Fault
from ._fills import to_price
from ._market import ASSETS, SYMBOLS, SymbolInfo
from ._money import MoneyModel
from ._options import (
    DEFAULT_LIST_CHUNK,
    DEFAULT_TICK_CHUNK,
    DEFAULT_TRENDBAR_CHUNK,
    Credentials,
    SimulatorOptions,
    World,
)
from ._recording import ConnectionRecord
from ._session import Session
from ._transport import Connection

__all__ = ["Simulator", "SimulatorOptions", "certs_dir"]

log = logging.getLogger("ctrader_sync.simulator")


def certs_dir() -> Path:
    """Return the directory of the bundled TEST-ONLY certificates."""
    return Path(str(resources.files("ctrader_sync.simulator") / "certs"))


class Simulator:
    """A local cTrader Open API server over TLS, running in background threads.

    Use it as a context manager; it listens as soon as it is constructed::

        with Simulator(seed=1) as sim:
            ctx = sim.client_ssl_context()
            ...  # connect to (sim.host, sim.port) with server_hostname="localhost"

    Args:
        seed: seeds the price paths (same seed, same prices: live quotes and history).
        spot_interval: seconds between two moves of an active symbol's price (0: only
            :meth:`set_price` moves prices).  A spot subscription gets the latest quote at once,
            then one spot event per move.
        heartbeat_interval: seconds between the server's ``ProtoHeartbeatEvent`` (0: none).
        idle_timeout: close a connection after this many seconds without an inbound message (0: never).
        request_limit: requests per sliding 1 s window per connection (0: no limit), counted when
            they arrived (on Linux the kernel's receive time, however late the simulator reads them).
        historical_limit: historical-data requests per sliding 1 s window per connection (0: no limit).
        max_frame_size: the largest inbound frame body; a bigger one gets ``FRAME_TOO_LONG`` and a
            disconnect (0: no limit).
        benchmark: no limits, no recording, no market thread, a fast path for ``ProtoOAVersionReq``
            and a flood of ``flood_count`` spot events on each spot subscription.
        record: keep every message in and out on :attr:`connections` (ignored in benchmark mode).
        flood_count: spot events sent per spot subscription in benchmark mode.
        host: the interface to listen on.
        port: the port to listen on (0: any free port).
        accounts: how many accounts to create (at least 2); the last one is a live account.
        account_currency: the deposit currency of every account, or one per account (asset names
            such as ``"USD"``, ``"EUR"``).
        market_hours: ``"always"`` (the default: the live market is open whatever the clock says)
            or ``"fx"`` (open Sunday 22:00 to Friday 22:00 UTC by ``clock``).
        clock: the simulated wall clock, in Unix seconds (default ``time.time``); timestamps,
            market hours, order expiry and swap follow it.
        money: the commission and swap model (:class:`MoneyModel`).
        trendbar_chunk, tick_chunk, list_chunk: the most trendbars, ticks, or deals/orders one
            history answer holds (more in the range: ``hasMore``).
        history_windows: refuse history ranges wider than the documented windows.
    """

    def __init__(self, *, seed: int = 1, spot_interval: float = 0.1, heartbeat_interval: float = 10.0,
                 idle_timeout: float = 30.0, request_limit: int = 50, historical_limit: int = 5,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, benchmark: bool = False, record: bool = True,
                 flood_count: int = 100_000, host: str = "127.0.0.1", port: int = 0, accounts: int = 2,
                 account_currency: str | Sequence[str] = "USD", market_hours: str = "always",
                 clock: Callable[[], float] | None = None, money: MoneyModel | None = None,
                 trendbar_chunk: int = DEFAULT_TRENDBAR_CHUNK, tick_chunk: int = DEFAULT_TICK_CHUNK,
                 list_chunk: int = DEFAULT_LIST_CHUNK, history_windows: bool = True) -> None:
        if accounts < 2:
            raise ValueError("the simulator needs at least 2 accounts")
        if min(trendbar_chunk, tick_chunk, list_chunk) < 1:
            raise ValueError("history chunks must be at least 1")
        currencies = [account_currency] * accounts if isinstance(account_currency, str) else list(account_currency)
        assets = {a.name: a.asset_id for a in ASSETS}
        if len(currencies) != accounts or any(c not in assets for c in currencies):
            raise ValueError(f"account_currency: one of {sorted(assets)} per account")
        self.options = SimulatorOptions(
            seed=seed, spot_interval=spot_interval, heartbeat_interval=heartbeat_interval,
            idle_timeout=idle_timeout, request_limit=request_limit, historical_limit=historical_limit,
            max_frame_size=max_frame_size, benchmark=benchmark, record=record and not benchmark,
            flood_count=flood_count, host=host, port=port, market_hours=market_hours,
            trendbar_chunk=trendbar_chunk, tick_chunk=tick_chunk, list_chunk=list_chunk,
            history_windows=history_windows)
        self.seed = seed
        self.version = "91"
        certs = certs_dir()
        self.ca_file = str(certs / "ca.pem")
        """Path of the TEST-ONLY CA certificate that signed the server's certificate."""
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.minimum_version = ssl.TLSVersion.TLSv1_2
        # server-key.pem is server.key under a name the package data (certs/*.pem) ships
        self._server_context.load_cert_chain(str(certs / "server.pem"), str(certs / "server-key.pem"))
        self._credentials = Credentials(seed)
        self.client_id = self._credentials.client_id
        self.client_secret = self._credentials.client_secret
        self.access_token = self._credentials.access_token
        self.refresh_token = self._credentials.refresh_token
        registered = int((clock or time.time)() * 1000) - 86_400_000
        self._accounts: dict[int, Account] = {}
        for i in range(accounts):
            account_id = 40_000_000 + i + 1
            account = Account(account_id=account_id, is_live=i == accounts - 1, trader_login=9_000_000 + i + 1,
                              deposit_asset_id=assets[currencies[i]], registered_ms=registered, balance=0)
            account.change_balance(1_000_000, registered, BALANCE_DEPOSIT, "initial deposit")  # 10,000.00
            self._accounts[account_id] = account
        self.account_ids: list[int] = list(self._accounts)
        """The simulated ``ctidTraderAccountId`` values (the last one is a live account)."""
        self.symbols: tuple[SymbolInfo, ...] = SYMBOLS
        """The symbol table: ids, names, digits, base prices."""
        self._exchange = Exchange(seed=seed, symbols=SYMBOLS, accounts=self._accounts, spot_interval=spot_interval,
                                  market_hours=market_hours, clock=clock, money=money)
        self._world = World(self.options, self.version, self._credentials, self._accounts, self._exchange, SYMBOLS)
        self._bench = BenchAnswers(self.version, SYMBOLS[0], self.account_ids[0]) if benchmark else None
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
        self._accept_thread = threading.Thread(target=self._accept_loop, name="ctrader_sync-sim-accept", daemon=True)
        self._closed = False
        if not benchmark:
            self._exchange.start()
        self._accept_thread.start()
        log.debug("simulator listening on %s:%d", self.host, self.port)

    def __repr__(self) -> str:
        return f"<Simulator {self.host}:{self.port} connections={len(self.connections)}>"

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- connection helpers ------------------------------------------------------------------

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

    def max_requests_in_window(self, window: float = 1.0, historical: bool = False) -> int:
        """Return the most requests any one connection sent within ``window`` seconds."""
        return max((c.max_requests_in_window(window, historical) for c in list(self.connections)), default=0)

    # -- the market ----------------------------------------------------------------------------

    def symbol(self, symbol: str | int) -> SymbolInfo:
        """The symbol named ``symbol`` (e.g. ``"EURUSD"``) or with that id; ``KeyError`` if none."""
        for s in self.symbols:
            if symbol in (s.name, s.symbol_id):
                return s
        raise KeyError(f"no symbol {symbol!r}; known: {[s.name for s in self.symbols]}")

    def revoke_access_token(self, token: str) -> None:
        """Stop accepting the access token ``token`` from now on (as if the user revoked the
        application's access); accounts authorized with it stay authorized until logged out."""
        self._credentials.revoke(token)

    def set_price(self, symbol: str | int, bid: float, ask: float) -> None:
        """Move ``symbol`` to ``bid``/``ask`` now (prices as floats, e.g. ``1.08512``).

        Subscribers get the spot event first, then resting orders, stop losses and take profits
        the new price crosses are executed (when the market is closed, by ``market_hours="fx"``:
        once it opens).  Returns once every connection has queued the resulting events, so a test
        can read them right after.  The automatic path continues
        from the new level (pause it with :meth:`pause_market`).
        """
        s = self.symbol(symbol)
        self._exchange.set_price(s.symbol_id, round(bid * 100_000), round(ask * 100_000))

    def price(self, symbol: str | int) -> tuple[float, float]:
        """The current ``(bid, ask)`` of ``symbol``, as floats."""
        bid, ask = self._exchange.quote(self.symbol(symbol).symbol_id)
        return to_price(bid), to_price(ask)

    def pause_market(self) -> None:
        """Stop the automatic price path (prices then move only with :meth:`set_price`)."""
        self._exchange.pause(True)

    def resume_market(self) -> None:
        """Restart the automatic price path."""
        self._exchange.pause(False)

    @property
    def market_open(self) -> bool:
        """True when trading requests are accepted (``market_hours`` and ``clock`` decide)."""
        return self._exchange.market_open()

    def deposit(self, account_id: int, amount: float, note: str = "") -> None:
        """Deposit ``amount`` (negative: withdraw) in the account's currency, as a broker would.

        The account's connections get ``ProtoOAExecutionEvent`` (DEPOSIT_WITHDRAW) and
        ``ProtoOATraderUpdatedEvent``; the change appears in the cash flow history.  Returns once
        every connection has queued them.
        """
        self._exchange.deposit(account_id, amount, note)

    def balance(self, account_id: int) -> float:
        """The balance of ``account_id`` in its currency."""
        with self._exchange.lock:
            account = self._accounts[account_id]
            return float(account.balance) / 10.0 ** account.money_digits

    # -- faults ------------------------------------------------------------------------------

    def inject(self, kind: str, *, after: int = 0, connection: int | None = None,
               payload_type: int | None = None, delay: float = 0.0) -> None:
        """Inject a fault; returns once it is armed on every connection it targets.

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

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening, close every connection and join every thread (returns promptly)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._exchange.stop()
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
            try:
                conn = Connection(raw, self._server_context, self.options, record, self._stop, self._bench,
                                  self.account_ids)
            except OSError:  # pragma: no cover - the peer vanished already
                raw.close()
                return
            session = Session(conn, self._world)
            conn.attach(session)
            self._exchange.attach(session)
            for fault in self._future_faults.pop(index, []):  # armed before the I/O thread starts
                conn.add_fault(fault)
            self._live = [c for c in self._live if c.thread.is_alive()] + [conn]
            self.connections.append(record)
            conn.thread.start()
            self._conn_cond.notify_all()
