"""Record what the old SDK (``ctrader-open-api`` 0.9.2, Twisted) observably does, for tests/test_migration.py.

Run it with a Python that has the OLD SDK installed (it must not import ctrader_sync: the old SDK pins
protobuf 3.20)::

    python3 -m venv /tmp/oldsdk && /tmp/oldsdk/bin/pip install ctrader-open-api==0.9.2
    /tmp/oldsdk/bin/python scripts/record_old_sdk.py --sim-python .venv/bin/python

It records (1) the answers of its ``Protobuf``, ``EndPoints`` and ``Auth.getAuthUri`` for a set of
inputs, and (2) a live session of its ``Client`` against the bundled simulator (started with
``--sim-python``, which must have ctrader_sync): what the message-received callback and the deferreds
receive for auth, a version request, an error answer, a market order, keywords ignored by ``send``,
heartbeats.  The result is written to ``tests/data/old_sdk_0.9.2.json``; the migration tests compare
ctrader_sync with it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "old_sdk_0.9.2.json"

KEYS = [2104, "ProtoOAVersionReq", "VersionReq", "ProtoOATraderRes", "TraderRes", "HeartbeatEvent",
        "ProtoHeartbeatEvent", "ErrorRes", "ProtoErrorRes", "ProtoOAErrorRes", 51, 50, 2142, 2126,
        "ProtoOAExecutionEvent", "ProtoMessage", "Message", 0, 2104.0, "PROTO_OA_VERSION_REQ", 9999, "Nope", True,
        "ProtoOAGetAccountListByAccessTokenReq", 2149]


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        return {"raises": type(exc).__name__, "is_lookup_error": isinstance(exc, LookupError),
                "is_value_error": isinstance(exc, ValueError)}
    if isinstance(value, (int, str)) or value is None:
        return {"value": value}
    return {"class": type(value).__name__, "payloadType": getattr(value, "payloadType", None)}


def record_static() -> dict[str, Any]:
    from ctrader_open_api import Auth, EndPoints, Protobuf
    from ctrader_open_api.messages.OpenApiCommonMessages_pb2 import ProtoMessage
    from ctrader_open_api.messages.OpenApiMessages_pb2 import ProtoOASubscribeSpotsReq, ProtoOAVersionRes

    out: dict[str, Any] = {"get_type": [], "get": []}
    for key in KEYS:
        out["get_type"].append([key, _outcome(Protobuf.get_type, key)])
        out["get"].append([key, _outcome(Protobuf.get, key)])
    out["get_type_params"] = {
        "valid_field": _outcome(Protobuf.get_type, "ProtoOASubscribeSpotsReq", symbolId=[1]),
        "unknown_field": _outcome(Protobuf.get_type, "ProtoOAVersionReq", clientMsgId="x"),
    }
    out["get_fields"] = str(Protobuf.get("ProtoOASubscribeSpotsReq", ctidTraderAccountId=7, symbolId=[1, 2]))
    out["get_fail_false"] = _outcome(Protobuf.get, 9999, fail=False)
    registry = Protobuf.populate()
    out["populate"] = {str(pt): cls.__name__ for pt, cls in registry.items()}
    envelope = ProtoMessage(payloadType=2105, payload=ProtoOAVersionRes(version="91").SerializeToString(),
                            clientMsgId="c1")
    out["extract_envelope"] = str(Protobuf.extract(envelope))
    out["extract_inner"] = _outcome(Protobuf.extract, ProtoOAVersionRes(version="91"))
    out["extract_unknown"] = _outcome(Protobuf.extract, ProtoMessage(payloadType=9999))
    out["unset_clientMsgId"] = ProtoMessage(payloadType=51).clientMsgId
    out["subscribe_repr"] = str(ProtoOASubscribeSpotsReq(ctidTraderAccountId=1, symbolId=[1]))
    out["endpoints"] = {k: v for k, v in vars(EndPoints).items() if k.isupper()}
    out["star_imports"] = {}
    for module in ("OpenApiCommonMessages_pb2", "OpenApiCommonModelMessages_pb2", "OpenApiMessages_pb2",
                   "OpenApiModelMessages_pb2"):
        namespace: dict[str, Any] = {}
        exec(f"from ctrader_open_api.messages.{module} import *", namespace)
        out["star_imports"][module] = sorted(n for n in namespace if not n.startswith("_"))
    auth = Auth("123_abc", "secret", "http://localhost:8080/redirect")
    out["auth_uri"] = auth.getAuthUri()
    out["auth_uri_accounts"] = auth.getAuthUri(scope="accounts")
    return out


def record_session(sim: dict[str, Any]) -> dict[str, Any]:
    from ctrader_open_api import Client, Protobuf, TcpProtocol
    from ctrader_open_api.messages.OpenApiMessages_pb2 import (
        ProtoOAAccountAuthReq,
        ProtoOAApplicationAuthReq,
        ProtoOANewOrderReq,
        ProtoOAOrderListByPositionIdReq,
        ProtoOAVersionReq,
    )
    from twisted.internet import reactor

    account = sim["account_ids"][0]
    log: dict[str, Any] = {"received": [], "results": {}, "errbacks": {}}
    client = Client(sim["host"], sim["port"], TcpProtocol)

    def describe(message: Any) -> dict[str, Any]:
        inner = Protobuf.extract(message)
        row = {"envelope_class": type(message).__name__, "payloadType": message.payloadType,
               "clientMsgId": message.clientMsgId, "has_clientMsgId": message.HasField("clientMsgId"),
               "inner": type(inner).__name__}
        if hasattr(inner, "executionType"):
            row["executionType"] = int(inner.executionType)
        if hasattr(inner, "errorCode"):
            row["errorCode"] = inner.errorCode
        if type(inner).__name__ == "ProtoOAOrderListByPositionIdRes":
            row["orders"] = len(inner.order)
        return row

    def on_message(_: Any, message: Any) -> None:
        log["received"].append(describe(message))
        if message.payloadType == 2126 and message.clientMsgId == "mkt-1":
            event = Protobuf.extract(message)
            if event.executionType == 3:  # ORDER_FILLED: ConsoleSample's OrderListByPositionId call
                request = ProtoOAOrderListByPositionIdReq(ctidTraderAccountId=account,
                                                          positionId=event.position.positionId)
                step("keywords_ignored", request, then=lambda: reactor.callLater(0.3, reactor.stop),
                     fromTimestamp=None, toTimestamp=None)

    def keep(name: str) -> Any:
        def ok(message: Any) -> Any:
            log["results"][name] = describe(message)
            return message

        def err(failure: Any) -> None:
            log["errbacks"][name] = type(failure.value).__name__

        return ok, err

    def step(name: str, request: Any, then: Any = None, **kwargs: Any) -> None:
        deferred = client.send(request, **kwargs)
        ok, err = keep(name)
        deferred.addCallbacks(ok, err)
        if then is not None:
            deferred.addCallback(lambda _: then())

    def after_app_auth() -> None:
        step("version", ProtoOAVersionReq(), clientMsgId="v-1")
        step("version_by_name", "ProtoOAVersionReq")
        step("bad_account_auth", ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken="wrong"))
        step("account_auth", ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=sim["access_token"]),
             then=after_account_auth)

    def after_account_auth() -> None:
        step("market_order", ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                tradeSide=1, volume=100000), clientMsgId="mkt-1")

    def connected(_: Any) -> None:
        step("app_auth", ProtoOAApplicationAuthReq(clientId=sim["client_id"], clientSecret=sim["client_secret"]),
             then=after_app_auth)

    client.setConnectedCallback(connected)
    client.setMessageReceivedCallback(on_message)
    client.startService()
    reactor.callLater(15, reactor.stop)  # a safety net: the session ends after the order list
    reactor.run()
    return log


def main() -> int:
    """Record the old SDK's behaviour into tests/data/old_sdk_0.9.2.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-python", required=True, help="a Python with ctrader_sync (runs the simulator)")
    args = parser.parse_args()
    import importlib.metadata

    result: dict[str, Any] = {"version": importlib.metadata.version("ctrader-open-api"),
                              "protobuf": record_static()}
    sim_proc = subprocess.Popen([args.sim_python, "-m", "ctrader_sync.simulator", "--port", "0",
                                 "--heartbeat-interval", "0.5", "--spot-interval", "0"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert sim_proc.stdout is not None
        sim = json.loads(sim_proc.stdout.readline())
        result["session"] = record_session(sim)
    finally:
        sim_proc.terminate()
        sim_proc.wait(10)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
