"""Trading half of the toolkit without a server: the depth book from a scripted sequence, quotes
merging one-sided spot events, the mirror's updates from constructed execution events, realized
P&L from constructed deals."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import astuple
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from ctrader_sync.errors import RequestTimeoutError
from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.messages import OpenApiModelMessages_pb2 as MM
from ctrader_sync.toolkit import DepthBook, Quote, Quotes
from ctrader_sync.toolkit._mirror import Mirror
from ctrader_sync.toolkit._pnl import closed_positions
from ctrader_sync.toolkit._trade_types import side_value

ACCOUNT = 7


class Info:
    """A stand-in SymbolInfo: EURUSD, 5 digits, 100,000-unit lots."""

    id = 1
    name = "EURUSD"
    digits = 5

    def volume_to_lots(self, volume: int) -> Decimal:
        return Decimal(volume) / 10_000_000


class FakeClient:
    """Just enough of Client for the mirror: handlers, sends recorded, a connection number."""

    def __init__(self) -> None:
        self.handlers: dict[type, list[Any]] = {}
        self.sent: list[Any] = []
        self.is_connected = True
        self.connection_count = 1

    def on(self, message_type: type, callback: Any) -> Any:
        self.handlers.setdefault(message_type, []).append(callback)
        client = self

        class Handle:
            def remove(self) -> None:
                client.handlers[message_type].remove(callback)
        return Handle()

    def send(self, message: Any, clientMsgId: str | None = None, timeout: float | None = None) -> Future[Any]:
        self.sent.append(message)
        return Future()

    def deliver(self, message: Any) -> None:
        for callback in list(self.handlers.get(type(message), [])):
            callback(message)


# -- depth ------------------------------------------------------------------------------------

def depth_event(new: list[tuple[int, str, int, int]] = (), deleted: list[int] = ()) -> M.ProtoOADepthEvent:  # type: ignore[assignment]
    event = M.ProtoOADepthEvent(ctidTraderAccountId=ACCOUNT, symbolId=1, deletedQuotes=list(deleted))
    for quote_id, side, price, size in new:
        quote = event.newQuotes.add(id=quote_id, size=size)
        setattr(quote, side, price)
    return event


def test_depth_book_from_a_scripted_sequence() -> None:
    book = DepthBook(None, ACCOUNT, Info())
    assert book.bids == [] and book.best_bid is None and book.best_ask is None
    book.apply(depth_event([(1, "bid", 108500, 100_000_00), (2, "bid", 108490, 50_000_00),
                            (3, "ask", 108510, 70_000_00), (4, "ask", 108520, 20_000_00),
                            (5, "bid", 108500, 25_000_00)]))
    assert book.bids == [(1.085, 125_000.0), (1.0849, 50_000.0)], "levels add up, best (highest) first"
    assert book.asks == [(1.0851, 70_000.0), (1.0852, 20_000.0)], "asks lowest first"
    assert (book.best_bid, book.best_ask) == (1.085, 1.0851)
    book.apply(depth_event([(6, "ask", 108505, 10_000_00)], deleted=[1, 3]))
    assert book.bids == [(1.085, 25_000.0), (1.0849, 50_000.0)]
    assert book.asks == [(1.08505, 10_000.0), (1.0852, 20_000.0)]
    book.apply(depth_event([(2, "bid", 108495, 60_000_00)]))  # an id sent again replaces its quote
    assert book.bids == [(1.085, 25_000.0), (1.08495, 60_000.0)]
    other = depth_event([(9, "bid", 200000, 1)])
    other.symbolId = 2
    book.apply(other)
    assert len(book) == 4 and book.updates == 3, "another symbol's event is ignored"
    assert book.wait(0.01) is book
    with pytest.raises(RequestTimeoutError):
        book.wait(0.01, updates=10)


# -- quotes -----------------------------------------------------------------------------------

def spot(bid: int | None = None, ask: int | None = None, ts: int | None = None) -> M.ProtoOASpotEvent:
    event = M.ProtoOASpotEvent(ctidTraderAccountId=ACCOUNT, symbolId=1)
    if bid is not None:
        event.bid = bid
    if ask is not None:
        event.ask = ask
    if ts is not None:
        event.timestamp = ts
    return event


def test_quotes_merge_one_sided_spot_events() -> None:
    quotes = Quotes(None, ACCOUNT, [Info()])
    assert quotes.get("eurusd") is None
    with pytest.raises(KeyError, match="no price"):
        quotes["EURUSD"]
    quotes.apply(spot(bid=108500))
    assert quotes.get("EURUSD") is None, "half a quote is not a quote"
    with pytest.raises(RequestTimeoutError):
        quotes.wait("EURUSD", 0.01)
    quotes.apply(spot(ask=108512, ts=1_700_000_000_000))
    first = quotes.wait("EURUSD", 0.01)
    assert (first.bid, first.ask) == (1.085, 1.08512)
    assert first.time.timestamp() == 1_700_000_000.0
    quotes.apply(spot(bid=108520))  # only the bid changed
    assert (quotes["EURUSD"].bid, quotes["EURUSD"].ask) == (1.0852, 1.08512)
    quotes.apply(spot(ask=108530))  # only the ask changed
    assert (quotes[1].bid, quotes[1].ask) == (1.0852, 1.0853)
    assert isinstance(quotes[1].bid, float) and abs(quotes[1].spread - 0.0001) < 1e-12
    foreign = spot(bid=1, ask=2)
    foreign.ctidTraderAccountId = ACCOUNT + 1
    quotes.apply(foreign)
    assert quotes["EURUSD"].bid == 1.0852, "another account's spots are ignored"
    with pytest.raises(KeyError, match="not one of"):
        quotes["GBPUSD"]


def test_quote_is_bid_ask_time_as_the_issue_names_it() -> None:
    """``Quote(bid, ask, time)``: positional in that order, the symbol's name after them."""
    quotes = Quotes(None, ACCOUNT, [Info()])
    quotes.apply(spot(bid=108500, ask=108512, ts=1_700_000_000_000))
    bid, ask, when, name = astuple(quotes["EURUSD"])
    assert (bid, ask, when.timestamp(), name) == (1.085, 1.08512, 1_700_000_000.0, "EURUSD")
    made = Quote(1.1, 1.2, datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert (made.bid, made.ask, made.symbol) == (1.1, 1.2, "")


# -- mirror -----------------------------------------------------------------------------------

def position(pid: int, volume: int, status: int = 1, price: float = 1.1, **extra: Any) -> MM.ProtoOAPosition:
    return MM.ProtoOAPosition(
        positionId=pid, positionStatus=status, swap=0, price=price, moneyDigits=2,
        tradeData=MM.ProtoOATradeData(symbolId=1, volume=volume, tradeSide=MM.BUY, openTimestamp=1), **extra)


def order(oid: int, status: int, order_type: int = MM.LIMIT) -> MM.ProtoOAOrder:
    return MM.ProtoOAOrder(orderId=oid, orderType=order_type, orderStatus=status, limitPrice=1.0,
                           tradeData=MM.ProtoOATradeData(symbolId=1, volume=100_000, tradeSide=MM.BUY))


def execution(kind: int, **fields: Any) -> M.ProtoOAExecutionEvent:
    return M.ProtoOAExecutionEvent(ctidTraderAccountId=ACCOUNT, executionType=kind, **fields)


def ready_mirror() -> tuple[FakeClient, Mirror, list[Any]]:
    client = FakeClient()
    mirror = Mirror(client, ACCOUNT, lambda sid: Info())
    seen: list[Any] = []
    mirror.on_change(seen.append)
    mirror._request_snapshot()
    assert [type(m).__name__ for m in client.sent] == ["ProtoOAReconcileReq", "ProtoOATraderReq"]
    # an event that arrives before the snapshot is older than it: the snapshot replaces it
    client.deliver(execution(MM.ORDER_FILLED, position=position(99, 100_000)))
    client.deliver(M.ProtoOAReconcileRes(ctidTraderAccountId=ACCOUNT, position=[position(1, 100_000)],
                                         order=[order(10, MM.ORDER_STATUS_ACCEPTED)]))
    assert not mirror.ready, "ready only when positions and balance are both in"
    client.deliver(M.ProtoOATraderRes(ctidTraderAccountId=ACCOUNT, trader=MM.ProtoOATrader(
        ctidTraderAccountId=ACCOUNT, balance=1_000_000, moneyDigits=2, depositAssetId=1)))
    assert mirror.ready and mirror.rebuilds == 1
    return client, mirror, seen


def test_mirror_snapshot_replaces_older_events_and_reports_ready() -> None:
    _, mirror, seen = ready_mirror()
    assert list(mirror.positions()) == [1]
    assert list(mirror.orders()) == [10]
    assert mirror.balance() == Decimal("10000.00")
    assert [c.kind for c in seen] == ["position_opened", "position_closed", "position_opened", "order_placed",
                                      "balance", "ready"]


def test_mirror_applies_execution_events_after_the_snapshot() -> None:
    client, mirror, seen = ready_mirror()
    seen.clear()
    client.deliver(execution(MM.ORDER_FILLED, position=position(2, 200_000),
                             order=order(11, MM.ORDER_STATUS_FILLED, MM.MARKET)))
    client.deliver(execution(MM.ORDER_FILLED, position=position(1, 40_000)))  # a partial close
    client.deliver(execution(MM.ORDER_FILLED, order=order(10, MM.ORDER_STATUS_FILLED),
                             position=position(3, 100_000)))  # the limit order filled
    deal = MM.ProtoOADeal(dealId=5, orderId=12, positionId=2, volume=200_000, filledVolume=200_000, symbolId=1,
                          createTimestamp=1, executionTimestamp=1, tradeSide=MM.SELL, dealStatus=MM.FILLED,
                          closePositionDetail=MM.ProtoOAClosePositionDetail(
                              entryPrice=1.1, grossProfit=-1234, swap=0, commission=0, balance=998_766, moneyDigits=2))
    client.deliver(execution(MM.ORDER_FILLED, position=position(2, 200_000, status=MM.POSITION_STATUS_CLOSED),
                             deal=deal))
    positions = mirror.positions()
    assert sorted(positions) == [1, 3]
    assert positions[1].volume == 400.0 and positions[1].lots == pytest.approx(0.004)
    assert mirror.orders() == {}
    assert mirror.balance() == Decimal("9987.66")
    assert [c.kind for c in seen] == ["position_opened", "position_changed", "position_opened", "order_removed",
                                      "position_closed", "balance"]
    closed = seen[4]
    assert closed.position_id == 2 and closed.message.deal.dealId == 5
    foreign = execution(MM.ORDER_FILLED, position=position(8, 1))
    foreign.ctidTraderAccountId = ACCOUNT + 1
    client.deliver(foreign)
    assert 8 not in mirror.positions(), "another account's events are ignored"


def test_mirror_rebuilds_on_reauthorisation_and_reports_what_changed_meanwhile() -> None:
    client, mirror, seen = ready_mirror()
    seen.clear()
    client.connection_count = 2  # a reconnect: stale until the new session's snapshot
    assert not mirror.ready
    client.sent.clear()
    client.deliver(M.ProtoOAAccountAuthRes(ctidTraderAccountId=ACCOUNT))
    assert [type(m).__name__ for m in client.sent] == ["ProtoOAReconcileReq", "ProtoOATraderReq"]
    client.deliver(M.ProtoOAReconcileRes(ctidTraderAccountId=ACCOUNT, position=[position(1, 100_000, stopLoss=1.05),
                                                                                 position(4, 300_000)]))
    client.deliver(M.ProtoOATraderRes(ctidTraderAccountId=ACCOUNT, trader=MM.ProtoOATrader(
        ctidTraderAccountId=ACCOUNT, balance=1_000_000, moneyDigits=2, depositAssetId=1)))
    assert mirror.ready and mirror.rebuilds == 2
    assert [(c.kind, c.position_id or c.order_id) for c in seen] == [
        ("position_changed", 1), ("position_opened", 4), ("order_removed", 10), ("ready", None)]
    assert mirror.positions()[1].stop_loss == 1.05
    client.deliver(M.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=ACCOUNT))
    assert not mirror.ready, "an account logged out is not mirrored any more"


def test_mirror_change_stream_and_handle_removal() -> None:
    client, mirror, seen = ready_mirror()
    with mirror.changes(timeout=0.01, maxsize=2) as stream:
        for pid in (20, 21, 22):
            client.deliver(execution(MM.ORDER_FILLED, position=position(pid, 100_000)))
        assert stream.dropped == 1
        assert [c.position_id for c in stream] == [21, 22]
    count = len(seen)
    handle = mirror.on_change(seen.append)
    handle.remove()
    handle.remove()
    client.deliver(execution(MM.ORDER_FILLED, position=position(30, 100_000)))
    assert len(seen) == count + 1, "the first callback still runs; the removed one does not"


# -- realized P&L -----------------------------------------------------------------------------

def closing_deal(deal_id: int, pid: int, volume: int, price: float, gross: int, swap: int, commission: int,
                 ts: int) -> MM.ProtoOADeal:
    return MM.ProtoOADeal(
        dealId=deal_id, orderId=deal_id, positionId=pid, volume=volume, filledVolume=volume, symbolId=1,
        createTimestamp=ts, executionTimestamp=ts, executionPrice=price, tradeSide=MM.SELL, dealStatus=MM.FILLED,
        moneyDigits=2, closePositionDetail=MM.ProtoOAClosePositionDetail(
            entryPrice=1.1, grossProfit=gross, swap=swap, commission=commission, balance=0, closedVolume=volume,
            moneyDigits=2))


def test_closed_positions_add_up_partial_closes() -> None:
    opening = MM.ProtoOADeal(dealId=1, orderId=1, positionId=5, volume=300_000, filledVolume=300_000, symbolId=1,
                             createTimestamp=1, executionTimestamp=1, executionPrice=1.1, tradeSide=MM.BUY,
                             dealStatus=MM.FILLED)
    deals = [opening, closing_deal(2, 5, 100_000, 1.2, 10_000, -30, -7, 2_000),
             closing_deal(3, 5, 200_000, 1.05, -10_000, -60, -14, 3_000)]
    [closed] = closed_positions(deals, lambda sid: Info())
    # hand computation: 1,000 units closed at 1.2 (+100.00), 2,000 at 1.05 (-100.00)
    assert closed.position_id == 5 and closed.side == "buy" and closed.volume == 3000.0
    assert closed.gross_profit == Decimal("0.00")
    assert closed.swap == Decimal("-0.90") and closed.commission == Decimal("-0.21")
    assert closed.net_profit == Decimal("-1.11")
    assert closed.close_price == pytest.approx((1.2 * 1000 + 1.05 * 2000) / 3000)
    assert closed.close_time.timestamp() == 3.0


def test_side_names() -> None:
    assert side_value("buy") == side_value("BUY") == side_value(MM.BUY) == 1
    assert side_value("Sell") == 2
    with pytest.raises(ValueError):
        side_value("hold")


# -- settling a market order from its events (partial fills, rejection) ---------------------------

class ScriptedClient(FakeClient):
    """Answers each new order with a scripted list of execution events (delivered in order)."""

    def __init__(self, script: Any) -> None:
        super().__init__()
        self.script = script

    def send(self, message: Any, clientMsgId: str | None = None, timeout: float | None = None) -> Future[Any]:
        self.sent.append(message)
        events = self.script(message)
        future: Future[Any] = Future()
        future.set_result(events[0])
        for event in events:
            self.deliver(event)
        return future


def new_order(volume: int = 300_000) -> M.ProtoOANewOrderReq:
    return M.ProtoOANewOrderReq(ctidTraderAccountId=ACCOUNT, symbolId=1, orderType=MM.MARKET, tradeSide=MM.BUY,
                                volume=volume, clientOrderId="cts-test")


def market(request: Any, status: int, executed: int = 0, price: float | None = None) -> MM.ProtoOAOrder:
    order = MM.ProtoOAOrder(orderId=50, orderType=MM.MARKET, orderStatus=status, clientOrderId=request.clientOrderId,
                            tradeData=MM.ProtoOATradeData(symbolId=1, volume=request.volume, tradeSide=MM.BUY),
                            positionId=60)
    if executed:
        order.executedVolume = executed
    if price is not None:
        order.executionPrice = price
    return order


def partial_then(rest: int) -> Any:
    def script(request: Any) -> list[Any]:
        deal = MM.ProtoOADeal(dealId=1, orderId=50, positionId=60, volume=300_000, filledVolume=100_000, symbolId=1,
                              createTimestamp=1, executionTimestamp=1_000, executionPrice=1.1, tradeSide=MM.BUY,
                              dealStatus=MM.PARTIALLY_FILLED)
        events = [execution(MM.ORDER_ACCEPTED, order=market(request, MM.ORDER_STATUS_ACCEPTED)),
                  execution(MM.ORDER_PARTIAL_FILL, order=market(request, MM.ORDER_STATUS_ACCEPTED, 100_000, 1.1),
                            deal=deal)]
        if rest == MM.ORDER_FILLED:
            deal2 = MM.ProtoOADeal()
            deal2.CopyFrom(deal)
            deal2.dealId, deal2.filledVolume, deal2.executionPrice, deal2.executionTimestamp = 2, 200_000, 1.2, 2_000
            events.append(execution(MM.ORDER_FILLED, order=market(request, MM.ORDER_STATUS_FILLED, 300_000),
                                    deal=deal2))
        else:
            events.append(execution(rest, order=market(request, MM.ORDER_STATUS_CANCELLED, 100_000)))
        return events
    return script


def test_market_order_waits_through_partial_fills() -> None:
    from ctrader_sync.toolkit._orders import Desk

    desk = Desk(ScriptedClient(partial_then(MM.ORDER_FILLED)), ACCOUNT, lambda sid: Info())
    fill = desk.place(new_order(), 5.0, want_fill=True)
    assert fill.volume == 3000.0 and fill.lots == pytest.approx(0.03)
    assert fill.price == pytest.approx((1.1 * 1000 + 1.2 * 2000) / 3000), "volume-weighted over the deals"
    assert fill.time.timestamp() == 2.0 and fill.position_id == 60 and fill.execution.executionType == MM.ORDER_FILLED


def test_market_order_partially_filled_then_cancelled_reports_the_part() -> None:
    from ctrader_sync.toolkit._orders import Desk

    desk = Desk(ScriptedClient(partial_then(MM.ORDER_CANCELLED)), ACCOUNT, lambda sid: Info())
    fill = desk.place(new_order(), 5.0, want_fill=True)
    assert fill.volume == 1000.0 and fill.price == 1.1


def test_rejected_order_raises_with_code_and_ids() -> None:
    from ctrader_sync.errors import OrderError
    from ctrader_sync.toolkit._orders import Desk

    def reject(request: Any) -> list[Any]:
        event = execution(MM.ORDER_REJECTED, order=market(request, MM.ORDER_STATUS_REJECTED))
        event.errorCode = "NOT_ENOUGH_MONEY"
        return [event]

    desk = Desk(ScriptedClient(reject), ACCOUNT, lambda sid: Info())
    with pytest.raises(OrderError) as info:
        desk.place(new_order(), 5.0, want_fill=True)
    assert info.value.error_code == "NOT_ENOUGH_MONEY" and info.value.order_id == 50
