"""Request handlers: trading (orders, positions, reconcile, P&L, margin, margin calls).

Trading requests have no ``...Res``: they are answered with ``ProtoOAExecutionEvent`` (and a
``ProtoOATraderUpdatedEvent`` after a balance change) or ``ProtoOAOrderErrorEvent``; the account's
other connections get the same events as pushes.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    POSITION_STATUS_OPEN,
    ProtoOAExpectedMargin,
    ProtoOAMarginCall,
    ProtoOAPositionUnrealizedPnL,
)
from ._accounts import Account
from ._preamble import Peer, Table, handles, needs_account, symbol_or_error
from ._trading import Refusal

__all__ = ["TABLE"]

TABLE: Table = {}


def _trade(peer: Peer, account: Account, cid: str | None, operation: Callable[[], list[Message]]) -> None:
    with peer.world.exchange.lock:
        try:
            events = operation()
        except Refusal as refusal:
            peer.refuse(cid, account.account_id, refusal)
            return
        peer.execute(cid, account.account_id, events)


@handles(TABLE, M.ProtoOANewOrderReq)
@needs_account
def new_order(peer: Peer, account: Account, msg: M.ProtoOANewOrderReq, cid: str | None) -> None:
    """``ProtoOANewOrderReq``: market orders fill at once, limit and stop orders rest until crossed."""
    _trade(peer, account, cid, lambda: peer.world.exchange.trading.new_order(account, msg))


@handles(TABLE, M.ProtoOAClosePositionReq)
@needs_account
def close_position(peer: Peer, account: Account, msg: M.ProtoOAClosePositionReq, cid: str | None) -> None:
    """``ProtoOAClosePositionReq``: close all or part of a position with a closing deal."""
    _trade(peer, account, cid, lambda: peer.world.exchange.trading.close_position(
        account, int(msg.positionId), int(msg.volume)))


@handles(TABLE, M.ProtoOACancelOrderReq)
@needs_account
def cancel_order(peer: Peer, account: Account, msg: M.ProtoOACancelOrderReq, cid: str | None) -> None:
    """``ProtoOACancelOrderReq``."""
    _trade(peer, account, cid, lambda: peer.world.exchange.trading.cancel_order(account, int(msg.orderId)))


@handles(TABLE, M.ProtoOAAmendOrderReq)
@needs_account
def amend_order(peer: Peer, account: Account, msg: M.ProtoOAAmendOrderReq, cid: str | None) -> None:
    """``ProtoOAAmendOrderReq``: change a pending order's volume, prices, protection or expiry."""
    _trade(peer, account, cid, lambda: peer.world.exchange.trading.amend_order(account, msg))


@handles(TABLE, M.ProtoOAAmendPositionSLTPReq)
@needs_account
def amend_sltp(peer: Peer, account: Account, msg: M.ProtoOAAmendPositionSLTPReq, cid: str | None) -> None:
    """``ProtoOAAmendPositionSLTPReq``: set (or remove, when absent) a position's SL and TP."""
    _trade(peer, account, cid, lambda: peer.world.exchange.trading.amend_position(account, msg))


@handles(TABLE, M.ProtoOAReconcileReq)
@needs_account
def reconcile(peer: Peer, account: Account, msg: M.ProtoOAReconcileReq, cid: str | None) -> None:
    """``ProtoOAReconcileReq``: open positions (swap as of now) and pending orders."""
    ex = peer.world.exchange
    res = M.ProtoOAReconcileRes(ctidTraderAccountId=account.account_id)
    with ex.lock:
        ex.trading.unrealized(account)  # brings each open position's swap up to date
        res.position.extend(p.to_proto() for p in account.positions.values() if p.status == POSITION_STATUS_OPEN)
        res.order.extend(o.to_proto() for o in account.orders.values())
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAOrderDetailsReq)
@needs_account
def order_details(peer: Peer, account: Account, msg: M.ProtoOAOrderDetailsReq, cid: str | None) -> None:
    """``ProtoOAOrderDetailsReq``: one order (any status) and its deals."""
    with peer.world.exchange.lock:
        order = next((o for o in account.order_history if o.order_id == int(msg.orderId)), None)
        if order is None:
            peer.error(cid, "ORDER_NOT_FOUND", f"no order {msg.orderId}", account.account_id)
            return
        res = M.ProtoOAOrderDetailsRes(ctidTraderAccountId=account.account_id, order=order.to_proto())
        res.deal.extend(d for d in account.deals if d.orderId == order.order_id)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAGetPositionUnrealizedPnLReq)
@needs_account
def unrealized_pnl(peer: Peer, account: Account, msg: M.ProtoOAGetPositionUnrealizedPnLReq,
                   cid: str | None) -> None:
    """``ProtoOAGetPositionUnrealizedPnLReq``: gross and net (after swap and the opening commission)
    unrealized P&L of each open position at the current prices, in the account's currency."""
    with peer.world.exchange.lock:
        _, per = peer.world.exchange.trading.unrealized(account)
    res = M.ProtoOAGetPositionUnrealizedPnLRes(ctidTraderAccountId=account.account_id,
                                               moneyDigits=account.money_digits)
    res.positionUnrealizedPnL.extend(
        ProtoOAPositionUnrealizedPnL(positionId=pid, grossUnrealizedPnL=g, netUnrealizedPnL=n)
        for pid, (g, n) in sorted(per.items()))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAExpectedMarginReq)
@needs_account
def expected_margin(peer: Peer, account: Account, msg: M.ProtoOAExpectedMarginReq, cid: str | None) -> None:
    """``ProtoOAExpectedMarginReq``: the margin each volume would use, buying and selling."""
    ex = peer.world.exchange
    symbol = symbol_or_error(peer, account, msg, cid)
    if symbol is None:
        return
    res = M.ProtoOAExpectedMarginRes(ctidTraderAccountId=account.account_id, moneyDigits=account.money_digits)
    with ex.lock:
        for volume in msg.volume:
            margin = ex.money.margin(symbol, int(volume), account.deposit_asset_id, account.leverage_in_cents,
                                     account.money_digits)
            res.margin.append(ProtoOAExpectedMargin(volume=int(volume), buyMargin=margin, sellMargin=margin))
    peer.respond(res, cid)


_DEFAULT_MARGIN_CALLS = {61: 100.0, 62: 70.0, 63: 50.0}


@handles(TABLE, M.ProtoOAMarginCallListReq)
@needs_account
def margin_call_list(peer: Peer, account: Account, msg: M.ProtoOAMarginCallListReq, cid: str | None) -> None:
    """``ProtoOAMarginCallListReq``: the three margin-level thresholds (defaults 100 %, 70 %, 50 %)."""
    res = M.ProtoOAMarginCallListRes()
    with peer.world.exchange.lock:
        for kind, default in sorted(_DEFAULT_MARGIN_CALLS.items()):
            level, updated = account.margin_calls.get(kind, (default, 0))
            call = ProtoOAMarginCall(marginCallType=kind, marginLevelThreshold=level)  # type: ignore[arg-type]
            if updated:
                call.utcLastUpdateTimestamp = updated
            res.marginCall.append(call)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAMarginCallUpdateReq)
@needs_account
def margin_call_update(peer: Peer, account: Account, msg: M.ProtoOAMarginCallUpdateReq, cid: str | None) -> None:
    """``ProtoOAMarginCallUpdateReq``: answered, then ``ProtoOAMarginCallUpdateEvent`` to the account."""
    call = msg.marginCall
    ex = peer.world.exchange
    if int(call.marginCallType) not in _DEFAULT_MARGIN_CALLS or call.marginLevelThreshold <= 0:
        peer.error(cid, "INCORRECT_BOUNDARIES", "unknown margin call type or bad threshold", account.account_id)
        return
    with ex.lock:
        now = ex.now_ms()
        account.margin_calls[int(call.marginCallType)] = (call.marginLevelThreshold, now)
        updated = ProtoOAMarginCall(marginCallType=call.marginCallType,
                                    marginLevelThreshold=call.marginLevelThreshold, utcLastUpdateTimestamp=now)
        peer.respond(M.ProtoOAMarginCallUpdateRes(), cid)
        event = M.ProtoOAMarginCallUpdateEvent(ctidTraderAccountId=account.account_id, marginCall=updated)
        peer.respond(event, None)
        ex.broadcast(account.account_id, [event], peer)
