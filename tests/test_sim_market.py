"""The simulated market through a plain TLS client: set_price, pause/resume, shared quotes, depth."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from simtools import SPOT_EVENT, Harness, harness, oa_error

from ctrader_sync.messages import OpenApiMessages_pb2 as M

DEPTH_EVENT = 2155


@pytest.fixture
def make() -> Iterator[Harness]:
    """Start simulators and clients; close them all and check no simulator thread survives."""
    yield from harness()


def test_set_price_reaches_subscribers_before_it_returns(make: Harness) -> None:
    sim, wire = make(spot_interval=0)
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1, 3]))
    for i in range(20):
        sim.set_price("EURUSD" if i % 2 else 3, 1.1 + i / 1000, 1.1001 + i / 1000)
    conn = sim.connections[0]
    spots = [r for r in conn.outbound() if r.payload_type == SPOT_EVENT]
    assert len(spots) >= 20, "every set_price was queued on the connection when it returned"
    assert sim.price("EURUSD") == (1.119, 1.1191) and sim.price(3) == (1.118, 1.1181)
    with pytest.raises(KeyError):
        sim.set_price("NOPE", 1.0, 1.0)
    with pytest.raises(ValueError):
        sim.set_price("EURUSD", 1.1, 1.0)


def test_quotes_are_shared_by_connections_and_accounts(make: Harness) -> None:
    sim, w1 = make(spot_interval=0)
    w2 = make.wire(sim)
    a, b = w1.login(accounts=2)
    w2.login(accounts=1)
    w1.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    w1.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=b, symbolId=[1]))
    w2.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    sim.set_price("EURUSD", 1.2, 1.2002)
    got1 = {w1.next(lambda f: f.payloadType == SPOT_EVENT and f.message.bid == 120_000).message.ctidTraderAccountId
            for _ in range(2)}
    got2 = w2.next(lambda f: f.payloadType == SPOT_EVENT and f.message.bid == 120_000).message
    assert got1 == {a, b} and got2.ask == 120_020


def test_pause_and_resume_the_automatic_path(make: Harness) -> None:
    sim, wire = make(spot_interval=0.02)
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    wire.next(lambda f: f.payloadType == SPOT_EVENT)
    wire.next(lambda f: f.payloadType == SPOT_EVENT)
    sim.pause_market()
    paused_at = sim.price("EURUSD")
    sim.set_price("EURUSD", 1.3, 1.3001)  # the marker: nothing automatic may follow it
    wire.next(lambda f: f.payloadType == SPOT_EVENT and f.message.bid == 130_000)
    wire.stash.clear()
    wire.send(M.ProtoOAVersionReq(), "ping")
    wire.answer("ping")
    assert not [f for f in wire.stash if f.payloadType == SPOT_EVENT] and sim.price("EURUSD") == (1.3, 1.3001)
    assert paused_at != (1.3, 1.3001)
    sim.resume_market()
    moved = wire.next(lambda f: f.payloadType == SPOT_EVENT, timeout=3.0).message
    assert abs(moved.bid - 130_000) < 100, "the path continues from the level set_price left"


def test_live_trendbar_follows_the_quotes(make: Harness) -> None:
    sim, wire = make(spot_interval=0)
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    assert wire.call(M.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=a, symbolId=1, period=9)).payloadType \
        == 2165
    for bid in (1.1, 1.105, 1.095, 1.101):
        sim.set_price("EURUSD", bid, bid + 0.0001)
    events = [wire.next(lambda f: f.payloadType == SPOT_EVENT and len(f.message.trendbar) > 0).message
              for _ in range(4)]
    bar = events[-1].trendbar[0]
    if bar.utcTimestampInMinutes == events[0].trendbar[0].utcTimestampInMinutes:  # no hour boundary between
        assert bar.low == 109_500 and bar.low + bar.deltaHigh == 110_500
    assert bar.low + bar.deltaClose == 110_100 and bar.period == 9


def test_depth_quotes_incremental(make: Harness) -> None:
    sim, wire = make(spot_interval=0)
    (a,) = wire.login()
    sim.set_price("EURUSD", 1.1, 1.1001)
    res = wire.call(M.ProtoOASubscribeDepthQuotesReq(ctidTraderAccountId=a, symbolId=[1]))
    assert res.payloadType == 2157
    first = wire.next(lambda f: f.payloadType == DEPTH_EVENT).message
    book = {q.id: q for q in first.newQuotes}
    assert len(book) == 10 and not first.deletedQuotes
    assert max(q.bid for q in book.values() if q.HasField("bid")) == 110_000
    assert min(q.ask for q in book.values() if q.HasField("ask")) == 110_010
    sim.set_price("EURUSD", 1.1002, 1.1003)
    change = wire.next(lambda f: f.payloadType == DEPTH_EVENT).message
    assert change.deletedQuotes and change.newQuotes
    for qid in change.deletedQuotes:
        del book[qid]
    book.update({q.id: q for q in change.newQuotes})
    assert len(book) == 10
    assert max(q.bid for q in book.values() if q.HasField("bid")) == 110_020
    assert oa_error(wire.call(M.ProtoOASubscribeDepthQuotesReq(ctidTraderAccountId=a, symbolId=[1]))) \
        == "ALREADY_SUBSCRIBED"
    assert wire.call(M.ProtoOAUnsubscribeDepthQuotesReq(ctidTraderAccountId=a, symbolId=[1])).payloadType == 2159
    assert oa_error(wire.call(M.ProtoOAUnsubscribeDepthQuotesReq(ctidTraderAccountId=a, symbolId=[1]))) \
        == "NOT_SUBSCRIBED_TO_SPOTS"
    sim.set_price("EURUSD", 1.2, 1.2001)
    wire.stash.clear()
    wire.send(M.ProtoOAVersionReq(), "after")
    wire.answer("after")
    assert not [f for f in wire.stash if f.payloadType == DEPTH_EVENT]


def test_first_spot_after_subscribing_has_the_latest_quote(make: Harness) -> None:
    sim, wire = make(spot_interval=0.05)
    (a,) = wire.login()
    sim.pause_market()
    sim.set_price("GBPUSD", 1.25, 1.2502)
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[2]))
    first = wire.next(lambda f: f.payloadType == SPOT_EVENT).message
    assert (first.bid, first.ask) == (125_000, 125_020)


def test_set_price_returns_promptly_when_connections_are_gone_or_frozen(make: Harness) -> None:
    sim, wire = make(spot_interval=0)
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    frozen = make.wire(sim)
    frozen.login()
    frozen.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    sim.inject("freeze", connection=2)
    wire.close()
    assert sim.connections[0].closed.wait(3.0)
    start = time.monotonic()
    for i in range(10):
        sim.set_price("EURUSD", 1.1 + i / 10_000, 1.1001 + i / 10_000)
    assert time.monotonic() - start < 2.0
    assert sim.price("EURUSD") == (1.1009, 1.101)
