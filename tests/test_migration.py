"""Every row of the README's migration table, executed: the old-style call, the new-style call, and
the same observable result (or the documented, deliberate difference).

Where the old SDK's behaviour matters, it is not assumed: ``tests/data/old_sdk_0.9.2.json`` holds what
``ctrader-open-api`` 0.9.2 really returned and received, recorded by ``scripts/record_old_sdk.py``
(its ``Protobuf``, ``EndPoints``, ``Auth`` answers, and a live session of its Twisted client against
the bundled simulator).  ``test_every_table_row_has_a_test`` keeps the table and this file in step.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import textwrap
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from clienttools import Recorder, connected, make_client, manual_login, wait_until
from test_auth import TOKEN_JSON, Reply, StartServer, _auth, start_server  # noqa: F401 - fixture

import ctrader_sync
from ctrader_sync import (
    AuthenticationError,
    AuthError,
    Client,
    ConnectError,
    ConnectionLostError,
    Protobuf,
    ReconnectPolicy,
    RequestTimeoutError,
    ServerError,
    TcpProtocol,
    UnknownPayloadTypeError,
    every,
)
from ctrader_sync.messages import OpenApiCommonMessages_pb2, OpenApiMessages_pb2
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent, ProtoMessage
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOAExecutionEvent,
    ProtoOANewOrderReq,
    ProtoOAOrderListByPositionIdReq,
    ProtoOATraderReq,
    ProtoOATraderRes,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
OLD = json.loads((ROOT / "tests" / "data" / "old_sdk_0.9.2.json").read_text())
ORDER_ACCEPTED, ORDER_FILLED = 2, 3


def _key(raw: Any) -> Any:
    return raw  # JSON keeps ints, floats, bools and strings apart


# -- the table and this file stay in step -----------------------------------------------------------

ROWS = {
    "from ctrader_open_api import": "test_imports_and_endpoints",
    "ctrader_open_api.messages": "test_message_modules",
    "Client(host, port, TcpProtocol)": "test_client_constructor",
    "numberOfMessagesToSendPerSecond": "test_rate_limit_keyword",
    "client.startService()": "test_start_and_stop_service",
    "callback-driven": "test_reactor_run_becomes_wait_closed",
    "client.isConnected": "test_is_connected",
    "d.addCallbacks(ok, err)": "test_deferred_callbacks_become_future_calls",
    "the deferred's result": "test_results_are_extracted_and_extract_is_idempotent",
    "error answers": "test_error_answers_fail_the_future",
    "responseTimeoutInSeconds": "test_response_timeout_counts_from_writing",
    'send("ProtoOAVersionReq"': "test_send_by_name",
    "fromTimestamp=None": "test_send_keywords_with_a_message_object",
    "disconnect": "test_pending_requests_fail_on_disconnect",
    "setMessageReceivedCallback(f)": "test_message_callback_receives_envelopes_like_the_old_sdk",
    "message.clientMsgId": "test_old_callback_idioms_on_the_envelope",
    "ORDER_FILLED": "test_follow_up_events_carry_the_request_id",
    "market order": "test_market_order_future_is_order_accepted",
    "setConnectedCallback(f)": "test_connection_callbacks",
    "Protobuf.get(": "test_protobuf_get_like_the_old_sdk",
    "Protobuf.get_type(": "test_protobuf_get_type_like_the_old_sdk",
    "Protobuf.extract(": "test_protobuf_extract_like_the_old_sdk",
    "IndexError": "test_unknown_payload_type_errors",
    "Protobuf.populate()": "test_populate",
    "reactor.callLater": "test_call_later_with_threading_timer",
    "task.LoopingCall": "test_looping_call_with_every",
    "Auth(": "test_auth_like_the_old_sdk",
    "TLS certificate": "test_tls_is_verified",
    "re-auth": "test_login_recovers_the_session",
    "one reactor per process": "test_many_clients_in_one_process",
    "dependencies": "test_dependencies",
}


def _table_rows() -> list[str]:
    """First cells of the migration table (a list-table in README.rst)."""
    text = (ROOT / "README.rst").read_text()
    title = "Migrating from the old SDK (``ctrader-open-api``)\n" + "=" * 49 + "\n"
    assert title in text, "the README lost its migration section"
    section = text.split(title, 1)[1].split("\nUnits helpers\n", 1)[0]
    rows: list[str] = []
    for line in section.splitlines():
        if line.startswith("   * - "):
            rows.append(line[7:])
        elif rows and line.startswith("       ") and not line.startswith("     - "):
            rows[-1] += " " + line.strip()  # the first cell goes on
        elif line.startswith("     - "):
            rows.append("")  # later cells: stop extending the first one
            rows.pop()
    return rows


def test_every_table_row_has_a_test() -> None:
    rows = _table_rows()
    assert len(rows) >= 25, rows
    names = set(globals())
    for row in rows[1:]:  # the first row is the header
        matches = [test for marker, test in ROWS.items() if marker in row]
        assert matches, f"README migration row without a test: {row!r}"
        assert all(m in names for m in matches), matches
    used = [marker for marker in ROWS if any(marker in row for row in rows)]
    assert len(used) == len(ROWS), f"markers not in the table: {set(ROWS) - set(used)}"


# -- imports, constructor, life cycle ---------------------------------------------------------------


def test_imports_and_endpoints() -> None:
    from ctrader_sync import Auth, Client, EndPoints, Protobuf, TcpProtocol  # noqa: F401 - the old line

    old = OLD["protobuf"]["endpoints"]
    assert {k: getattr(EndPoints, k) for k in old} == old
    # The old submodule paths the samples use (the ConsoleSample imports EndPoints this way).
    from ctrader_sync.auth import Auth as SubAuth
    from ctrader_sync.endpoints import EndPoints as SubEndPoints
    from ctrader_sync.protobuf import Protobuf as SubProtobuf

    assert (SubAuth, SubEndPoints, SubProtobuf) == (Auth, EndPoints, Protobuf)


def test_message_modules() -> None:
    # Every message of the old registry exists under the same name with the same payload type.
    for number, name in OLD["protobuf"]["populate"].items():
        module = OpenApiCommonMessages_pb2 if hasattr(OpenApiCommonMessages_pb2, name) else OpenApiMessages_pb2
        cls = getattr(module, name)
        assert int(number) == (cls().payloadType if name != "ProtoMessage" else 0), name
    # The samples' "import *" of each module brings every name it brought from the old SDK.
    for module, names in OLD["protobuf"]["star_imports"].items():
        namespace: dict[str, Any] = {}
        exec(f"from ctrader_sync.messages.{module} import *", namespace)
        assert set(names) <= set(namespace), (module, set(names) - set(namespace))


def test_client_constructor() -> None:
    with Simulator() as sim:
        old_style = Client(sim.host, sim.port, TcpProtocol, ssl_context=sim.client_ssl_context())
        new_style = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context())
        for client in (old_style, new_style):
            with client:
                assert isinstance(client.request(ProtoOAVersionReq(), 10), ProtoOAVersionRes)
        with pytest.raises(TypeError, match="retryPolicy"):
            Client(sim.host, sim.port, TcpProtocol, retryPolicy=None)  # type: ignore[call-arg]
        assert ReconnectPolicy(initial=1.0).initial == 1.0  # what replaces retryPolicy=


def test_rate_limit_keyword() -> None:
    with Simulator() as sim, connected(sim, numberOfMessagesToSendPerSecond=5) as client:
        futures = [client.send(ProtoOAVersionReq()) for _ in range(11)]
        for future in futures:
            assert isinstance(future.result(15), ProtoOAVersionRes)
        assert sim.max_requests_in_window() <= 5


def test_start_and_stop_service() -> None:
    with Simulator() as sim:
        client = make_client(sim)
        client.startService()              # old name: returns at once, no reactor to run
        client.wait_connected(10)
        assert client.request(ProtoOAVersionReq(), 10).version == sim.version
        client.stopService()               # old name: closes and joins the threads
        assert not any(t.is_alive() for t in client.threads())


def test_reactor_run_becomes_wait_closed() -> None:
    """A callback-driven program: ``reactor.run()`` blocked until a callback called
    ``reactor.stop()``; ``client.wait_closed()`` blocks until a callback calls ``stopService()``."""
    with Simulator() as sim:
        client = make_client(sim)
        answers: list[str] = []

        def on_version(future: Any) -> None:
            answers.append(future.result().version)
            client.stopService()                         # was: reactor.stop()

        client.setConnectedCallback(lambda c: c.send(ProtoOAVersionReq()).add_done_callback(on_version))
        assert client.wait_closed(0.01) is False            # not started: nothing to wait for yet
        client.startService()
        assert client.wait_closed(10) is True               # was: reactor.run()
        assert answers == [sim.version]
        assert not any(t.is_alive() for t in client.threads())
        assert client.wait_closed(0) is True                # closed stays closed


def test_wait_closed_times_out_and_returns_when_the_client_gives_up() -> None:
    with Simulator() as sim, connected(sim) as client:
        assert client.wait_closed(0.05) is False            # still running
    with Simulator() as sim:
        port = sim.port
    client = Client("127.0.0.1", port, reconnect=ReconnectPolicy(initial=0.01, max_attempts=2))
    client.start()
    try:
        assert client.wait_closed(10) is True               # the reconnect policy gave up
        assert client.state.value == "gave up"
    finally:
        client.close()


def test_is_connected() -> None:
    with Simulator() as sim, connected(sim) as client:
        assert client.isConnected is True and client.is_connected is True
    assert client.isConnected is False


# -- sending and answers ----------------------------------------------------------------------------


def test_deferred_callbacks_become_future_calls() -> None:
    with Simulator() as sim, connected(sim) as client:
        future = client.send(ProtoOAVersionReq())
        with pytest.raises(AttributeError, match="add_done_callback"):
            future.addCallbacks(print, print)
        with pytest.raises(AttributeError, match=r"concurrent\.futures\.Future"):
            future.addErrback(print)
        done = Recorder()
        future.add_done_callback(lambda f: done(f.result()))
        answer = done.wait_for(1)[0][0]
        assert isinstance(answer, ProtoOAVersionRes) and answer == future.result(10)
        assert client.request(ProtoOAVersionReq(), 10) == answer


def test_results_are_extracted_and_extract_is_idempotent() -> None:
    old = OLD["session"]["results"]["version"]
    with Simulator() as sim, connected(sim) as client:
        future = client.send(ProtoOAVersionReq(), clientMsgId="v-1")
        result = future.result(10)
        # The old deferred gave the envelope; old code unwrapped it with Protobuf.extract.
        assert old["envelope_class"] == "ProtoMessage"
        assert type(Protobuf.extract(result)).__name__ == old["inner"] == "ProtoOAVersionRes"
        assert Protobuf.extract(result) is result
        assert result.payloadType == old["payloadType"]  # the inner message has it too
        assert future.clientMsgId == old["clientMsgId"] == "v-1"  # where the request's id now lives
        assert not hasattr(result, "clientMsgId") and not hasattr(result, "payload")
        # Old code that reads them anyway is told the migration step, not a bare AttributeError.
        with pytest.raises(AttributeError, match=r"future\.clientMsgId.*Migrating from the old SDK"):
            _ = result.clientMsgId
        with pytest.raises(AttributeError, match=r"already extracted.*Migrating from the old SDK"):
            ProtoOAVersionRes().ParseFromString(result.payload)


def test_error_answers_fail_the_future() -> None:
    old = OLD["session"]["results"]["bad_account_auth"]
    assert old["inner"] == "ProtoOAErrorRes"  # the old SDK handed it to the success callback
    with Simulator() as sim, connected(sim) as client:
        client.request(ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret), 10)
        future = client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=sim.account_ids[0], accessToken="wrong"))
        with pytest.raises(AuthenticationError) as info:
            future.result(10)
        assert isinstance(info.value, ServerError)
        assert info.value.error_code == old["errorCode"] == "CH_ACCESS_TOKEN_INVALID"
        assert type(info.value.response).__name__ == old["inner"]  # the old message is on the exception


def test_response_timeout_counts_from_writing() -> None:
    with Simulator() as sim, connected(sim) as client:
        sim.inject("drop", payload_type=2104)
        future = client.send(ProtoOAVersionReq(), responseTimeoutInSeconds=0.3)  # the old keyword
        with pytest.raises(RequestTimeoutError):
            future.result(10)
        with pytest.raises(RequestTimeoutError):
            client.send(ProtoOAVersionReq(), timeout=0.3).result(10)  # the new one


def test_send_by_name() -> None:
    old = OLD["session"]["results"]["version_by_name"]
    with Simulator() as sim, connected(sim) as client:
        result = client.send("ProtoOAVersionReq").result(10)
        assert type(result).__name__ == old["inner"]
        account = manual_login(client, sim)
        by_name = client.send("ProtoOATraderReq", ctidTraderAccountId=account).result(10)
        assert isinstance(by_name, ProtoOATraderRes) and by_name.trader.ctidTraderAccountId == account


def test_send_keywords_with_a_message_object() -> None:
    old = OLD["session"]["results"]["keywords_ignored"]
    with Simulator(spot_interval=0) as sim, connected(sim) as client:
        account = manual_login(client, sim)
        fills = Recorder()
        client.on(ProtoOAExecutionEvent, lambda e: fills(e) if e.executionType == ORDER_FILLED else None)
        accepted = client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                  tradeSide=1, volume=100000)).result(10)
        ((fill,),) = fills.wait_for(1)
        request = ProtoOAOrderListByPositionIdReq(ctidTraderAccountId=account, positionId=fill.position.positionId)
        # ConsoleSample's call: keywords whose value is None are ignored, as the old SDK ignored them
        # (it got the order list of the position; so does this, against the same simulator).
        answer = client.send(request, fromTimestamp=None, toTimestamp=None, clientMsgId=None).result(10)
        assert type(answer).__name__ == old["inner"] == "ProtoOAOrderListByPositionIdRes"
        assert len(answer.order) == old["orders"] == 1 and answer.order[0].orderId == accepted.order.orderId
        # A keyword with a value would be silently dropped: refused, naming the fix.
        with pytest.raises(TypeError, match="set them on the message object"):
            client.send(request, fromTimestamp=1)
        wire = [r for r in sim.connections[0].inbound() if r.payload_type == 2183]
        assert len(wire) == 1  # the refused call wrote nothing


def test_pending_requests_fail_on_disconnect() -> None:
    with Simulator() as sim, connected(sim) as client:
        sim.inject("drop", payload_type=2104)
        written = client.send(ProtoOAVersionReq())
        wait_until(lambda: written.written, what="the request to be written")
        sim.inject("close")
        with pytest.raises(ConnectionLostError):  # the old SDK left it hanging until its timeout
            written.result(10)
        sim.clear_faults()
        assert client.send(ProtoOAVersionReq()).result(10).version == sim.version  # reconnected


# -- callbacks and envelopes ------------------------------------------------------------------------


def _describe(message: ProtoMessage) -> dict[str, Any]:
    inner = Protobuf.extract(message)
    row: dict[str, Any] = {"envelope_class": type(message).__name__, "payloadType": message.payloadType,
                           "has_clientMsgId": message.HasField("clientMsgId"), "inner": type(inner).__name__}
    if hasattr(inner, "executionType"):
        row["executionType"] = int(inner.executionType)
    return row


def _old_session_shape() -> list[dict[str, Any]]:
    keep = ("envelope_class", "payloadType", "has_clientMsgId", "inner", "executionType")
    return [{k: r[k] for k in keep if k in r} for r in OLD["session"]["received"]]


def test_message_callback_receives_envelopes_like_the_old_sdk() -> None:
    """The old SDK's session, replayed: the callback sees the same kinds of envelopes."""
    with Simulator(heartbeat_interval=0.2, spot_interval=0) as sim, connected(sim) as client:
        seen = Recorder()
        client.setMessageReceivedCallback(lambda c, m: seen(c, _describe(m)))
        manual_login(client, sim)
        client.send(ProtoOAVersionReq(), clientMsgId="v-1").result(10)
        fills = Recorder()
        client.on(ProtoOAExecutionEvent, lambda e: fills(e) if e.executionType == ORDER_FILLED else None)
        client.send(ProtoOANewOrderReq(ctidTraderAccountId=sim.account_ids[0], symbolId=1, orderType=1,
                                       tradeSide=1, volume=100000), clientMsgId="mkt-1").result(10)
        fills.wait_for(1)
        wait_until(lambda: any(args[1]["payloadType"] == 51 for args in seen.calls), what="a server heartbeat")
        ours = [args[1] for args in seen.calls]
        assert all(args[0] is client for args in seen.calls)
    old = _old_session_shape()
    for kind in ("ProtoHeartbeatEvent", "ProtoOAApplicationAuthRes", "ProtoOAAccountAuthRes", "ProtoOAVersionRes"):
        assert [r for r in ours if r["inner"] == kind][:1] == [r for r in old if r["inner"] == kind][:1], kind
    executions = [r for r in ours if r["inner"] == "ProtoOAExecutionEvent"]
    assert executions == [r for r in old if r["inner"] == "ProtoOAExecutionEvent"]
    assert all(r["envelope_class"] == "ProtoMessage" for r in ours)


def test_old_callback_idioms_on_the_envelope() -> None:
    with Simulator(heartbeat_interval=0.2, spot_interval=0) as sim, connected(sim) as client:
        state: dict[str, Any] = {}
        done = threading.Event()

        def on_message(_: Client, message: Any) -> None:  # written as for the old SDK
            if message.payloadType == ProtoHeartbeatEvent().payloadType:
                state["heartbeat"] = True
                return
            if message.payloadType == Protobuf.get_type("ProtoOATraderRes"):
                res = ProtoOATraderRes()
                res.ParseFromString(message.payload)
                state["trader"] = res.trader.ctidTraderAccountId
                state["cid"] = message.clientMsgId
                state["extracted"] = Protobuf.extract(message)
                done.set()

        client.setMessageReceivedCallback(on_message)
        account = manual_login(client, sim)
        client.send(ProtoOATraderReq(ctidTraderAccountId=account), clientMsgId="trader-1")
        assert done.wait(10)
        wait_until(lambda: state.get("heartbeat", False), what="a heartbeat in the callback")
        assert state["trader"] == account and state["cid"] == "trader-1"
        assert isinstance(state["extracted"], ProtoOATraderRes)


def test_follow_up_events_carry_the_request_id() -> None:
    with Simulator(spot_interval=0) as sim, connected(sim) as client:
        account = manual_login(client, sim)
        envelopes = Recorder()
        client.on(ProtoOAExecutionEvent, envelopes, envelope=True)
        extracted = Recorder()
        client.on(ProtoOAExecutionEvent, extracted)
        with client.events(ProtoOAExecutionEvent, envelope=True, timeout=10) as stream:
            future = client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                    tradeSide=1, volume=100000))
            accepted = future.result(10)
            streamed = [stream.get(), stream.get()]
        rows = envelopes.wait_for(2)
        assert [Protobuf.extract(env).executionType for (env,) in rows] == [ORDER_ACCEPTED, ORDER_FILLED]
        assert {env.clientMsgId for (env,) in rows} == {future.clientMsgId}
        assert [env.clientMsgId for env in streamed] == [future.clientMsgId] * 2
        assert accepted.executionType == ORDER_ACCEPTED
        fill = Protobuf.extract(rows[1][0])
        assert fill.order.orderId == accepted.order.orderId and fill.position.positionId
        assert all(isinstance(args[0], ProtoOAExecutionEvent) for args in extracted.wait_for(2))


def test_the_readme_follow_up_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.rst").read_text()
    block = text.split("Matching follow-up events to the request that caused them", 1)[1]
    lines = []
    for line in block.split(".. code-block:: python\n\n", 1)[1].splitlines():
        if line and not line.startswith("    "):
            break  # the end of the indented block
        lines.append(line)
    exec(compile(textwrap.dedent("\n".join(lines)), "README.rst", "exec"), {})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"filled at 1\.\d+\n", printed), printed


def test_market_order_future_is_order_accepted() -> None:
    old = OLD["session"]["results"]["market_order"]
    with Simulator(spot_interval=0) as sim, connected(sim) as client:
        account = manual_login(client, sim)
        result = client.send(ProtoOANewOrderReq(ctidTraderAccountId=account, symbolId=1, orderType=1,
                                                tradeSide=1, volume=100000)).result(10)
        assert result.executionType == old["executionType"] == ORDER_ACCEPTED


def test_connection_callbacks() -> None:
    with Simulator() as sim:
        client = make_client(sim)
        up, down = Recorder(), Recorder()
        client.setConnectedCallback(up)
        client.setDisconnectedCallback(down)
        try:
            client.start()
            assert up.wait_for(1)[0] == (client,)
            client.wait_connected(10)
            sim.inject("close")
            ((who, reason),) = down.wait_for(1)
            assert who is client and isinstance(reason, ConnectionLostError)
            up.wait_for(2)  # reconnected
        finally:
            client.close()


# -- Protobuf ---------------------------------------------------------------------------------------


def test_protobuf_get_like_the_old_sdk() -> None:
    for raw, outcome in OLD["protobuf"]["get"]:
        key = _key(raw)
        if "class" in outcome:
            assert type(Protobuf.get(key)).__name__ == outcome["class"], key
    assert str(Protobuf.get("ProtoOASubscribeSpotsReq", ctidTraderAccountId=7, symbolId=[1, 2])) == \
        OLD["protobuf"]["get_fields"]
    assert Protobuf.get(9999, fail=False) is OLD["protobuf"]["get_fail_false"]["value"] is None


def test_protobuf_get_type_like_the_old_sdk() -> None:
    for raw, outcome in OLD["protobuf"]["get_type"]:
        key = _key(raw)
        if "value" in outcome:
            assert Protobuf.get_type(key) == outcome["value"], key
    assert Protobuf.get_type("ProtoOASubscribeSpotsReq", symbolId=[1]) == \
        OLD["protobuf"]["get_type_params"]["valid_field"]["value"]
    # Deliberate difference: params are ignored (the old SDK built a message and raised ValueError).
    assert OLD["protobuf"]["get_type_params"]["unknown_field"]["raises"] == "ValueError"
    assert Protobuf.get_type("ProtoOAVersionReq", clientMsgId="x") == 2104
    assert Protobuf.get_class("ProtoOAVersionReq") is ProtoOAVersionReq  # the class lookup's name


def test_protobuf_extract_like_the_old_sdk() -> None:
    envelope = Protobuf.wrap(ProtoOAVersionRes(version="91"), clientMsgId="c1")
    assert str(Protobuf.extract(envelope)) == OLD["protobuf"]["extract_envelope"]
    assert OLD["protobuf"]["extract_inner"]["raises"] == "AttributeError"
    inner = ProtoOAVersionRes(version="91")
    assert Protobuf.extract(inner) is inner  # superset: an extracted message is returned unchanged
    assert OLD["protobuf"]["extract_unknown"]["raises"] == "IndexError"
    with pytest.raises(IndexError):
        Protobuf.extract(ProtoMessage(payloadType=9999))


def test_unknown_payload_type_errors() -> None:
    for raw, outcome in OLD["protobuf"]["get_type"]:
        if outcome.get("raises") != "IndexError":
            continue
        key = _key(raw)
        if key == "PROTO_OA_VERSION_REQ":
            assert Protobuf.get_type(key) == 2104  # superset: enum names are accepted here
            continue
        with pytest.raises(IndexError):
            Protobuf.get_type(key)
        with pytest.raises(UnknownPayloadTypeError):
            Protobuf.get(key)


def test_populate() -> None:
    ours = {str(pt): cls.__name__ for pt, cls in Protobuf.populate().items()}
    old = OLD["protobuf"]["populate"]
    assert {k: ours.get(k) for k in old} == old
    assert sorted(set(ours) - set(old)) == ["2189", "2190", "2191", "2192", "2193"]  # release 91: v1 PnL change


# -- reactor idioms ---------------------------------------------------------------------------------


def test_call_later_with_threading_timer() -> None:
    with Simulator() as sim, connected(sim) as client:
        answers = Recorder()
        # reactor.callLater(0.05, send_version) becomes:
        timer = threading.Timer(0.05, lambda: answers(client.request(ProtoOAVersionReq(), 10)))
        timer.start()
        assert isinstance(answers.wait_for(1)[0][0], ProtoOAVersionRes)
        timer.join(10)


def test_looping_call_with_every() -> None:
    with Simulator() as sim, connected(sim) as client:
        answers = Recorder()
        # task.LoopingCall(poll).start(0.05) becomes:
        loop = every(0.05, lambda: answers(client.request(ProtoOAVersionReq(), 10)))
        answers.wait_for(3)
        assert loop.stop() and not loop.running
        count = loop.calls
        assert count >= 3 and loop.calls == count  # nothing runs after stop()
        assert ctrader_sync.every is every


# -- OAuth, TLS, session, process, dependencies -----------------------------------------------------


def test_auth_like_the_old_sdk(start_server: StartServer) -> None:  # noqa: F811 - pytest fixture
    old_uri = OLD["protobuf"]["auth_uri"]
    auth = ctrader_sync.Auth("123_abc", "secret", "http://localhost:8080/redirect")
    ours = auth.getAuthUri()
    # Same page, same parameters; ours URL-encodes the redirect URI (the old one did not).
    assert ours.split("?")[0] == old_uri.split("?")[0]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(ours).query) == \
        urllib.parse.parse_qs(urllib.parse.urlsplit(old_uri).query)
    server = start_server()
    assert _auth(server.token_uri).getToken("code") == TOKEN_JSON  # the token JSON, as before
    # The old keyword: another token endpoint for one call.
    assert _auth(ctrader_sync.EndPoints.TOKEN_URI).getToken("code", baseUri=server.token_uri) == TOKEN_JSON
    assert _auth(ctrader_sync.EndPoints.TOKEN_URI).refreshToken("r", baseUri=server.token_uri) == TOKEN_JSON
    assert [seen.form()["grant_type"] for seen in server.seen] == ["authorization_code"] * 2 + ["refresh_token"]
    with pytest.raises(ValueError, match="https"):
        auth.getToken("code", baseUri="http://127.0.0.1:1/apps/token")
    server.reply = Reply(body=json.dumps({"errorCode": "ACCESS_DENIED", "description": "no"}).encode())
    with pytest.raises(AuthError) as info:  # the old SDK returned this JSON as if it were a token
        _auth(server.token_uri).refreshToken("r")
    assert info.value.error_code == "ACCESS_DENIED"


def test_tls_is_verified() -> None:
    with Simulator() as sim:
        client = Client(sim.host, sim.port, reconnect=None, connect_timeout=5)  # default: verify
        client.start()
        try:
            with pytest.raises(ConnectError):
                client.wait_connected(10)
        finally:
            client.close()


def test_login_recovers_the_session() -> None:
    with Simulator() as sim, connected(sim) as client:
        account = client.login(sim.client_id, sim.client_secret, sim.access_token)[0].ctidTraderAccountId
        sim.inject("close")
        assert sim.wait_for_connections(2, 10)
        # No manual re-auth: the account request works on the new connection.
        res = client.request(ProtoOATraderReq(ctidTraderAccountId=account), 10)
        assert res.trader.ctidTraderAccountId == account and client.connection_count == 2


def test_many_clients_in_one_process() -> None:
    with Simulator() as sim:
        for _ in range(3):  # one after another, as notebook cells re-run
            with connected(sim) as client:
                assert client.request(ProtoOAVersionReq(), 10).version == sim.version
        with connected(sim) as a, connected(sim) as b:  # side by side
            assert a.request(ProtoOAVersionReq(), 10) == b.request(ProtoOAVersionReq(), 10)


def test_dependencies() -> None:
    requires = importlib.metadata.requires("ctrader_sync") or []
    runtime = sorted(re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r)
    assert runtime == ["certifi", "protobuf"]
