"""Toolkit II against the simulator: orders by lots that wait for their outcome, refusals, and
the truth about orders whose answer was lost."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from ctrader_sync import (
    AuthenticationError,
    Client,
    InvalidRequestError,
    OrderError,
    OrderNotPlacedError,
    OrderOutcomeUnknownError,
    ReconnectPolicy,
    UnknownSymbolError,
)
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountDisconnectEvent,
    ProtoOAClosePositionReq,
    ProtoOAExecutionEvent,
    ProtoOANewOrderReq,
)
from ctrader_sync.protobuf import Protobuf
from ctrader_sync.simulator import Simulator
from ctrader_sync.toolkit import KEEP, Account, Fill, Order
from tests.clienttools import connected

NEW_ORDER = Protobuf.payload_type(ProtoOANewOrderReq)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=5, spot_interval=0) as s:
        yield s


def login(client: Client, sim: Simulator) -> Account:
    client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
    return client.account()


@pytest.fixture
def account(sim: Simulator) -> Iterator[Account]:
    with connected(sim) as client:
        yield login(client, sim)


def sent_orders(sim: Simulator) -> int:
    """New-order requests the simulator received, on every connection."""
    return sum(1 for conn in sim.connections for r in conn.requests() if r.payload_type == NEW_ORDER)


class GatedReconnect(ReconnectPolicy):
    """Reconnects only once the test opens the gate (so something can happen while disconnected)."""

    def __init__(self) -> None:
        super().__init__(initial=0.0, maximum=0.0, jitter=0.0)
        object.__setattr__(self, "gate", threading.Event())

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        self.gate.wait(10.0)  # type: ignore[attr-defined]
        return 0.0


# -- orders -----------------------------------------------------------------------------------

def test_market_order_by_lots_waits_for_the_fill(sim: Simulator, account: Account) -> None:
    with account.client.events(ProtoOAExecutionEvent) as events:
        fill = account.market_order("eurusd", "buy", lots=0.1, stop_loss_pips=20, take_profit_pips=35.5,
                                    label="t1", comment="hello")
        kinds = [e.executionType for e in (events.get(5), events.get(5))]
    assert kinds == [2, 3], "ORDER_ACCEPTED then ORDER_FILLED: the call returned after the fill"
    assert isinstance(fill, Fill) and fill.side == "buy" and fill.symbol == "EURUSD"
    assert (fill.volume, fill.lots) == (10_000.0, 0.1)
    assert fill.execution.executionType == 3 and not fill.recovered
    assert isinstance(fill.price, float) and fill.price > 0
    assert fill.client_order_id.startswith("cts-")
    position = account.positions[fill.position_id]
    assert (position.side, position.lots, position.entry_price, position.label) == ("buy", 0.1, fill.price, "t1")
    assert position.stop_loss == round(fill.price - 0.0020, 5), "20 pips below the fill"
    assert position.take_profit == round(fill.price + 0.00355, 5), "35.5 pips above the fill"
    requests = [r for r in sim.connections[-1].requests() if r.payload_type == NEW_ORDER]
    assert len(requests) == 1, "sent once"


def test_resting_limit_order_fills_when_the_price_crosses_it(sim: Simulator, account: Account) -> None:
    sim.pause_market()
    bid, ask = sim.price("EURUSD")
    order = account.limit_order("EURUSD", "buy", round(ask - 0.0020, 5), lots=0.2, take_profit_pips=50)
    assert list(account.orders) == [order.order_id] and account.positions == {}
    with account.changes(timeout=10) as changes:
        sim.set_price("EURUSD", round(bid - 0.0030, 5), round(ask - 0.0030, 5))
        kinds = {}
        for change in changes:
            kinds[change.kind] = change
            if {"order_removed", "position_opened"} <= set(kinds):
                break
    position = kinds["position_opened"].position
    assert (position.side, position.lots) == ("buy", 0.2)
    assert position.entry_price <= order.price
    assert position.take_profit == round(order.price + 0.0050, 5)
    assert account.orders == {} and list(account.positions) == [position.position_id]


@pytest.mark.parametrize("leg", ["stop_loss", "take_profit"])
def test_stop_loss_and_take_profit_close_the_position(sim: Simulator, account: Account, leg: str) -> None:
    sim.pause_market()
    start = account.balance
    fill = account.market_order("EURUSD", "buy", lots=0.1, stop_loss_pips=20, take_profit_pips=20)
    position = account.positions[fill.position_id]
    target = position.stop_loss if leg == "stop_loss" else position.take_profit
    assert target is not None
    exit_bid = round(target - 0.0005 if leg == "stop_loss" else target + 0.0005, 5)
    with account.changes(timeout=10) as changes:
        sim.set_price("EURUSD", exit_bid, round(exit_bid + 0.0001, 5))
        closed = next(c for c in changes if c.kind == "position_closed")
    assert closed.position_id == fill.position_id and fill.position_id not in account.positions
    # by hand: 10,000 units from the fill to the bid the trigger closed at, 3.00 a lot commission each side
    gross = Decimal(str(round((exit_bid - fill.price) * 10_000, 2)))
    assert (gross < 0) == (leg == "stop_loss")
    assert account.balance == start + gross - Decimal("0.60")
    assert Decimal(str(sim.balance(account.id))).quantize(Decimal("0.01")) == account.balance


def test_volume_is_normalised_before_anything_is_written(sim: Simulator, account: Account) -> None:
    eurusd = account.symbols["EURUSD"]
    fill = account.market_order("EURUSD", "sell", volume=eurusd.min_volume + eurusd.step_volume / 2)
    assert fill.volume == float(eurusd.min_volume), "rounded down to the step"
    before = sent_orders(sim)
    with pytest.raises(InvalidRequestError, match="minimum"):
        account.market_order("EURUSD", "buy", volume=eurusd.min_volume / 2)
    with pytest.raises(InvalidRequestError, match="maximum"):
        account.market_order("EURUSD", "buy", lots=10_000)
    with pytest.raises(UnknownSymbolError, match="EURUSD"):
        account.market_order("EURUSX", "buy", lots=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        account.market_order("EURUSD", "buy", lots=0.1, volume=1000)
    with pytest.raises(ValueError, match="side"):
        account.market_order("EURUSD", "hold", lots=0.1)
    with pytest.raises(ValueError, match="pips"):
        account.market_order("EURUSD", "buy", lots=0.1, stop_loss_pips=-5)
    assert sent_orders(sim) == before, "nothing was written for a refused argument"


def test_refusals_before_sending_carry_the_server_code_too(sim: Simulator, account: Account) -> None:
    """Bad volume and unknown symbol are refused before anything is written, yet handled like the
    server's refusals: ``OrderError`` with the server's code, and still the argument errors."""
    import pickle

    before = sent_orders(sim)
    with pytest.raises(OrderError) as info:
        account.market_order("EURUSD", "buy", volume=1)
    assert info.value.error_code == "TRADING_BAD_VOLUME" and "minimum of 1000" in str(info.value)
    assert isinstance(info.value, InvalidRequestError) and isinstance(info.value, ValueError)
    with pytest.raises(OrderError) as info:
        account.limit_order("EURUSD", "buy", 1.0, lots=100_000)
    assert info.value.error_code == "TRADING_BAD_VOLUME" and "maximum" in str(info.value)
    with pytest.raises(OrderError) as info:
        account.market_order("EURUSX", "buy", lots=0.1)
    refused = info.value
    assert refused.error_code == "SYMBOL_NOT_FOUND" and isinstance(refused, UnknownSymbolError)
    assert isinstance(refused, KeyError) and str(refused) == "unknown symbol: 'EURUSX' (did you mean EURUSD?)"
    copy = pickle.loads(pickle.dumps(refused))
    assert type(copy) is type(refused) and str(copy) == str(refused) and copy.error_code == "SYMBOL_NOT_FOUND"
    assert sent_orders(sim) == before, "nothing was written"


def test_partial_close_by_lots_then_the_rest(account: Account) -> None:
    fill = account.market_order("EURUSD", "buy", lots=0.3)
    part = account.close_position(fill.position_id, lots=0.1)
    assert part.side == "sell" and part.lots == 0.1 and part.position_id == fill.position_id
    assert account.positions[fill.position_id].lots == pytest.approx(0.2)
    rest = account.close_position(account.positions[fill.position_id])
    assert rest.lots == pytest.approx(0.2)
    assert fill.position_id not in account.positions
    with pytest.raises(OrderError) as info:
        account.close_position(fill.position_id)
    assert info.value.error_code == "POSITION_NOT_FOUND" and info.value.position_id == fill.position_id


def test_amend_position_keeps_the_leg_not_given(account: Account) -> None:
    fill = account.market_order("EURUSD", "buy", lots=0.1)
    both = account.amend_position(fill.position_id, stop_loss=round(fill.price - 0.005, 5),
                                  take_profit=round(fill.price + 0.01, 5))
    assert (both.stop_loss, both.take_profit) == (round(fill.price - 0.005, 5), round(fill.price + 0.01, 5))
    moved = account.amend_position(fill.position_id, stop_loss=round(fill.price - 0.002, 5))
    assert moved.stop_loss == round(fill.price - 0.002, 5)
    assert moved.take_profit == both.take_profit, "the take profit was kept (an omitted leg would remove it)"
    assert account.positions[fill.position_id].take_profit == both.take_profit
    removed = account.amend_position(fill.position_id, take_profit=None, stop_loss=KEEP)
    assert removed.take_profit is None and removed.stop_loss == moved.stop_loss


def test_limit_order_amend_and_cancel(account: Account) -> None:
    order = account.limit_order("EURUSD", "buy", 1.0, lots=0.2, stop_loss_pips=50, take_profit=1.05)
    assert isinstance(order, Order) and order.status == "accepted" and order.type == "limit"
    assert (order.price, order.stop_loss, order.take_profit, order.lots) == (1.0, 0.995, 1.05, 0.2)
    assert account.orders[order.order_id].client_order_id == order.client_order_id
    amended = account.amend_order(order, price=1.01, lots=0.3)
    assert (amended.price, amended.lots) == (1.01, 0.3)
    assert (amended.stop_loss, amended.take_profit) == (0.995, 1.05), "protection kept"
    cancelled = account.cancel_order(order.order_id)
    assert cancelled.status == "cancelled"
    assert order.order_id not in account.orders
    with pytest.raises(OrderError) as info:
        account.cancel_order(order.order_id)
    assert info.value.error_code == "ORDER_NOT_FOUND"


@pytest.mark.parametrize("case", ["bad stops", "bad prices", "not enough money"])
def test_a_refusal_raises_order_error_with_the_server_code(sim: Simulator, account: Account, case: str) -> None:
    ask = sim.price("EURUSD")[1]
    before = sent_orders(sim)
    with pytest.raises(OrderError) as info:
        if case == "bad stops":  # a BUY whose stop loss is above its price
            account.limit_order("EURUSD", "buy", round(ask - 0.01, 5), lots=0.1, stop_loss=round(ask, 5))
        elif case == "bad prices":  # a BUY limit above the market
            account.limit_order("EURUSD", "buy", round(ask + 0.01, 5), lots=0.1)
        else:
            account.market_order("EURUSD", "buy", lots=900)
    expected = {"bad stops": "TRADING_BAD_STOPS", "bad prices": "TRADING_BAD_PRICES",
                "not enough money": "NOT_ENOUGH_MONEY"}[case]
    assert info.value.error_code == expected
    assert sent_orders(sim) == before + 1, "refused by the server, sent once"
    assert account.positions == {} and account.orders == {}


def test_market_closed_is_refused_with_its_code() -> None:
    saturday = 1_767_312_000.0  # 2026-01-02 00:00 UTC is a Friday; +1 day 12 h: Saturday noon
    with Simulator(seed=5, spot_interval=0, market_hours="fx", clock=lambda: saturday + 36 * 3600) as sim, \
            connected(sim) as client:
        account = login(client, sim)
        with pytest.raises(OrderError) as info:
            account.market_order("EURUSD", "buy", lots=0.1)
        assert info.value.error_code == "MARKET_CLOSED"


# -- certain outcomes -------------------------------------------------------------------------

def test_lost_answer_for_an_order_the_server_never_received(sim: Simulator, account: Account) -> None:
    account.symbols["EURUSD"]  # loaded: the next message is the order
    before = sent_orders(sim)
    sim.inject("close", after=1)  # the next message (the order) closes the connection unhandled
    with pytest.raises(OrderNotPlacedError) as info:
        account.market_order("EURUSD", "buy", lots=0.1, timeout=20)
    assert info.value.client_order_id.startswith("cts-")
    assert sent_orders(sim) == before + 1, "written once, never re-sent"
    assert account.client.connection_count == 2
    assert account.positions == {}
    assert account.find_order(info.value.client_order_id) is None


def test_lost_answer_for_an_order_the_server_executed(sim: Simulator) -> None:
    with connected(sim) as client, connected(sim) as observer:
        account = login(client, sim)
        account.symbols["EURUSD"]
        login(observer, sim)  # the same account on another connection sees the executions
        with observer.events(ProtoOAExecutionEvent, timeout=10) as executions, ThreadPoolExecutor(1) as pool:
            sim.inject("delay", delay=30.0, connection=1)  # our answers are held back...
            call = pool.submit(account.market_order, "EURUSD", "buy", lots=0.2, timeout=20)
            filled = next(e for e in executions if e.executionType == 3)  # ...the server executed it...
            sim.inject("close", connection=1)  # ...and the connection dies before the answer leaves
            fill = call.result(30)
        assert fill.recovered and fill.order_id == filled.order.orderId
        assert fill.position_id == filled.position.positionId and fill.lots == 0.2 and fill.side == "buy"
        assert fill.price == filled.order.executionPrice
        assert client.connection_count == 2 and sent_orders(sim) == 1, "learned, not re-sent"
        assert account.positions[fill.position_id].lots == 0.2
        found = account.find_order(fill.client_order_id)
        assert isinstance(found, Fill) and found.order_id == fill.order_id


def lose_answer_after_execution(sim: Simulator, index: int, observer: Client, call: Callable[[], Any],
                                kind: int) -> Any:
    """Run ``call`` while the answers on simulator connection ``index`` are held back; once the
    observer (same account, another connection) sees the server's ``kind`` execution, kill that
    connection; return the call's result."""
    with observer.events(ProtoOAExecutionEvent, timeout=10) as executions, ThreadPoolExecutor(1) as pool:
        sim.inject("delay", delay=30.0, connection=index)
        future = pool.submit(call)
        next(e for e in executions if e.executionType == kind)
        sim.inject("close", connection=index)
        return future.result(30)


def test_lost_answers_for_a_limit_order_and_a_close_the_server_executed(sim: Simulator) -> None:
    with connected(sim) as client, connected(sim) as observer:
        account = login(client, sim)
        fill = account.market_order("EURUSD", "buy", lots=0.3)
        assert account.positions  # the mirror is ready: closing needs no other request first
        login(observer, sim)
        closed = lose_answer_after_execution(sim, 1, observer,
                                             lambda: account.close_position(fill.position_id, lots=0.1), 3)
        assert closed.recovered and closed.lots == 0.1 and closed.position_id == fill.position_id
        assert account.positions[fill.position_id].lots == pytest.approx(0.2)
        assert sim.wait_for_connections(3)  # the client is back, on the third
        order = lose_answer_after_execution(sim, 3, observer,
                                            lambda: account.limit_order("EURUSD", "sell", 5.0, lots=0.1), 2)
        assert isinstance(order, Order) and order.status == "accepted" and order.price == 5.0
        assert list(account.orders) == [order.order_id]
        assert client.connection_count == 3 and sent_orders(sim) == 2, "nothing re-sent"


def test_lost_answer_for_a_close_the_server_never_received(sim: Simulator, account: Account) -> None:
    fill = account.market_order("EURUSD", "buy", lots=0.1)
    assert list(account.positions) == [fill.position_id]  # the mirror is ready: the next message is the close
    sim.inject("close", after=1)
    with pytest.raises(OrderNotPlacedError, match=str(fill.position_id)):
        account.close_position(fill.position_id)
    assert list(account.positions) == [fill.position_id], "still open, and the close was not re-sent"


def test_lost_answer_by_timeout_for_a_dropped_order(sim: Simulator, account: Account) -> None:
    sim.inject("drop", payload_type=NEW_ORDER)  # never handled, never answered
    with pytest.raises(OrderNotPlacedError):
        account.market_order("EURUSD", "buy", lots=0.1, timeout=6)  # 4 s for the answer, 2 s to learn
    assert account.client.connection_count == 1, "learned on the same connection"


def test_outcome_unknown_when_the_server_cannot_be_asked(sim: Simulator) -> None:
    with connected(sim, reconnect=None) as client:
        account = login(client, sim)
        account.symbols["EURUSD"]
        sim.inject("close", after=1)
        with pytest.raises(OrderOutcomeUnknownError) as info:
            account.market_order("EURUSD", "buy", lots=0.1, timeout=5)
        coid = info.value.client_order_id
        assert coid.startswith("cts-") and coid in str(info.value)
    with connected(sim) as client:  # later, on another connection: what happened?
        assert login(client, sim).find_order(coid) is None


def test_mirror_is_rebuilt_after_a_disconnect_while_an_order_fills(sim: Simulator) -> None:
    policy = GatedReconnect()
    dropped = threading.Event()
    with connected(sim, reconnect=policy) as client, connected(sim) as other:
        try:
            account = login(client, sim)
            assert account.positions == {}
            client.setDisconnectedCallback(lambda c, reason: dropped.set())
            with account.changes(timeout=10) as changes:
                sim.inject("close", connection=1)
                assert dropped.wait(10)
                fill = login(other, sim).market_order("EURUSD", "sell", lots=0.5)  # fills while we are away
                policy.gate.set()  # type: ignore[attr-defined]
                seen = []
                for change in changes:
                    seen.append(change)
                    if change.kind == "ready":
                        break
            assert [(c.kind, c.position_id) for c in seen] == [("position_opened", fill.position_id), ("ready", None)]
            assert seen[0].message is None, "found by the rebuild, not by an event"
            assert account.positions[fill.position_id].lots == 0.5
            assert account.client.connection_count == 2
        finally:
            policy.gate.set()  # type: ignore[attr-defined]


def test_find_order_for_a_pending_order(account: Account) -> None:
    order = account.limit_order("EURUSD", "sell", 2.0, lots=0.1)
    found = account.find_order(order.client_order_id)
    assert isinstance(found, Order) and found.order_id == order.order_id and found.status == "accepted"


def test_orders_from_threads_each_get_their_own_fill(account: Account) -> None:
    with ThreadPoolExecutor(4) as pool:
        fills: list[Any] = list(pool.map(lambda i: account.market_order("EURUSD", "buy", lots=0.01 * (i + 1)),
                                         range(8)))
    assert sorted(f.lots for f in fills) == [pytest.approx(0.01 * (i + 1)) for i in range(8)]
    assert len({f.order_id for f in fills}) == 8
    assert set(account.positions) == {f.position_id for f in fills}


def test_close_position_request_is_sent_once(sim: Simulator, account: Account) -> None:
    fill = account.market_order("EURUSD", "buy", lots=0.1)
    account.close_position(fill.position_id)
    pt = Protobuf.payload_type(ProtoOAClosePositionReq)
    assert sum(1 for r in sim.connections[-1].requests() if r.payload_type == pt) == 1


def test_callbacks_read_the_mirror_but_cannot_trade(account: Account) -> None:
    seen: list[Any] = []
    done = threading.Event()

    def callback(change: Any) -> None:
        if change.kind != "position_opened":
            return
        seen.append(sorted(account.positions))  # reads what the mirror has, without waiting
        try:
            account.market_order("EURUSD", "buy", lots=0.1)
        except InvalidRequestError as exc:
            seen.append(exc)
        done.set()

    handle = account.on_change(callback)
    fill = account.market_order("EURUSD", "sell", lots=0.1)
    assert done.wait(10)
    handle.remove()
    assert seen[0] == [fill.position_id]
    assert isinstance(seen[1], InvalidRequestError) and "callback" in str(seen[1])
    assert list(account.positions) == [fill.position_id], "the refused order was not sent"


def test_stop_order_with_expiry_fills_when_the_price_rises_to_it(sim: Simulator, account: Account) -> None:
    sim.pause_market()
    bid, ask = sim.price("EURUSD")
    expiry = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    order = account.stop_order("EURUSD", "buy", round(ask + 0.0015, 5), volume=5000, stop_loss_pips=10,
                               expiry=expiry)
    assert (order.type, order.price, order.volume, order.expiry) == ("stop", round(ask + 0.0015, 5), 5000.0, expiry)
    assert order.stop_loss == round(order.price - 0.0010, 5)
    with account.changes(timeout=10) as changes:
        sim.set_price("EURUSD", round(bid + 0.0020, 5), round(ask + 0.0020, 5))
        opened = next(c for c in changes if c.kind == "position_opened")
    assert opened.position.volume == 5000.0 and opened.position.side == "buy"
    assert account.orders == {}


def test_mirror_rebuilt_after_the_account_is_authorised_again(sim: Simulator, account: Account) -> None:
    fill = account.market_order("EURUSD", "buy", lots=0.1)
    assert list(account.positions) == [fill.position_id]
    with account.changes(timeout=10) as changes, \
            account.client.events(ProtoOAAccountDisconnectEvent, timeout=10) as logged_out:
        # The client authorizes a disconnected account again by itself (issue 13, item 17): hold
        # that request back (2102: ProtoOAAccountAuthReq) so that the stale state can be seen.
        sim.inject("drop", payload_type=2102)
        sim.inject("account_disconnect")  # the server logs the account out of this connection
        logged_out.get()  # the mirror's own listener, registered earlier, has seen it too
        with pytest.raises(AuthenticationError):  # reads fail clearly instead of showing stale state
            account.positions  # noqa: B018
        sim.clear_faults()
        account.client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[account.id])
        assert next(c.kind for c in changes if c.kind == "ready") == "ready"
    assert list(account.positions) == [fill.position_id]
