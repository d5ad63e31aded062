"""Tests of ``ctrader_sync.simulator`` with a plain blocking ``ssl`` client (never the SDK client).

Each test drives the simulator over real TLS, framed with ``TcpProtocol``, and checks that no
simulator thread is left after close.  No sleeps are used for synchronisation: every wait is a
read or an event with a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simtools import (
    ERROR_RES,
    EXECUTION_EVENT,
    HEARTBEAT,
    OA_ERROR_RES,
    ORDER_ERROR_EVENT,
    ROOT,
    SPOT_EVENT,
    Harness,
    Wire,
    harness,
    oa_error,
    sim_threads,
)

from ctrader_sync._codec import Frame, TcpProtocol
from ctrader_sync.errors import FrameTooLargeError, MessageDecodeError
from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent


@pytest.fixture
def make() -> Iterator[Harness]:
    """Start simulators and clients; close them all and check no simulator thread survives."""
    yield from harness()


# -- TLS, credentials, CLI ------------------------------------------------------------------------

def test_tls_uses_test_ca_with_hostname_check(make: Harness) -> None:
    sim, wire = make()
    assert wire.sock.version() in ("TLSv1.2", "TLSv1.3")
    ctx = sim.client_ssl_context()
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert Path(sim.ca_file).is_file()
    assert "TEST-ONLY" in (Path(sim.ca_file).parent / "README.txt").read_text()
    # a default context (not trusting the test CA) refuses the certificate
    with socket.create_connection((sim.host, sim.port), timeout=3) as raw, pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
    # the certificate names 127.0.0.1 as well
    with socket.create_connection((sim.host, sim.port), timeout=3) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.getpeercert() is not None
    assert len(sim.account_ids) >= 2 and sim.client_id and sim.client_secret and sim.refresh_token
    assert {s.name for s in sim.symbols} >= {"EURUSD"}


def test_cli_prints_json_and_exits_zero_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ctrader_sync.simulator", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) >= {"host", "port", "ca_file", "client_id", "client_secret", "access_token",
                             "account_ids"}
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        with socket.create_connection((info["host"], info["port"]), timeout=3) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            codec = TcpProtocol()
            tls.sendall(codec.encode(M.ProtoOAVersionReq(), "v"))
            frames: list[Frame] = []
            while not frames:
                frames = codec.feed(tls.recv(65536))
            assert frames[0].payloadType == 2105 and frames[0].clientMsgId == "v"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- session ------------------------------------------------------------------------------------

def test_version_works_unauthenticated(make: Harness) -> None:
    _sim, wire = make()
    f = wire.call(M.ProtoOAVersionReq())
    assert f.payloadType == 2105 and f.message.version


def test_application_auth_errors(make: Harness) -> None:
    sim, wire = make()
    assert oa_error(wire.call(M.ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret="wrong"))) \
        == "CH_CLIENT_AUTH_FAILURE"
    assert oa_error(wire.call(M.ProtoOAApplicationAuthReq(clientId="nope", clientSecret=sim.client_secret))) \
        == "CH_CLIENT_AUTH_FAILURE"
    ok = wire.call(M.ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret))
    assert ok.payloadType == 2101
    again = wire.call(M.ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret))
    assert oa_error(again) == "CH_CLIENT_ALREADY_AUTHENTICATED" and again.clientMsgId == "c4"


def test_account_list_and_account_auth_errors(make: Harness) -> None:
    sim, wire = make()
    a, b = sim.account_ids[:2]
    # before application auth
    assert oa_error(wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=sim.access_token))) \
        == "CH_CLIENT_NOT_AUTHENTICATED"
    assert oa_error(wire.call(M.ProtoOATraderReq(ctidTraderAccountId=a))) == "CH_CLIENT_NOT_AUTHENTICATED"
    wire.login(accounts=0)
    assert oa_error(wire.call(M.ProtoOAGetAccountListByAccessTokenReq(accessToken="bad"))) \
        == "CH_ACCESS_TOKEN_INVALID"
    accounts = wire.call(M.ProtoOAGetAccountListByAccessTokenReq(accessToken=sim.access_token)).message
    assert [x.ctidTraderAccountId for x in accounts.ctidTraderAccount] == sim.account_ids
    assert any(x.isLive for x in accounts.ctidTraderAccount)
    assert oa_error(wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken="bad"))) \
        == "CH_ACCESS_TOKEN_INVALID"
    assert oa_error(wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=123, accessToken=sim.access_token))) \
        == "CH_CTID_TRADER_ACCOUNT_NOT_FOUND"
    assert wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=sim.access_token)).payloadType \
        == 2103
    assert oa_error(wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=sim.access_token))) \
        == "ALREADY_LOGGED_IN"
    err = wire.call(M.ProtoOATraderReq(ctidTraderAccountId=b))
    assert oa_error(err) == "ACCOUNT_NOT_AUTHORIZED" and err.message.ctidTraderAccountId == b
    assert sim.connections[0].authorized_accounts == {a}
    # two accounts on one connection
    assert wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=b, accessToken=sim.access_token)).payloadType \
        == 2103
    assert sim.connections[0].authorized_accounts == {a, b}
    logout = wire.call(M.ProtoOAAccountLogoutReq(ctidTraderAccountId=b))
    assert logout.payloadType == 2163 and sim.connections[0].authorized_accounts == {a}


def test_refresh_token_issues_an_accepted_token(make: Harness) -> None:
    sim, wire = make()
    wire.login(accounts=0)
    assert oa_error(wire.call(M.ProtoOARefreshTokenReq(refreshToken="bad"))) == "CH_ACCESS_TOKEN_INVALID"
    res = wire.call(M.ProtoOARefreshTokenReq(refreshToken=sim.refresh_token)).message
    assert res.accessToken and res.accessToken != sim.access_token and res.expiresIn > 0
    f = wire.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=sim.account_ids[0], accessToken=res.accessToken))
    assert f.payloadType == 2103


def test_unsupported_message_echoes_client_msg_id(make: Harness) -> None:
    _sim, wire = make()
    wire.send(M.ProtoOAVersionRes(version="x"), "odd")  # a response type sent as a request
    f = wire.answer("odd")
    assert f.payloadType == ERROR_RES and f.message.errorCode == "UNSUPPORTED_MESSAGE"


def test_reference_data(make: Harness) -> None:
    sim, wire = make()
    (a,) = wire.login()
    trader = wire.call(M.ProtoOATraderReq(ctidTraderAccountId=a)).message.trader
    assert trader.ctidTraderAccountId == a and trader.balance > 0 and trader.moneyDigits == 2
    symbols = wire.call(M.ProtoOASymbolsListReq(ctidTraderAccountId=a)).message.symbol
    assert [s.symbolId for s in symbols] == [s.symbol_id for s in sim.symbols]
    by_id = wire.call(M.ProtoOASymbolByIdReq(ctidTraderAccountId=a, symbolId=[1, 3])).message.symbol
    assert [(s.symbolId, s.digits) for s in by_id] == [(1, 5), (3, 3)]
    assert oa_error(wire.call(M.ProtoOASymbolByIdReq(ctidTraderAccountId=a, symbolId=[999]))) \
        == "SYMBOL_NOT_FOUND"
    assets = wire.call(M.ProtoOAAssetListReq(ctidTraderAccountId=a)).message.asset
    assert "USD" in {x.name for x in assets}


# -- spots and live trendbars ---------------------------------------------------------------------

def _spot_bids(wire: Wire, n: int, symbol_id: int = 1) -> list[int]:
    return [wire.next(lambda f: f.payloadType == SPOT_EVENT and f.message.symbolId == symbol_id).message.bid
            for _ in range(n)]


def test_spots_are_pushed_deterministically(make: Harness) -> None:
    sim1, w1 = make(seed=7)
    _sim2, w2 = make(seed=7)
    bids = []
    for w in (w1, w2):
        (a,) = w.login()
        res = w.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
        assert res.payloadType == 2128
        bids.append(_spot_bids(w, 5))
    assert bids[0] == bids[1], "the same seed must give the same prices"
    assert len(set(bids[0])) > 1 and all(100_000 < b < 120_000 for b in bids[0])
    ev = w1.next(lambda f: f.payloadType == SPOT_EVENT)
    assert ev.clientMsgId is None and ev.message.ask > ev.message.bid and ev.message.timestamp > 0
    assert sim1.connections[0].subscriptions == {1}


def test_spot_subscription_errors_and_unsubscribe(make: Harness) -> None:
    sim, wire = make()
    (a,) = wire.login()
    assert oa_error(wire.call(M.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))) \
        == "NOT_SUBSCRIBED_TO_SPOTS"
    assert oa_error(wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[999]))) \
        == "SYMBOL_NOT_FOUND"
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    assert oa_error(wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))) \
        == "ALREADY_SUBSCRIBED"
    assert wire.call(M.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1])).payloadType == 2130
    assert sim.connections[0].subscriptions == set()
    # after the answer no more spot events: the next frame is the version answer
    wire.stash.clear()
    wire.send(M.ProtoOAVersionReq(), "after")
    assert wire.next(lambda f: f.payloadType != HEARTBEAT).clientMsgId == "after"


def test_live_trendbar_rides_on_spot_events(make: Harness) -> None:
    _sim, wire = make()
    (a,) = wire.login()
    sub = M.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=a, symbolId=1, period=1)
    assert oa_error(wire.call(sub)) == "NOT_SUBSCRIBED_TO_SPOTS"
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    assert wire.call(sub).payloadType == 2165
    assert oa_error(wire.call(sub)) == "ALREADY_SUBSCRIBED"
    ev = wire.next(lambda f: f.payloadType == SPOT_EVENT and len(f.message.trendbar) > 0).message
    bar = ev.trendbar[0]
    assert bar.period == 1 and bar.low <= ev.bid <= bar.low + bar.deltaHigh
    assert bar.utcTimestampInMinutes == ev.timestamp // 60_000
    unsub = M.ProtoOAUnsubscribeLiveTrendbarReq(ctidTraderAccountId=a, symbolId=1, period=1)
    assert wire.call(unsub).payloadType == 2166


# -- history -----------------------------------------------------------------------------------

def test_trendbars_paging_with_has_more(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    to_ms = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    from_ms = to_ms - 10 * 60_000
    req = M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=1, fromTimestamp=from_ms,
                                   toTimestamp=to_ms, count=4)
    page1 = wire.call(req).message
    assert page1.hasMore and len(page1.trendbar) == 4
    minutes = [b.utcTimestampInMinutes for b in page1.trendbar]
    assert minutes == sorted(minutes) and minutes[-1] == to_ms // 60_000 - 1, "newest bars, oldest first"
    full = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=1,
                                              fromTimestamp=from_ms, toTimestamp=to_ms)).message
    assert not full.hasMore and len(full.trendbar) == 10
    assert list(full.trendbar)[-4:] == list(page1.trendbar), "pages agree with the whole range"
    for b in full.trendbar:
        assert b.low > 0 and b.deltaHigh >= max(b.deltaOpen, b.deltaClose)


def test_tick_data_newest_first_delta_encoded(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    to_ms = 1_700_000_000_000
    res = wire.call(M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=1,
                                            fromTimestamp=to_ms - 5_000, toTimestamp=to_ms)).message
    ticks = list(res.tickData)
    assert len(ticks) == 6 and not res.hasMore
    assert ticks[0].timestamp == to_ms and ticks[0].tick > 100_000
    t, p, absolute = 0, 0, []
    for tick in ticks:
        t, p = t + tick.timestamp, p + tick.tick
        absolute.append((t, p))
    assert [x[0] for x in absolute] == sorted((x[0] for x in absolute), reverse=True), "newest first"
    assert all(tick.timestamp < 0 for tick in ticks[1:])
    big = wire.call(M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=2,
                                            fromTimestamp=to_ms - 3_600_000, toTimestamp=to_ms)).message
    assert big.hasMore and len(big.tickData) == 1000


# -- trading ------------------------------------------------------------------------------------

def _executions(wire: Wire, cid: str, n: int) -> list[Any]:
    return [wire.answer(cid).message for _ in range(n)]


def test_market_order_accepted_then_filled_and_position_lifecycle(make: Harness) -> None:
    sim, wire = make()
    (a,) = wire.login()
    other = make.wire(sim)
    other.login()
    wire.send(M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=1, tradeSide=1,
                                   volume=100_000), "buy")
    accepted, filled = _executions(wire, "buy", 2)
    assert accepted.executionType == 2 and filled.executionType == 3  # ORDER_ACCEPTED, ORDER_FILLED
    assert filled.position.positionStatus == 1 and filled.deal.filledVolume == 100_000
    pos_id = filled.position.positionId
    # the other connection on the same account sees the same events as pushes
    pushed = other.next(lambda f: f.payloadType == EXECUTION_EVENT)
    assert pushed.clientMsgId is None and pushed.message.executionType == 2
    rec = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message
    assert [p.positionId for p in rec.position] == [pos_id]
    amend = wire.call(M.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=a, positionId=pos_id, stopLoss=1.0))
    assert amend.payloadType == EXECUTION_EVENT and amend.message.position.stopLoss == 1.0
    wire.send(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=pos_id, volume=100_000), "close")
    _, closed = _executions(wire, "close", 2)
    assert closed.position.positionStatus == 2 and closed.deal.HasField("closePositionDetail")
    assert oa_error(wire.call(M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=pos_id,
                                                        volume=100_000))) == "POSITION_NOT_FOUND"
    deals = wire.call(M.ProtoOADealListReq(ctidTraderAccountId=a, fromTimestamp=0,
                                           toTimestamp=2**62)).message
    assert len(deals.deal) == 2 and not deals.hasMore


def test_order_errors_are_order_error_events(make: Harness) -> None:
    _sim, wire = make()
    (a,) = wire.login()
    bad = wire.call(M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=1, tradeSide=1,
                                         volume=1))
    assert bad.payloadType == ORDER_ERROR_EVENT and bad.message.errorCode == "TRADING_BAD_VOLUME"
    unknown = wire.call(M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=999, orderType=1, tradeSide=1,
                                             volume=100_000))
    assert unknown.payloadType == ORDER_ERROR_EVENT and unknown.message.errorCode == "SYMBOL_NOT_FOUND"


def test_limit_and_stop_orders_amend_and_cancel(make: Harness) -> None:
    _sim, wire = make()
    (a,) = wire.login()
    lim = wire.call(M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=2, tradeSide=1,
                                         volume=200_000, limitPrice=1.0)).message
    stop = wire.call(M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=3, tradeSide=2,
                                          volume=100_000, stopPrice=1.0)).message
    assert lim.executionType == 2 and lim.order.orderStatus == 1 and lim.order.limitPrice == 1.0
    assert stop.order.orderType == 3
    amended = wire.call(M.ProtoOAAmendOrderReq(ctidTraderAccountId=a, orderId=lim.order.orderId,
                                               volume=300_000, limitPrice=1.01)).message
    assert amended.executionType == 4 and amended.order.tradeData.volume == 300_000
    orders = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message.order
    assert {o.orderId for o in orders} == {lim.order.orderId, stop.order.orderId}
    cancelled = wire.call(M.ProtoOACancelOrderReq(ctidTraderAccountId=a, orderId=lim.order.orderId)).message
    assert cancelled.executionType == 5 and cancelled.order.orderStatus == 5
    assert oa_error(wire.call(M.ProtoOACancelOrderReq(ctidTraderAccountId=a, orderId=lim.order.orderId))) \
        == "ORDER_NOT_FOUND"


# -- limits, heartbeats, timeouts, frames ---------------------------------------------------------

def test_request_limit_per_sliding_second(make: Harness) -> None:
    sim, wire = make(request_limit=10, historical_limit=0)
    data = b"".join(wire.codec.encode(M.ProtoOAVersionReq(), f"r{i}") for i in range(15))
    data += b"".join(wire.codec.encode(ProtoHeartbeatEvent()) for _ in range(5))
    wire.sock.sendall(data)
    answers = [wire.answer(f"r{i}") for i in range(15)]
    assert [f.payloadType for f in answers[:10]] == [2105] * 10
    over = answers[10:]
    assert all(oa_error(f) == "REQUEST_FREQUENCY_EXCEEDED" for f in over), "over the limit, with the clientMsgId"
    conn = sim.connections[0]
    assert conn.max_requests_in_window(1.0) == 15 and sim.max_requests_in_window() == 15
    assert conn.heartbeats_received() == 5 and len(conn.requests()) == 15


def test_historical_limit(make: Harness) -> None:
    sim, wire = make(request_limit=0, historical_limit=3)
    (a,) = wire.login()
    req = M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=1, fromTimestamp=1_000_000,
                                  toTimestamp=1_002_000)
    data = b"".join(wire.codec.encode(req, f"h{i}") for i in range(5))
    wire.sock.sendall(data + wire.codec.encode(M.ProtoOAVersionReq(), "v"))
    kinds = [wire.answer(f"h{i}").payloadType for i in range(5)]
    assert kinds == [2146, 2146, 2146, OA_ERROR_RES, OA_ERROR_RES]
    assert wire.answer("v").payloadType == 2105, "other requests are not limited by the historical limit"
    assert sim.connections[0].max_requests_in_window(historical=True) == 5


def test_heartbeats_sent_and_counted(make: Harness) -> None:
    sim, wire = make(heartbeat_interval=0.05)
    wire.next(lambda f: f.payloadType == HEARTBEAT)
    wire.next(lambda f: f.payloadType == HEARTBEAT)
    wire.send(ProtoHeartbeatEvent())
    wire.send(ProtoHeartbeatEvent())
    wire.call(M.ProtoOAVersionReq())
    assert sim.connections[0].heartbeats_received() == 2


def test_idle_timeout_disconnects(make: Harness) -> None:
    sim, wire = make(idle_timeout=0.3)
    start = time.monotonic()
    assert wire.eof(timeout=3.0), "the server must close an idle connection"
    assert time.monotonic() - start >= 0.25
    assert sim.connections[0].closed.wait(2.0)


def test_oversize_frame_gets_frame_too_long_then_disconnect(make: Harness) -> None:
    _sim, wire = make(max_frame_size=64)
    wire.sock.sendall((1000).to_bytes(4, "big") + b"\0" * 1000)
    f = wire.next()
    assert f.payloadType == ERROR_RES and f.message.errorCode == "FRAME_TOO_LONG"
    assert wire.eof()


# -- recording ------------------------------------------------------------------------------------

def test_recording_duplicates_and_directions(make: Harness) -> None:
    sim, wire = make()
    wire.send(M.ProtoOAVersionReq(), "same")
    wire.answer("same")
    wire.send(M.ProtoOAVersionReq(), "same")
    wire.answer("same")
    conn = sim.connections[0]
    assert conn.index == 1 and conn.duplicate_client_msg_ids() == ["same"]
    directions = [(r.direction, r.payload_type, r.client_msg_id) for r in conn.messages]
    assert directions == [("in", 2104, "same"), ("out", 2105, "same")] * 2
    assert all(r.time > 0 for r in conn.messages)
    assert sim.wait_for_connections(1, timeout=0.1) and not sim.wait_for_connections(2, timeout=0.05)


def test_record_false_keeps_no_messages(make: Harness) -> None:
    sim, wire = make(record=False)
    wire.call(M.ProtoOAVersionReq())
    assert sim.connections[0].messages == []


# -- faults ---------------------------------------------------------------------------------------

def test_fault_close_is_abrupt(make: Harness) -> None:
    sim, wire = make()
    wire.call(M.ProtoOAVersionReq())
    sim.inject("close")
    assert wire.eof()
    assert sim.connections[0].closed.wait(2.0)


def test_fault_close_after_n_messages_on_future_connection(make: Harness) -> None:
    sim, wire = make()
    sim.inject("close", after=2, connection=2)
    second = make.wire(sim)
    assert sim.wait_for_connections(2)
    assert second.call(M.ProtoOAVersionReq()).payloadType == 2105
    second.send(M.ProtoOAVersionReq(), "lost")
    assert second.eof(), "the 2nd message triggers the close and is not answered"
    assert wire.call(M.ProtoOAVersionReq()).payloadType == 2105, "connection 1 is untouched"


def test_fault_freeze_neither_reads_nor_writes_nor_closes(make: Harness) -> None:
    sim, wire = make(heartbeat_interval=0.05, idle_timeout=0.2)
    wire.next(lambda f: f.payloadType == HEARTBEAT)
    sim.inject("freeze")
    wire.stash.clear()
    wire.send(M.ProtoOAVersionReq(), "frozen")
    with pytest.raises((TimeoutError, socket.timeout)):
        wire.next(timeout=0.5)
    assert not sim.connections[0].closed.is_set(), "a frozen connection is never closed"


def test_fault_stop_reading_keeps_writing(make: Harness) -> None:
    sim, wire = make(heartbeat_interval=0.05)
    wire.call(M.ProtoOAVersionReq())
    sim.inject("stop_reading")
    wire.send(M.ProtoOAVersionReq(), "unread")
    for _ in range(3):
        assert wire.next(timeout=2.0).payloadType == HEARTBEAT
    sim.clear_faults()
    assert wire.answer("unread").payloadType == 2105, "after clear_faults the request is read again"


def test_fault_delay(make: Harness) -> None:
    sim, wire = make()
    sim.inject("delay", delay=0.3)
    start = time.monotonic()
    wire.call(M.ProtoOAVersionReq())
    assert time.monotonic() - start >= 0.28


def test_fault_drop_payload_type(make: Harness) -> None:
    sim, wire = make()
    sim.inject("drop", payload_type=2104)
    wire.send(M.ProtoOAVersionReq(), "dropped")
    wire.send(M.ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret), "auth")
    assert wire.next().clientMsgId == "auth", "the dropped request is never answered"


def test_fault_reorder(make: Harness) -> None:
    sim, wire = make()
    sim.inject("reorder")
    wire.send(M.ProtoOAVersionReq(), "first")
    wire.send(M.ProtoOAVersionReq(), "second")
    wire.send(M.ProtoOAVersionReq(), "third")
    assert [wire.next().clientMsgId for _ in range(3)] == ["second", "first", "third"]


def test_fault_garbage_frame(make: Harness) -> None:
    sim, wire = make()
    sim.inject("garbage")
    with pytest.raises(MessageDecodeError):
        wire.next()


def test_fault_huge_length(make: Harness) -> None:
    sim, wire = make()
    sim.inject("huge_length", after=1)
    wire.send(M.ProtoOAVersionReq(), "v")
    with pytest.raises(FrameTooLargeError) as info:
        wire.next(lambda f: False)
    assert info.value.args and "2147483648" in str(info.value)


def test_fault_bad_payload(make: Harness) -> None:
    sim, wire = make()
    sim.inject("bad_payload")
    with pytest.raises(MessageDecodeError):
        wire.next()


def test_fault_client_disconnect_event(make: Harness) -> None:
    sim, wire = make()
    sim.inject("client_disconnect_event")
    f = wire.next()
    assert f.payloadType == 2148 and f.message.reason
    assert wire.eof()


def test_fault_token_invalidated_and_account_disconnect(make: Harness) -> None:
    sim, wire = make()
    a, b = wire.login(accounts=2)
    sim.inject("account_disconnect")
    ev = wire.next(lambda f: f.payloadType == 2164)
    assert ev.message.ctidTraderAccountId == a
    assert oa_error(wire.call(M.ProtoOATraderReq(ctidTraderAccountId=a))) == "ACCOUNT_NOT_AUTHORIZED"
    sim.inject("token_invalidated")
    ev = wire.next(lambda f: f.payloadType == 2147)
    assert list(ev.message.ctidTraderAccountIds) == [b]
    assert sim.connections[0].authorized_accounts == set()


def test_clear_faults_removes_pending_ones(make: Harness) -> None:
    sim, wire = make()
    sim.inject("close", connection=2)
    sim.inject("drop", payload_type=2104)
    sim.clear_faults()
    second = make.wire(sim)
    assert second.call(M.ProtoOAVersionReq()).payloadType == 2105
    assert wire.call(M.ProtoOAVersionReq()).payloadType == 2105


# -- benchmark mode ---------------------------------------------------------------------------------

def test_benchmark_fast_path_and_flood(make: Harness) -> None:
    sim, wire = make(benchmark=True, flood_count=5000, request_limit=1)
    data = b"".join(wire.codec.encode(M.ProtoOAVersionReq(), f"b{i}") for i in range(100))
    wire.sock.sendall(data + wire.codec.encode(M.ProtoOAVersionReq()))
    for i in range(100):
        f = wire.answer(f"b{i}")
        assert f.payloadType == 2105 and f.message.version == sim.version
    assert wire.next().clientMsgId is None
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    events = 0
    while events < 5000:
        wire.next(lambda f: f.payloadType == SPOT_EVENT)
        events += 1
    assert sim.connections[0].messages == [], "benchmark mode records nothing"


def test_close_is_prompt_with_busy_connections(make: Harness) -> None:
    sim, wire = make(benchmark=True, flood_count=10_000_000)
    frozen = make.wire(sim)
    assert sim.wait_for_connections(2)
    sim.inject("freeze", connection=2)
    (a,) = wire.login()
    wire.call(M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]))
    start = time.monotonic()
    sim.close()
    assert time.monotonic() - start < 1.0
    assert sim_threads() == []
    assert all(c.closed.is_set() for c in sim.connections)
    frozen.close()
