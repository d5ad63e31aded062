"""Request handlers: history (trendbars, ticks, deals, orders, deal offsets, cash flow).

Each answer holds at most a fixed chunk (options ``trendbar_chunk``, ``tick_chunk``,
``list_chunk``): the newest items of the requested range, with ``hasMore`` when older ones remain,
so a client pages backwards by moving ``toTimestamp`` before the oldest item it got.  A range
wider than the documented window is refused with ``INCORRECT_BOUNDARIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import ProtoOADealOffset, ProtoOATickData, ProtoOATrendbar
from ._accounts import Account
from ._preamble import Peer, Table, handles, needs_account, symbol_or_error

__all__ = ["PERIOD_WINDOW_MS", "TABLE", "WEEK_WINDOW_MS"]

TABLE: Table = {}

WEEK_WINDOW_MS = 604_800_000
"""The widest range of one tick-data or cash-flow request (1 week)."""
PERIOD_WINDOW_MS: dict[int, int] = {
    **dict.fromkeys((1, 2, 3, 4, 5), 3_024_000_000),  # M1-M5: 35 days
    **dict.fromkeys((6, 7, 8, 9), 21_168_000_000),  # M10-H1: 245 days
    **dict.fromkeys((10, 11, 12), 31_622_400_000),  # H4-D1: 366 days
    **dict.fromkeys((13, 14), 158_112_000_000),  # W1-MN1: 1830 days
}
"""The widest range of one trendbar request, per ``ProtoOATrendbarPeriod``."""


def _range(peer: Peer, account: Account, msg: Any, cid: str | None, window: int | None,
           default_span: int | None) -> tuple[int, int] | None:
    """``(from, to)`` of a history request, or None after answering INCORRECT_BOUNDARIES."""
    to_ms = msg.toTimestamp if msg.HasField("toTimestamp") else peer.world.exchange.now_ms()
    if msg.HasField("fromTimestamp"):
        from_ms = msg.fromTimestamp
    else:
        from_ms = max(0, to_ms - default_span) if default_span is not None else 0
    if from_ms > to_ms or from_ms < 0:
        peer.error(cid, "INCORRECT_BOUNDARIES", "fromTimestamp must be >= 0 and <= toTimestamp", account.account_id)
        return None
    if window is not None and peer.world.options.history_windows and to_ms - from_ms > window:
        peer.error(cid, "INCORRECT_BOUNDARIES", f"the range {to_ms - from_ms} ms is wider than {window} ms",
                   account.account_id)
        return None
    return from_ms, to_ms


T = TypeVar("T")


def _reading(peer: Peer, items: Iterable[T], every: int = 200) -> Iterator[T]:
    """``items``, letting the connection take in what arrives while a long history is generated."""
    for i, item in enumerate(items):
        if i % every == 0:
            peer.keep_reading()
        yield item


@handles(TABLE, M.ProtoOAGetTrendbarsReq)
@needs_account
def trendbars(peer: Peer, account: Account, msg: M.ProtoOAGetTrendbarsReq, cid: str | None) -> None:
    """``ProtoOAGetTrendbarsReq``: bars starting in [from, to), the newest ``count`` (or chunk) of them."""
    ex = peer.world.exchange
    symbol = symbol_or_error(peer, account, msg, cid)
    if symbol is None:
        return
    symbol_id, period = symbol.symbol_id, int(msg.period)
    window = PERIOD_WINDOW_MS.get(period)
    if window is None:
        peer.error(cid, "INCORRECT_BOUNDARIES", f"unknown period {period}", account.account_id)
        return
    span = _range(peer, account, msg, cid, window, window)
    if span is None:
        return
    chunk = peer.world.options.trendbar_chunk
    limit = min(msg.count, chunk) if msg.count else chunk
    bars = list(islice(_reading(peer, ex.paths[symbol_id].bars_back(period, span[0], span[1])), limit + 1))
    res = M.ProtoOAGetTrendbarsRes(ctidTraderAccountId=account.account_id, period=msg.period,
                                   timestamp=ex.now_ms(), symbolId=symbol_id, hasMore=len(bars) > limit)
    res.trendbar.extend(ProtoOATrendbar(
        volume=b.volume, period=msg.period, low=b.low, deltaOpen=b.open - b.low, deltaClose=b.close - b.low,
        deltaHigh=b.high - b.low, utcTimestampInMinutes=b.start // 60_000) for b in reversed(bars[:limit]))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAGetTickDataReq)
@needs_account
def tick_data(peer: Peer, account: Account, msg: M.ProtoOAGetTickDataReq, cid: str | None) -> None:
    """``ProtoOAGetTickDataReq``: ticks in [from, to], newest first, delta-encoded, ``hasMore``."""
    ex = peer.world.exchange
    symbol = symbol_or_error(peer, account, msg, cid)
    if symbol is None:
        return
    span = _range(peer, account, msg, cid, WEEK_WINDOW_MS, 3_600_000)
    if span is None:
        return
    chunk = peer.world.options.tick_chunk
    ticks = list(islice(_reading(peer, ex.paths[symbol.symbol_id].ticks_back(span[0], span[1])), chunk + 1))
    spread = symbol.spread if msg.type == 2 else 0  # ASK = 2
    res = M.ProtoOAGetTickDataRes(ctidTraderAccountId=account.account_id, hasMore=len(ticks) > chunk)
    prev_t = prev_p = 0
    for t, bid in ticks[:chunk]:
        p = bid + spread
        res.tickData.append(ProtoOATickData(timestamp=t - prev_t, tick=p - prev_p))
        prev_t, prev_p = t, p
    peer.respond(res, cid)


def _newest(items: list[Any], key: str, lo: int, hi: int, limit: int,
            exact: bool = False) -> tuple[list[Any], bool]:
    """The newest ``limit`` items with ``lo <= item.key <= hi``, oldest first, and whether more match.

    Unless ``exact`` (an explicit ``maxRows``), a page never splits a millisecond: the items that
    share the oldest kept item's time all come along, so paging on with ``toTimestamp`` = that time
    - 1 loses none (a simulator choice; on a test clock that stands still every record shares one).
    """
    found = sorted((x for x in items if lo <= getattr(x, key) <= hi), key=lambda x: getattr(x, key))
    if limit <= 0:
        return [], bool(found)
    start = max(0, len(found) - limit)
    while not exact and start > 0 and getattr(found[start - 1], key) == getattr(found[start], key):
        start -= 1
    return found[start:], start > 0


def _list_page(peer: Peer, account: Account, msg: Any, cid: str | None, records: list[Any], key: str,
               res_type: Callable[..., Any], field: str, convert: Callable[[Any], Any] | None = None,
               position_of: str | None = None, limit: int | None = None, exact: bool = False) -> None:
    """Answer a deal or order list request: the newest page of ``records`` (see ``_newest``) in
    ``res_type``'s repeated ``field``, each item passed through ``convert``, with ``hasMore``.

    With ``position_of``, only the records whose attribute of that name is ``msg.positionId``
    (POSITION_NOT_FOUND if the account has no such position).  ``limit`` defaults to the option
    ``list_chunk``.
    """
    span = _range(peer, account, msg, cid, None, None)
    if span is None:
        return
    with peer.world.exchange.lock:
        if position_of is not None:
            if int(msg.positionId) not in account.positions:
                peer.error(cid, "POSITION_NOT_FOUND", f"no position {msg.positionId}", account.account_id)
                return
            records = [r for r in records if getattr(r, position_of) == msg.positionId]
        page, more = _newest(records, key, span[0], span[1],
                             peer.world.options.list_chunk if limit is None else limit, exact)
        res = res_type(ctidTraderAccountId=account.account_id, hasMore=more)
        getattr(res, field).extend(page if convert is None else (convert(r) for r in page))
    peer.respond(res, cid)


def _order_proto(order: Any) -> Any:
    """An order record as its ``ProtoOAOrder``."""
    return order.to_proto()


@handles(TABLE, M.ProtoOADealListReq)
@needs_account
def deal_list(peer: Peer, account: Account, msg: M.ProtoOADealListReq, cid: str | None) -> None:
    """``ProtoOADealListReq``: deals executed in [from, to] (at most ``maxRows``)."""
    chunk = peer.world.options.list_chunk
    limit = min(msg.maxRows, chunk) if msg.maxRows > 0 else chunk
    _list_page(peer, account, msg, cid, account.deals, "executionTimestamp", M.ProtoOADealListRes, "deal",
               limit=limit, exact=limit < chunk)


@handles(TABLE, M.ProtoOADealListByPositionIdReq)
@needs_account
def deal_list_by_position(peer: Peer, account: Account, msg: M.ProtoOADealListByPositionIdReq,
                          cid: str | None) -> None:
    """``ProtoOADealListByPositionIdReq``: the deals of one position."""
    _list_page(peer, account, msg, cid, account.deals, "executionTimestamp", M.ProtoOADealListByPositionIdRes,
               "deal", position_of="positionId")


@handles(TABLE, M.ProtoOAOrderListReq)
@needs_account
def order_list(peer: Peer, account: Account, msg: M.ProtoOAOrderListReq, cid: str | None) -> None:
    """``ProtoOAOrderListReq``: every order created in [from, to] (pending, filled, cancelled, ...)."""
    _list_page(peer, account, msg, cid, account.order_history, "created_ms", M.ProtoOAOrderListRes, "order",
               _order_proto)


@handles(TABLE, M.ProtoOAOrderListByPositionIdReq)
@needs_account
def order_list_by_position(peer: Peer, account: Account, msg: M.ProtoOAOrderListByPositionIdReq,
                           cid: str | None) -> None:
    """``ProtoOAOrderListByPositionIdReq``: the orders that opened, changed or closed one position."""
    _list_page(peer, account, msg, cid, account.order_history, "created_ms", M.ProtoOAOrderListByPositionIdRes,
               "order", _order_proto, position_of="position_id")


@handles(TABLE, M.ProtoOADealOffsetListReq)
@needs_account
def deal_offset_list(peer: Peer, account: Account, msg: M.ProtoOADealOffsetListReq, cid: str | None) -> None:
    """``ProtoOADealOffsetListReq``: a closing deal offsets its position's opening deals; an opening
    deal is offset by the closing ones."""
    with peer.world.exchange.lock:
        deal = next((d for d in account.deals if d.dealId == msg.dealId), None)
        if deal is None:
            peer.error(cid, "INCORRECT_BOUNDARIES", f"no deal {msg.dealId}", account.account_id)
            return
        same = [d for d in account.deals if d.positionId == deal.positionId and d.dealId != deal.dealId]
        res = M.ProtoOADealOffsetListRes(ctidTraderAccountId=account.account_id)
        closing = deal.HasField("closePositionDetail")
        for other in same:
            if other.HasField("closePositionDetail") == closing:
                continue
            offset = ProtoOADealOffset(dealId=other.dealId, volume=min(other.volume, deal.volume),
                                       executionTimestamp=other.executionTimestamp,
                                       executionPrice=other.executionPrice)
            (res.offsetting if closing else res.offsetBy).append(offset)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOACashFlowHistoryListReq)
@needs_account
def cash_flow(peer: Peer, account: Account, msg: M.ProtoOACashFlowHistoryListReq, cid: str | None) -> None:
    """``ProtoOACashFlowHistoryListReq``: balance changes in [from, to] (a range of 1 week at most)."""
    span = _range(peer, account, msg, cid, WEEK_WINDOW_MS, None)
    if span is None:
        return
    with peer.world.exchange.lock:
        entries = [e for e in account.cash_flow if span[0] <= e.changeBalanceTimestamp <= span[1]]
    res = M.ProtoOACashFlowHistoryListRes(ctidTraderAccountId=account.account_id)
    res.depositWithdraw.extend(entries)
    peer.respond(res, cid)
