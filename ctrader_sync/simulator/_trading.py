"""Trading rules: validation of trading requests, resting orders, triggers and expiry.

Each operation either raises :class:`Refusal` (answered with ``ProtoOAOrderErrorEvent``) or
returns the events it caused.  Callers hold the exchange's lock.  Where the real server's exact
refusal is not documented the simulator's choice is listed in the README (simulator choices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    BUY,
    GOOD_TILL_DATE,
    LIMIT,
    MARKET,
    MARKET_RANGE,
    ORDER_ACCEPTED,
    ORDER_CANCELLED,
    ORDER_EXPIRED,
    ORDER_REPLACED,
    ORDER_STATUS_ACCEPTED,
    ORDER_STATUS_CANCELLED,
    ORDER_STATUS_EXPIRED,
    POSITION_STATUS_OPEN,
    SELL,
    STOP,
    STOP_LIMIT,
)
from ._accounts import Account, OrderState, PositionState
from ._fills import Fills, execution, to_points
from ._market import SymbolInfo

__all__ = ["Refusal", "Trading"]


class Refusal(Exception):
    """A trading request the server refuses: ``code`` is a ``ProtoOAErrorCode`` (or common) name."""

    def __init__(self, code: str, description: str, *, order_id: int | None = None,
                 position_id: int | None = None) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.order_id = order_id
        self.position_id = position_id


def _check_stops(side: int, entry: int, stop_loss: float | None, take_profit: float | None,
                 what: str) -> None:
    """BUY: stop loss below and take profit above ``entry``; SELL the other way round."""
    sign = 1 if side == BUY else -1
    if stop_loss is not None and not (entry - to_points(stop_loss)) * sign > 0:
        raise Refusal("TRADING_BAD_STOPS", f"stop loss {stop_loss} is on the wrong side of {what}")
    if take_profit is not None and not (to_points(take_profit) - entry) * sign > 0:
        raise Refusal("TRADING_BAD_STOPS", f"take profit {take_profit} is on the wrong side of {what}")


class Trading:
    """The trading requests and the market's triggers for one simulator."""

    def __init__(self, symbols: Mapping[int, SymbolInfo], fills: Fills, market_open: Callable[[], bool]) -> None:
        self.symbols = symbols
        self.fills = fills
        self.market_open = market_open

    # -- helpers ------------------------------------------------------------------------------

    def _open(self) -> None:
        if not self.market_open():
            raise Refusal("MARKET_CLOSED", "the simulated market is closed")

    def _symbol(self, symbol_id: int) -> SymbolInfo:
        symbol = self.symbols.get(symbol_id)
        if symbol is None:
            raise Refusal("SYMBOL_NOT_FOUND", f"no symbol {symbol_id}")
        return symbol

    @staticmethod
    def _volume(symbol: SymbolInfo, volume: int, **ids: int) -> None:
        if volume < symbol.min_volume or volume > symbol.max_volume or volume % symbol.step_volume:
            raise Refusal("TRADING_BAD_VOLUME", f"volume {volume} is outside [{symbol.min_volume}, "
                          f"{symbol.max_volume}] or not a multiple of {symbol.step_volume}", **ids)

    @staticmethod
    def pending(account: Account, order_id: int) -> OrderState:
        """The account's pending order ``order_id`` (else ORDER_NOT_FOUND)."""
        order = account.orders.get(order_id)
        if order is None:
            raise Refusal("ORDER_NOT_FOUND", f"no pending order {order_id}", order_id=order_id)
        return order

    @staticmethod
    def open_position(account: Account, position_id: int) -> PositionState:
        """The account's open position ``position_id`` (else POSITION_NOT_FOUND)."""
        position = account.positions.get(position_id)
        if position is None or position.status != POSITION_STATUS_OPEN:
            raise Refusal("POSITION_NOT_FOUND", f"no open position {position_id}", position_id=position_id)
        return position

    def _entry_checks(self, order: OrderState) -> None:
        """Prices of a pending order: present, on the right side of the market, stops around them."""
        bid, ask = self.fills.quote(order.symbol_id)
        buy = order.side == BUY
        if order.order_type == LIMIT:
            if not order.limit_price or order.limit_price <= 0:
                raise Refusal("TRADING_BAD_PRICES", "a limit order needs limitPrice", order_id=order.order_id)
            entry = to_points(order.limit_price)
            if (buy and entry >= ask) or (not buy and entry <= bid):
                raise Refusal("TRADING_BAD_PRICES", "a limit order's price must be better than the market",
                              order_id=order.order_id)
        else:
            if not order.stop_price or order.stop_price <= 0:
                raise Refusal("TRADING_BAD_PRICES", "a stop order needs stopPrice", order_id=order.order_id)
            entry = to_points(order.stop_price)
            if (buy and entry <= ask) or (not buy and entry >= bid):
                raise Refusal("TRADING_BAD_PRICES", "a stop order's price must be worse than the market",
                              order_id=order.order_id)
        _check_stops(order.side, entry, order.stop_loss, order.take_profit, "the order's price")

    def _free_margin(self, account: Account) -> int:
        used = sum(p.used_margin for p in account.positions.values() if p.status == POSITION_STATUS_OPEN)
        return account.balance + self.unrealized(account)[0] - used

    def unrealized(self, account: Account) -> tuple[int, dict[int, tuple[int, int]]]:
        """Total gross and per position ``(gross, net)`` unrealized P&L at the current prices."""
        now = self.fills.now_ms()
        per: dict[int, tuple[int, int]] = {}
        total = 0
        for p in account.positions.values():
            if p.status != POSITION_STATUS_OPEN:
                continue
            symbol = self.symbols[p.symbol_id]
            exit_ = self.fills.market_price(p.symbol_id, SELL if p.side == BUY else BUY)  # the closing side
            gross = self.fills.money.gross_profit(symbol, p.side, p.volume, p.price, exit_ / 100_000.0,
                                                  account.deposit_asset_id, account.money_digits)
            p.swap = self.fills.money.swap(symbol, p.side, p.volume, p.open_ms, now, account.money_digits)
            per[p.position_id] = (gross, gross + p.swap + p.commission)
            total += gross
        return total, per

    # -- requests -----------------------------------------------------------------------------

    def new_order(self, account: Account, msg: M.ProtoOANewOrderReq) -> list[Message]:
        """``ProtoOANewOrderReq``: a market order fills now, others rest until the price crosses."""
        symbol = self._symbol(int(msg.symbolId))
        self._open()
        self._volume(symbol, int(msg.volume))
        kind = msg.orderType
        if kind not in (MARKET, MARKET_RANGE, LIMIT, STOP, STOP_LIMIT):
            raise Refusal("TRADING_BAD_PRICES", f"order type {kind} cannot be placed")
        now = self.fills.now_ms()
        order = OrderState(
            order_id=account.new_id(), symbol_id=symbol.symbol_id, order_type=kind, side=msg.tradeSide,
            volume=int(msg.volume), status=ORDER_STATUS_ACCEPTED, created_ms=now, updated_ms=now,
            label=msg.label, comment=msg.comment, client_order_id=msg.clientOrderId)
        for name, field in (("stop_loss", "stopLoss"), ("take_profit", "takeProfit"),
                            ("relative_stop_loss", "relativeStopLoss"),
                            ("relative_take_profit", "relativeTakeProfit"), ("limit_price", "limitPrice"),
                            ("stop_price", "stopPrice"), ("time_in_force", "timeInForce"),
                            ("expiration_ms", "expirationTimestamp"), ("slippage_points", "slippageInPoints")):
            if msg.HasField(field):  # type: ignore[arg-type]
                setattr(order, name, getattr(msg, field))
        order.trailing = msg.trailingStopLoss
        if order.trailing and order.stop_loss is None and order.relative_stop_loss is None:
            raise Refusal("TRADING_BAD_STOPS", "a trailing stop loss needs a stop loss")
        for rel in (order.relative_stop_loss, order.relative_take_profit):
            if rel is not None and rel <= 0:
                raise Refusal("TRADING_BAD_STOPS", "relative stops must be positive")
        if kind in (MARKET, MARKET_RANGE):
            if kind == MARKET and (order.stop_loss is not None or order.take_profit is not None):
                raise Refusal("TRADING_BAD_STOPS", "absolute stopLoss/takeProfit are not supported for "
                              "MARKET orders: use relativeStopLoss/relativeTakeProfit")
            margin = self.fills.money.margin(symbol, order.volume, account.deposit_asset_id,
                                             account.leverage_in_cents, account.money_digits)
            if margin > self._free_margin(account):
                raise Refusal("NOT_ENOUGH_MONEY", f"margin {margin} exceeds the free margin")
            account.order_history.append(order)
            accepted = execution(account.account_id, ORDER_ACCEPTED, order=order)
            price = self.fills.market_price(symbol.symbol_id, order.side)
            return [accepted, *self.fills.fill(account, order, price)]
        self._entry_checks(order)
        if order.time_in_force == GOOD_TILL_DATE and (order.expiration_ms is None or order.expiration_ms <= now):
            raise Refusal("TRADING_BAD_EXPIRATION_DATE", "a GOOD_TILL_DATE order needs a future expirationTimestamp")
        account.orders[order.order_id] = order
        account.order_history.append(order)
        return [execution(account.account_id, ORDER_ACCEPTED, order=order)]

    def close_position(self, account: Account, position_id: int, volume: int) -> list[Message]:
        """``ProtoOAClosePositionReq``: close all or part of an open position."""
        position = self.open_position(account, position_id)
        symbol = self.symbols[position.symbol_id]
        self._open()
        if volume <= 0 or volume % symbol.step_volume or volume > position.volume:
            raise Refusal("TRADING_BAD_VOLUME", f"cannot close {volume} of a position of {position.volume}",
                          position_id=position_id)
        return self.fills.close(account, position, volume)

    def cancel_order(self, account: Account, order_id: int) -> list[Message]:
        """``ProtoOACancelOrderReq``."""
        order = self.pending(account, order_id)
        del account.orders[order_id]
        order.status = ORDER_STATUS_CANCELLED
        order.updated_ms = self.fills.now_ms()
        return [execution(account.account_id, ORDER_CANCELLED, order=order)]

    def amend_order(self, account: Account, msg: M.ProtoOAAmendOrderReq) -> list[Message]:
        """``ProtoOAAmendOrderReq``: change a pending order's volume, prices, protection or expiry."""
        order = self.pending(account, int(msg.orderId))
        symbol = self.symbols[order.symbol_id]
        changed = OrderState(**vars(order))
        if msg.HasField("volume"):
            self._volume(symbol, int(msg.volume), order_id=order.order_id)
            changed.volume = int(msg.volume)
        for name, field in (("limit_price", "limitPrice"), ("stop_price", "stopPrice"), ("stop_loss", "stopLoss"),
                            ("take_profit", "takeProfit"), ("expiration_ms", "expirationTimestamp"),
                            ("relative_stop_loss", "relativeStopLoss"),
                            ("relative_take_profit", "relativeTakeProfit"), ("slippage_points", "slippageInPoints")):
            if msg.HasField(field):  # type: ignore[arg-type]
                setattr(changed, name, getattr(msg, field))
        try:
            self._entry_checks(changed)
        except Refusal as exc:
            exc.order_id = order.order_id
            raise
        now = self.fills.now_ms()
        if changed.time_in_force == GOOD_TILL_DATE and (changed.expiration_ms or 0) <= now:
            raise Refusal("TRADING_BAD_EXPIRATION_DATE", "expirationTimestamp is in the past",
                          order_id=order.order_id)
        changed.updated_ms = now
        vars(order).update(vars(changed))
        return [execution(account.account_id, ORDER_REPLACED, order=order)]

    def amend_position(self, account: Account, msg: M.ProtoOAAmendPositionSLTPReq) -> list[Message]:
        """``ProtoOAAmendPositionSLTPReq``: set (or remove, when absent) a position's SL and TP."""
        position = self.open_position(account, int(msg.positionId))
        stop_loss = msg.stopLoss if msg.HasField("stopLoss") else None
        take_profit = msg.takeProfit if msg.HasField("takeProfit") else None
        bid, ask = self.fills.quote(position.symbol_id)
        try:
            _check_stops(position.side, bid if position.side == BUY else ask, stop_loss, take_profit,
                         "the current price")
        except Refusal as exc:
            exc.position_id = position.position_id
            raise
        if msg.trailingStopLoss and stop_loss is None:
            raise Refusal("TRADING_BAD_STOPS", "a trailing stop loss needs a stop loss",
                          position_id=position.position_id)
        position.stop_loss, position.take_profit = stop_loss, take_profit
        position.trail_distance = abs((bid if position.side == BUY else ask) - to_points(stop_loss)) \
            if msg.trailingStopLoss and stop_loss is not None else None
        position.updated_ms = self.fills.now_ms()
        return [execution(account.account_id, ORDER_REPLACED, position=position)]

    # -- the market ---------------------------------------------------------------------------

    def _crossed(self, order: OrderState, bid: int, ask: int) -> int | None:
        """The fill price if the market crossed ``order`` (None: it keeps resting)."""
        buy = order.side == BUY
        price = ask if buy else bid
        if order.order_type == LIMIT and order.limit_price is not None:
            limit = to_points(order.limit_price)
            return price if (price <= limit if buy else price >= limit) else None
        if order.stop_price is None:
            return None
        stop = to_points(order.stop_price)
        if not (price >= stop if buy else price <= stop):
            return None
        if order.order_type == STOP_LIMIT and order.slippage_points is not None \
                and abs(price - stop) > order.slippage_points * self.symbols[order.symbol_id].point:
            return None  # beyond the allowed slippage: keep waiting
        return price

    def match(self, accounts: Iterable[Account], symbol_id: int) -> list[tuple[int, list[Message]]]:
        """Fill crossed orders and trigger reached stops on ``symbol_id``; return events by account."""
        bid, ask = self.fills.quote(symbol_id)
        out: list[tuple[int, list[Message]]] = []
        for account in accounts:
            events: list[Message] = []
            for order in sorted(account.orders.values(), key=lambda o: o.order_id):
                if order.symbol_id == symbol_id:
                    price = self._crossed(order, bid, ask)
                    if price is not None:
                        events += self.fills.fill(account, order, price)
            for position in list(account.positions.values()):
                if position.symbol_id == symbol_id and position.status == POSITION_STATUS_OPEN:
                    events += self.fills.trigger_protection(account, position)
            if events:
                out.append((account.account_id, events))
        return out

    def expire(self, accounts: Iterable[Account], now_ms: int) -> list[tuple[int, list[Message]]]:
        """Expire GOOD_TILL_DATE orders whose time has come; return events by account."""
        out: list[tuple[int, list[Message]]] = []
        for account in accounts:
            events: list[Message] = []
            for order in list(account.orders.values()):
                if order.time_in_force == GOOD_TILL_DATE and order.expiration_ms is not None \
                        and order.expiration_ms <= now_ms:
                    del account.orders[order.order_id]
                    order.status = ORDER_STATUS_EXPIRED
                    order.updated_ms = now_ms
                    events.append(execution(account.account_id, ORDER_EXPIRED, order=order, server=True))
            if events:
                out.append((account.account_id, events))
        return out
