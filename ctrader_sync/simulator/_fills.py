"""How orders become positions and positions close: deals, commission, swap, balance, events.

The mechanics shared by requests (market orders, closes) and the market (resting orders that
fill, stop loss and take profit that trigger).  Callers hold the exchange's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    BUY,
    MARKET,
    ORDER_ACCEPTED,
    ORDER_FILLED,
    ORDER_STATUS_ACCEPTED,
    ORDER_STATUS_FILLED,
    POSITION_STATUS_CLOSED,
    SELL,
    STOP_LOSS_TAKE_PROFIT,
    ProtoOAClosePositionDetail,
    ProtoOADeal,
    ProtoOAOrderType,
)
from ._accounts import Account, OrderState, PositionState, trader_proto
from ._market import SymbolInfo
from ._money import Money

__all__ = ["Fills", "execution", "to_points", "to_price"]


def to_price(points: int) -> float:
    """An integer price in 1/100000 as the wire's double."""
    return round(points / 100_000.0, 5)


def to_points(price: float) -> int:
    """A wire double price in 1/100000."""
    return round(price * 100_000)


def execution(account_id: int, kind: int, *, order: OrderState | None = None,
              position: PositionState | None = None, deal: ProtoOADeal | None = None,
              server: bool = False) -> M.ProtoOAExecutionEvent:
    """A ``ProtoOAExecutionEvent`` of ``kind`` (``ProtoOAExecutionType``)."""
    event = M.ProtoOAExecutionEvent(ctidTraderAccountId=account_id, executionType=kind)  # type: ignore[arg-type]
    if order is not None:
        event.order.CopyFrom(order.to_proto())
    if position is not None:
        event.position.CopyFrom(position.to_proto())
    if deal is not None:
        event.deal.CopyFrom(deal)
    if server:
        event.isServerEvent = True
    return event


class Fills:
    """Opening and closing positions for one simulator."""

    def __init__(self, symbols: Mapping[int, SymbolInfo], money: Money, quote: Callable[[int], tuple[int, int]],
                 now_ms: Callable[[], int]) -> None:
        self.symbols = symbols
        self.money = money
        self.quote = quote
        self.now_ms = now_ms

    def market_price(self, symbol_id: int, side: int) -> int:
        """The price a ``side`` order fills at now: ask for BUY, bid for SELL."""
        bid, ask = self.quote(symbol_id)
        return ask if side == BUY else bid

    def fill(self, account: Account, order: OrderState, price: int) -> list[Message]:
        """Fill ``order`` at ``price`` into a new position; return the ORDER_FILLED event."""
        now = self.now_ms()
        symbol = self.symbols[order.symbol_id]
        digits = account.money_digits
        position = PositionState(
            position_id=account.new_id(), symbol_id=symbol.symbol_id, side=order.side, volume=order.volume,
            price=to_price(price), open_ms=now, updated_ms=now, money_digits=digits,
            stop_loss=order.stop_loss, take_profit=order.take_profit, label=order.label, comment=order.comment,
            commission=self.money.commission(symbol, order.volume, digits),
            used_margin=self.money.margin(symbol, order.volume, account.deposit_asset_id,
                                          account.leverage_in_cents, digits))
        direction = 1 if order.side == BUY else -1
        if order.relative_stop_loss:
            position.stop_loss = _rounded(symbol, price - direction * order.relative_stop_loss)
        if order.relative_take_profit:
            position.take_profit = _rounded(symbol, price + direction * order.relative_take_profit)
        position.order_id = order.order_id
        if order.trailing and position.stop_loss is not None:  # kept from the price the stop watches
            bid, ask = self.quote(symbol.symbol_id)
            position.trail_distance = abs((bid if order.side == BUY else ask) - to_points(position.stop_loss))
        account.positions[position.position_id] = position
        account.orders.pop(order.order_id, None)
        order.status = ORDER_STATUS_FILLED
        order.execution_price = to_price(price)
        order.position_id = position.position_id
        order.updated_ms = now
        deal = account.add_deal(order, position, order.volume, to_price(price), now, position.commission)
        return [execution(account.account_id, ORDER_FILLED, order=order, position=position, deal=deal)]

    def close(self, account: Account, position: PositionState, volume: int,
              order_type: ProtoOAOrderType.ValueType = MARKET, announce: bool = True) -> list[Message]:
        """Close ``volume`` of ``position`` at the market; return its events (trader update last).

        ``announce``: send ORDER_ACCEPTED for the closing order first (a close request does, a
        triggered stop loss or take profit does not).
        """
        now = self.now_ms()
        symbol = self.symbols[position.symbol_id]
        digits = account.money_digits
        side = SELL if position.side == BUY else BUY
        order = OrderState(order_id=account.new_id(), symbol_id=symbol.symbol_id, order_type=order_type,
                           side=side, volume=volume, status=ORDER_STATUS_ACCEPTED, created_ms=now,
                           updated_ms=now, position_id=position.position_id, closing=True)
        account.order_history.append(order)
        events: list[Message] = []
        if announce:
            events.append(execution(account.account_id, ORDER_ACCEPTED, order=order, position=position))
        price = self.market_price(symbol.symbol_id, side)
        gross = self.money.gross_profit(symbol, position.side, volume, position.price, to_price(price),
                                        account.deposit_asset_id, digits)
        share = volume / position.volume
        open_commission = round(position.commission * share)
        close_commission = self.money.commission(symbol, volume, digits)
        swap = round(self.money.swap(symbol, position.side, position.volume, position.open_ms, now, digits) * share)
        net = gross + swap + open_commission + close_commission
        account.settle(net)
        detail = ProtoOAClosePositionDetail(
            entryPrice=position.price, grossProfit=gross, swap=swap, commission=open_commission + close_commission,
            balance=account.balance, closedVolume=volume, balanceVersion=account.balance_version,
            moneyDigits=digits, quoteToDepositConversionRate=self.money.rate(symbol.quote_asset_id,
                                                                              account.deposit_asset_id))
        position.commission -= open_commission
        position.volume -= volume
        position.updated_ms = now
        if position.volume == 0:
            position.status = POSITION_STATUS_CLOSED
            position.volume = volume  # a closed position reports the volume it closed
            position.used_margin = 0
        else:
            position.used_margin = self.money.margin(symbol, position.volume, account.deposit_asset_id,
                                                     account.leverage_in_cents, digits)
        order.status = ORDER_STATUS_FILLED
        order.execution_price = to_price(price)
        deal = account.add_deal(order, position, volume, to_price(price), now, close_commission, detail)
        events.append(execution(account.account_id, ORDER_FILLED, order=order, position=position, deal=deal,
                                server=not announce))
        events.append(M.ProtoOATraderUpdatedEvent(ctidTraderAccountId=account.account_id,
                                                  trader=trader_proto(account)))
        return events

    def trigger_protection(self, account: Account, position: PositionState) -> list[Message]:
        """Move a trailing stop loss, then close ``position`` if its stop loss or take profit is
        reached; return the events."""
        bid, ask = self.quote(position.symbol_id)
        events: list[Message] = []
        if position.trail_distance is not None and position.stop_loss is not None:
            sl = to_points(position.stop_loss)
            moved = bid - position.trail_distance if position.side == BUY else ask + position.trail_distance
            if (moved > sl) if position.side == BUY else (moved < sl):
                position.stop_loss = to_price(moved)
                position.updated_ms = self.now_ms()
                events.append(M.ProtoOATrailingSLChangedEvent(
                    ctidTraderAccountId=account.account_id, positionId=position.position_id,
                    orderId=position.order_id, stopPrice=position.stop_loss,
                    utcLastUpdateTimestamp=position.updated_ms))
        if position.side == BUY:
            price, hit_sl = bid, position.stop_loss is not None and bid <= to_points(position.stop_loss)
            hit_tp = position.take_profit is not None and bid >= to_points(position.take_profit)
        else:
            price, hit_sl = ask, position.stop_loss is not None and ask >= to_points(position.stop_loss)
            hit_tp = position.take_profit is not None and ask <= to_points(position.take_profit)
        del price
        if not (hit_sl or hit_tp):
            return events
        return events + self.close(account, position, position.volume, STOP_LOSS_TAKE_PROFIT, announce=False)


def _rounded(symbol: SymbolInfo, points: int) -> float:
    point = symbol.point
    return to_price(max(point, round(points / point) * point))
