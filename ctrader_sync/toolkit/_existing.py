"""Requests on what already exists: close or amend a position, cancel or amend a pending order.

Each builds its request, says which events settle it (``decide``) and what a lookup after a lost
answer means (``settle``), and lets :class:`~._orders.Desk` do the rest.  These requests carry no
``clientOrderId``: after a lost answer the lookup checks whether the change is on the server (the
position's volume or protection, the order's state, a closing order for the position).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import OrderError, OrderNotPlacedError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAmendOrderReq,
    ProtoOAAmendPositionSLTPReq,
    ProtoOACancelOrderReq,
    ProtoOAClosePositionReq,
)
from ._orders import CANCEL_REJECTED, CANCELLED, FILLED, PARTIAL, REJECTED, REPLACED, Desk, _order_error
from ._outcome import Snapshot
from ._trade_types import Fill, Order, Position, fill_from_events

__all__ = ["amend_order", "amend_position", "cancel_order", "close_position"]

_CLOCK_SLACK_MS = 5_000


def close_position(desk: Desk, position: Any, info: Any, volume: int, timeout: float) -> Fill:
    """Close ``volume`` (cents) of a ``ProtoOAPosition``; the :class:`Fill` of the closing order."""
    pid = int(position.positionId)
    known: dict[str, int] = {}
    sent_ms = int(time.time() * 1000)

    def closing(order: Any) -> bool:
        oid = known.get("order")
        return bool(order.closingOrder) and int(order.positionId) == pid and (oid is None or int(order.orderId) == oid)

    def decide(events: list[Any]) -> Fill | None:
        ours = [e for e in events if e.HasField("order") and closing(e.order)]
        for event in ours:
            if event.executionType == REJECTED:
                raise _order_error(event, "ORDER_REJECTED")
        fills = [e for e in ours if e.executionType in (FILLED, PARTIAL)]
        if ours and ours[-1].executionType == FILLED:
            return fill_from_events(fills, info)
        return None

    def settle(snapshot: Snapshot) -> Fill | None:
        order = snapshot.find(lambda o: closing(o) and int(o.utcLastUpdateTimestamp) >= sent_ms - _CLOCK_SLACK_MS)
        if order is None:
            raise OrderNotPlacedError("", f"position {pid} was not closed: the server has no closing order for it")
        known["order"] = int(order.orderId)
        result: Fill | None = desk.from_lookup(order, snapshot, info, "", True)  # type: ignore[assignment]
        return result

    request = ProtoOAClosePositionReq(ctidTraderAccountId=desk.account_id, positionId=pid, volume=int(volume))
    result: Fill = desk.settle_existing(request, timeout, decide, settle, known)
    return result


def amend_position(desk: Desk, position: Any, info: Any, stop_loss: float | None, take_profit: float | None,
                   timeout: float) -> Position:
    """Set both protection legs of a position (``None``: no such leg); the updated :class:`Position`."""
    pid = int(position.positionId)
    request = ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=desk.account_id, positionId=pid)
    if stop_loss is not None:
        request.stopLoss = float(stop_loss)
    if take_profit is not None:
        request.takeProfit = float(take_profit)

    def decide(events: list[Any]) -> Position | None:
        for event in events:
            if event.executionType == REPLACED and event.HasField("position") and int(event.position.positionId) == pid:
                return Position.from_proto(event.position, info)
        return None

    def legs_match(raw: Any) -> bool:
        return (_leg(raw, "stopLoss") == _round(stop_loss)) and (_leg(raw, "takeProfit") == _round(take_profit))

    def settle(snapshot: Snapshot) -> Position:
        raw = snapshot.positions.get(pid)
        if raw is None:
            raise OrderError("POSITION_NOT_FOUND", f"position {pid} is not open", position_id=pid)
        if not legs_match(raw):
            raise OrderNotPlacedError("", f"the amendment of position {pid} was not applied")
        return Position.from_proto(raw, info)

    result: Position = desk.settle_existing(request, timeout, decide, settle, {})
    return result


def cancel_order(desk: Desk, order: Any, info: Any, timeout: float) -> Order:
    """Cancel a pending ``ProtoOAOrder``; the cancelled :class:`Order`."""
    oid = int(order.orderId)

    def decide(events: list[Any]) -> Order | None:
        for event in events:
            if not event.HasField("order") or int(event.order.orderId) != oid:
                continue
            if event.executionType == CANCELLED:
                return Order.from_proto(event.order, info)
            if event.executionType == CANCEL_REJECTED:
                raise _order_error(event, "ORDER_CANCEL_REJECTED")
        return None

    def settle(snapshot: Snapshot) -> Order:
        if any(int(o.orderId) == oid for o in snapshot.open_orders):
            raise OrderNotPlacedError("", f"order {oid} is still pending: the cancel was not applied")
        found = snapshot.find(lambda o: int(o.orderId) == oid)
        if found is None:
            raise OrderError("ORDER_NOT_FOUND", f"no order {oid}", order_id=oid)
        return Order.from_proto(found, info)

    request = ProtoOACancelOrderReq(ctidTraderAccountId=desk.account_id, orderId=oid)
    result: Order = desk.settle_existing(request, timeout, decide, settle, {})
    return result


def amend_order(desk: Desk, order: Any, info: Any, fields: dict[str, Any], timeout: float) -> Order:
    """Change a pending order (``fields`` of ``ProtoOAAmendOrderReq``); the amended :class:`Order`."""
    oid = int(order.orderId)
    request = ProtoOAAmendOrderReq(ctidTraderAccountId=desk.account_id, orderId=oid, **fields)

    def decide(events: list[Any]) -> Order | None:
        for event in events:
            if event.HasField("order") and int(event.order.orderId) == oid and event.executionType == REPLACED:
                return Order.from_proto(event.order, info)
        return None

    def settle(snapshot: Snapshot) -> Order:
        for raw in snapshot.open_orders:
            if int(raw.orderId) == oid:
                if all(_same(getattr(raw, name), value) for name, value in fields.items()):
                    return Order.from_proto(raw, info)
                raise OrderNotPlacedError("", f"the amendment of order {oid} was not applied")
        raise OrderError("ORDER_NOT_FOUND", f"order {oid} is no longer pending", order_id=oid)

    result: Order = desk.settle_existing(request, timeout, decide, settle, {})
    return result


def _leg(raw: Any, name: str) -> float | None:
    return _round(getattr(raw, name)) if raw.HasField(name) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return round(float(a), 6) == round(float(b), 6)
    return bool(a == b)
