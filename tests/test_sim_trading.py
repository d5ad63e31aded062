"""Simulator trading through a plain TLS client: fills, stops, money, expiry and every refusal code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simtools import EXECUTION_EVENT, ORDER_ERROR_EVENT, SPOT_EVENT, Harness, Wire, harness, oa_error

from ctrader_sync.messages import OpenApiMessages_pb2 as M

TUESDAY = 1_700_000_000.0  # Tuesday 2023-11-14 22:13:20 UTC (a fixed clock: no swap rollover in a test)
SATURDAY = TUESDAY + 4 * 86_400
BUY, SELL = 1, 2
MARKET, LIMIT, STOP, STOP_LIMIT = 1, 2, 3, 6
GTD = 1  # ProtoOATimeInForce.GOOD_TILL_DATE
ACCEPTED, FILLED, REPLACED, CANCELLED, EXPIRED = 2, 3, 4, 5, 6
TRADER_UPDATED = 2123
LOT = 10_000_000  # 100,000 units, in cents


@pytest.fixture
def make() -> Iterator[Harness]:
    """Start simulators and clients; close them all and check no simulator thread survives."""
    yield from harness()


def still(make: Harness, **options: Any) -> tuple[Any, Wire, int]:
    """A simulator whose prices move only by set_price, on a fixed clock; a logged-in wire."""
    sim, wire = make(spot_interval=0, clock=lambda: TUESDAY, **options)
    (a,) = wire.login()
    return sim, wire, a


def order(wire: Wire, a: int, cid: str, **fields: Any) -> list[Any]:
    """Send a ProtoOANewOrderReq; return the execution events answering it (accepted, filled)."""
    fields = {"symbolId": 1, "orderType": MARKET, "tradeSide": BUY, "volume": LOT, **fields}
    wire.send(M.ProtoOANewOrderReq(ctidTraderAccountId=a, **fields), cid)
    first = wire.answer(cid)
    if first.payloadType != EXECUTION_EVENT:
        return [first]
    events = [first.message]
    if fields["orderType"] == MARKET:
        events.append(wire.answer(cid).message)
    return events


def pushed(wire: Wire, kind: int) -> Any:
    return wire.next(lambda f: f.payloadType == EXECUTION_EVENT and f.message.executionType == kind).message


def test_limit_order_fills_when_set_price_crosses_it(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    (accepted,) = order(wire, a, "lim", orderType=LIMIT, limitPrice=1.08000, clientOrderId="my-limit")
    assert accepted.executionType == ACCEPTED and accepted.order.orderStatus == 1
    sim.set_price("EURUSD", 1.08100, 1.08110)  # not crossed yet
    sim.set_price("EURUSD", 1.07990, 1.08000)  # the ask reaches the limit
    spot = wire.next(lambda f: f.payloadType == SPOT_EVENT and f.message.ask == 108_000)
    assert spot.clientMsgId is None
    filled = pushed(wire, FILLED)
    assert filled.order.orderId == accepted.order.orderId and filled.order.orderStatus == 2
    assert filled.order.clientOrderId == "my-limit" and filled.order.executionPrice == 1.08
    assert filled.position.positionStatus == 1 and filled.position.price == 1.08
    assert filled.deal.orderId == filled.order.orderId and filled.deal.positionId == filled.position.positionId
    assert filled.deal.executionPrice == 1.08 and filled.deal.filledVolume == LOT
    stash = list(wire.stash)
    assert not any(f.payloadType == EXECUTION_EVENT and f.message.executionType == FILLED for f in stash)
    assert [d.dealId for d in sim.connections[0].fills()] == [filled.deal.dealId]
    reconcile = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message
    assert list(reconcile.order) == [] and [p.positionId for p in reconcile.position] == [filled.position.positionId]


def test_stop_and_stop_limit_orders_fill_on_crossing(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    (stop,) = order(wire, a, "s", orderType=STOP, tradeSide=SELL, stopPrice=1.08300)
    (stop_limit,) = order(wire, a, "sl", orderType=STOP_LIMIT, tradeSide=BUY, stopPrice=1.08700,
                          slippageInPoints=5)
    sim.set_price("EURUSD", 1.08900, 1.08910)  # beyond the stop-limit's slippage: it keeps waiting
    sim.set_price("EURUSD", 1.08690, 1.08700)
    filled = pushed(wire, FILLED)
    assert filled.order.orderId == stop_limit.order.orderId and filled.deal.executionPrice == 1.087
    sim.set_price("EURUSD", 1.08290, 1.08300)
    filled = pushed(wire, FILLED)
    assert filled.order.orderId == stop.order.orderId and filled.deal.executionPrice == 1.0829


def test_take_profit_and_stop_loss_close_with_balance_by_hand(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, buy = order(wire, a, "buy", relativeStopLoss=500, relativeTakeProfit=1000)
    assert buy.position.price == 1.1001
    assert buy.position.stopLoss == 1.0951 and buy.position.takeProfit == 1.1101
    assert buy.position.commission == -300 and buy.position.moneyDigits == 2
    sim.set_price("EURUSD", 1.11020, 1.11030)  # the bid passes the take profit
    closed = pushed(wire, FILLED)
    detail = closed.deal.closePositionDetail
    # (1.11020 - 1.10010) * 100,000 = 1,010.00 USD; commission 3.00 per lot per side
    assert detail.grossProfit == 101_000 and detail.commission == -600 and detail.swap == 0
    assert detail.balance == 1_000_000 + 101_000 - 600 and detail.moneyDigits == 2
    assert closed.position.positionStatus == 2 and closed.order.orderType == 4  # STOP_LOSS_TAKE_PROFIT
    update = wire.next(lambda f: f.payloadType == TRADER_UPDATED).message
    assert update.trader.balance == 1_100_400 and sim.balance(a) == 11_004.0

    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, sell = order(wire, a, "sell", tradeSide=SELL, volume=2 * LOT, relativeStopLoss=300)
    assert sell.position.price == 1.1 and sell.position.stopLoss == 1.103 and not sell.position.HasField("takeProfit")
    sim.set_price("EURUSD", 1.10290, 1.10300)  # the ask reaches the stop loss
    closed = pushed(wire, FILLED)
    detail = closed.deal.closePositionDetail
    # (1.10000 - 1.10300) * 200,000 = -600.00 USD; commission 2 lots * 3.00 * 2 sides
    assert detail.grossProfit == -60_000 and detail.commission == -1_200
    assert detail.balance == 1_100_400 - 60_000 - 1_200
    assert sim.connections[0].balance_changes(a) == [1_100_400, 1_039_200]


def test_jpy_quote_pnl_in_a_eur_account_by_hand(make: Harness) -> None:
    sim, wire, a = still(make, account_currency="EUR")
    trader = wire.call(M.ProtoOATraderReq(ctidTraderAccountId=a)).message.trader
    assert trader.depositAssetId == 2 and trader.moneyDigits == 2
    sim.set_price("EURUSD", 1.08000, 1.08010)
    sim.set_price("USDJPY", 150.000, 150.010)
    _, buy = order(wire, a, "buy", symbolId=3)
    assert buy.position.price == 150.01
    sim.set_price("USDJPY", 151.000, 151.010)
    # 99,000 JPY = (151.000 - 150.010) * 100,000; JPY -> USD at USDJPY's bid, USD -> EUR at EURUSD's bid
    expected = round(99_000 / 151.0 / 1.08 * 100)
    assert expected == 60_706
    pnl = wire.call(M.ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=a)).message
    assert pnl.moneyDigits == 2 and len(pnl.positionUnrealizedPnL) == 1
    assert pnl.positionUnrealizedPnL[0].grossUnrealizedPnL == expected
    assert pnl.positionUnrealizedPnL[0].netUnrealizedPnL == expected - 300
    wire.send(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=buy.position.positionId, volume=LOT),
              "close")
    accepted, closed = wire.answer("close").message, wire.answer("close").message
    assert accepted.executionType == ACCEPTED and closed.executionType == FILLED
    assert closed.deal.closePositionDetail.grossProfit == expected
    assert closed.deal.closePositionDetail.balance == 1_000_000 + expected - 600
    chain = wire.call(M.ProtoOASymbolsForConversionReq(ctidTraderAccountId=a, firstAssetId=4, lastAssetId=2))
    assert [s.symbolName for s in chain.message.symbol] == ["USDJPY", "EURUSD"]


def test_partial_close_and_position_lifecycle_events(make: Harness) -> None:
    sim, wire, a = still(make)
    other = make.wire(sim)
    other.login()
    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, buy = order(wire, a, "buy", volume=3 * LOT)
    pid = buy.position.positionId
    wire.send(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=pid, volume=LOT), "part")
    _, part = wire.answer("part").message, wire.answer("part").message
    assert part.position.positionStatus == 1 and part.position.tradeData.volume == 2 * LOT
    assert part.deal.closePositionDetail.closedVolume == LOT
    seen = other.next(lambda f: f.payloadType == EXECUTION_EVENT and f.message.executionType == FILLED)
    assert seen.clientMsgId is None, "the account's other connection gets the events as pushes"
    assert other.next(lambda f: f.payloadType == TRADER_UPDATED).clientMsgId is None
    deals = wire.call(M.ProtoOADealListByPositionIdReq(ctidTraderAccountId=a, positionId=pid)).message.deal
    assert [d.volume for d in deals] == [3 * LOT, LOT]
    offsets = wire.call(M.ProtoOADealOffsetListReq(ctidTraderAccountId=a, dealId=deals[1].dealId)).message
    assert [o.dealId for o in offsets.offsetting] == [deals[0].dealId]
    orders = wire.call(M.ProtoOAOrderListByPositionIdReq(ctidTraderAccountId=a, positionId=pid)).message.order
    assert [o.closingOrder for o in orders] == [False, True]
    details = wire.call(M.ProtoOAOrderDetailsReq(ctidTraderAccountId=a, orderId=orders[1].orderId)).message
    assert details.order.orderId == orders[1].orderId and [d.dealId for d in details.deal] == [deals[1].dealId]


def test_gtd_order_expires_on_the_simulated_clock(make: Harness) -> None:
    now = [TUESDAY]
    sim, wire = make(spot_interval=0, clock=lambda: now[0])
    (a,) = wire.login()
    sim.set_price("EURUSD", 1.08500, 1.08510)
    expiry = int(TUESDAY * 1000) + 60_000
    (placed,) = order(wire, a, "gtd", orderType=LIMIT, limitPrice=1.08, timeInForce=GTD, expirationTimestamp=expiry)
    assert placed.order.expirationTimestamp == expiry
    now[0] = TUESDAY + 61
    expired = pushed(wire, EXPIRED)
    assert expired.order.orderId == placed.order.orderId and expired.order.orderStatus == 4
    assert wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message.order == []


def test_market_hours_fx_refuse_trading_on_weekends_always_does_not(make: Harness) -> None:
    sim, wire = make(spot_interval=0, clock=lambda: SATURDAY, market_hours="fx")
    (a,) = wire.login()
    assert not sim.market_open
    assert oa_error(order(wire, a, "w")[0]) == "MARKET_CLOSED"
    open_sim, open_wire = make(spot_interval=0, clock=lambda: SATURDAY)
    (b,) = open_wire.login()
    assert open_sim.market_open and order(open_wire, b, "w")[1].executionType == FILLED


def test_nothing_executes_while_the_market_is_closed_crossed_orders_fill_when_it_opens(make: Harness) -> None:
    now = [TUESDAY + 3 * 86_400 - 4_400]  # Friday 21:00 UTC: open for another hour
    sim, wire = make(spot_interval=0, clock=lambda: now[0], market_hours="fx")
    (a,) = wire.login()
    sim.set_price("EURUSD", 1.08500, 1.08510)
    (limit,) = order(wire, a, "lim", orderType=LIMIT, limitPrice=1.08000)
    _, position = order(wire, a, "mkt", relativeTakeProfit=500)  # take profit at 1.09010
    record = sim.connections[0]
    fills = len(record.fills())
    now[0] = SATURDAY
    assert not sim.market_open
    sim.set_price("EURUSD", 1.07000, 1.07010)  # crosses the limit order...
    sim.set_price("EURUSD", 1.09500, 1.09510)  # ...and the take profit, on a Saturday
    assert len(record.fills()) == fills, "nothing executes while the market is closed"
    assert len(wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message.order) == 1
    now[0] = TUESDAY + 5 * 86_400  # Sunday 22:13 UTC: open again, at the last price
    closed = pushed(wire, FILLED)
    assert closed.position.positionId == position.position.positionId and closed.deal.executionPrice == 1.095
    assert closed.deal.closePositionDetail.grossProfit == 99_000  # (1.09500 - 1.08510) * 100,000 USD
    reconcile = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message
    assert [o.orderId for o in reconcile.order] == [limit.order.orderId]  # 1.09510 never crossed the limit


def test_every_refusal_code(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    _, pos = order(wire, a, "p")
    pid = pos.position.positionId
    (pending,) = order(wire, a, "o", orderType=LIMIT, limitPrice=1.08)
    oid = pending.order.orderId
    cases: list[tuple[str, Any]] = [
        ("SYMBOL_NOT_FOUND", M.ProtoOANewOrderReq(symbolId=999, orderType=MARKET, tradeSide=BUY, volume=LOT)),
        ("TRADING_BAD_VOLUME", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY, volume=50_000)),
        ("TRADING_BAD_VOLUME", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY, volume=150_000)),
        ("TRADING_BAD_VOLUME", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY,
                                                    volume=20_000_000_000)),
        ("TRADING_BAD_STOPS", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY, volume=LOT,
                                                   stopLoss=1.07)),
        ("TRADING_BAD_STOPS", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY, volume=LOT,
                                                   relativeStopLoss=-5)),
        ("TRADING_BAD_STOPS", M.ProtoOANewOrderReq(symbolId=1, orderType=LIMIT, tradeSide=BUY, volume=LOT,
                                                   limitPrice=1.08, stopLoss=1.081)),
        ("TRADING_BAD_STOPS", M.ProtoOANewOrderReq(symbolId=1, orderType=STOP, tradeSide=SELL, volume=LOT,
                                                   stopPrice=1.08, takeProfit=1.09)),
        ("TRADING_BAD_PRICES", M.ProtoOANewOrderReq(symbolId=1, orderType=LIMIT, tradeSide=BUY, volume=LOT)),
        ("TRADING_BAD_PRICES", M.ProtoOANewOrderReq(symbolId=1, orderType=LIMIT, tradeSide=BUY, volume=LOT,
                                                    limitPrice=1.09)),
        ("TRADING_BAD_PRICES", M.ProtoOANewOrderReq(symbolId=1, orderType=STOP, tradeSide=BUY, volume=LOT,
                                                    stopPrice=1.08)),
        ("TRADING_BAD_EXPIRATION_DATE", M.ProtoOANewOrderReq(symbolId=1, orderType=LIMIT, tradeSide=BUY,
                                                             volume=LOT, limitPrice=1.08, timeInForce=GTD,
                                                             expirationTimestamp=int(TUESDAY * 1000) - 1)),
        ("NOT_ENOUGH_MONEY", M.ProtoOANewOrderReq(symbolId=1, orderType=MARKET, tradeSide=BUY,
                                                  volume=100 * LOT)),
        ("POSITION_NOT_FOUND", M.ProtoOAClosePositionReq(positionId=123, volume=LOT)),
        ("POSITION_NOT_FOUND", M.ProtoOAAmendPositionSLTPReq(positionId=123, stopLoss=1.0)),
        ("TRADING_BAD_VOLUME", M.ProtoOAClosePositionReq(positionId=pid, volume=2 * LOT)),
        ("TRADING_BAD_STOPS", M.ProtoOAAmendPositionSLTPReq(positionId=pid, stopLoss=1.09)),
        ("TRADING_BAD_STOPS", M.ProtoOAAmendPositionSLTPReq(positionId=pid, takeProfit=1.08)),
        ("ORDER_NOT_FOUND", M.ProtoOACancelOrderReq(orderId=123)),
        ("ORDER_NOT_FOUND", M.ProtoOAAmendOrderReq(orderId=123, volume=LOT)),
        ("TRADING_BAD_VOLUME", M.ProtoOAAmendOrderReq(orderId=oid, volume=1)),
        ("TRADING_BAD_STOPS", M.ProtoOAAmendOrderReq(orderId=oid, stopLoss=1.09)),
    ]
    for code, msg in cases:
        msg.ctidTraderAccountId = a
        f = wire.call(msg)
        assert f.payloadType == ORDER_ERROR_EVENT and f.message.errorCode == code, (code, msg, f)
    last = wire.call(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=pid, volume=2 * LOT)).message
    assert last.positionId == pid, "a refusal names the position it is about"
    closed_sim, closed_wire = make(spot_interval=0, clock=lambda: SATURDAY, market_hours="fx")
    (b,) = closed_wire.login()
    assert oa_error(closed_wire.call(M.ProtoOANewOrderReq(ctidTraderAccountId=b, symbolId=1, orderType=MARKET,
                                                           tradeSide=BUY, volume=LOT))) == "MARKET_CLOSED"
    assert closed_sim.connections[0].executions() == []


def test_amendments_replace_and_removing_a_leg(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    _, pos = order(wire, a, "p")
    pid = pos.position.positionId
    both = wire.call(M.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=a, positionId=pid, stopLoss=1.08,
                                                   takeProfit=1.09)).message
    assert both.executionType == REPLACED and (both.position.stopLoss, both.position.takeProfit) == (1.08, 1.09)
    one = wire.call(M.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=a, positionId=pid, stopLoss=1.081)).message
    assert one.position.stopLoss == 1.081 and not one.position.HasField("takeProfit"), "an omitted leg is removed"
    (pending,) = order(wire, a, "o", orderType=LIMIT, limitPrice=1.08)
    cancel = wire.call(M.ProtoOACancelOrderReq(ctidTraderAccountId=a, orderId=pending.order.orderId)).message
    assert cancel.executionType == CANCELLED
    kinds = [e.executionType for e in sim.connections[0].executions(a)]
    assert kinds == [ACCEPTED, FILLED, REPLACED, REPLACED, ACCEPTED, CANCELLED]


def test_order_list_pages_with_has_more(make: Harness) -> None:
    now = [TUESDAY]
    sim, wire = make(spot_interval=0, clock=lambda: now[0], list_chunk=2, historical_limit=0)
    (a,) = wire.login()
    sim.set_price("EURUSD", 1.08500, 1.08510)
    ids = []
    for i in range(3):  # one a second (orders of the same millisecond stay on one page: test below)
        ids.append(order(wire, a, f"o{i}", orderType=LIMIT, limitPrice=1.08 - i * 0.001)[0].order.orderId)
        now[0] += 1
    page = wire.call(M.ProtoOAOrderListReq(ctidTraderAccountId=a)).message
    assert page.hasMore and [o.orderId for o in page.order] == ids[1:]
    deals = wire.call(M.ProtoOADealListReq(ctidTraderAccountId=a, maxRows=1)).message
    assert not deals.hasMore and list(deals.deal) == []


def test_deal_and_order_lists_page_without_loss_on_a_clock_that_stands_still(make: Harness) -> None:
    """Records of one account never share a millisecond (a later one is stamped 1 ms on), so
    paging backwards with ``toTimestamp`` = the oldest time received - 1 loses nothing."""
    sim, wire, a = still(make, list_chunk=2, historical_limit=0, request_limit=0)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    placed = [order(wire, a, f"m{i}")[1] for i in range(5)]
    start = int(TUESDAY * 1000)
    assert placed[0].deal.executionTimestamp == start  # the clock's time when nothing collides

    def page_all(request: Any, field: str, ident: str, stamp: Any) -> list[int]:
        got: list[int] = []
        to = start + 60_000
        while True:
            res = wire.call(request(ctidTraderAccountId=a, fromTimestamp=start, toTimestamp=to)).message
            assert hasattr(res, field), res
            rows = list(getattr(res, field))
            got += [getattr(r, ident) for r in rows]
            if not res.hasMore:
                return got
            to = min(stamp(r) for r in rows) - 1

    deals = page_all(M.ProtoOADealListReq, "deal", "dealId", lambda d: d.executionTimestamp)
    assert sorted(deals) == sorted(p.deal.dealId for p in placed)
    orders = page_all(M.ProtoOAOrderListReq, "order", "orderId", lambda o: o.tradeData.openTimestamp)
    assert sorted(orders) == sorted(p.order.orderId for p in placed)


def test_swap_accrues_per_rollover_and_is_charged_at_close(make: Harness) -> None:
    now = [TUESDAY - 3600]  # Tuesday 21:13 UTC
    sim, wire = make(spot_interval=0, clock=lambda: now[0])
    (a,) = wire.login()
    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, buy = order(wire, a, "buy", volume=2 * LOT)
    now[0] = TUESDAY + 86_400 + 3600  # Thursday 23:13: the Tuesday and Wednesday 22:00 rollovers passed
    position = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message.position[0]
    assert position.swap == -200  # 0.50 per lot per night, 2 lots, 2 nights
    sim.set_price("EURUSD", 1.10010, 1.10020)
    wire.send(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=buy.position.positionId,
                                        volume=2 * LOT), "close")
    wire.answer("close")
    detail = wire.answer("close").message.deal.closePositionDetail
    assert (detail.grossProfit, detail.swap, detail.commission) == (0, -200, -1_200)
    assert detail.balance == 1_000_000 - 1_400


def test_expected_margin_and_trader(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.08500, 1.08510)
    margin = wire.call(M.ProtoOAExpectedMarginReq(ctidTraderAccountId=a, symbolId=1, volume=[LOT, 2 * LOT])).message
    # 100,000 EUR at EURUSD's bid 1.08500, leverage 1:100 -> 1,085.00 USD
    assert margin.moneyDigits == 2 and [m.buyMargin for m in margin.margin] == [108_500, 217_000]
    trader = wire.call(M.ProtoOATraderReq(ctidTraderAccountId=a)).message.trader
    assert (trader.balance, trader.moneyDigits, trader.depositAssetId, trader.leverageInCents) == (1_000_000, 2, 1,
                                                                                                 10_000)
    _, buy = order(wire, a, "buy")
    assert buy.position.usedMargin == 108_500


def test_trailing_stop_loss_follows_the_price_then_triggers(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, buy = order(wire, a, "buy", relativeStopLoss=200, trailingStopLoss=True)
    assert buy.position.stopLoss == 1.0981 and buy.position.trailingStopLoss
    sim.set_price("EURUSD", 1.10100, 1.10110)  # the bid rose 100 points above the fill: SL follows
    moved = wire.next(lambda f: f.payloadType == 2107).message
    assert moved.positionId == buy.position.positionId and moved.stopPrice == 1.0991
    sim.set_price("EURUSD", 1.10050, 1.10060)  # a fall does not move it back
    sim.set_price("EURUSD", 1.09900, 1.09910)  # the bid reaches it
    closed = pushed(wire, FILLED)
    assert closed.position.positionStatus == 2 and closed.deal.executionPrice == 1.099
    assert [f.message.stopPrice for f in wire.stash if f.payloadType == 2107] == []


def test_deposits_and_withdrawals_are_the_cash_flow(make: Harness) -> None:
    sim, wire, a = still(make)
    sim.set_price("EURUSD", 1.10000, 1.10010)
    _, buy = order(wire, a, "buy")
    wire.call(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=buy.position.positionId, volume=LOT))
    sim.deposit(a, 250.5, "top-up")
    sim.deposit(a, -100)
    moves = [e for e in sim.connections[0].executions(a) if e.executionType == 10]  # DEPOSIT_WITHDRAW
    assert [m.depositWithdraw.delta for m in moves] == [25_050, -10_000]
    now = int(TUESDAY * 1000)
    flow = wire.call(M.ProtoOACashFlowHistoryListReq(ctidTraderAccountId=a, fromTimestamp=now - 6 * 86_400_000,
                                                     toTimestamp=now)).message.depositWithdraw
    assert [(f.operationType, f.delta) for f in flow] == [(0, 1_000_000), (0, 25_050), (1, -10_000)], \
        "the initial deposit, the deposit and the withdrawal; trading results are deals, not cash flow"
    expected = 1_000_000 - 10 * 100 - 600 + 25_050 - 10_000  # the round trip lost the 1-pip spread and commission
    assert flow[-1].balance == expected and sim.balance(a) == expected / 100
    assert sim.connections[0].balance_changes(a)[-2:] == [expected + 10_000, expected]
    with pytest.raises(ValueError):
        sim.deposit(a, -1e9)
