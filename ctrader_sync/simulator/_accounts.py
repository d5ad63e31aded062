"""Trading state of the simulated accounts: orders, positions, deals and balance history.

Plain state with its wire form; the rules that change it live in ``_trading`` and ``_matching``.
Shared by every connection of one simulator: callers hold the exchange's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages.OpenApiModelMessages_pb2 import (
    FILLED,
    FULL_ACCESS,
    HEDGED,
    ORDER_STATUS_FILLED,
    POSITION_STATUS_OPEN,
    ProtoOAChangeBalanceType,
    ProtoOAClosePositionDetail,
    ProtoOADeal,
    ProtoOADepositWithdraw,
    ProtoOAOrder,
    ProtoOAOrderStatus,
    ProtoOAOrderType,
    ProtoOAPosition,
    ProtoOAPositionStatus,
    ProtoOATimeInForce,
    ProtoOATradeData,
    ProtoOATrader,
    ProtoOATradeSide,
)

__all__ = ["Account", "OrderState", "PositionState", "trader_proto"]


@dataclass
class OrderState:
    """A simulated order (pending, filled, cancelled, expired or rejected)."""

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
    relative_stop_loss: int | None = None
    relative_take_profit: int | None = None
    execution_price: float | None = None
    position_id: int | None = None
    time_in_force: ProtoOATimeInForce.ValueType | None = None
    expiration_ms: int | None = None
    slippage_points: int | None = None
    label: str = ""
    comment: str = ""
    client_order_id: str = ""
    closing: bool = False
    trailing: bool = False

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
        for name, camel in (("limit_price", "limitPrice"), ("stop_price", "stopPrice"),
                            ("stop_loss", "stopLoss"), ("take_profit", "takeProfit"),
                            ("execution_price", "executionPrice"), ("position_id", "positionId"),
                            ("relative_stop_loss", "relativeStopLoss"),
                            ("relative_take_profit", "relativeTakeProfit"), ("time_in_force", "timeInForce"),
                            ("expiration_ms", "expirationTimestamp"), ("slippage_points", "slippageInPoints")):
            value = getattr(self, name)
            if value is not None:
                setattr(msg, camel, value)
        if self.status == ORDER_STATUS_FILLED:
            msg.executedVolume = self.volume
        if self.client_order_id:
            msg.clientOrderId = self.client_order_id
        if self.trailing:
            msg.trailingStopLoss = True
        return msg


@dataclass
class PositionState:
    """A simulated position; ``commission`` is the opening side's (negative, money units)."""

    position_id: int
    symbol_id: int
    side: ProtoOATradeSide.ValueType
    volume: int
    price: float
    open_ms: int
    updated_ms: int
    money_digits: int
    status: ProtoOAPositionStatus.ValueType = POSITION_STATUS_OPEN
    stop_loss: float | None = None
    take_profit: float | None = None
    commission: int = 0
    swap: int = 0
    used_margin: int = 0
    label: str = ""
    comment: str = ""
    order_id: int = 0
    """The order that opened the position."""
    trail_distance: int | None = None
    """A trailing stop loss keeps this distance (1/100000) behind the best price; None: no trailing."""

    def to_proto(self) -> ProtoOAPosition:
        """Build the wire form."""
        msg = ProtoOAPosition(
            positionId=self.position_id,
            tradeData=ProtoOATradeData(symbolId=self.symbol_id, volume=self.volume, tradeSide=self.side,
                                       openTimestamp=self.open_ms, label=self.label,
                                       comment=self.comment),
            positionStatus=self.status, swap=self.swap, price=self.price,
            utcLastUpdateTimestamp=self.updated_ms, commission=self.commission,
            moneyDigits=self.money_digits, usedMargin=self.used_margin, marginRate=self.price,
        )
        if self.stop_loss is not None:
            msg.stopLoss = self.stop_loss
        if self.take_profit is not None:
            msg.takeProfit = self.take_profit
        if self.trail_distance is not None:
            msg.trailingStopLoss = True
        return msg


@dataclass
class Account:
    """One simulated trading account with its orders, positions, deals and balance history."""

    account_id: int
    is_live: bool
    trader_login: int
    deposit_asset_id: int = 1
    money_digits: int = 2
    balance: int = 1_000_000  # 10,000.00 with moneyDigits 2
    balance_version: int = 1
    leverage_in_cents: int = 10_000
    registered_ms: int = 0
    orders: dict[int, OrderState] = field(default_factory=dict)
    """Pending orders."""
    order_history: list[OrderState] = field(default_factory=list)
    """Every order ever placed, in creation order (pending ones included)."""
    positions: dict[int, PositionState] = field(default_factory=dict)
    """Every position, open and closed."""
    deals: list[ProtoOADeal] = field(default_factory=list)
    cash_flow: list[ProtoOADepositWithdraw] = field(default_factory=list)
    margin_calls: dict[int, tuple[float, int]] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> int:
        """Return a fresh id for an order, position, deal or balance change of this account."""
        value = self.account_id * 1_000_000 + self.next_id
        self.next_id += 1
        return value

    def settle(self, delta: int) -> None:
        """Apply a trading result (a closed position's net profit) to the balance."""
        self.balance += delta
        self.balance_version += 1

    def change_balance(self, delta: int, now_ms: int, kind: ProtoOAChangeBalanceType.ValueType,
                       note: str = "") -> ProtoOADepositWithdraw:
        """Deposit or withdraw: apply ``delta`` and record it in the cash flow history."""
        self.balance += delta
        self.balance_version += 1
        entry = ProtoOADepositWithdraw(
            operationType=kind, balanceHistoryId=self.new_id(), balance=self.balance, delta=delta,
            changeBalanceTimestamp=now_ms, externalNote=note, balanceVersion=self.balance_version,
            equity=self.balance, moneyDigits=self.money_digits)
        self.cash_flow.append(entry)
        return entry

    def add_deal(self, order: OrderState, position: PositionState, volume: int, price: float, now_ms: int,
                 commission: int, close: ProtoOAClosePositionDetail | None = None) -> ProtoOADeal:
        """Record and return a filled deal for ``order`` on ``position``."""
        deal = ProtoOADeal(
            dealId=self.new_id(), orderId=order.order_id, positionId=position.position_id, volume=volume,
            filledVolume=volume, symbolId=order.symbol_id, createTimestamp=now_ms,
            executionTimestamp=now_ms, utcLastUpdateTimestamp=now_ms, executionPrice=price,
            tradeSide=order.side, dealStatus=FILLED, commission=commission, moneyDigits=self.money_digits,
            marginRate=price,
        )
        if close is not None:
            deal.closePositionDetail.CopyFrom(close)
        self.deals.append(deal)
        return deal


def trader_proto(account: Account) -> ProtoOATrader:
    """The account's ``ProtoOATrader`` (balance in its ``moneyDigits``)."""
    return ProtoOATrader(
        ctidTraderAccountId=account.account_id, balance=account.balance,
        balanceVersion=account.balance_version, depositAssetId=account.deposit_asset_id,
        leverageInCents=account.leverage_in_cents, maxLeverage=account.leverage_in_cents // 100,
        traderLogin=account.trader_login, brokerName="ctrader_sync simulator",
        moneyDigits=account.money_digits, accessRights=FULL_ACCESS, accountType=HEDGED,
        registrationTimestamp=account.registered_ms, swapFree=False)
