"""Reliability III (issue 13), items 17-19: the session stays authorized while the connection is up.

* 17: ``ProtoOAAccountDisconnectEvent`` -> the account is re-authorized on the live connection (with
  backoff) and its subscriptions restored; if it cannot be, its requests fail with a typed error.
* 18: ``refresh_access_token()`` -> the server invalidates the old token and logs the accounts out;
  they are re-authorized with the new token at once.
* 19: ``login(..., refresh_token=..., expires_in=...)`` refreshes ahead of expiry by itself, hands
  every new pair to ``on_token_refreshed``; a refused refresh is a typed event and error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from clienttools import Recorder, connected, wait_until

from ctrader_sync import AuthenticationError, Client
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOARefreshTokenRes,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOASymbolByIdReq,
    ProtoOASymbolByIdRes,
)
from ctrader_sync.simulator import Simulator

ACCOUNT_AUTH, REFRESH = 2102, 2173


def symbols(client: Client, account: int) -> Any:
    return client.send(ProtoOASymbolByIdReq(ctidTraderAccountId=account, symbolId=[1])).result(10)


def auth_requests(sim: Simulator, connection: int = 0) -> int:
    return sum(1 for r in sim.connections[connection].requests() if r.payload_type == ACCOUNT_AUTH)


def test_item17_account_disconnect_reauthorizes_and_resubscribes_on_the_live_connection() -> None:
    with Simulator(spot_interval=0.02) as sim, connected(sim) as client:
        a, b = sorted(int(x.ctidTraderAccountId) for x in
                      client.login(sim.client_id, sim.client_secret, sim.access_token))
        client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1])).result(10)
        disconnected, spots = Recorder(), Recorder()
        client.on(ProtoOAAccountDisconnectEvent, disconnected)
        client.on(ProtoOASpotEvent, spots)
        spots.wait_for(1)
        sim.inject("account_disconnect")  # the simulator logs out the first account: a
        [(event,)] = disconnected.wait_for(1)
        assert int(event.ctidTraderAccountId) == a
        wait_until(lambda: sim.connections[0].authorized_accounts == {a, b}, what="a re-authorized")
        wait_until(lambda: 1 in sim.connections[0].subscriptions, what="its spot subscription restored")
        before = len(spots.calls)
        wait_until(lambda: len(spots.calls) > before + 2, what="spots flowing again")
        assert isinstance(symbols(client, a), ProtoOASymbolByIdRes)
        wait_until(lambda: client.authorized_accounts == [a, b], what="the client's view")
        assert client.connection_count == 1


def test_item17_reauthorization_retries_with_backoff_while_the_server_does_not_answer() -> None:
    with Simulator() as sim, connected(sim, response_timeout=0.3) as client:
        a, b = sorted(int(x.ctidTraderAccountId) for x in
                      client.login(sim.client_id, sim.client_secret, sim.access_token))
        sim.inject("drop", payload_type=ACCOUNT_AUTH)
        sim.inject("account_disconnect")
        wait_until(lambda: auth_requests(sim) >= 2 + 2, what="two re-authorization attempts")
        sim.clear_faults()
        wait_until(lambda: sim.connections[0].authorized_accounts == {a, b}, what="a re-authorized at last")
        assert isinstance(symbols(client, a), ProtoOASymbolByIdRes)
        assert client.connection_count == 1


def test_item17_an_account_that_cannot_be_reauthorized_fails_its_requests_with_a_typed_error() -> None:
    with Simulator() as sim, connected(sim) as client:
        a, b = sorted(int(x.ctidTraderAccountId) for x in
                      client.login(sim.client_id, sim.client_secret, sim.access_token))
        disconnected = Recorder()
        client.on(ProtoOAAccountDisconnectEvent, disconnected)
        sim.revoke_access_token(sim.access_token)
        sim.inject("account_disconnect")
        disconnected.wait_for(1)
        wait_until(lambda: auth_requests(sim) >= 3, what="a re-authorization attempt")
        wait_until(lambda: client.authorized_accounts == [b], what="a given up")
        with pytest.raises(AuthenticationError):
            symbols(client, a)
        assert isinstance(symbols(client, b), ProtoOASymbolByIdRes)
        assert client.is_connected and client.connection_count == 1


def test_item18_refresh_access_token_reauthorizes_with_the_new_token_at_once() -> None:
    with Simulator() as sim, connected(sim) as client:
        accounts = sorted(int(x.ctidTraderAccountId) for x in
                          client.login(sim.client_id, sim.client_secret, sim.access_token))
        invalidated = Recorder()
        client.on(ProtoOAAccountsTokenInvalidatedEvent, invalidated)
        res = client.refresh_access_token(sim.refresh_token)
        assert res.accessToken != sim.access_token
        [(event,)] = invalidated.wait_for(1)
        assert sorted(event.ctidTraderAccountIds) == accounts
        # The old token is no longer accepted by the simulator: only the new one could do this.
        wait_until(lambda: sim.connections[0].authorized_accounts == set(accounts), what="re-authorized")
        for account in accounts:
            assert isinstance(symbols(client, account), ProtoOASymbolByIdRes)
        wait_until(lambda: client.authorized_accounts == accounts, what="the client's view")
        assert client.connection_count == 1


def test_item19_login_with_a_refresh_token_refreshes_ahead_of_expiry_and_hands_over_the_new_pair() -> None:
    with Simulator() as sim, connected(sim) as client:
        refreshed = Recorder()
        expires_in = 4.0
        t0 = time.monotonic()
        accounts = sorted(int(x.ctidTraderAccountId) for x in client.login(
            sim.client_id, sim.client_secret, sim.access_token, refresh_token=sim.refresh_token,
            expires_in=expires_in, on_token_refreshed=refreshed))
        [(res,)] = refreshed.wait_for(1, timeout=15)
        elapsed = time.monotonic() - t0
        assert isinstance(res, ProtoOARefreshTokenRes)
        assert res.accessToken != sim.access_token and res.refreshToken != sim.refresh_token
        assert expires_in * 0.5 <= elapsed < expires_in, elapsed
        # Re-authorized with the new token on the same connection (the old one no longer works).
        wait_until(lambda: sim.connections[0].authorized_accounts == set(accounts), what="re-authorized")
        for account in accounts:
            assert isinstance(symbols(client, account), ProtoOASymbolByIdRes)
        # The new pair is what a reconnect uses.
        sim.inject("close")
        assert sim.wait_for_connections(2)
        client.wait_connected(10)
        wait_until(lambda: sim.connections[1].authorized_accounts == set(accounts), what="recovered")
        assert sum(1 for r in sim.connections[0].requests() if r.payload_type == REFRESH) == 1


def test_item19_a_refused_refresh_is_a_typed_event_and_error() -> None:
    from ctrader_sync import TokenRefreshError, TokenRefreshFailed

    with Simulator() as sim, connected(sim) as client:
        failed = Recorder()
        client.on(TokenRefreshFailed, failed)
        client.login(sim.client_id, sim.client_secret, sim.access_token, refresh_token="not-a-refresh-token",
                     expires_in=1.0)
        [(event,)] = failed.wait_for(1, timeout=15)
        assert isinstance(event, TokenRefreshFailed)
        assert isinstance(event.error, TokenRefreshError) and isinstance(event.error, AuthenticationError)
        assert event.error.error_code == "CH_ACCESS_TOKEN_INVALID"
        assert "not-a-refresh-token" not in str(event.error) + repr(event)
        with pytest.raises(TokenRefreshError):
            client.refresh_access_token("also-wrong")
        # The accounts stay authorized with the token they have (it has not expired yet).
        assert isinstance(symbols(client, sim.account_ids[0]), ProtoOASymbolByIdRes)
        assert sum(1 for r in sim.connections[0].requests() if r.payload_type == REFRESH) == 2


def test_item19_the_readme_example_refreshes_by_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """The token example in README's "Reconnect and session recovery" runs and prints what it says."""
    text = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    section = text[text.index("Reconnect and session recovery"):text.index("\nTimeouts\n")]
    block = section.split(".. code-block:: python\n\n")[1]
    code = "\n".join(line[4:] for line in block.splitlines() if line.startswith("    ") or not line.strip())
    code = code[:code.index("\n\n\n")] if "\n\n\n" in code else code
    exec(compile(code, "README.rst", "exec"), {})
    assert capsys.readouterr().out.split() == ["new", "tokens,", "valid", "for", "2628000", "s"]
