"""Client core against the bundled simulator: futures, errors, cancel, limits, heartbeats, reconnect.

Every case asserts what a user relies on, and proves wire behaviour with the simulator's recording.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures
from typing import Any

import pytest
from clienttools import FAST_RECONNECT, Recorder, connected, make_client, manual_login, wait_until

from ctrader_sync import (
    AuthenticationError,
    Client,
    ClientClosedError,
    ClientState,
    ClosedInFlightError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    Frame,
    FrameTooLargeError,
    InvalidRequestError,
    MessageDecodeError,
    OrderError,
    Protobuf,
    ProtocolError,
    QueueFullError,
    RateLimitError,
    ReconnectPolicy,
    RequestTimeoutError,
    ServerError,
    TcpProtocol,
)
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent, ProtoMessage
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAApplicationAuthReq,
    ProtoOAApplicationAuthRes,
    ProtoOAClientDisconnectEvent,
    ProtoOAExecutionEvent,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOAGetTrendbarsReq,
    ProtoOANewOrderReq,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOASymbolByIdReq,
    ProtoOASymbolByIdRes,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator

VERSION = 2104
TRENDBARS = 2137


def cids_on_wire(sim: Simulator, payload_type: int | None = None) -> list[str]:
    return [r.client_msg_id for c in sim.connections for r in c.messages
            if r.direction == "in" and r.client_msg_id is not None
            and (payload_type is None or r.payload_type == payload_type)]


# -- basics --------------------------------------------------------------------------------------


def test_send_resolves_to_the_extracted_response_and_threads_are_named() -> None:
    with Simulator() as sim, connected(sim) as client:
        future = client.send(ProtoOAVersionReq())
        assert isinstance(future, Future)
        response = future.result(10)
        assert isinstance(response, ProtoOAVersionRes) and response.version
        names = sorted(t.name for t in client.threads())
        assert all(n.startswith("ctrader_sync-") for n in names)
        assert {n.split("-")[1] for n in names} == {"supervisor", "writer", "reader", "dispatcher"}
        # The id on the wire is the one the future reports, and it is unique per request.
        other = client.send(ProtoOAVersionReq())
        other.result(10)
        assert cids_on_wire(sim, VERSION) == [future.clientMsgId, other.clientMsgId]
        assert future.clientMsgId != other.clientMsgId


def test_old_sdk_style_send_by_name_and_user_client_msg_id() -> None:
    with Simulator() as sim, connected(sim) as client:
        assert isinstance(client.send("ProtoOAVersionReq", clientMsgId="mine-1").result(10), ProtoOAVersionRes)
        assert cids_on_wire(sim) == ["mine-1"]
        with pytest.raises(TypeError):
            client.send(ProtoOAVersionReq(), version="x")


def test_requests_sent_before_start_wait_in_the_queue() -> None:
    with Simulator() as sim:
        client = make_client(sim)
        try:
            futures = [client.send(ProtoOAVersionReq()) for _ in range(3)]
            assert not any(f.done() for f in futures)
            client.start()
            assert all(isinstance(f.result(10), ProtoOAVersionRes) for f in futures)
        finally:
            client.close()


def test_context_manager_connects_and_closes() -> None:
    with Simulator() as sim:
        with make_client(sim) as client:
            assert client.is_connected
            client.send(ProtoOAVersionReq()).result(10)
        assert not client.is_connected
        with pytest.raises(ClientClosedError):
            client.send(ProtoOAVersionReq())


# -- bad input: clear errors at send(), nothing written ------------------------------------------


def test_bad_requests_fail_at_send_and_nothing_is_written() -> None:
    with Simulator() as sim, connected(sim) as client:
        with pytest.raises(InvalidRequestError, match="not a request"):
            client.send(ProtoOAVersionRes(version="1"))  # a response, not a request
        with pytest.raises(InvalidRequestError, match="clientSecret"):
            client.send(ProtoOAApplicationAuthReq(clientId="x"))  # required field missing
        with pytest.raises(KeyError):
            client.send("ProtoOANoSuchReq")
        sim.inject("drop", payload_type=VERSION)  # keep the first one pending
        slow = client.send(ProtoOAVersionReq(), clientMsgId="dup", timeout=0.5)
        with pytest.raises(ValueError, match="already pending"):
            client.send(ProtoOAVersionReq(), clientMsgId="dup")
        with pytest.raises(RequestTimeoutError):
            slow.result(10)
        sim.clear_faults()
        client.send(ProtoOAVersionReq(), clientMsgId="dup").result(10)  # free again once ended
        assert cids_on_wire(sim) == ["dup", "dup"]


def test_queue_limit_raises_queue_full() -> None:
    with Simulator() as sim:
        client = make_client(sim, max_pending=5)
        try:
            for _ in range(5):
                client.send(ProtoOAVersionReq())
            with pytest.raises(QueueFullError):
                client.send(ProtoOAVersionReq())
        finally:
            client.close()


# -- server errors -------------------------------------------------------------------------------


def test_error_answers_fail_the_future_with_typed_server_errors() -> None:
    with Simulator() as sim, connected(sim) as client:
        with pytest.raises(AuthenticationError) as info:
            client.send(ProtoOAApplicationAuthReq(clientId="id-x", clientSecret="s3cr3t-x")).result(10)
        err = info.value
        assert isinstance(err, ServerError)
        assert err.error_code == "CH_CLIENT_AUTH_FAILURE"
        assert type(err.response).__name__ == "ProtoOAErrorRes"
        assert "s3cr3t-x" not in str(err)  # no credential echoed
        with pytest.raises(ServerError) as info2:
            client.send("ProtoOAv1PnLChangeSubscribeReq", ctidTraderAccountId=1).result(10)
        assert info2.value.error_code in ("UNSUPPORTED_MESSAGE", "CH_CLIENT_NOT_AUTHENTICATED")


def test_trading_request_resolves_to_first_execution_event_and_later_ones_reach_callbacks() -> None:
    with Simulator() as sim, connected(sim) as client:
        account = manual_login(client, sim)
        executions = Recorder()
        client.on(ProtoOAExecutionEvent, executions)
        future = client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                tradeSide=1, volume=100_000))
        first = future.result(10)
        assert isinstance(first, ProtoOAExecutionEvent)
        assert first.executionType == 2  # ORDER_ACCEPTED
        calls = executions.wait_for(2)
        assert [c[0].executionType for c in calls[:2]] == [2, 3]  # accepted, then filled
        # A bad volume: ProtoOAOrderErrorEvent with the request's id fails the future.
        with pytest.raises(OrderError) as info:
            client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                           tradeSide=1, volume=7)).result(10)
        assert info.value.error_code == "TRADING_BAD_VOLUME"


# -- timeouts ------------------------------------------------------------------------------------


def test_response_timeout_counts_from_the_write_not_the_queue() -> None:
    with Simulator() as sim, connected(sim, numberOfMessagesToSendPerSecond=2, response_timeout=1.5) as client:
        start = time.monotonic()
        futures = [client.send(ProtoOAVersionReq()) for _ in range(6)]
        # 2 per second: the last pair waits ~2 s in the queue, more than the 1.5 s timeout; all answer.
        assert all(isinstance(f.result(15), ProtoOAVersionRes) for f in futures)
        assert time.monotonic() - start > 1.9
        sim.inject("drop", payload_type=VERSION)
        dropped = client.send(ProtoOAVersionReq(), timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(RequestTimeoutError) as info:
            dropped.result(10)
        assert isinstance(info.value, TimeoutError)
        assert 0.25 < time.monotonic() - t0 < 3.0
        assert client.pending_count == 0


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_before_write_is_never_written() -> None:
    with Simulator() as sim:
        client = make_client(sim)
        try:
            keep = client.send(ProtoOAVersionReq(), clientMsgId="keep")
            drop = client.send(ProtoOAVersionReq(), clientMsgId="drop")
            assert drop.cancel() and drop.cancelled_before_write
            with pytest.raises(CancelledError):
                drop.result(0)
            client.start()
            keep.result(10)
            client.send(ProtoOAVersionReq(), clientMsgId="after").result(10)
            assert cids_on_wire(sim) == ["keep", "after"]
        finally:
            client.close()


def test_cancel_after_write_discards_the_late_answer() -> None:
    with Simulator() as sim, connected(sim) as client:
        answers = Recorder()
        client.on(ProtoOAVersionRes, answers)
        sim.inject("delay", delay=0.3)
        future = client.send(ProtoOAVersionReq(), clientMsgId="late")
        wait_until(lambda: "late" in cids_on_wire(sim), what="the request on the wire")
        assert future.cancel() and future.cancelled_before_write is False
        answers.wait_for(1)  # the late answer arrived ...
        assert future.cancelled()  # ... and was discarded
        with pytest.raises(CancelledError):
            future.result(0)
        assert client.pending_count == 0


def test_cancel_after_answer_has_no_effect() -> None:
    with Simulator() as sim, connected(sim) as client:
        future = client.send(ProtoOAVersionReq())
        response = future.result(10)
        assert future.cancel() is False
        assert future.result(0) is response


def test_cancel_races_never_write_a_request_cancelled_while_queued() -> None:
    with Simulator(request_limit=0) as sim, connected(sim, numberOfMessagesToSendPerSecond=200) as client:
        futures: list[Any] = []
        lock = threading.Lock()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(100):
                f = client.send(ProtoOAVersionReq())
                with lock:
                    futures.append(f)
                if rng.random() < 0.5:
                    f.cancel()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        _, not_done = wait_futures(futures, timeout=30)
        assert not not_done
        on_wire = set(cids_on_wire(sim, VERSION))
        queued_cancels = [f for f in futures if f.cancelled() and f.cancelled_before_write]
        written_cancels = [f for f in futures if f.cancelled() and f.cancelled_before_write is False]
        answered = [f for f in futures if not f.cancelled()]
        assert queued_cancels, "the race produced no cancel-before-write; the test proves nothing"
        assert not [f.clientMsgId for f in queued_cancels if f.clientMsgId in on_wire]
        assert all(f.clientMsgId in on_wire for f in written_cancels + answered)
        assert all(isinstance(f.result(0), ProtoOAVersionRes) for f in answered)
        assert len(on_wire) == len(cids_on_wire(sim, VERSION))  # nothing written twice


# -- rate limits ---------------------------------------------------------------------------------


def test_client_never_exceeds_50_per_second_on_the_wire() -> None:
    with Simulator() as sim, connected(sim) as client:
        futures = [client.send(ProtoOAVersionReq()) for _ in range(130)]
        assert all(isinstance(f.result(30), ProtoOAVersionRes) for f in futures)
        assert sim.max_requests_in_window() == 50
        refused = [r for c in sim.connections for r in c.messages if r.direction == "out" and r.payload_type == 2142]
        assert not refused


def test_historical_limit_and_ordinary_requests_are_not_held_back() -> None:
    with Simulator() as sim, connected(sim) as client:
        account = manual_login(client, sim)
        now_ms = int(time.time() * 1000)
        bars = [client.send(ProtoOAGetTrendbarsReq(ctidTraderAccountId=account, symbolId=1, period=1,
                                                   fromTimestamp=now_ms - 3_600_000, toTimestamp=now_ms))
                for _ in range(12)]
        versions = [client.send(ProtoOAVersionReq()) for _ in range(40)]
        for f in versions:
            f.result(30)
        versions_done = time.monotonic()
        unfinished_bars = sum(1 for f in bars if not f.done())
        for f in bars:
            f.result(30)
        assert unfinished_bars >= 5, "ordinary requests waited behind the historical budget"
        assert versions_done < time.monotonic()
        assert sim.max_requests_in_window(historical=True) == 5
        assert sim.max_requests_in_window() <= 50


def test_rate_limit_answers_are_retried_then_fail_with_rate_limit_error() -> None:
    with Simulator(request_limit=5) as sim:
        with connected(sim, numberOfMessagesToSendPerSecond=None, rate_limit_retries=4) as client:
            futures = [client.send(ProtoOAVersionReq()) for _ in range(12)]
            assert all(isinstance(f.result(30), ProtoOAVersionRes) for f in futures)
            retried = [r for r in sim.connections[0].messages if r.direction == "out" and r.payload_type == 2142]
            assert retried, "the simulator refused nothing; the retry path was not exercised"
        with connected(sim, numberOfMessagesToSendPerSecond=None, rate_limit_retries=0) as client:
            futures = [client.send(ProtoOAVersionReq()) for _ in range(12)]
            errors = [f.exception(30) for f in futures]
            limited = [e for e in errors if isinstance(e, RateLimitError)]
            assert limited and limited[0].error_code == "REQUEST_FREQUENCY_EXCEEDED"


# -- heartbeats and dead peers -------------------------------------------------------------------


def test_heartbeats_when_idle_and_not_counted_as_requests() -> None:
    with Simulator() as sim, connected(sim, heartbeat_interval=0.1) as client:
        wait_until(lambda: sim.connections[0].heartbeats_received() >= 4, what="4 heartbeats")
        assert sim.connections[0].requests() == []
        assert client.is_connected


def test_half_open_peer_is_detected_and_reconnected() -> None:
    with Simulator(heartbeat_interval=0) as sim:
        lost = Recorder()
        with connected(sim, receive_timeout=0.5, heartbeat_interval=0.1) as client:
            client.setDisconnectedCallback(lost)
            sim.inject("freeze")
            [(_, reason)] = lost.wait_for(1, timeout=10)
            assert isinstance(reason, ConnectionLostError) and "half-open" in str(reason)
            assert sim.wait_for_connections(2, timeout=10)
            client.wait_connected(10)
            client.send(ProtoOAVersionReq()).result(10)


# -- reconnect -----------------------------------------------------------------------------------


def test_loss_fails_written_requests_keeps_queued_ones_and_calls_back_once() -> None:
    with Simulator() as sim:
        lost, up = Recorder(), Recorder()
        client = make_client(sim, numberOfMessagesToSendPerSecond=2)
        client.setDisconnectedCallback(lost)
        client.setConnectedCallback(up)
        client.start()
        try:
            client.wait_connected(10)
            sim.inject("drop", payload_type=VERSION, connection=1)
            written = [client.send(ProtoOAVersionReq()) for _ in range(2)]
            wait_until(lambda: len(cids_on_wire(sim, VERSION)) == 2, what="two requests written")
            queued = [client.send(ProtoOAVersionReq()) for _ in range(2)]
            sim.inject("close")
            for f in written:
                with pytest.raises(ConnectionLostError, match="not re-sent"):
                    f.result(10)
            assert all(isinstance(f.result(10), ProtoOAVersionRes) for f in queued)
            assert len(lost.wait_for(1)) == 1 and len(up.wait_for(2)) == 2
            assert isinstance(lost.calls[0][1], ConnectionLostError)
            wire = cids_on_wire(sim, VERSION)
            assert len(wire) == len(set(wire)) == 4  # nothing written twice
        finally:
            client.close()


def test_reconnect_none_fails_queued_requests() -> None:
    with Simulator() as sim:
        client = make_client(sim, reconnect=None, numberOfMessagesToSendPerSecond=1)
        client.start()
        try:
            client.wait_connected(10)
            first = client.send(ProtoOAVersionReq())
            first.result(10)
            queued = [client.send(ProtoOAVersionReq()) for _ in range(3)]
            sim.inject("close")
            for f in queued:
                assert isinstance(f.exception(10), ConnectionLostError)
            with pytest.raises(ConnectError):
                client.send(ProtoOAVersionReq())
            with pytest.raises(ConnectError):
                client.wait_connected(1)
        finally:
            client.close()


def test_client_disconnect_event_triggers_reconnect() -> None:
    with Simulator() as sim:
        events, lost = Recorder(), Recorder()
        with connected(sim) as client:
            client.on(ProtoOAClientDisconnectEvent, events)
            client.setDisconnectedCallback(lost)
            sim.inject("client_disconnect_event")
            assert events.wait_for(1)[0][0].reason
            assert "ended the session" in str(lost.wait_for(1)[0][1])
            assert sim.wait_for_connections(2)
            client.wait_connected(10)
            client.send(ProtoOAVersionReq()).result(10)


@pytest.mark.parametrize(("fault", "error"), [("garbage", MessageDecodeError), ("bad_payload", MessageDecodeError),
                                              ("huge_length", FrameTooLargeError)])
def test_bad_frames_give_protocol_error_and_reconnect(fault: str, error: type[ProtocolError]) -> None:
    with Simulator() as sim:
        lost = Recorder()
        with connected(sim) as client:
            client.setDisconnectedCallback(lost)
            sim.inject(fault)
            reason = lost.wait_for(1)[0][1]
            assert isinstance(reason, error)
            assert sim.wait_for_connections(2)
            client.wait_connected(10)
            assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)


@pytest.mark.slow
def test_100_kills_in_a_row_under_load() -> None:
    with Simulator(request_limit=0) as sim:
        client = make_client(sim, numberOfMessagesToSendPerSecond=None)
        client.start()
        futures: list[Any] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    futures.append(client.send(ProtoOAVersionReq()))
                except ConnectError:
                    return
                if len(futures) % 20 == 0:
                    futures[-1].exception(5)

        loader = threading.Thread(target=load)
        try:
            client.wait_connected(10)
            loader.start()
            for i in range(100):
                assert sim.wait_for_connections(i + 1, timeout=10)
                wait_until(lambda: client.is_connected, what=f"connection {i + 1}")
                sim.inject("close", connection=i + 1)
                wait_until(lambda i=i: sim.connections[i].closed.is_set(), what=f"kill {i + 1}")
            assert sim.wait_for_connections(101, timeout=10)
        finally:
            stop.set()
            loader.join(10)
        client.wait_connected(10)
        final = client.send(ProtoOAVersionReq()).result(10)
        done, not_done = wait_futures(futures, timeout=30)
        client.close()
        assert isinstance(final, ProtoOAVersionRes)
        assert not not_done, f"{len(not_done)} futures never ended"
        outcomes = {type(f.exception() or f.result()).__name__ for f in done}
        assert outcomes <= {"ProtoOAVersionRes", "ConnectionLostError"}
        wire = cids_on_wire(sim, VERSION)
        assert len(wire) == len(set(wire)), "a request was written twice"
        assert client.connection_count >= 101


# -- callbacks -----------------------------------------------------------------------------------


def test_message_callback_sees_every_message_and_raising_callbacks_do_not_stop_io(
        caplog: pytest.LogCaptureFixture) -> None:
    with Simulator(spot_interval=0.01) as sim, connected(sim) as client:
        account = manual_login(client, sim)
        seen = Recorder()
        client.setMessageReceivedCallback(seen)
        raising_calls = Recorder()

        def boom(message: Any) -> None:
            raising_calls(message)
            raise RuntimeError("user bug")

        client.on(ProtoOASpotEvent, boom)
        with caplog.at_level(logging.ERROR, logger="ctrader_sync"):
            client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(10)
            raising_calls.wait_for(5)
            assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        assert "user bug" in caplog.text
        # The old SDK's contract: the ProtoMessage envelope, unwrapped with Protobuf.extract.
        assert all(isinstance(args[1], ProtoMessage) for args in seen.calls)
        types = {type(Protobuf.extract(args[1])).__name__ for args in seen.calls}
        assert {"ProtoOASpotEvent", "ProtoOASubscribeSpotsRes"} <= types
        assert all(args[0] is client for args in seen.calls)


def test_slow_callback_does_not_stall_responses_and_runs_off_the_reader() -> None:
    with Simulator() as sim, connected(sim) as client:
        release = threading.Event()
        threads: list[str] = []

        def slow(message: Any) -> None:
            threads.append(threading.current_thread().name)
            release.wait(10)

        client.on(ProtoOAVersionRes, slow)
        try:
            for _ in range(5):
                client.send(ProtoOAVersionReq()).result(5)
        finally:
            release.set()
        wait_until(lambda: len(threads) == 5, what="callbacks")
        assert all("dispatcher" in name for name in threads)

        done_in: list[str] = []
        future = client.send(ProtoOAVersionReq())
        future.add_done_callback(lambda f: done_in.append(threading.current_thread().name))
        future.result(10)
        wait_until(lambda: bool(done_in), what="done callback")
        assert "reader" not in done_in[0]


def test_close_from_inside_a_callback_returns() -> None:
    with Simulator() as sim:
        client = make_client(sim)
        closed = threading.Event()

        def on_connected(c: Client) -> None:
            c.close()
            closed.set()

        client.setConnectedCallback(on_connected)
        client.start()
        assert closed.wait(10)
        client.close()


# -- close ---------------------------------------------------------------------------------------


def test_close_returns_within_a_second_from_any_state() -> None:
    # connecting to a port nobody listens on (backing off between attempts)
    with Simulator() as sim:
        port = sim.port
    client = Client("127.0.0.1", port, reconnect=ReconnectPolicy(initial=5.0))
    client.start()
    try:
        wait_until(lambda: client.state is ClientState.BACKING_OFF, what="a failed attempt")
    finally:
        t0 = time.monotonic()
        client.close()
    assert time.monotonic() - t0 < 1.0

    # connected, the server has stopped reading while requests keep coming
    with Simulator(request_limit=0) as sim:
        client = make_client(sim, numberOfMessagesToSendPerSecond=None)
        client.start()
        try:
            client.wait_connected(10)
        except BaseException:
            client.close()
            raise
        sim.inject("stop_reading")
        # ~20 MB of requests: far more than the socket buffers hold, so the writer blocks.
        big = ProtoOAGetAccountListByAccessTokenReq(accessToken="t" * 1000)
        futures = [client.send(big) for _ in range(20000)]
        wait_until(lambda: futures[0].written, what="the writer to start")
        t0 = time.monotonic()
        client.close()
        assert time.monotonic() - t0 < 1.0
        assert all(f.done() for f in futures)
        # Written and unanswered: ClosedInFlightError (it may have reached the server); the rest
        # was never written: ClientClosedError (issue 13, item 8).
        for f in futures:
            if not f.cancelled():
                expected = ClosedInFlightError if f.written else ClientClosedError
                assert f.exception() is None or type(f.exception()) is expected, (f, f.exception())


def test_wait_connected_errors() -> None:
    with Simulator() as sim:
        port = sim.port
    client = Client("127.0.0.1", port, reconnect=ReconnectPolicy(initial=0.01, max_attempts=2))
    client.start()
    try:
        with pytest.raises(ConnectError, match="refused"):
            client.wait_connected(10)
        with pytest.raises(ConnectError):
            client.send(ProtoOAVersionReq())
    finally:
        client.close()
    client = Client("127.0.0.1", port, reconnect=FAST_RECONNECT)
    client.start()
    try:
        with pytest.raises(ConnectTimeoutError) as info:
            client.wait_connected(0.3)
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, ConnectError)
    finally:
        client.close()


def test_untrusted_certificate_is_refused_by_default() -> None:
    with Simulator() as sim:
        client = Client(sim.host, sim.port, reconnect=ReconnectPolicy(max_attempts=1))
        client.start()
        try:
            with pytest.raises(ConnectError, match="certificate"):
                client.wait_connected(10)
        finally:
            client.close()
        assert sim.connections == [] or all(not c.requests() for c in sim.connections)


def test_heartbeat_can_be_sent_and_resolves_to_none() -> None:
    with Simulator() as sim, connected(sim) as client:
        assert client.send(ProtoHeartbeatEvent()).result(10) is None
        wait_until(lambda: sim.connections[0].heartbeats_received() == 1, what="heartbeat")


# -- TLS shared by two threads -------------------------------------------------------------------


def test_full_duplex_stress_every_response_matched() -> None:
    """The reader decrypts a flood while the writer encrypts requests: one SSLObject, two threads."""
    with Simulator(benchmark=True, flood_count=300_000) as sim, \
            connected(sim, numberOfMessagesToSendPerSecond=None) as client:
        manual_login(client, sim)
        spots: list[int] = []
        client.on(ProtoOASpotEvent, lambda m: spots.append(1))
        client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=sim.account_ids[0], symbolId=[1])).result(10)
        answered = 0
        for round_ in range(20):
            batch = [client.send(ProtoOAVersionReq(), clientMsgId=f"s{round_}-{i}") for i in range(250)]
            for f in batch:
                assert isinstance(f.result(30), ProtoOAVersionRes)
                answered += 1
        assert answered == 5000
        assert spots, "no pushed events arrived during the round trips"


def test_sixteen_threads_sending_get_their_own_answers() -> None:
    with Simulator(request_limit=0) as sim, connected(sim, numberOfMessagesToSendPerSecond=None) as client:
        account = manual_login(client, sim)
        symbol_ids = [s.symbol_id for s in sim.symbols]
        errors: list[str] = []

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(60):
                sid = rng.choice(symbol_ids)
                res = client.send(ProtoOASymbolByIdReq(ctidTraderAccountId=account, symbolId=[sid])).result(30)
                if not isinstance(res, ProtoOASymbolByIdRes) or [s.symbolId for s in res.symbol] != [sid]:
                    errors.append(f"asked {sid}, got {res}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        wire = cids_on_wire(sim, 2116)
        assert len(wire) == len(set(wire)) == 16 * 60


def test_two_clients_side_by_side_and_one_after_another() -> None:
    with Simulator() as sim:
        for _ in range(2):
            with connected(sim) as a, connected(sim) as b:
                assert isinstance(a.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
                assert isinstance(b.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        assert len(sim.connections) == 4


def test_application_auth_response_type() -> None:
    with Simulator() as sim, connected(sim) as client:
        res = client.send(ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret)).result(10)
        assert isinstance(res, ProtoOAApplicationAuthRes)


# -- caller-assisted reading (result() reads the connection itself) ------------------------------


def test_sequential_round_trips_read_by_the_caller_keep_pushes_flowing() -> None:
    readers: set[str] = set()

    class Tracking(TcpProtocol):
        """The codec a client decodes received bytes with: it sees which thread read them."""

        def feed(self, data: Any) -> list[Frame]:
            readers.add(threading.current_thread().name)
            return super().feed(data)

    with Simulator(spot_interval=0.005) as sim, connected(sim, protocol=Tracking) as client:
        account = manual_login(client, sim)
        spots = Recorder()
        client.on(ProtoOASpotEvent, spots)
        client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(10)
        readers.clear()
        for _ in range(300):
            assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        assert "MainThread" in readers  # the caller read its own answers ...
        during = len(spots.calls)
        spots.wait_for(during + 20)  # ... and pushes keep coming once it stops
        assert any(name.startswith("ctrader_sync-reader") for name in readers)


def test_interrupt_while_the_caller_reads_drops_the_connection_cleanly() -> None:
    armed = threading.Event()

    class Interrupted(TcpProtocol):
        """A codec that is interrupted (Ctrl-C) once, on the main thread, holding received bytes."""

        def feed(self, data: Any) -> list[Frame]:
            if armed.is_set() and threading.current_thread() is threading.main_thread():
                armed.clear()
                raise KeyboardInterrupt
            return super().feed(data)

    with Simulator() as sim, connected(sim, protocol=Interrupted) as client:
        lost = Recorder()
        client.setDisconnectedCallback(lost)
        armed.set()
        future = client.send(ProtoOAVersionReq())
        with pytest.raises(KeyboardInterrupt):
            for _ in range(1000):  # the caller may find the answer already read by the reader: retry
                future.result(10)
                future = client.send(ProtoOAVersionReq())
        assert not armed.is_set()
        assert isinstance(lost.wait_for(1)[0][1], ConnectionLostError)
        assert isinstance(future.exception(10), ConnectionLostError)
        assert sim.wait_for_connections(2)
        assert isinstance(client.request(ProtoOAVersionReq(), timeout=10), ProtoOAVersionRes)
