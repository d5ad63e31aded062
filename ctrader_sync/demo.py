"""``python -m ctrader_sync.demo``: a guided tour of the SDK, out of the box.

Without credentials it starts the bundled :class:`~ctrader_sync.simulator.Simulator` and walks through
a whole session with short progress lines: connect, login, account list, symbols, five live spot
prices, the last ten H1 bars, a market order and its execution, reconcile, closing the position and
closing the client.

With ``--demo`` or ``--live`` it reads the application's credentials from the environment
(``CTRADER_CLIENT_ID``, ``CTRADER_CLIENT_SECRET``, ``CTRADER_ACCESS_TOKEN`` and optionally
``CTRADER_ACCOUNT_ID``) and runs the read-only part against the real server; it places an order only
with an explicit ``--trade``.  ``--host`` (with ``--port`` and ``--ca-file``) does the same against
another server; ``--simulator-json FILE`` runs the whole tour against a ``python -m
ctrader_sync.simulator`` in another process, from the JSON it wrote with ``--json-file FILE``.

Exit status: 0 on success, 1 when a step fails, 2 for missing or refused credentials or an
unreachable server, 130 when interrupted.  Errors are one line on stderr, never a traceback, and
credentials are never printed.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from ._client import Client
from ._demo_setup import (
    ENV_ACCESS_TOKEN,
    ENV_ACCOUNT_ID,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DemoError,
    Output,
    Target,
    check_options,
    parser,
    target_from_env,
    target_from_simulator_json,
)
from ._reconnect import ReconnectPolicy
from .errors import AuthenticationError, ConnectError, ConnectionLostError, CTraderError
from .messages.OpenApiMessages_pb2 import (
    ProtoOAClosePositionReq,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOAGetTrendbarsReq,
    ProtoOAReconcileReq,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOASymbolByIdReq,
    ProtoOASymbolsListReq,
    ProtoOAUnsubscribeSpotsReq,
)
from .messages.OpenApiModelMessages_pb2 import ProtoOACtidTraderAccount, ProtoOASymbol
from .units import decode_trendbars, money_from_raw, ms_to_datetime, price_from_raw, volume_from_raw, volume_to_lots

__all__ = ["ENV_ACCESS_TOKEN", "ENV_ACCOUNT_ID", "ENV_CLIENT_ID", "ENV_CLIENT_SECRET", "main"]

# Enum values from the schema (ProtoOAOrderType, ProtoOATradeSide, ProtoOAExecutionType, ...).
_H1 = 9
_SIDES = {1: "BUY", 2: "SELL"}

_REQUEST_TIMEOUT = 15.0
_SPOT_TIMEOUT = 10.0
_EXIT_FAILED = EXIT_FAILED
_EXIT_USAGE = EXIT_USAGE
_EXIT_INTERRUPTED = EXIT_INTERRUPTED
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _fmt_price(value: float, digits: int) -> str:
    """Format a price given as a float (execution prices) with the symbol's digits."""
    return f"{value:.{digits}f}"


def _volume_text(volume: int, lot_size: int) -> str:
    units = volume_from_raw(volume).normalize()
    lots = volume_to_lots(volume, lot_size).normalize() if lot_size > 0 else None
    return f"{units:f} units" + (f" ({lots:f} lots)" if lots is not None else "")


class Tour:
    """The demo's steps, run in order against one connected :class:`Client`."""

    def __init__(self, target: Target, symbol: str, out: Output) -> None:
        self.target = target
        self.symbol_name = symbol
        self.out = out
        self.client: Client | None = None
        self.account_id = 0
        self.symbol: ProtoOASymbol = ProtoOASymbol()
        self.names: dict[int, str] = {}
        self.position_id = 0
        self.position_volume = 0

    # -- helpers ---------------------------------------------------------------------------

    @property
    def c(self) -> Client:
        """The connected client."""
        assert self.client is not None
        return self.client

    @property
    def digits(self) -> int:
        """The chosen symbol's number of decimals."""
        return int(self.symbol.digits)

    def request(self, message: Message) -> Any:
        """Send and wait, with the demo's timeout."""
        return self.c.request(message, timeout=_REQUEST_TIMEOUT)

    # -- steps ---------------------------------------------------------------------------

    def connect(self, description: str) -> None:
        """Step: connect (TLS) and wait until the connection is up."""
        t = self.target
        self.out.step(f"connecting to {t.host}:{t.port} ({description})")
        # A few quick attempts, so an unreachable server gives an answer in seconds, not minutes.
        policy = ReconnectPolicy(initial=0.5, maximum=2.0, max_attempts=3)
        self.client = Client(t.host, t.port, ssl_context=t.ssl_context, connect_timeout=10.0,
                             response_timeout=_REQUEST_TIMEOUT, reconnect=policy)
        started = time.monotonic()
        self.client.start()
        try:
            self.client.wait_connected(20.0)
        except ConnectError as exc:
            reason = exc.__cause__ or exc
            hint = ""
            if _is_certificate_failure(reason) and t.mode == "custom":
                hint = ("; to trust a local server's own certificate pass --ca-file (a `python -m "
                        "ctrader_sync.simulator` prints it as ca_file; or use --simulator-json)"
                        if t.host in _LOCAL_HOSTS or t.host.startswith("127.") else
                        "; if the server uses its own CA, pass it with --ca-file")
            raise DemoError(f"cannot connect to {t.host}:{t.port}: {reason}{hint}", _EXIT_USAGE)
        self.out.detail(f"connected in {1000 * (time.monotonic() - started):.0f} ms")

    def login(self) -> None:
        """Step: application auth and token check (no account yet)."""
        self.out.step("login: application auth and access token check")
        try:
            self.c.login(self.target.client_id, self.target.client_secret, self.target.access_token,
                         accounts=[], timeout=_REQUEST_TIMEOUT)
        except AuthenticationError as exc:
            hint = {
                "CH_CLIENT_AUTH_FAILURE": f"check {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET}",
                "CH_ACCESS_TOKEN_INVALID": f"check {ENV_ACCESS_TOKEN} (it may have expired)",
                "OA_AUTH_TOKEN_EXPIRED": f"{ENV_ACCESS_TOKEN} has expired; refresh it",
            }.get(exc.error_code, "check the credentials")
            raise DemoError(f"the server refused the credentials ({exc.error_code}): {hint}", _EXIT_USAGE)
        except ConnectionLostError as exc:
            raise DemoError(f"the server closed the connection during login ({exc}); check the credentials",
                            _EXIT_USAGE)
        self.out.detail("application authorized")

    def accounts(self) -> None:
        """Step: list the token's accounts, pick one and authorize it."""
        self.out.step("account list")
        listing = self.request(ProtoOAGetAccountListByAccessTokenReq(accessToken=self.target.access_token))
        accounts: list[ProtoOACtidTraderAccount] = list(listing.ctidTraderAccount)
        for a in accounts:
            kind = "live" if a.isLive else "demo"
            broker = f", {a.brokerTitleShort}" if a.brokerTitleShort else ""
            self.out.detail(f"account {a.ctidTraderAccountId}: {kind}, login {a.traderLogin}{broker}")
        chosen = self._choose(accounts)
        try:
            self.c.login(self.target.client_id, self.target.client_secret, self.target.access_token,
                         accounts=[chosen], timeout=_REQUEST_TIMEOUT)
        except AuthenticationError as exc:
            raise DemoError(f"account {chosen} was refused ({exc.error_code})", _EXIT_USAGE)
        self.account_id = chosen
        self.out.detail(f"using account {chosen}")

    def _choose(self, accounts: list[ProtoOACtidTraderAccount]) -> int:
        ids = [int(a.ctidTraderAccountId) for a in accounts]
        wanted = self.target.account_id
        if wanted is not None:
            if wanted not in ids:
                raise DemoError(f"{ENV_ACCOUNT_ID}={wanted} is not granted by this access token "
                                f"(granted: {', '.join(map(str, ids)) or 'none'})", _EXIT_USAGE)
            return wanted
        live = {"demo": False, "live": True, "simulator": False}.get(self.target.mode)
        suitable = [int(a.ctidTraderAccountId) for a in accounts if live is None or bool(a.isLive) == live]
        if not suitable:
            kind = "" if live is None else ("live " if live else "demo ")
            raise DemoError(f"this access token grants no {kind}account", _EXIT_USAGE)
        return suitable[0]

    def symbols(self) -> None:
        """Step: the symbol list, then the chosen symbol's details (digits, volumes)."""
        self.out.step("symbols")
        res = self.request(ProtoOASymbolsListReq(ctidTraderAccountId=self.account_id))
        self.names = {int(s.symbolId): s.symbolName for s in res.symbol}
        wanted = self.symbol_name.upper()
        found = [int(s.symbolId) for s in res.symbol if s.symbolName.upper() == wanted]
        if not found:
            sample = ", ".join(sorted(self.names.values())[:8])
            raise DemoError(f"symbol {self.symbol_name!r} not found among {len(self.names)} symbols "
                            f"(e.g. {sample})")
        details = self.request(ProtoOASymbolByIdReq(ctidTraderAccountId=self.account_id, symbolId=found[:1]))
        self.symbol = details.symbol[0]
        s = self.symbol
        self.out.detail(f"{len(self.names)} symbols; {self.names[int(s.symbolId)]} is id {s.symbolId}, "
                        f"{s.digits} digits, minimum {_volume_text(self._order_volume(), int(s.lotSize))}")

    def _order_volume(self) -> int:
        """The smallest valid volume of the symbol, in cents: its minimum, rounded up to a step."""
        s = self.symbol
        minimum = int(s.minVolume) if s.HasField("minVolume") and s.minVolume > 0 else 100_000
        step = int(s.stepVolume) if s.HasField("stepVolume") and s.stepVolume > 0 else minimum
        return -(-minimum // step) * step

    def spots(self, count: int = 5) -> None:
        """Step: subscribe to spots, print ``count`` prices with the symbol's digits, unsubscribe."""
        name = self.names[int(self.symbol.symbolId)]
        self.out.step(f"{count} live spot prices of {name}")
        sid = int(self.symbol.symbolId)
        bid = ask = 0
        seen = 0
        with self.c.events(ProtoOASpotEvent, timeout=_SPOT_TIMEOUT) as stream:
            self.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account_id, symbolId=[sid]))
            try:
                for event in stream:
                    if int(event.symbolId) != sid:  # type: ignore[attr-defined]
                        continue
                    spot: Any = event
                    bid = int(spot.bid) if spot.HasField("bid") else bid
                    ask = int(spot.ask) if spot.HasField("ask") else ask
                    if not bid and not ask:
                        continue
                    seen += 1
                    when = ms_to_datetime(spot.timestamp) if spot.HasField("timestamp") else None
                    stamp = when.strftime("%H:%M:%S.%f")[:-3] if when else "--:--:--.---"
                    self.out.detail(f"{stamp}  {name}  bid {self._price(bid)}  ask {self._price(ask)}")
                    if seen >= count:
                        break
            finally:
                self.request(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=self.account_id, symbolId=[sid]))
        if seen < count:
            message = f"only {seen} of {count} spot prices within {_SPOT_TIMEOUT:g} s"
            if self.target.mode == "simulator":
                raise DemoError(message)
            self.out.detail(message + " (is the market closed?)")

    def _price(self, raw: int) -> str:
        return str(price_from_raw(raw, self.digits)) if raw else "-"

    def trendbars(self, count: int = 10) -> None:
        """Step: the last ``count`` H1 bars as a table."""
        name = self.names[int(self.symbol.symbolId)]
        self.out.step(f"last {count} H1 bars of {name}")
        now = int(time.time() * 1000)
        res = self.request(ProtoOAGetTrendbarsReq(
            ctidTraderAccountId=self.account_id, symbolId=int(self.symbol.symbolId), period=_H1,  # type: ignore[arg-type]
            fromTimestamp=now - 14 * 86_400_000, toTimestamp=now, count=count))
        rows = decode_trendbars(res.trendbar, self.digits)[-count:]
        width = max([len("open"), *(len(str(r.high)) for r in rows)])
        header = f"{'time (UTC)':<16}  " + "  ".join(f"{h:>{width}}" for h in ("open", "high", "low", "close"))
        self.out.detail(header + "  ticks")
        for r in rows:
            prices = "  ".join(f"{p!s:>{width}}" for p in (r.open, r.high, r.low, r.close))
            self.out.detail(f"{r.time:%Y-%m-%d %H:%M}  {prices}  {r.volume:>5}")
        if len(rows) < count:
            self.out.detail(f"(only {len(rows)} bars in the last 14 days)")

    def order(self) -> None:
        """Step: a minimal market BUY through the toolkit, which returns after the fill."""
        name = self.names[int(self.symbol.symbolId)]
        volume = self._order_volume()
        self.out.step(f"market order: BUY {_volume_text(volume, int(self.symbol.lotSize))} {name}")
        try:
            fill = self.c.account(self.account_id).market_order(
                int(self.symbol.symbolId), "buy", volume=volume_from_raw(volume), label="ctrader_sync demo",
                timeout=_REQUEST_TIMEOUT)
        except CTraderError as exc:  # refused, or the answer was lost and its outcome is unknown
            raise DemoError(f"order refused: {exc}")
        self.position_id = fill.position_id
        self.position_volume = volume
        self.out.detail(f"execution: order {fill.order_id} FILLED at {_fmt_price(fill.price, self.digits)}, "
                        f"position {self.position_id}")

    def reconcile(self) -> None:
        """Step: the account's open positions and pending orders."""
        self.out.step("reconcile: open positions and orders")
        res = self.request(ProtoOAReconcileReq(ctidTraderAccountId=self.account_id))
        self.out.detail(f"{len(res.position)} open position(s), {len(res.order)} pending order(s)")
        for p in list(res.position)[:10]:
            trade = p.tradeData
            name = self.names.get(int(trade.symbolId), f"symbol {trade.symbolId}")
            mark = "  <- the demo's" if int(p.positionId) == self.position_id else ""
            units = volume_from_raw(trade.volume).normalize()
            self.out.detail(f"position {p.positionId}: {_SIDES.get(trade.tradeSide, '?')} {units:f} units {name} "
                            f"at {_fmt_price(p.price, self.digits)}{mark}")
        if self.position_id and all(int(p.positionId) != self.position_id for p in res.position):
            raise DemoError(f"position {self.position_id} is missing from the reconcile answer")

    def close_position(self) -> None:
        """Step: close the demo's position through the toolkit, which returns after the closing fill."""
        self.out.step(f"closing position {self.position_id}")
        try:
            fill = self.c.account(self.account_id).close_position(self.position_id, timeout=_REQUEST_TIMEOUT)
        except CTraderError as exc:
            raise DemoError(f"closing refused: {exc}")
        text = f"position {self.position_id} closed at {_fmt_price(fill.price, self.digits)}"
        self.position_id = 0  # nothing left for shutdown() to clean up
        deal = fill.execution.deal
        if deal.HasField("closePositionDetail"):
            detail = deal.closePositionDetail
            digits = detail.moneyDigits if detail.HasField("moneyDigits") else deal.moneyDigits or 2
            text += f", gross profit {money_from_raw(detail.grossProfit, digits)}"
        self.out.detail(text)

    def close(self) -> None:
        """Step: close the client and check that its threads ended."""
        self.out.step("closing the client")
        client, self.client = self.client, None
        if client is not None:
            client.close()
            alive = [t.name for t in client.threads() if t.is_alive()]
            self.out.detail(f"closed; client threads still running: {', '.join(alive) or 'none'}")

    def shutdown(self) -> None:
        """After a failed step: close the demo's position if it is still open, then the client."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if self.position_id:
                try:
                    client.request(ProtoOAClosePositionReq(ctidTraderAccountId=self.account_id,
                                                           positionId=self.position_id,
                                                           volume=self.position_volume), timeout=_REQUEST_TIMEOUT)
                    self.out.error(f"closed the demo's position {self.position_id} after the failure below")
                except Exception as exc:
                    self.out.error(f"position {self.position_id} may still be open ({type(exc).__name__}: {exc})")
        finally:
            client.close()


def _is_certificate_failure(reason: BaseException) -> bool:
    seen: BaseException | None = reason
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _run(target: Target, args: argparse.Namespace, out: Output, description: str) -> None:
    tour = Tour(target, args.symbol, out)
    try:
        tour.connect(description)
        tour.login()
        tour.accounts()
        tour.symbols()
        tour.spots()
        tour.trendbars()
        if target.trade:
            tour.order()
        tour.reconcile()
        if target.trade:
            tour.close_position()
        tour.close()
    finally:
        tour.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status (0 success, 1 a step failed, 2 credentials/network, 130 ^C)."""
    args = parser().parse_args(argv)
    out = Output(0, bool(args.quiet), sys.stdout, sys.stderr)
    env = os.environ
    out.hide(env.get(n, "").strip() for n in (ENV_CLIENT_SECRET, ENV_ACCESS_TOKEN))
    try:
        check_options(args, out)
        if args.simulator_json:
            target = target_from_simulator_json(args.simulator_json)
            out.hide(target.secrets())
            out.total = 10
            _run(target, args, out, "simulator process, TEST-ONLY certificate")
        elif args.mode is None and args.host is None:
            from .simulator import Simulator

            with Simulator(seed=1) as sim:
                target = Target(mode="simulator", host=sim.host, port=sim.port, client_id=sim.client_id,
                                client_secret=sim.client_secret, access_token=sim.access_token,
                                ssl_context=sim.client_ssl_context(), trade=True)
                out.hide(target.secrets())
                out.total = 10
                _run(target, args, out, "bundled simulator, TEST-ONLY certificate")
        else:
            target = target_from_env(args, env)
            out.hide(target.secrets())
            out.total = 10 if target.trade else 8
            label = {"demo": "cTrader demo server", "live": "cTrader LIVE server"}.get(target.mode, "custom server")
            if not target.trade:
                label += ", read-only"
            _run(target, args, out, label)
    except DemoError as exc:
        out.error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        out.error("interrupted")
        return _EXIT_INTERRUPTED
    except CTraderError as exc:
        step = f"step {out.number}: " if out.number else ""
        out.error(f"{step}{type(exc).__name__}: {exc}")
        return _EXIT_FAILED
    except Exception as exc:  # a demo must end with one line, never a traceback
        out.error(f"unexpected {type(exc).__name__}: {exc}")
        return _EXIT_FAILED
    if not args.quiet:
        print("done.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
