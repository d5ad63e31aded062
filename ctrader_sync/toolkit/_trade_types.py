"""The trading half's value types: :class:`Fill`, :class:`Order`, :class:`Position`, :class:`PnL`,
:class:`ClosedPosition`, and their construction from the protocol's messages.

Prices are floats (what a notebook plots), volumes are floats in units and lots, money is
``Decimal`` in the account currency (scaled by the message's own ``moneyDigits``), times are aware
UTC ``datetime``.  The raw message stays available on each value as ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Protocol

__all__ = [
    "ClosedPosition",
    "Fill",
    "InfoLike",
    "Order",
    "PnL",
    "Position",
    "money",
    "ms_time",
    "side_name",
    "side_value",
]

BUY, SELL = 1, 2
_SIDES = {"buy": BUY, "sell": SELL, "long": BUY, "short": SELL}
_ORDER_TYPES = {1: "market", 2: "limit", 3: "stop", 4: "stop_loss_take_profit", 5: "market_range",
                6: "stop_limit"}
_ORDER_STATUSES = {1: "accepted", 2: "filled", 3: "rejected", 4: "expired", 5: "cancelled"}


class InfoLike(Protocol):
    """What the trading half needs from a ``SymbolInfo`` of the catalogue."""

    id: int
    name: str
    digits: int

    def volume_to_lots(self, volume: int) -> Any:
        """Lots for a protocol volume (cents of a unit)."""


def side_value(side: object) -> int:
    """``ProtoOATradeSide`` value for ``"buy"``/``"sell"`` (any case) or the enum value itself."""
    if isinstance(side, str):
        value = _SIDES.get(side.strip().lower())
        if value is not None:
            return value
    elif isinstance(side, int) and side in (BUY, SELL):
        return side
    raise ValueError(f"side must be 'buy' or 'sell' (or ProtoOATradeSide.BUY/SELL), not {side!r}")


def side_name(value: int) -> str:
    """``"buy"`` or ``"sell"`` for a ``ProtoOATradeSide`` value."""
    return "buy" if value == BUY else "sell"


def money(raw: int, digits: int) -> Decimal:
    """An integer money field scaled by its ``moneyDigits``, exactly."""
    return Decimal(int(raw)).scaleb(-int(digits))


def ms_time(ms: int) -> datetime:
    """Unix milliseconds as an aware UTC ``datetime``."""
    return datetime.fromtimestamp(int(ms) / 1000.0, tz=timezone.utc)


def _opt(message: Any, name: str) -> float | None:
    return float(getattr(message, name)) if message.HasField(name) else None


def _units(volume: int) -> float:
    return int(volume) / 100.0


def _lots(symbol: InfoLike | None, volume: int) -> float:
    return float(symbol.volume_to_lots(int(volume))) if symbol is not None else float("nan")


@dataclass(frozen=True)
class PnL:
    """Unrealized P&L of one open position, in the account currency.

    ``gross`` is the P&L at the current price; ``net`` also deducts what closing would cost
    (commission), as the server computes it.
    """

    position_id: int
    gross: Decimal
    net: Decimal
    time: datetime
    """When the server computed it (the answer's arrival)."""


@dataclass(frozen=True)
class Fill:
    """What an executed order did: returned by ``market_order`` and ``close_position``.

    ``volume``/``lots`` are what was executed (a partial fill reports the part filled), ``price``
    is the (average) execution price.  ``execution`` is the last ``ProtoOAExecutionEvent`` of the
    order; when the answer was lost and the fill was learned by looking the order up afterwards,
    ``recovered`` is true and ``execution`` is an event rebuilt from the order the server reported.
    """

    order_id: int
    position_id: int
    side: str
    volume: float
    lots: float
    price: float
    time: datetime
    execution: Any = field(repr=False, compare=False)
    symbol: str = ""
    client_order_id: str = ""
    recovered: bool = False


@dataclass(frozen=True)
class Order:
    """A (usually pending) order as the server last reported it.

    ``price`` is the limit price for limit orders and the stop price for stop orders; ``status``
    is ``"accepted"`` (pending), ``"filled"``, ``"cancelled"``, ``"expired"`` or ``"rejected"``.
    """

    order_id: int
    symbol: str
    symbol_id: int
    side: str
    type: str
    volume: float
    lots: float
    price: float | None
    stop_loss: float | None
    take_profit: float | None
    status: str
    expiry: datetime | None
    client_order_id: str
    label: str
    comment: str
    position_id: int | None
    time: datetime | None
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, order: Any, symbol: InfoLike | None) -> Order:
        """Build from a ``ProtoOAOrder`` and its symbol (``None``: name and lots unknown)."""
        trade = order.tradeData
        kind = _ORDER_TYPES.get(int(order.orderType), str(order.orderType))
        price = _opt(order, "limitPrice") if kind in ("limit", "stop_limit") else _opt(order, "stopPrice")
        return cls(
            order_id=int(order.orderId), symbol=symbol.name if symbol else str(trade.symbolId),
            symbol_id=int(trade.symbolId), side=side_name(trade.tradeSide), type=kind,
            volume=_units(trade.volume), lots=_lots(symbol, trade.volume), price=price,
            stop_loss=_opt(order, "stopLoss"), take_profit=_opt(order, "takeProfit"),
            status=_ORDER_STATUSES.get(int(order.orderStatus), str(order.orderStatus)),
            expiry=ms_time(order.expirationTimestamp) if order.HasField("expirationTimestamp") else None,
            client_order_id=order.clientOrderId, label=trade.label, comment=trade.comment,
            position_id=int(order.positionId) if order.HasField("positionId") and order.positionId else None,
            time=ms_time(order.utcLastUpdateTimestamp) if order.HasField("utcLastUpdateTimestamp") else None,
            raw=order)


@dataclass(frozen=True)
class Position:
    """An open position as the account mirror knows it.

    ``swap`` and ``commission`` are ``Decimal`` in the account currency; ``pnl`` is the latest
    unrealized P&L the toolkit fetched (``None`` until ``unrealized_pnl()`` or the P&L refresh ran).
    """

    position_id: int
    symbol: str
    symbol_id: int
    side: str
    volume: float
    lots: float
    entry_price: float
    stop_loss: float | None
    take_profit: float | None
    swap: Decimal
    commission: Decimal
    open_time: datetime | None
    label: str
    comment: str
    pnl: PnL | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> int:
        """Same as ``position_id``."""
        return self.position_id

    @classmethod
    def from_proto(cls, position: Any, symbol: InfoLike | None, pnl: PnL | None = None) -> Position:
        """Build from a ``ProtoOAPosition`` and its symbol (``None``: name and lots unknown)."""
        trade = position.tradeData
        digits = int(position.moneyDigits) if position.HasField("moneyDigits") else 2
        return cls(
            position_id=int(position.positionId), symbol=symbol.name if symbol else str(trade.symbolId),
            symbol_id=int(trade.symbolId), side=side_name(trade.tradeSide), volume=_units(trade.volume),
            lots=_lots(symbol, trade.volume), entry_price=float(position.price),
            stop_loss=_opt(position, "stopLoss"), take_profit=_opt(position, "takeProfit"),
            swap=money(position.swap, digits), commission=money(position.commission, digits),
            open_time=ms_time(trade.openTimestamp) if trade.HasField("openTimestamp") else None,
            label=trade.label, comment=trade.comment, pnl=pnl, raw=position)


@dataclass(frozen=True)
class ClosedPosition:
    """Realized result of a position closed (wholly or in part) within a period, from its deals.

    ``net_profit`` is ``gross_profit + swap + commission`` (costs are negative, as the server
    reports them); all money is ``Decimal`` in the account currency.
    """

    position_id: int
    symbol: str
    side: str
    volume: float
    lots: float
    entry_price: float
    close_price: float
    close_time: datetime
    gross_profit: Decimal
    swap: Decimal
    commission: Decimal
    net_profit: Decimal
    deals: tuple[Any, ...] = field(default=(), repr=False, compare=False)


def fill_from_events(events: list[Any], symbol: InfoLike | None, client_order_id: str = "",
                     recovered: bool = False) -> Fill:
    """Build a :class:`Fill` from an order's fill events (partial fills, then the last one)."""
    last = events[-1]
    order = last.order
    deals = [e.deal for e in events if e.HasField("deal")]
    if order.HasField("executedVolume") and order.executedVolume:
        volume = int(order.executedVolume)
    else:
        volume = sum(int(d.filledVolume) for d in deals) or int(order.tradeData.volume)
    if order.HasField("executionPrice"):
        price = float(order.executionPrice)
    elif deals:
        total = sum(int(d.filledVolume) for d in deals) or 1
        price = sum(float(d.executionPrice) * int(d.filledVolume) for d in deals) / total
    else:
        price = float("nan")
    if deals:
        when = ms_time(deals[-1].executionTimestamp)
    elif order.HasField("utcLastUpdateTimestamp"):
        when = ms_time(order.utcLastUpdateTimestamp)
    else:
        when = datetime.now(timezone.utc)
    position_id = int(order.positionId) if order.HasField("positionId") else 0
    if not position_id and last.HasField("position"):
        position_id = int(last.position.positionId)
    if not position_id and deals:
        position_id = int(deals[-1].positionId)
    return Fill(order_id=int(order.orderId), position_id=position_id, side=side_name(order.tradeData.tradeSide),
                volume=_units(volume), lots=_lots(symbol, volume), price=price, time=when, execution=last,
                symbol=symbol.name if symbol else str(order.tradeData.symbolId),
                client_order_id=client_order_id or order.clientOrderId, recovered=recovered)
