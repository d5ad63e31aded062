"""Trading state of the simulated accounts: orders, positions and deals.

Shared by every connection of one simulator; callers hold the simulator's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages.OpenApiModelMessages_pb2 import (
    BUY,
    FILLED,
    LIMIT,
    MARKET,
    MARKET_RANGE,
    ORDER_STATUS_ACCEPTED,
    ORDER_STATUS_CANCELLED,
    ORDER_STATUS_FILLED,
    POSITION_STATUS_CLOSED,
    POSITION_STATUS_OPEN,
    SELL,
    STOP,
    STOP_LIMIT,
    ProtoOAClosePositionDetail,
    ProtoOADeal,
    ProtoOAOrder,
    ProtoOAOrderStatus,
    ProtoOAOrderType,
    ProtoOAPosition,
    ProtoOAPositionStatus,
    ProtoOATradeData,
    ProtoOATradeSide,
)

__all__ = [
    "BUY", "LIMIT", "MARKET", "MARKET_RANGE", "ORDER_STATUS_ACCEPTED", "ORDER_STATUS_CANCELLED",
    "ORDER_STATUS_FILLED", "POSITION_STATUS_CLOSED", "POSITION_STATUS_OPEN", "SELL", "STOP", "STOP_LIMIT",
    "Account", "OrderState", "PositionState",
]

MONEY_DIGITS = 2



@dataclass
class OrderState:
    """A simulated order."""

    order_id: int
    symbol_id: int
    order_type: ProtoOAOrderType.ValueType
    side: ProtoOATradeSide.ValueType
    volume: int
    status: ProtoOAOrderStatus.ValueType
    created_ms: int
    updated_ms: int
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    execution_price: float | None = None
    position_id: int | None = None
    label: str = ""
    comment: str = ""
    client_order_id: str = ""
    closing: bool = False

    def to_proto(self) -> ProtoOAOrder:
        """Build the wire form."""
        msg = ProtoOAOrder(
            orderId=self.order_id,
            tradeData=ProtoOATradeData(symbolId=self.symbol_id, volume=self.volume, tradeSide=self.side,
                                       openTimestamp=self.created_ms, label=self.label,
                                       comment=self.comment),
            orderType=self.order_type, orderStatus=self.status, utcLastUpdateTimestamp=self.updated_ms,
            closingOrder=self.closing,
        )
        for name in ("limit_price", "stop_price", "stop_loss", "take_profit", "execution_price"):
            value = getattr(self, name)
            if value is not None:
                camel = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
                setattr(msg, camel, value)
        if self.status == ORDER_STATUS_FILLED:
            msg.executedVolume = self.volume
        if self.position_id is not None:
            msg.positionId = self.position_id
        if self.client_order_id:
            msg.clientOrderId = self.client_order_id
        return msg


@dataclass
class PositionState:
    """A simulated position."""

    position_id: int
    symbol_id: int
    side: ProtoOATradeSide.ValueType
    volume: int
    price: float
    open_ms: int
    updated_ms: int
    status: ProtoOAPositionStatus.ValueType = POSITION_STATUS_OPEN
    stop_loss: float | None = None
    take_profit: float | None = None
    label: str = ""
    comment: str = ""

    def to_proto(self) -> ProtoOAPosition:
        """Build the wire form."""
        msg = ProtoOAPosition(
            positionId=self.position_id,
            tradeData=ProtoOATradeData(symbolId=self.symbol_id, volume=self.volume, tradeSide=self.side,
                                       openTimestamp=self.open_ms, label=self.label,
                                       comment=self.comment),
            positionStatus=self.status, swap=0, price=self.price, utcLastUpdateTimestamp=self.updated_ms,
            commission=0, moneyDigits=MONEY_DIGITS,
        )
        if self.stop_loss is not None:
            msg.stopLoss = self.stop_loss
        if self.take_profit is not None:
            msg.takeProfit = self.take_profit
        return msg


@dataclass
class Account:
    """One simulated trading account with its orders, positions and deals."""

    account_id: int
    is_live: bool
    trader_login: int
    balance: int = 10_000_00  # 10,000.00 in cents (moneyDigits 2)
    orders: dict[int, OrderState] = field(default_factory=dict)
    positions: dict[int, PositionState] = field(default_factory=dict)
    deals: list[ProtoOADeal] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        """Return a fresh id for an order, position or deal of this account."""
        value = self.account_id * 1_000_000 + self.next_id
        self.next_id += 1
        return value

    def add_deal(self, order: OrderState, position: PositionState, volume: int, price: float, now_ms: int,
                 closing_profit: int | None = None) -> ProtoOADeal:
        """Record and return a filled deal for ``order`` on ``position``."""
        deal = ProtoOADeal(
            dealId=self.new_id(), orderId=order.order_id, positionId=position.position_id, volume=volume,
            filledVolume=volume, symbolId=order.symbol_id, createTimestamp=now_ms,
            executionTimestamp=now_ms, utcLastUpdateTimestamp=now_ms, executionPrice=price,
            tradeSide=order.side, dealStatus=FILLED, commission=0, moneyDigits=MONEY_DIGITS,
        )
        if closing_profit is not None:
            self.balance += closing_profit
            deal.closePositionDetail.CopyFrom(ProtoOAClosePositionDetail(
                entryPrice=position.price, grossProfit=closing_profit, swap=0, commission=0,
                balance=self.balance, closedVolume=volume, moneyDigits=MONEY_DIGITS))
        self.deals.append(deal)
        return deal
