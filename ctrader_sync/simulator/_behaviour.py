"""What the simulated server does with each request: the cTrader Open API session and trading rules.

One :class:`Session` per connection, run on that connection's I/O thread.  Account state shared
between connections lives on the simulator and is touched under its lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    FULL_ACCESS,
    HEDGED,
    ORDER_ACCEPTED,
    ORDER_CANCELLED,
    ORDER_FILLED,
    ORDER_REPLACED,
    SCOPE_TRADE,
    ProtoOAAsset,
    ProtoOACtidTraderAccount,
    ProtoOALightSymbol,
    ProtoOASymbol,
    ProtoOATickData,
    ProtoOATrader,
    ProtoOATrendbar,
    ProtoOATrendbarPeriod,
)
from ..protobuf import TYPE_OF
from ._accounts import (
    BUY,
    LIMIT,
    MARKET,
    MARKET_RANGE,
    ORDER_STATUS_ACCEPTED,
    ORDER_STATUS_CANCELLED,
    ORDER_STATUS_FILLED,
    POSITION_STATUS_CLOSED,
    SELL,
    STOP,
    STOP_LIMIT,
    Account,
    OrderState,
    PositionState,
)
from ._market import ASSETS, PERIOD_MINUTES, SpotWalk, SymbolInfo, history_price, history_volume

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["MAX_TICKS", "MAX_TRENDBARS", "TICK_SPACING_MS", "Session"]

MAX_TRENDBARS = 4000
"""The most trendbars one ``ProtoOAGetTrendbarsRes`` holds (more in the range: ``hasMore``)."""
MAX_TICKS = 1000
"""The most ticks one ``ProtoOAGetTickDataRes`` holds (more in the range: ``hasMore``)."""
TICK_SPACING_MS = 1000
"""Historical ticks are one per second (on whole seconds)."""
MAX_DEALS = 1000

EX_ACCEPTED, EX_FILLED, EX_REPLACED, EX_CANCELLED = ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_CANCELLED

Handler = Callable[[Any, "str | None"], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _points_to_price(value: int) -> float:
    return value / 100_000.0


class Session:
    """The protocol state of one connection and the handlers of every supported request."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sim = conn.sim
        self.app_authorized = False
        self.authorized: set[int] = set()
        self.spots: dict[int, int] = {}  # symbol id -> account id
        self.walks: dict[int, SpotWalk] = {}
        self.live_bars: dict[tuple[int, int], list[int]] = {}  # (symbol, period) -> [start_min, o, h, l, c, v]
        self.next_spot = float("inf")
        self._table: dict[int, Handler] = {
            TYPE_OF[M.ProtoOAVersionReq]: self.version,
            TYPE_OF[M.ProtoOAApplicationAuthReq]: self.application_auth,
            TYPE_OF[M.ProtoOAGetAccountListByAccessTokenReq]: self.account_list,
            TYPE_OF[M.ProtoOAAccountAuthReq]: self.account_auth,
            TYPE_OF[M.ProtoOAAccountLogoutReq]: self.account_logout,
            TYPE_OF[M.ProtoOARefreshTokenReq]: self.refresh_token,
            TYPE_OF[M.ProtoOATraderReq]: self.trader,
            TYPE_OF[M.ProtoOASymbolsListReq]: self.symbols_list,
            TYPE_OF[M.ProtoOASymbolByIdReq]: self.symbol_by_id,
            TYPE_OF[M.ProtoOAAssetListReq]: self.asset_list,
            TYPE_OF[M.ProtoOASubscribeSpotsReq]: self.subscribe_spots,
            TYPE_OF[M.ProtoOAUnsubscribeSpotsReq]: self.unsubscribe_spots,
            TYPE_OF[M.ProtoOASubscribeLiveTrendbarReq]: self.subscribe_live_trendbar,
            TYPE_OF[M.ProtoOAUnsubscribeLiveTrendbarReq]: self.unsubscribe_live_trendbar,
            TYPE_OF[M.ProtoOAGetTrendbarsReq]: self.trendbars,
            TYPE_OF[M.ProtoOAGetTickDataReq]: self.tick_data,
            TYPE_OF[M.ProtoOANewOrderReq]: self.new_order,
            TYPE_OF[M.ProtoOAClosePositionReq]: self.close_position,
            TYPE_OF[M.ProtoOACancelOrderReq]: self.cancel_order,
            TYPE_OF[M.ProtoOAAmendOrderReq]: self.amend_order,
            TYPE_OF[M.ProtoOAAmendPositionSLTPReq]: self.amend_sltp,
            TYPE_OF[M.ProtoOAReconcileReq]: self.reconcile,
            TYPE_OF[M.ProtoOADealListReq]: self.deal_list,
            TYPE_OF[M.ProtoOAOrderListReq]: self.order_list,
        }

    def handler(self, payload_type: int) -> Handler | None:
        """Return the handler of ``payload_type``, or None when it is not supported."""
        return self._table.get(payload_type)

    # -- helpers -----------------------------------------------------------------------------

    def _error(self, cid: str | None, code: str, description: str, account_id: int | None = None) -> None:
        err = M.ProtoOAErrorRes(errorCode=code, description=description)
        if account_id is not None:
            err.ctidTraderAccountId = account_id
        self.conn.respond(err, cid)

    def _order_error(self, cid: str | None, account_id: int, code: str, description: str, *,
                     order_id: int | None = None, position_id: int | None = None) -> None:
        event = M.ProtoOAOrderErrorEvent(ctidTraderAccountId=account_id, errorCode=code,
                                         description=description)
        if order_id is not None:
            event.orderId = order_id
        if position_id is not None:
            event.positionId = position_id
        self.conn.respond(event, cid)

    def _app(self, cid: str | None) -> bool:
        if not self.app_authorized:
            self._error(cid, "CH_CLIENT_NOT_AUTHENTICATED", "the application is not authenticated")
        return self.app_authorized

    def _account(self, msg: Any, cid: str | None) -> Account | None:
        if not self._app(cid):
            return None
        account_id = int(msg.ctidTraderAccountId)
        if account_id not in self.authorized:
            self._error(cid, "ACCOUNT_NOT_AUTHORIZED",
                        f"account {account_id} is not authorized on this connection", account_id)
            return None
        return self.sim._accounts[account_id]

    def _symbol(self, symbol_id: int) -> SymbolInfo | None:
        return self.sim._symbols_by_id.get(symbol_id)

    def _send_execution(self, cid: str | None, account: Account, events: list[Message]) -> None:
        for event in events:
            self.conn.respond(event, cid)
        self.sim._broadcast(account.account_id, events, self.conn)

    def logout(self, account_id: int) -> None:
        """Forget ``account_id`` on this connection, with its spot subscriptions."""
        self.authorized.discard(account_id)
        self.conn.record._set_account(account_id, False)
        for symbol_id in [s for s, a in self.spots.items() if a == account_id]:
            self._drop_spot(symbol_id)

    def on_closed(self) -> None:
        """The connection closed: its session is gone (the record keeps its last state)."""
        self.spots.clear()
        self.live_bars.clear()

    # -- session -----------------------------------------------------------------------------

    def version(self, msg: M.ProtoOAVersionReq, cid: str | None) -> None:
        """``ProtoOAVersionReq`` (no authentication needed)."""
        self.conn.respond(M.ProtoOAVersionRes(version=self.sim.version), cid)

    def application_auth(self, msg: M.ProtoOAApplicationAuthReq, cid: str | None) -> None:
        """``ProtoOAApplicationAuthReq``: once per connection, with the right id and secret."""
        if self.app_authorized:
            self._error(cid, "CH_CLIENT_ALREADY_AUTHENTICATED", "the application is already authenticated")
        elif msg.clientId != self.sim.client_id or msg.clientSecret != self.sim.client_secret:
            self._error(cid, "CH_CLIENT_AUTH_FAILURE", "wrong client id or secret")
        else:
            self.app_authorized = True
            self.conn.record.app_authorized = True
            self.conn.respond(M.ProtoOAApplicationAuthRes(), cid)

    def account_list(self, msg: M.ProtoOAGetAccountListByAccessTokenReq, cid: str | None) -> None:
        """``ProtoOAGetAccountListByAccessTokenReq``."""
        if not self._app(cid):
            return
        if not self.sim._token_valid(msg.accessToken):
            self._error(cid, "CH_ACCESS_TOKEN_INVALID", "the access token is not valid")
            return
        res = M.ProtoOAGetAccountListByAccessTokenRes(accessToken=msg.accessToken, permissionScope=SCOPE_TRADE)
        for account in self.sim._accounts.values():
            res.ctidTraderAccount.append(ProtoOACtidTraderAccount(
                ctidTraderAccountId=account.account_id, isLive=account.is_live,
                traderLogin=account.trader_login, brokerTitleShort="SIM"))
        self.conn.respond(res, cid)

    def account_auth(self, msg: M.ProtoOAAccountAuthReq, cid: str | None) -> None:
        """``ProtoOAAccountAuthReq``: authorize one account on this connection."""
        if not self._app(cid):
            return
        account_id = int(msg.ctidTraderAccountId)
        if not self.sim._token_valid(msg.accessToken):
            self._error(cid, "CH_ACCESS_TOKEN_INVALID", "the access token is not valid", account_id)
        elif account_id not in self.sim._accounts:
            self._error(cid, "CH_CTID_TRADER_ACCOUNT_NOT_FOUND", f"no account {account_id}", account_id)
        elif account_id in self.authorized:
            self._error(cid, "ALREADY_LOGGED_IN", f"account {account_id} is already authorized",
                        account_id)
        else:
            self.authorized.add(account_id)
            self.conn.record._set_account(account_id, True)
            self.conn.respond(M.ProtoOAAccountAuthRes(ctidTraderAccountId=account_id), cid)

    def account_logout(self, msg: M.ProtoOAAccountLogoutReq, cid: str | None) -> None:
        """``ProtoOAAccountLogoutReq``."""
        if self._account(msg, cid) is None:
            return
        self.logout(int(msg.ctidTraderAccountId))
        self.conn.respond(M.ProtoOAAccountLogoutRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def refresh_token(self, msg: M.ProtoOARefreshTokenReq, cid: str | None) -> None:
        """``ProtoOARefreshTokenReq``: issue a new access token, accepted from then on."""
        if not self._app(cid):
            return
        tokens = self.sim._refresh(msg.refreshToken)
        if tokens is None:
            self._error(cid, "CH_ACCESS_TOKEN_INVALID", "the refresh token is not valid")
            return
        access, refresh = tokens
        self.conn.respond(M.ProtoOARefreshTokenRes(accessToken=access, tokenType="bearer",
                                                   expiresIn=2_628_000, refreshToken=refresh), cid)

    # -- reference data ----------------------------------------------------------------------

    def trader(self, msg: M.ProtoOATraderReq, cid: str | None) -> None:
        """``ProtoOATraderReq``."""
        account = self._account(msg, cid)
        if account is None:
            return
        with self.sim._lock:
            trader = ProtoOATrader(
                ctidTraderAccountId=account.account_id, balance=account.balance, depositAssetId=1,
                leverageInCents=10_000, traderLogin=account.trader_login,
                brokerName="ctrader_sync simulator", moneyDigits=2, accessRights=FULL_ACCESS, accountType=HEDGED)
        self.conn.respond(M.ProtoOATraderRes(ctidTraderAccountId=account.account_id, trader=trader), cid)

    def symbols_list(self, msg: M.ProtoOASymbolsListReq, cid: str | None) -> None:
        """``ProtoOASymbolsListReq``."""
        if self._account(msg, cid) is None:
            return
        res = M.ProtoOASymbolsListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        for i, s in enumerate(self.sim.symbols):
            res.symbol.append(ProtoOALightSymbol(
                symbolId=s.symbol_id, symbolName=s.name, enabled=True, baseAssetId=s.base_asset_id,
                quoteAssetId=s.quote_asset_id, symbolCategoryId=1, description=s.name,
                sortingNumber=float(i)))
        self.conn.respond(res, cid)

    def symbol_by_id(self, msg: M.ProtoOASymbolByIdReq, cid: str | None) -> None:
        """``ProtoOASymbolByIdReq``: full details of the known ids (SYMBOL_NOT_FOUND if none is)."""
        if self._account(msg, cid) is None:
            return
        found = [s for s in (self._symbol(int(i)) for i in msg.symbolId) if s is not None]
        if not found:
            self._error(cid, "SYMBOL_NOT_FOUND", f"no symbol among {list(msg.symbolId)}",
                        int(msg.ctidTraderAccountId))
            return
        res = M.ProtoOASymbolByIdRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        for s in found:
            res.symbol.append(ProtoOASymbol(
                symbolId=s.symbol_id, digits=s.digits, pipPosition=s.pip_position,
                enableShortSelling=True, minVolume=s.min_volume, maxVolume=s.max_volume,
                stepVolume=s.step_volume, lotSize=10_000_000, measurementUnits=""))
        self.conn.respond(res, cid)

    def asset_list(self, msg: M.ProtoOAAssetListReq, cid: str | None) -> None:
        """``ProtoOAAssetListReq``."""
        if self._account(msg, cid) is None:
            return
        res = M.ProtoOAAssetListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        for a in ASSETS:
            res.asset.append(ProtoOAAsset(assetId=a.asset_id, name=a.name, displayName=a.name,
                                          digits=a.digits))
        self.conn.respond(res, cid)

    # -- spots and live trendbars ------------------------------------------------------------

    def subscribe_spots(self, msg: M.ProtoOASubscribeSpotsReq, cid: str | None) -> None:
        """``ProtoOASubscribeSpotsReq``: answer, then push spot events every ``spot_interval``."""
        if self._account(msg, cid) is None:
            return
        account_id = int(msg.ctidTraderAccountId)
        ids = [int(i) for i in msg.symbolId]
        for symbol_id in ids:
            if self._symbol(symbol_id) is None:
                self._error(cid, "SYMBOL_NOT_FOUND", f"no symbol {symbol_id}", account_id)
                return
            if symbol_id in self.spots:
                self._error(cid, "ALREADY_SUBSCRIBED", f"already subscribed to spots of {symbol_id}",
                            account_id)
                return
        for symbol_id in ids:
            self.spots[symbol_id] = account_id
            if symbol_id not in self.walks:
                symbol = self._symbol(symbol_id)
                assert symbol is not None
                self.walks[symbol_id] = SpotWalk(self.sim.seed, symbol)
            self.conn.record._set_subscription(symbol_id, True)
        self.conn.respond(M.ProtoOASubscribeSpotsRes(ctidTraderAccountId=account_id), cid)
        if self.conn.benchmark and self.sim.options.flood_count > 0:
            self.conn.flood_remaining += self.sim.options.flood_count
            return
        interval = self.sim.options.spot_interval
        if interval > 0:
            for symbol_id in ids:  # the first quote right away, as the real server does
                self.conn.respond(self._spot_event(symbol_id, account_id), None)
            self.next_spot = min(self.next_spot, time.monotonic() + interval)

    def _drop_spot(self, symbol_id: int) -> None:
        self.spots.pop(symbol_id, None)
        for key in [k for k in self.live_bars if k[0] == symbol_id]:
            del self.live_bars[key]
        self.conn.record._set_subscription(symbol_id, False)
        if not self.spots:
            self.next_spot = float("inf")

    def unsubscribe_spots(self, msg: M.ProtoOAUnsubscribeSpotsReq, cid: str | None) -> None:
        """``ProtoOAUnsubscribeSpotsReq``."""
        if self._account(msg, cid) is None:
            return
        account_id = int(msg.ctidTraderAccountId)
        for symbol_id in msg.symbolId:
            if self.spots.get(int(symbol_id)) != account_id:
                self._error(cid, "NOT_SUBSCRIBED_TO_SPOTS", f"not subscribed to spots of {symbol_id}",
                            account_id)
                return
        for symbol_id in msg.symbolId:
            self._drop_spot(int(symbol_id))
        self.conn.respond(M.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=account_id), cid)

    def subscribe_live_trendbar(self, msg: M.ProtoOASubscribeLiveTrendbarReq, cid: str | None) -> None:
        """``ProtoOASubscribeLiveTrendbarReq``: needs a spot subscription to the symbol."""
        if self._account(msg, cid) is None:
            return
        account_id = int(msg.ctidTraderAccountId)
        symbol_id = int(msg.symbolId)
        key = (symbol_id, int(msg.period))
        if self._symbol(symbol_id) is None:
            self._error(cid, "SYMBOL_NOT_FOUND", f"no symbol {symbol_id}", account_id)
        elif self.spots.get(symbol_id) != account_id:
            self._error(cid, "NOT_SUBSCRIBED_TO_SPOTS", "subscribe to spots of the symbol first", account_id)
        elif key in self.live_bars:
            self._error(cid, "ALREADY_SUBSCRIBED", "already subscribed to this trendbar", account_id)
        else:
            self.live_bars[key] = []
            self.conn.respond(M.ProtoOASubscribeLiveTrendbarRes(ctidTraderAccountId=account_id), cid)

    def unsubscribe_live_trendbar(self, msg: M.ProtoOAUnsubscribeLiveTrendbarReq, cid: str | None) -> None:
        """``ProtoOAUnsubscribeLiveTrendbarReq``."""
        if self._account(msg, cid) is None:
            return
        key = (int(msg.symbolId), int(msg.period))
        if key not in self.live_bars:
            self._error(cid, "NOT_SUBSCRIBED_TO_SPOTS", "not subscribed to this trendbar",
                        int(msg.ctidTraderAccountId))
            return
        del self.live_bars[key]
        self.conn.respond(M.ProtoOAUnsubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId),
                          cid)

    def _spot_event(self, symbol_id: int, account_id: int) -> M.ProtoOASpotEvent:
        bid, ask = self.walks[symbol_id].step()
        self.sim._last_quote[symbol_id] = (bid, ask)
        now_ms = _now_ms()
        event = M.ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol_id, bid=bid, ask=ask,
                                   timestamp=now_ms)
        minute = now_ms // 60_000
        for (sid, period), bar in self.live_bars.items():
            if sid != symbol_id:
                continue
            span = PERIOD_MINUTES.get(period, 1)
            start = minute - minute % span
            if not bar or bar[0] != start:
                bar[:] = [start, bid, bid, bid, bid, 0]
            bar[2] = max(bar[2], bid)
            bar[3] = min(bar[3], bid)
            bar[4] = bid
            bar[5] += 1
            event.trendbar.append(ProtoOATrendbar(
                volume=bar[5], period=ProtoOATrendbarPeriod.ValueType(period), low=bar[3], deltaOpen=bar[1] - bar[3],
                deltaClose=bar[4] - bar[3], deltaHigh=bar[2] - bar[3], utcTimestampInMinutes=start))
        return event

    def spot_timer(self, now: float) -> float:
        """Push due spot events; return when the next ones are due."""
        if now < self.next_spot:
            return self.next_spot
        for symbol_id, account_id in list(self.spots.items()):
            self.conn.push(self._spot_event(symbol_id, account_id))
        interval = self.sim.options.spot_interval
        self.next_spot = max(self.next_spot + interval, now) if interval > 0 else float("inf")
        return self.next_spot

    # -- history -----------------------------------------------------------------------------

    def trendbars(self, msg: M.ProtoOAGetTrendbarsReq, cid: str | None) -> None:
        """``ProtoOAGetTrendbarsReq``: the newest bars of the range, ``hasMore`` when it holds more."""
        if self._account(msg, cid) is None:
            return
        account_id = int(msg.ctidTraderAccountId)
        symbol = self._symbol(int(msg.symbolId))
        if symbol is None:
            self._error(cid, "SYMBOL_NOT_FOUND", f"no symbol {msg.symbolId}", account_id)
            return
        span = PERIOD_MINUTES.get(int(msg.period))
        if span is None:
            self._error(cid, "INCORRECT_BOUNDARIES", f"unknown period {msg.period}", account_id)
            return
        step = span * 60_000
        to_ms = msg.toTimestamp if msg.HasField("toTimestamp") else _now_ms()
        limit = min(msg.count, MAX_TRENDBARS) if msg.count else MAX_TRENDBARS
        from_ms = msg.fromTimestamp if msg.HasField("fromTimestamp") else to_ms - limit * step
        if from_ms > to_ms or from_ms < 0:
            self._error(cid, "INCORRECT_BOUNDARIES", "fromTimestamp is after toTimestamp", account_id)
            return
        first = -(-from_ms // step)  # first bar starting at or after from
        last = (to_ms - 1) // step  # last bar starting before to
        total = max(0, last - first + 1)
        has_more = total > limit
        if has_more:
            first = last - limit + 1
        res = M.ProtoOAGetTrendbarsRes(ctidTraderAccountId=account_id, period=msg.period,
                                       timestamp=_now_ms(), symbolId=symbol.symbol_id, hasMore=has_more)
        seed = self.sim.seed
        bars = res.trendbar
        for index in range(first, last + 1) if total else ():
            start = index * step
            open_ = history_price(seed, symbol, start)
            close = history_price(seed, symbol, start + step - 1000)
            mid = history_price(seed, symbol, start + step // 2)
            high = max(open_, close, mid)
            low = min(open_, close, mid)
            bars.append(ProtoOATrendbar(
                volume=history_volume(seed, symbol.symbol_id, start), period=msg.period, low=low,
                deltaOpen=open_ - low, deltaClose=close - low, deltaHigh=high - low,
                utcTimestampInMinutes=start // 60_000))
        self.conn.respond(res, cid)

    def tick_data(self, msg: M.ProtoOAGetTickDataReq, cid: str | None) -> None:
        """``ProtoOAGetTickDataReq``: newest first, delta-encoded, ``hasMore`` past ``MAX_TICKS``."""
        if self._account(msg, cid) is None:
            return
        account_id = int(msg.ctidTraderAccountId)
        symbol = self._symbol(int(msg.symbolId))
        if symbol is None:
            self._error(cid, "SYMBOL_NOT_FOUND", f"no symbol {msg.symbolId}", account_id)
            return
        to_ms = msg.toTimestamp if msg.HasField("toTimestamp") else _now_ms()
        from_ms = msg.fromTimestamp if msg.HasField("fromTimestamp") else to_ms - 3_600_000
        if from_ms > to_ms or from_ms < 0:
            self._error(cid, "INCORRECT_BOUNDARIES", "fromTimestamp is after toTimestamp", account_id)
            return
        newest = to_ms - to_ms % TICK_SPACING_MS
        oldest = -(-from_ms // TICK_SPACING_MS) * TICK_SPACING_MS
        total = max(0, (newest - oldest) // TICK_SPACING_MS + 1)
        count = min(total, MAX_TICKS)
        spread = symbol.spread if msg.type == 2 else 0  # ASK = 2
        res = M.ProtoOAGetTickDataRes(ctidTraderAccountId=account_id, hasMore=total > MAX_TICKS)
        prev_t = prev_p = 0
        seed = self.sim.seed
        for i in range(count):
            t = newest - i * TICK_SPACING_MS
            p = history_price(seed, symbol, t) + spread
            res.tickData.append(ProtoOATickData(timestamp=t - prev_t, tick=p - prev_p))
            prev_t, prev_p = t, p
        self.conn.respond(res, cid)

    # -- trading -----------------------------------------------------------------------------

    def _quote(self, symbol: SymbolInfo) -> tuple[int, int]:
        return self.sim._last_quote.get(symbol.symbol_id, (symbol.base_price,
                                                             symbol.base_price + symbol.spread))

    def _bad_volume(self, symbol: SymbolInfo, volume: int) -> bool:
        return (volume < symbol.min_volume or volume > symbol.max_volume
                or volume % symbol.step_volume != 0)

    def new_order(self, msg: M.ProtoOANewOrderReq, cid: str | None) -> None:
        """``ProtoOANewOrderReq``: market orders fill at once, limit and stop orders rest."""
        account = self._account(msg, cid)
        if account is None:
            return
        aid = account.account_id
        symbol = self._symbol(int(msg.symbolId))
        if symbol is None:
            self._order_error(cid, aid, "SYMBOL_NOT_FOUND", f"no symbol {msg.symbolId}")
            return
        if self._bad_volume(symbol, int(msg.volume)):
            self._order_error(cid, aid, "TRADING_BAD_VOLUME",
                              f"volume {msg.volume} is outside [{symbol.min_volume}, {symbol.max_volume}] "
                              f"or not a multiple of {symbol.step_volume}")
            return
        order_type = msg.orderType
        if order_type == LIMIT and not msg.limitPrice > 0:
            self._order_error(cid, aid, "TRADING_BAD_PRICES", "a limit order needs limitPrice")
            return
        if order_type in (STOP, STOP_LIMIT) and not msg.stopPrice > 0:
            self._order_error(cid, aid, "TRADING_BAD_PRICES", "a stop order needs stopPrice")
            return
        now_ms = _now_ms()
        with self.sim._lock:
            order = OrderState(
                order_id=account.new_id(), symbol_id=symbol.symbol_id, order_type=order_type,
                side=msg.tradeSide, volume=int(msg.volume), status=ORDER_STATUS_ACCEPTED, created_ms=now_ms,
                updated_ms=now_ms, label=msg.label, comment=msg.comment, client_order_id=msg.clientOrderId)
            if msg.HasField("stopLoss"):
                order.stop_loss = msg.stopLoss
            if msg.HasField("takeProfit"):
                order.take_profit = msg.takeProfit
            events: list[Message] = []
            if order_type in (MARKET, MARKET_RANGE):
                events.append(M.ProtoOAExecutionEvent(ctidTraderAccountId=aid, executionType=EX_ACCEPTED,
                                                      order=order.to_proto()))
                bid, ask = self._quote(symbol)
                price = _points_to_price(ask if order.side == BUY else bid)
                position = PositionState(
                    position_id=account.new_id(), symbol_id=symbol.symbol_id, side=order.side,
                    volume=order.volume, price=price, open_ms=now_ms, updated_ms=now_ms,
                    stop_loss=order.stop_loss, take_profit=order.take_profit, label=order.label,
                    comment=order.comment)
                account.positions[position.position_id] = position
                order.status = ORDER_STATUS_FILLED
                order.execution_price = price
                order.position_id = position.position_id
                deal = account.add_deal(order, position, order.volume, price, now_ms)
                events.append(M.ProtoOAExecutionEvent(
                    ctidTraderAccountId=aid, executionType=EX_FILLED, order=order.to_proto(),
                    position=position.to_proto(), deal=deal))
            else:
                if msg.HasField("limitPrice"):
                    order.limit_price = msg.limitPrice
                if msg.HasField("stopPrice"):
                    order.stop_price = msg.stopPrice
                account.orders[order.order_id] = order
                events.append(M.ProtoOAExecutionEvent(ctidTraderAccountId=aid, executionType=EX_ACCEPTED,
                                                      order=order.to_proto()))
        self._send_execution(cid, account, events)

    def close_position(self, msg: M.ProtoOAClosePositionReq, cid: str | None) -> None:
        """``ProtoOAClosePositionReq``: close all or part of a position with a closing deal."""
        account = self._account(msg, cid)
        if account is None:
            return
        aid = account.account_id
        now_ms = _now_ms()
        with self.sim._lock:
            position = account.positions.get(int(msg.positionId))
            if position is None or position.status == POSITION_STATUS_CLOSED:
                self._order_error(cid, aid, "POSITION_NOT_FOUND", f"no open position {msg.positionId}",
                                  position_id=int(msg.positionId))
                return
            symbol = self._symbol(position.symbol_id)
            assert symbol is not None
            volume = min(int(msg.volume), position.volume)
            if volume <= 0 or volume % symbol.step_volume:
                self._order_error(cid, aid, "TRADING_BAD_VOLUME", f"cannot close volume {msg.volume}",
                                  position_id=position.position_id)
                return
            side = SELL if position.side == BUY else BUY
            order = OrderState(order_id=account.new_id(), symbol_id=symbol.symbol_id, order_type=MARKET,
                               side=side, volume=volume, status=ORDER_STATUS_ACCEPTED, created_ms=now_ms,
                               updated_ms=now_ms, position_id=position.position_id, closing=True)
            events: list[Message] = [M.ProtoOAExecutionEvent(
                ctidTraderAccountId=aid, executionType=EX_ACCEPTED, order=order.to_proto(),
                position=position.to_proto())]
            bid, ask = self._quote(symbol)
            price = _points_to_price(bid if position.side == BUY else ask)
            direction = 1 if position.side == BUY else -1
            profit = round((price - position.price) * direction * volume / 100 * 100)
            position.volume -= volume
            position.updated_ms = now_ms
            if position.volume == 0:
                position.status = POSITION_STATUS_CLOSED
                position.volume = volume  # a closed position reports the volume it closed
            order.status = ORDER_STATUS_FILLED
            order.execution_price = price
            deal = account.add_deal(order, position, volume, price, now_ms, closing_profit=profit)
            events.append(M.ProtoOAExecutionEvent(
                ctidTraderAccountId=aid, executionType=EX_FILLED, order=order.to_proto(),
                position=position.to_proto(), deal=deal))
        self._send_execution(cid, account, events)

    def cancel_order(self, msg: M.ProtoOACancelOrderReq, cid: str | None) -> None:
        """``ProtoOACancelOrderReq``."""
        account = self._account(msg, cid)
        if account is None:
            return
        with self.sim._lock:
            order = self._pending_order(account, int(msg.orderId), cid)
            if order is None:
                return
            del account.orders[order.order_id]
            order.status = ORDER_STATUS_CANCELLED
            order.updated_ms = _now_ms()
            event = M.ProtoOAExecutionEvent(ctidTraderAccountId=account.account_id,
                                            executionType=EX_CANCELLED, order=order.to_proto())
        self._send_execution(cid, account, [event])

    def _pending_order(self, account: Account, order_id: int, cid: str | None) -> OrderState | None:
        """The account's pending order ``order_id``, or ``None`` after answering ORDER_NOT_FOUND."""
        order = account.orders.get(order_id)
        if order is None:
            self._order_error(cid, account.account_id, "ORDER_NOT_FOUND", f"no pending order {order_id}",
                              order_id=order_id)
        return order

    def amend_order(self, msg: M.ProtoOAAmendOrderReq, cid: str | None) -> None:
        """``ProtoOAAmendOrderReq``: change a pending order's volume, prices or protection."""
        account = self._account(msg, cid)
        if account is None:
            return
        with self.sim._lock:
            order = self._pending_order(account, int(msg.orderId), cid)
            if order is None:
                return
            symbol = self._symbol(order.symbol_id)
            assert symbol is not None
            if msg.HasField("volume"):
                if self._bad_volume(symbol, int(msg.volume)):
                    self._order_error(cid, account.account_id, "TRADING_BAD_VOLUME",
                                      f"bad volume {msg.volume}", order_id=order.order_id)
                    return
                order.volume = int(msg.volume)
            if msg.HasField("limitPrice"):
                order.limit_price = msg.limitPrice
            if msg.HasField("stopPrice"):
                order.stop_price = msg.stopPrice
            if msg.HasField("stopLoss"):
                order.stop_loss = msg.stopLoss
            if msg.HasField("takeProfit"):
                order.take_profit = msg.takeProfit
            order.updated_ms = _now_ms()
            event = M.ProtoOAExecutionEvent(ctidTraderAccountId=account.account_id,
                                            executionType=EX_REPLACED, order=order.to_proto())
        self._send_execution(cid, account, [event])

    def amend_sltp(self, msg: M.ProtoOAAmendPositionSLTPReq, cid: str | None) -> None:
        """``ProtoOAAmendPositionSLTPReq``: set (or clear, when absent) a position's SL and TP."""
        account = self._account(msg, cid)
        if account is None:
            return
        with self.sim._lock:
            position = account.positions.get(int(msg.positionId))
            if position is None or position.status == POSITION_STATUS_CLOSED:
                self._order_error(cid, account.account_id, "POSITION_NOT_FOUND",
                                  f"no open position {msg.positionId}", position_id=int(msg.positionId))
                return
            position.stop_loss = msg.stopLoss if msg.HasField("stopLoss") else None
            position.take_profit = msg.takeProfit if msg.HasField("takeProfit") else None
            position.updated_ms = _now_ms()
            event = M.ProtoOAExecutionEvent(ctidTraderAccountId=account.account_id,
                                            executionType=EX_REPLACED, position=position.to_proto())
        self._send_execution(cid, account, [event])

    def reconcile(self, msg: M.ProtoOAReconcileReq, cid: str | None) -> None:
        """``ProtoOAReconcileReq``: open positions and pending orders."""
        account = self._account(msg, cid)
        if account is None:
            return
        res = M.ProtoOAReconcileRes(ctidTraderAccountId=account.account_id)
        with self.sim._lock:
            for position in account.positions.values():
                if position.status != POSITION_STATUS_CLOSED:
                    res.position.append(position.to_proto())
            for order in account.orders.values():
                res.order.append(order.to_proto())
        self.conn.respond(res, cid)

    def deal_list(self, msg: M.ProtoOADealListReq, cid: str | None) -> None:
        """``ProtoOADealListReq``: deals executed in [fromTimestamp, toTimestamp], oldest first."""
        account = self._account(msg, cid)
        if account is None:
            return
        lo = msg.fromTimestamp if msg.HasField("fromTimestamp") else 0
        hi = msg.toTimestamp if msg.HasField("toTimestamp") else 2**62
        limit = msg.maxRows if msg.maxRows > 0 else MAX_DEALS
        with self.sim._lock:
            deals = [d for d in account.deals if lo <= d.executionTimestamp <= hi]
        res = M.ProtoOADealListRes(ctidTraderAccountId=account.account_id, hasMore=len(deals) > limit)
        res.deal.extend(deals[:limit])
        self.conn.respond(res, cid)

    def order_list(self, msg: M.ProtoOAOrderListReq, cid: str | None) -> None:
        """``ProtoOAOrderListReq``: the pending orders (no order history is kept)."""
        account = self._account(msg, cid)
        if account is None:
            return
        res = M.ProtoOAOrderListRes(ctidTraderAccountId=account.account_id, hasMore=False)
        with self.sim._lock:
            for order in account.orders.values():
                res.order.append(order.to_proto())
        self.conn.respond(res, cid)
