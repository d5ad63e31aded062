"""Contracts of the client core that users rely on beyond the happy path: exceptions that pickle,
futures that refuse a second result as the standard library does, a stream that ends inside a
frame, the rate-limit retry policy, and a fresh rate-limit budget on every connection."""

from __future__ import annotations

import inspect
import pickle
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from typing import Any

import pytest
from clienttools import FAST_RECONNECT, Recorder, connected

import ctrader_sync.errors as errors_module
from ctrader_sync import (
    Client,
    ClientState,
    ConnectionLostError,
    RateLimitError,
    RateLimitRetry,
    TcpProtocol,
    TruncatedStreamError,
)
from ctrader_sync._pending import RequestFuture
from ctrader_sync.errors import (
    AuthenticationError,
    AuthError,
    ClientClosedError,
    ClosedInFlightError,
    ConnectError,
    ConnectTimeoutError,
    CTraderError,
    FrameTooLargeError,
    InvalidRequestError,
    MessageDecodeError,
    OrderError,
    OrderNotPlacedError,
    OrderOutcomeUnknownError,
    ProtocolError,
    QueueFullError,
    RequestTimeoutError,
    ServerError,
    TokenRefreshError,
    UnknownPayloadTypeError,
    UnknownSymbolError,
)
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAErrorRes, ProtoOAVersionReq, ProtoOAVersionRes
from ctrader_sync.simulator import Simulator, certs_dir

# -- exceptions survive pickling (multiprocessing, ProcessPoolExecutor, logging handlers) ----------

SAMPLES: list[BaseException] = [
    CTraderError("base"),
    ConnectError("refused"),
    ConnectTimeoutError("not connected within 1 s"),
    ConnectionLostError("lost"),
    ClientClosedError("closed"),
    RequestTimeoutError("no answer"),
    QueueFullError("full"),
    InvalidRequestError("bad request"),
    UnknownPayloadTypeError(9999, ["2104 (ProtoOAVersionReq)"]),
    UnknownPayloadTypeError("VersionRes"),
    UnknownSymbolError("EURUSX", ["EURUSD"]),
    ProtocolError("broken"),
    FrameTooLargeError(1 << 31, 1 << 24),
    TruncatedStreamError("stream ended inside a frame"),
    MessageDecodeError("payload of type 2104 does not parse", 2104),
    ServerError("CH_CLIENT_AUTH_FAILURE", "wrong secret", retry_after=None,
                response=ProtoOAErrorRes(errorCode="CH_CLIENT_AUTH_FAILURE", description="wrong secret")),
    RateLimitError("REQUEST_FREQUENCY_EXCEEDED", retry_after=1.5),
    AuthenticationError("OA_AUTH_TOKEN_EXPIRED", "expired"),
    TokenRefreshError("CH_ACCESS_TOKEN_INVALID", "refresh token unknown"),
    ClosedInFlightError("closed after it was written"),
    OrderError("NOT_ENOUGH_MONEY", "margin", order_id=7, position_id=None),
    OrderNotPlacedError("cs1-order-7"),
    OrderOutcomeUnknownError("cs1-order-8", order_id=12),
    AuthError("invalid_grant", "code used", status=400),
]


def test_every_exception_class_is_sampled() -> None:
    classes = {obj for _, obj in inspect.getmembers(errors_module, inspect.isclass)
               if issubclass(obj, BaseException) and obj.__module__ == errors_module.__name__}
    assert classes == {type(e) for e in SAMPLES}, "a new exception class needs a pickling sample"


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_exceptions_survive_pickling_with_their_text_and_attributes(exc: BaseException) -> None:
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert copy.args == exc.args
    assert vars(copy).keys() == vars(exc).keys()
    for name, value in vars(exc).items():
        assert getattr(copy, name) == value, name


def test_unknown_payload_type_text_is_not_doubled_after_pickling() -> None:
    exc = UnknownPayloadTypeError(9999)
    copy = pickle.loads(pickle.dumps(exc))
    assert str(copy) == "unknown payload type or message name: 9999"
    assert copy.key == 9999


# -- RequestFuture follows concurrent.futures.Future on a second result ----------------------------


@pytest.mark.parametrize("make", [Future, lambda: RequestFuture("c1", 2104)], ids=["stdlib", "RequestFuture"])
def test_setting_a_done_future_raises_invalid_state_error(make: Any) -> None:
    done = make()
    done.set_result(1)
    with pytest.raises(InvalidStateError):
        done.set_result(2)
    with pytest.raises(InvalidStateError):
        done.set_exception(ValueError("late"))
    assert done.result(0) == 1
    failed = make()
    failed.set_exception(ValueError("first"))
    with pytest.raises(InvalidStateError):
        failed.set_result(2)
    cancelled = make()
    assert cancelled.cancel()
    with pytest.raises(InvalidStateError):
        cancelled.set_result(2)


# -- a stream that ends inside a frame ---------------------------------------------------------------


@contextmanager
def truncating_server(partial: bytes) -> Iterator[tuple[int, threading.Event]]:
    """A TLS server (the simulator's test certificate) that answers the first request with
    ``partial`` (an incomplete frame) and closes the connection; later connections are refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs_dir() / "server.pem"), str(certs_dir() / "server-key.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    done = threading.Event()

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(10)
            with context.wrap_socket(raw, server_side=True) as tls:
                if tls.recv(65536):  # the client's first request
                    tls.sendall(partial)
        except OSError:
            pass
        finally:
            listener.close()
            done.set()

    thread = threading.Thread(target=serve, name="test-truncating-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], done
    finally:
        listener.close()
        thread.join(10)


def test_a_stream_ending_inside_a_frame_is_reported_as_truncated() -> None:
    frame = TcpProtocol().encode(ProtoOAVersionRes(version="91"), "x")
    with truncating_server(frame[:-3]) as (port, done):
        context = ssl.create_default_context(cafile=str(certs_dir() / "ca.pem"))
        client = Client("127.0.0.1", port, ssl_context=context, reconnect=None)
        lost = Recorder()
        client.setDisconnectedCallback(lost)
        client.start()
        try:
            client.wait_connected(10)
            future = client.send(ProtoOAVersionReq())
            error = future.exception(10)
            assert isinstance(error, ConnectionLostError)
            assert isinstance(error.__cause__, TruncatedStreamError), repr(error.__cause__)
            reason = lost.wait_for(1)[0][1]
            assert isinstance(reason, TruncatedStreamError)
            assert f"{len(frame) - 3} bytes" in str(reason) and "closed" in str(reason)
            assert done.wait(10)
        finally:
            client.close()


# -- the rate-limit retry policy -------------------------------------------------------------------


def test_rate_limit_retry_delays_and_validation() -> None:
    default = RateLimitRetry()
    assert [default.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, None]
    assert default.delay(1, retry_after=3.0) == 3.0  # the server's hint wins
    capped = RateLimitRetry(retries=10, initial=1.0, multiplier=3.0, maximum=5.0)
    assert [capped.delay(n) for n in (1, 2, 3, 10)] == [1.0, 3.0, 5.0, 5.0]
    assert RateLimitRetry(retries=0).delay(1) is None
    for bad in ({"retries": -1}, {"initial": -0.1}, {"multiplier": 0.5}, {"maximum": -1.0}):
        with pytest.raises(ValueError):
            RateLimitRetry(**bad)
    with pytest.raises(AttributeError):
        default.retries = 5  # type: ignore[misc]  # a value object


def test_client_uses_the_rate_limit_retry_policy_given() -> None:
    with Simulator(request_limit=5) as sim:
        fast = RateLimitRetry(retries=6, initial=0.05, maximum=0.4)
        with connected(sim, numberOfMessagesToSendPerSecond=None, rate_limit_retries=0,
                       rate_limit_retry=fast) as client:
            assert client.rate_limit_retry is fast
            futures = [client.send(ProtoOAVersionReq()) for _ in range(12)]
            assert all(isinstance(f.result(30), ProtoOAVersionRes) for f in futures)
        with connected(sim, numberOfMessagesToSendPerSecond=None, rate_limit_retry=RateLimitRetry(retries=0)) as client:
            errors = [f.exception(30) for f in [client.send(ProtoOAVersionReq()) for _ in range(12)]]
            assert any(isinstance(e, RateLimitError) for e in errors)
    unstarted = Client("127.0.0.1", 1, rate_limit_retries=2)
    try:
        assert unstarted.rate_limit_retry == RateLimitRetry(retries=2)  # the old argument still works
    finally:
        unstarted.close()


# -- every connection starts with the server's full budget -------------------------------------------


def test_a_new_connection_starts_with_a_full_rate_limit_budget() -> None:
    # A 30 s margin makes the window 31 s: without a fresh budget, the request after the reconnect
    # would wait half a minute.
    with Simulator() as sim, connected(sim, numberOfMessagesToSendPerSecond=2, rate_limit_margin=30.0,
                                       reconnect=FAST_RECONNECT) as client:
        for _ in range(2):
            assert isinstance(client.request(ProtoOAVersionReq(), timeout=10), ProtoOAVersionRes)
        sim.inject("close")
        assert sim.wait_for_connections(2, timeout=10)
        client.wait_connected(10)
        assert client.state is ClientState.READY and client.connection_count == 2
        started = time.monotonic()
        assert isinstance(client.request(ProtoOAVersionReq(), timeout=10), ProtoOAVersionRes)
        assert time.monotonic() - started < 10.0
