"""Session helper, recovery after reconnect, server session events, event streams."""

from __future__ import annotations

import time

import pytest
from clienttools import Recorder, connected, wait_until

from ctrader_sync import AuthenticationError, InvalidRequestError
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOASpotEvent,
    ProtoOASubscribeLiveTrendbarReq,
    ProtoOASubscribeSpotsReq,
    ProtoOAUnsubscribeSpotsReq,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator

APP_AUTH, ACCOUNT_AUTH, SUBSCRIBE_SPOTS, SUBSCRIBE_TRENDBAR, VERSION = 2100, 2102, 2127, 2135, 2104


def login(client, sim: Simulator, accounts=None):  # type: ignore[no-untyped-def]
    return client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=accounts)


def test_login_authorizes_every_granted_account_by_default() -> None:
    with Simulator() as sim, connected(sim) as client:
        accounts = login(client, sim)
        assert sorted(int(a.ctidTraderAccountId) for a in accounts) == sorted(sim.account_ids)
        assert client.authorized_accounts == sorted(sim.account_ids)
        assert sim.connections[0].authorized_accounts == set(sim.account_ids)


def test_login_chosen_account_and_errors() -> None:
    with Simulator() as sim, connected(sim) as client:
        with pytest.raises(AuthenticationError) as info:
            client.login(sim.client_id, "not-the-secret", sim.access_token)
        assert info.value.error_code == "CH_CLIENT_AUTH_FAILURE"
        assert "not-the-secret" not in str(info.value) and "not-the-secret" not in repr(client)
        with pytest.raises(InvalidRequestError, match="not granted"):
            login(client, sim, accounts=[999_999])
        [account] = login(client, sim, accounts=[sim.account_ids[1]])
        assert int(account.ctidTraderAccountId) == sim.account_ids[1]
        assert client.authorized_accounts == [sim.account_ids[1]]


def test_session_and_subscriptions_recovered_before_queued_requests() -> None:
    with Simulator(spot_interval=0.02) as sim, connected(sim) as client:
        account = login(client, sim, accounts=[sim.account_ids[0]])[0].ctidTraderAccountId
        client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1, 2])).result(10)
        client.send(ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=account, symbolId=1, period=1)).result(10)
        client.send(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[2])).result(10)
        spots = Recorder()
        client.on(ProtoOASpotEvent, spots)
        lost = Recorder()
        client.setDisconnectedCallback(lost)

        sim.inject("close")
        lost.wait_for(1)
        queued = client.send(ProtoOAVersionReq())  # sent while down: must wait for the recovery
        assert isinstance(queued.result(10), ProtoOAVersionRes)
        assert sim.wait_for_connections(2)
        second = sim.connections[1]
        before = len(spots.calls)
        wait_until(lambda: len(spots.calls) >= before + 5, what="spots after the reconnect")
        inbound = [r.payload_type for r in second.requests()]
        # Recovery first (app auth, account auth, spots, trendbar), the user's request after it.
        assert inbound[:5] == [APP_AUTH, ACCOUNT_AUTH, SUBSCRIBE_SPOTS, SUBSCRIBE_TRENDBAR, VERSION]
        assert second.subscriptions == {1}  # symbol 2 was unsubscribed: not restored
        assert second.authorized_accounts == {account}
        assert client.authorized_accounts == [account]
        assert all(s[0].symbolId == 1 for s in spots.calls[before:])
        # The live trendbar subscription is back too: spot events carry the bar again.
        wait_until(lambda: any(len(s[0].trendbar) for s in spots.calls[before:]), what="trendbar on spots")


def test_token_invalidated_and_account_disconnected_reach_the_user() -> None:
    with Simulator() as sim, connected(sim) as client:
        login(client, sim)
        invalidated, disconnected = Recorder(), Recorder()
        client.on(ProtoOAAccountsTokenInvalidatedEvent, invalidated)
        client.on(ProtoOAAccountDisconnectEvent, disconnected)
        sim.inject("account_disconnect")
        [(event,)] = disconnected.wait_for(1)
        # Authorized again on the same connection (issue 13, item 17).
        wait_until(lambda: sim.connections[0].authorized_accounts == set(sim.account_ids), what="re-authorized")
        wait_until(lambda: event.ctidTraderAccountId in client.authorized_accounts, what="the client's view")
        sim.inject("token_invalidated")
        [(event2,)] = invalidated.wait_for(1)
        assert set(event2.ctidTraderAccountIds)
        wait_until(lambda: client.authorized_accounts == [], what="accounts marked unauthorized")


def test_refresh_access_token_keeps_the_new_token_for_recovery() -> None:
    with Simulator() as sim, connected(sim) as client:
        login(client, sim, accounts=[sim.account_ids[0]])
        res = client.refresh_access_token(sim.refresh_token)
        assert res.accessToken and res.accessToken != sim.access_token
        assert client._session is not None and client._session.access_token == res.accessToken
        assert res.accessToken not in repr(client._session)
        sim.inject("close")
        assert sim.wait_for_connections(2)
        client.wait_connected(10)
        wait_until(lambda: sim.connections[1].authorized_accounts == {sim.account_ids[0]}, what="re-auth")


def test_event_stream_with_a_slow_consumer_drops_oldest_and_counts() -> None:
    with Simulator(spot_interval=0.002) as sim, connected(sim) as client:
        account = login(client, sim, accounts=[sim.account_ids[0]])[0].ctidTraderAccountId
        with client.events(ProtoOASpotEvent, maxsize=5, timeout=2.0) as stream:
            client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(10)
            wait_until(lambda: stream.dropped >= 10, what="overflow of a consumer that does not read")
            assert len(stream) == 5
            first = stream.get(1.0)
            assert isinstance(first, ProtoOASpotEvent)
            got = []
            for spot in stream:
                got.append(spot)
                if len(got) == 20:
                    break
            assert len(got) == 20
            # Timestamps only move forward: the stream keeps arrival order.
            stamps = [s.timestamp for s in [first, *got]]
            assert stamps == sorted(stamps)
        client.send(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(10)
        with client.events(ProtoOASpotEvent, timeout=0.2) as quiet:
            t0 = time.monotonic()
            assert [s for s in quiet if s.symbolId == 999] == []
            assert time.monotonic() - t0 < 5


def test_request_is_the_blocking_shortcut() -> None:
    with Simulator() as sim, connected(sim) as client:
        assert isinstance(client.request(ProtoOAVersionReq(), timeout=10), ProtoOAVersionRes)
        sim.inject("drop", payload_type=VERSION)
        with pytest.raises(TimeoutError):
            client.request(ProtoOAVersionReq(), timeout=0.3)
        assert client.pending_count == 0


def test_refused_credentials_on_reconnect_stop_recovery_instead_of_looping() -> None:
    """A secret that no longer works must not make the client reconnect forever."""
    with Simulator() as sim, connected(sim) as client:
        login(client, sim, accounts=[sim.account_ids[0]])
        assert client._session is not None
        client._session.client_secret = "revoked"  # as if the secret had been rotated server-side
        sim.inject("close")
        assert sim.wait_for_connections(2)
        client.wait_connected(10)
        assert client._session is None
        assert isinstance(client.send(ProtoOAVersionReq()).result(10), ProtoOAVersionRes)
        assert len(sim.connections) == 2  # no reconnect loop
