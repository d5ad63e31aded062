"""The web app port: HTTP requests in, the API's answers out as JSON, against the simulator."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from clienttools import connected

from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAApplicationAuthReq
from ctrader_sync.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_app_sample import WebApp


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_web_app_port_answers_commands_with_the_api_answers() -> None:
    with Simulator(spot_interval=0) as sim, connected(sim) as client:
        client.request(ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret), 10)
        app = WebApp(client)
        server = app.serve()
        base = f"http://127.0.0.1:{server.server_address[1]}/get-data"

        def get(command: str | None, token: str | None = sim.access_token) -> Any:
            query = {k: v for k, v in (("token", token), ("command", command)) if v is not None}
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{base}?{urllib.parse.urlencode(query)}", timeout=15) as answer:
                assert answer.headers["Content-Type"] == "application/json"
                return json.loads(answer.read())

        try:
            account = sim.account_ids[0]
            assert get("ProtoOAVersionReq", token=None) == {"result": "Invalid Token"}
            assert get("Nope 1") == {"result": "Invalid Command: Nope"}
            assert get("ProtoOAVersionReq") == {"version": sim.version}
            listing = get("ProtoOAGetAccountListByAccessTokenReq")
            assert sorted(int(a["ctidTraderAccountId"]) for a in listing["ctidTraderAccount"]) == sim.account_ids
            auth = get(f"setAccount {account}")
            assert auth == {"ctidTraderAccountId": str(account)}
            assert get(f"setAccount {account}") == {"result": "Account changed successfully"}
            trader = get("ProtoOATraderReq")
            assert int(trader["trader"]["ctidTraderAccountId"]) == account
            symbols = get("ProtoOASymbolsListReq")
            assert "EURUSD" in {s["symbolName"] for s in symbols["symbol"]}

            accepted = get("NewMarketOrder 1 BUY 1000")  # the future: ORDER_ACCEPTED (the fill comes later)
            assert accepted["executionType"] == "ORDER_ACCEPTED"
            reconcile = get("ProtoOAReconcileReq")
            (position,) = reconcile["position"]
            assert position["tradeData"]["volume"] == "100000"
            limit = get("NewLimitOrder 1 BUY 1000 0.5")
            assert limit["executionType"] == "ORDER_ACCEPTED"
            cancelled = get(f"CancelOrder {limit['order']['orderId']}")
            assert cancelled["executionType"] == "ORDER_CANCELLED"
            # An error answer goes back as the error message's JSON, as the old app sent it.
            error = get("CancelOrder 999999")
            assert error["errorCode"] == "ORDER_NOT_FOUND" and int(error["ctidTraderAccountId"]) == account
            closed = get(f"ClosePosition {position['positionId']} 1000")
            assert closed["executionType"] in ("ORDER_ACCEPTED", "ORDER_FILLED")
            assert get("ClosePosition x 1")["result"].startswith("Invalid parameters")
        finally:
            server.shutdown()
            server.server_close()
            app.server_thread.join(10)
        assert not app.server_thread.is_alive()
