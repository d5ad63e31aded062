"""Security: verification on by default, TLS >= 1.2, one loud way to turn verification off, and no
secret (client secret, access token, refresh token) in logs, reprs or exception texts.

``tests/test_client.py`` proves that the default client refuses the simulator's untrusted certificate;
these tests add the wrong host name with a trusted certificate, a TLS 1.1-only server, the loud
option and what it logs, and a whole session's DEBUG log searched for secrets.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from clienttools import FAST_RECONNECT, Recorder, wait_until

from ctrader_sync import (
    AuthenticationError,
    Client,
    ConnectError,
    InvalidRequestError,
    ReconnectPolicy,
    RequestTimeoutError,
)
from ctrader_sync._tls import default_ssl_context
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOAExecutionEvent,
    ProtoOANewOrderReq,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator, certs_dir

ONE_TRY = ReconnectPolicy(max_attempts=1)


def library_context_trusting(sim: Simulator) -> ssl.SSLContext:
    """The library's own default context, plus trust in the simulator's test CA (nothing relaxed)."""
    context = default_ssl_context()
    context.load_verify_locations(sim.ca_file)
    return context


def connect_error(**options: Any) -> ConnectError:
    client = Client(reconnect=ONE_TRY, **options)
    client.start()
    try:
        with pytest.raises(ConnectError) as info:
            client.wait_connected(10)
        return info.value
    finally:
        client.close()


# -- verification on by default ------------------------------------------------------------------


def test_default_context_verifies_certificate_and_hostname_and_requires_tls12() -> None:
    context = default_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    client = Client("example.invalid", 5035)
    try:
        used = client._ssl_context
        assert used.verify_mode == ssl.CERT_REQUIRED and used.check_hostname is True
        assert used.minimum_version >= ssl.TLSVersion.TLSv1_2
    finally:
        client.close()


def test_untrusted_and_wrong_host_certificates_are_refused_and_nothing_is_sent() -> None:
    with Simulator() as sim:
        untrusted = connect_error(host=sim.host, port=sim.port)
        assert "certificate" in str(untrusted) and "rejected" in str(untrusted)
        chain, cause = [], untrusted.__cause__
        while cause is not None:
            chain.append(cause)
            cause = cause.__cause__
        assert any(isinstance(c, ssl.SSLCertVerificationError) for c in chain), chain
        # A certificate from a trusted CA, but for another name: refused by the hostname check.
        wrong_host = connect_error(host=sim.host, port=sim.port, ssl_context=library_context_trusting(sim),
                                   server_hostname="api.evil.example")
        assert "Hostname mismatch" in str(wrong_host) and "api.evil.example" in str(wrong_host)
        assert all(not c.requests() for c in sim.connections)
        # Control: the same context and the certificate's own name connect, so the refusals above
        # come from verification and nothing else.
        client = Client(sim.host, sim.port, ssl_context=library_context_trusting(sim), server_hostname="localhost",
                        reconnect=ONE_TRY)
        client.start()
        try:
            client.wait_connected(10)
            assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        finally:
            client.close()


@contextmanager
def tls11_server() -> Iterator[tuple[int, list[str]]]:
    """A TLS server limited to TLS 1.0-1.1 with the simulator's certificate; yields (port, outcomes)."""
    certs = certs_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certs / "server.pem"), str(certs / "server-key.pem"))
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    outcomes: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    outcomes.append(str(tls.version()))
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(f"refused: {exc}")
                raw.close()

    thread = threading.Thread(target=serve, name="tls11-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_server_limited_to_tls11_is_refused() -> None:
    with tls11_server() as (port, outcomes):
        # Control: this OpenSSL can still speak TLS 1.1 when a client allows it; otherwise the
        # refusal below would prove nothing about the client (then only the context check stands).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            permissive.load_verify_locations(str(certs_dir() / "ca.pem"))
            permissive.minimum_version = ssl.TLSVersion.TLSv1
            permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
        try:
            with permissive.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                        server_hostname="localhost") as tls:
                legacy_possible = tls.version() == "TLSv1.1"
        except (ssl.SSLError, OSError):
            legacy_possible = False
        if not legacy_possible:
            assert default_ssl_context().minimum_version >= ssl.TLSVersion.TLSv1_2
            pytest.skip("the local OpenSSL cannot negotiate TLS 1.1 at all; minimum_version checked instead")
        context = default_ssl_context()
        context.load_verify_locations(str(certs_dir() / "ca.pem"))
        error = connect_error(host="127.0.0.1", port=port, ssl_context=context, server_hostname="localhost")
        assert "TLS handshake" in str(error), str(error)
        wait_until(lambda: len(outcomes) == 2, what="the server's view of both handshakes")
        assert outcomes[0] == "TLSv1.1" and outcomes[1].startswith("refused")


# -- the one loud way to turn verification off ---------------------------------------------------


def test_only_the_dangerous_option_turns_verification_off_and_it_warns(caplog: pytest.LogCaptureFixture) -> None:
    params = inspect.signature(Client).parameters
    relaxing = [n for n in params if any(w in n.lower() for w in ("verif", "insecure", "unsafe", "check_host"))]
    assert relaxing == ["dangerously_skip_tls_verification"]
    assert params["dangerously_skip_tls_verification"].default is False
    assert params["dangerously_skip_tls_verification"].kind is inspect.Parameter.KEYWORD_ONLY
    with Simulator() as sim:
        with caplog.at_level(logging.WARNING, logger="ctrader_sync"):
            client = Client(sim.host, sim.port, dangerously_skip_tls_verification=True, reconnect=ONE_TRY)
        try:
            warnings_ = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "ctrader_sync"]
            assert warnings_ and "TLS verification is OFF" in warnings_[0].getMessage()
            client.start()
            client.wait_connected(10)  # the untrusted simulator is accepted, as asked
            assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        finally:
            client.close()


def test_a_non_verifying_ssl_context_is_not_a_quiet_way_around_it(caplog: pytest.LogCaptureFixture) -> None:
    """``ssl_context=ssl._create_unverified_context()`` must not switch verification off silently."""
    with Simulator() as sim:
        with caplog.at_level(logging.WARNING, logger="ctrader_sync"):
            client = Client(sim.host, sim.port, ssl_context=ssl._create_unverified_context(), reconnect=ONE_TRY)
            client.close()
        assert any("verification" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING), \
            "a context with verification off was accepted without a warning"


# -- no secret in logs, reprs or exception texts -------------------------------------------------


def all_texts(value: Any, seen: set[int] | None = None) -> list[str]:
    """str and repr of a value and, for exceptions, of its cause/context chain and args."""
    seen = seen if seen is not None else set()
    if value is None or id(value) in seen:
        return []
    seen.add(id(value))
    texts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        texts += [repr(a) for a in value.args]
        texts += all_texts(value.__cause__, seen) + all_texts(value.__context__, seen)
    return texts


def test_a_full_debug_session_never_logs_or_shows_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    with Simulator(spot_interval=0.02) as sim:
        secrets = {"client secret": sim.client_secret, "access token": sim.access_token,
                   "refresh token": sim.refresh_token}
        texts: list[str] = []
        client = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context(), reconnect=FAST_RECONNECT)
        with caplog.at_level(logging.DEBUG, logger="ctrader_sync"):
            client.start()
            try:
                client.wait_connected(10)
                texts.append(repr(client))
                # login, subscribe, order
                accounts = client.login(sim.client_id, sim.client_secret, sim.access_token)
                account = int(accounts[0].ctidTraderAccountId)
                spots = Recorder()
                client.on(ProtoOASpotEvent, spots)
                client.on(ProtoOAExecutionEvent, lambda m: None)
                sub = client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]))
                sub.result(10)
                order = client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                       tradeSide=1, volume=100_000))
                order.result(10)
                # refresh the token: the new tokens are secrets too
                refreshed = client.refresh_access_token(sim.refresh_token)
                secrets["new access token"] = refreshed.accessToken
                secrets["new refresh token"] = refreshed.refreshToken
                # reconnect: the session (secret, new token) is replayed on the new connection
                sim.inject("close")
                assert sim.wait_for_connections(2)
                wait_until(lambda: sim.connections[1].authorized_accounts == {int(a.ctidTraderAccountId)
                                                                               for a in accounts},
                           what="the session recovered")
                before = len(spots.calls)
                wait_until(lambda: len(spots.calls) > before, what="spots after recovery")
                # failures that carry credentials in their request
                wrong_secret = "wrong-secret-" + sim.client_secret[::-1]
                secrets["wrong secret"] = wrong_secret
                with pytest.raises(AuthenticationError) as bad_app:
                    client.send(ProtoOAApplicationAuthReq(clientId="x", clientSecret=wrong_secret)).result(10)
                texts += all_texts(bad_app.value)
                # (a fresh connection: on an authorized one the server answers "already authenticated")
                fresh = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context(), reconnect=ONE_TRY)
                fresh.start()
                try:
                    fresh.wait_connected(10)
                    with pytest.raises(AuthenticationError) as bad_login:
                        fresh.login(sim.client_id, wrong_secret, sim.access_token, timeout=10)
                    texts += [*all_texts(bad_login.value), repr(fresh), repr(fresh._session)]
                finally:
                    fresh.close()
                with pytest.raises(AuthenticationError) as bad_token:
                    client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=account,
                                                      accessToken="bogus-" + sim.access_token)).result(10)
                secrets["bogus token"] = "bogus-" + sim.access_token
                texts += all_texts(bad_token.value)
                with pytest.raises(InvalidRequestError) as missing:
                    client.send(ProtoOAApplicationAuthReq(clientSecret=sim.client_secret))
                texts += all_texts(missing.value)
                sim.inject("drop")
                with pytest.raises(RequestTimeoutError) as slow:
                    client.request(ProtoOAApplicationAuthReq(clientId="y", clientSecret=sim.client_secret), timeout=0.2)
                texts += all_texts(slow.value)
                sim.clear_faults()
                texts += [repr(client), repr(client._session), repr(sub), repr(order), str(sub), str(order)]
                texts += [repr(t) for t in client.threads()]
            finally:
                client.close()
            texts.append(repr(client))
        logged = []
        for record in caplog.records:
            logged.append(record.getMessage())
            if record.exc_info:
                logged.append(logging.Formatter().formatException(record.exc_info))
        assert any(r.levelno == logging.DEBUG for r in caplog.records), "no DEBUG record: the capture proves nothing"
        assert len(logged) > 10
        for what, secret in secrets.items():
            assert secret and len(secret) >= 8
            leaks_log = [line for line in logged if secret in line]
            leaks_text = [t for t in texts if secret in t]
            assert not leaks_log, f"the {what} appears in the log: {leaks_log[:3]}"
            assert not leaks_text, f"the {what} appears in a repr or exception text: {leaks_text[:3]}"
