"""Toolkit II against the simulator: quotes, depth, P&L and the P&L refresh."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOAUnsubscribeDepthQuotesReq,
    ProtoOAUnsubscribeSpotsReq,
)
from ctrader_sync.protobuf import Protobuf
from ctrader_sync.simulator import Simulator
from ctrader_sync.toolkit import Account, Quote
from tests.clienttools import connected


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=7, spot_interval=0.02) as s:
        yield s


@pytest.fixture
def account(sim: Simulator) -> Iterator[Account]:
    with connected(sim) as client:
        client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
        yield client.account()


def test_quotes_subscribe_update_and_unsubscribe(sim: Simulator, account: Account) -> None:
    eurusd = account.symbols["EURUSD"]
    with account.quotes("EURUSD", eurusd.id + 1) as quotes, account.client.events(ProtoOASpotEvent) as spots:
        first = quotes.wait("eurusd", timeout=10)
        assert isinstance(first, Quote) and first.symbol == "EURUSD"
        assert isinstance(first.bid, float) and 0 < first.bid <= first.ask
        for spot in spots:  # the quote follows the spot events
            if spot.symbolId == eurusd.id and spot.HasField("bid") and spot.HasField("ask"):
                latest = quotes["EURUSD"]
                if latest.bid == round(spot.bid / 100_000, eurusd.digits):
                    break
        assert quotes.wait(eurusd.id + 1, timeout=10).symbol == account.symbols[eurusd.id + 1].name
        assert sorted(quotes) == sorted(["EURUSD", account.symbols[eurusd.id + 1].name])
    unsubscribe = Protobuf.payload_type(ProtoOAUnsubscribeSpotsReq)
    assert any(r.payload_type == unsubscribe for r in sim.connections[-1].requests()), "unsubscribed on exit"


def test_quotes_keep_coming_after_a_reconnect(sim: Simulator, account: Account) -> None:
    with account.quotes("EURUSD") as quotes, account.client.events(ProtoOASpotEvent, timeout=10) as spots:
        quotes.wait("EURUSD", timeout=10)
        dropped = threading.Event()
        account.client.setDisconnectedCallback(lambda client, reason: dropped.set())
        sim.inject("close")
        assert dropped.wait(10)
        account.client.wait_connected(10)
        assert account.client.connection_count == 2
        stamp = quotes["EURUSD"].time
        for _ in spots:
            if quotes["EURUSD"].time > stamp:
                break
        assert quotes["EURUSD"].time > stamp, "the client's recovery subscribed again"


def _requests(sent: list[Any], kind: type) -> list[list[int]]:
    """The symbol ids of every ``kind`` request among ``sent``."""
    return [list(m.symbolId) for m in sent if isinstance(m, kind)]


@pytest.fixture
def spy(account: Account, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the requests the client makes through ``request`` (what subscriptions use)."""
    sent: list[Any] = []
    original = account.client.request

    def request(message: object, *args: object, **kwargs: object) -> object:
        sent.append(message)
        return original(message, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(account.client, "request", request)
    return sent


def test_quotes_of_one_symbol_open_twice_share_the_subscription(sim: Simulator, account: Account,
                                                                spy: list[Any]) -> None:
    """The server allows one spot subscription per symbol: a second ``Quotes`` on it must not fail
    with ALREADY_SUBSCRIBED, and leaving it must not end the first one's prices."""
    with account.quotes("EURUSD") as outer, account.client.events(ProtoOASpotEvent, timeout=10) as spots:
        first = outer.wait("EURUSD", timeout=10)
        with account.quotes("eurusd", "GBPUSD") as inner:
            assert inner.wait("EURUSD", timeout=10).time >= first.time  # starts from what outer has
            inner.wait("GBPUSD", timeout=10)
        assert _requests(spy, ProtoOAUnsubscribeSpotsReq) == [[2]]  # GBPUSD only
        stamp = outer["EURUSD"].time
        for _ in spots:
            if outer["EURUSD"].time > stamp:
                break
        assert outer["EURUSD"].time > stamp, "EURUSD prices keep coming after the inner quotes left"
    assert _requests(spy, ProtoOAUnsubscribeSpotsReq) == [[2], [1]]
    assert _requests(spy, ProtoOASubscribeSpotsReq) == [[1], [2]]


def test_quotes_use_a_subscription_made_outside_the_toolkit_and_leave_it(account: Account, spy: list[Any]) -> None:
    account.client.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account.id, symbolId=[1]), 10)
    with account.client.events(ProtoOASpotEvent, timeout=10) as spots:
        with account.quotes("EURUSD", "GBPUSD") as quotes:
            quotes.wait("GBPUSD", timeout=10)
        assert _requests(spy, ProtoOAUnsubscribeSpotsReq) == [[2]], \
            "the toolkit ends only the subscriptions it made"
        assert any(spot.symbolId == 1 for spot in spots)


def test_two_depth_books_of_one_symbol_share_the_subscription(sim: Simulator, account: Account,
                                                             spy: list[Any]) -> None:
    sim.pause_market()
    with account.depth("EURUSD") as outer:
        outer.wait(timeout=10)
        with account.depth("EURUSD") as inner:
            inner.wait(timeout=10)  # the book the outer one holds: the server sends it only once
            assert inner.bids == outer.bids and inner.asks == outer.asks and inner.bids
        assert _requests(spy, ProtoOAUnsubscribeDepthQuotesReq) == []
        seen = outer.updates
        bid, ask = sim.price("EURUSD")
        sim.set_price("EURUSD", round(bid + 0.0010, 5), round(ask + 0.0010, 5))
        outer.wait(timeout=10, updates=seen + 1)  # still subscribed
        assert outer.best_bid == round(bid + 0.0010, 5)
    assert len(_requests(spy, ProtoOAUnsubscribeDepthQuotesReq)) == 1


def test_quotes_and_depth_are_live_without_a_with_block(account: Account, spy: list[Any]) -> None:
    """``account.quotes(...)`` and ``account.depth(...)`` return live objects; ``close()`` ends them."""
    quotes = account.quotes("EURUSD")
    book = account.depth("EURUSD")
    try:
        assert quotes.wait("EURUSD", timeout=10).bid > 0
        assert book.wait(timeout=10).best_bid is not None
    finally:
        quotes.close()
        book.close()
    assert _requests(spy, ProtoOAUnsubscribeSpotsReq) == [[1]]
    assert _requests(spy, ProtoOAUnsubscribeDepthQuotesReq) == [[1]]
    with account.quotes("EURUSD") as again:  # entering an open one changes nothing
        assert again.wait("EURUSD", timeout=10).ask > 0
    assert _requests(spy, ProtoOASubscribeSpotsReq) == [[1], [1]]


def test_unrealized_pnl_and_equity_against_hand_computed_values(sim: Simulator, account: Account) -> None:
    sim.pause_market()
    sim.set_price("EURUSD", 1.10000, 1.10010)
    balance = account.balance
    long = account.market_order("EURUSD", "buy", lots=0.1)
    short = account.market_order("EURUSD", "sell", lots=0.2)
    assert (long.price, short.price) == (1.10010, 1.10000)
    sim.set_price("EURUSD", 1.10250, 1.10260)
    pnl = account.unrealized_pnl()
    # by hand, in USD: a long closes at the bid, a short at the ask; net also pays the opening
    # commission (3.00 a lot)
    assert pnl[long.position_id].gross == Decimal("24.00")        # (1.10250 - 1.10010) * 10,000
    assert pnl[long.position_id].net == Decimal("23.70")
    assert pnl[short.position_id].gross == Decimal("-52.00")      # (1.10000 - 1.10260) * 20,000
    assert pnl[short.position_id].net == Decimal("-52.60")
    assert account.positions[long.position_id].pnl == pnl[long.position_id], "Position.pnl shows the latest"
    assert account.equity() == balance + Decimal("23.70") - Decimal("52.60")


def test_closed_positions_from_deals(account: Account) -> None:
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    fill = account.market_order("EURUSD", "buy", lots=0.3)
    first = account.close_position(fill.position_id, lots=0.1)
    second = account.close_position(fill.position_id)
    [closed] = account.closed_positions(start)
    assert closed.position_id == fill.position_id and closed.side == "buy" and closed.lots == pytest.approx(0.3)
    units = [first.volume, second.volume]
    hand = sum(Decimal(str(round((c.price - fill.price) * u, 2))) for c, u in zip((first, second), units, strict=True))
    assert closed.gross_profit == hand
    assert closed.net_profit == closed.gross_profit + closed.swap + closed.commission
    assert closed.close_price == pytest.approx((first.price * units[0] + second.price * units[1]) / sum(units))


def test_refresh_pnl_feeds_position_pnl(account: Account) -> None:
    fill = account.market_order("EURUSD", "sell", lots=0.1)
    with account.refresh_pnl(every=0.05) as refresher:
        assert refresher.wait(2, timeout=10)
        assert account.positions[fill.position_id].pnl is not None
    assert not any(t.name.startswith("ctrader_sync-pnl") and t.is_alive() for t in threading.enumerate())


def test_depth_book_follows_the_simulated_market(sim: Simulator, account: Account) -> None:
    sim.pause_market()
    with account.depth("EURUSD") as book:
        book.wait(timeout=10)  # the first event holds the whole book
        bid, ask = sim.price("EURUSD")
        assert book.best_bid == bid and book.best_ask == ask
        assert book.bids == sorted(book.bids, reverse=True) and book.asks == sorted(book.asks)
        assert all(isinstance(p, float) and size > 0 for p, size in book.bids + book.asks)
        seen = book.updates
        sim.set_price("EURUSD", round(bid + 0.0010, 5), round(ask + 0.0010, 5))
        book.wait(timeout=10, updates=seen + 1)  # new and deleted quotes
        assert (book.best_bid, book.best_ask) == (round(bid + 0.0010, 5), round(ask + 0.0010, 5))
        assert book.best_bid < book.best_ask


def test_unrealized_pnl_is_converted_to_the_account_currency(sim: Simulator, account: Account) -> None:
    sim.pause_market()
    sim.set_price("USDJPY", 150.000, 150.020)
    fill = account.market_order("USDJPY", "buy", lots=0.1)  # 10,000 USD
    assert fill.price == 150.020
    sim.set_price("USDJPY", 150.520, 150.540)
    pnl = account.unrealized_pnl()[fill.position_id]
    # by hand: (150.520 - 150.020) * 10,000 = 5,000 JPY, at 150.520 JPY a USD = 33.22 USD
    assert pnl.gross == Decimal("33.22")
    assert pnl.net == pnl.gross - Decimal("0.30")  # the opening commission (3.00 USD a lot)
