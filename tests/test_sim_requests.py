"""Every request a client can send gets an answer from the simulator (through a plain TLS client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from simtools import ERROR_RES, EXECUTION_EVENT, Harness, Wire, harness

from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.protobuf import WITHDRAWN_PAYLOAD_TYPES, Protobuf

ANSWERED = 40
"""Client-sent request types the simulator serves, out of the schema's 42 (the other two are the
withdrawn v1 PnL subscribe/unsubscribe requests, answered UNSUPPORTED_MESSAGE)."""


@pytest.fixture
def make() -> Iterator[Harness]:
    """Start simulators and clients; close them all and check no simulator thread survives."""
    yield from harness()


def filled(cls: type[Message], sim: Any, account: int) -> Message:
    """A request of ``cls`` with every required field set to a plausible value."""
    msg = cls()

    def fill(m: Message) -> None:
        for f in m.DESCRIPTOR.fields:
            if not f.is_required:
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                fill(getattr(m, f.name))
            elif f.name == "ctidTraderAccountId":
                setattr(m, f.name, account)
            elif f.name in ("accessToken", "refreshToken"):
                setattr(m, f.name, sim.access_token)
            elif f.type == FieldDescriptor.TYPE_STRING:
                setattr(m, f.name, "x")
            elif f.type == FieldDescriptor.TYPE_ENUM:
                setattr(m, f.name, f.enum_type.values[-1].number)
            elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                setattr(m, f.name, 1.0)
            elif f.type == FieldDescriptor.TYPE_BOOL:
                setattr(m, f.name, True)
            else:
                setattr(m, f.name, 1)
    fill(msg)
    return msg


def test_every_client_request_of_the_schema_is_answered(make: Harness) -> None:
    sim, wire = make(request_limit=0, historical_limit=0)
    (a,) = wire.login()
    requests = sorted((pt, cls) for pt, cls in Protobuf.payload_types().items() if cls.__name__.endswith("Req"))
    assert len(requests) == 42
    requests.sort(key=lambda x: x[1].__name__ == "ProtoOAAccountLogoutReq")  # logging out last
    answered, unsupported = [], []
    for pt, cls in requests:
        f = wire.call(filled(cls, sim, a))
        if f.payloadType == ERROR_RES and f.message.errorCode == "UNSUPPORTED_MESSAGE":
            unsupported.append(pt)
            assert "ProtoOAGetPositionUnrealizedPnLReq" in f.message.description
        else:
            answered.append(cls.__name__)
    assert set(unsupported) == {pt for pt in WITHDRAWN_PAYLOAD_TYPES if Protobuf.get_class(pt).__name__.endswith("Req")}
    assert len(answered) == ANSWERED, sorted(answered)
    assert frozenset(range(2189, 2194)) == Protobuf.WITHDRAWN_PAYLOAD_TYPES


def _ok(wire: Wire, message: Message, expected: int) -> Any:
    f = wire.call(message)
    assert f.payloadType == expected, f
    return f.message


def test_the_21_console_sample_commands(make: Harness) -> None:
    """The official ConsoleSample's commands, one of each, all answered without an error."""
    sim, wire = make(spot_interval=0, historical_limit=0)
    (a,) = wire.login()  # the sample's setAccount: ProtoOAAccountAuthReq
    sim.set_price("EURUSD", 1.085, 1.0851)
    now = 1_700_000_000_000
    answers = [
        _ok(wire, M.ProtoOAVersionReq(), 2105),
        _ok(wire, M.ProtoOAGetAccountListByAccessTokenReq(accessToken=sim.access_token), 2150),
        _ok(wire, M.ProtoOAAssetListReq(ctidTraderAccountId=a), 2113),
        _ok(wire, M.ProtoOAAssetClassListReq(ctidTraderAccountId=a), 2154),
        _ok(wire, M.ProtoOASymbolCategoryListReq(ctidTraderAccountId=a), 2161),
        _ok(wire, M.ProtoOASymbolsListReq(ctidTraderAccountId=a), 2115),
        _ok(wire, M.ProtoOATraderReq(ctidTraderAccountId=a), 2122),
        _ok(wire, M.ProtoOASubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]), 2128),
        _ok(wire, M.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=a, symbolId=[1]), 2130),
        _ok(wire, M.ProtoOAReconcileReq(ctidTraderAccountId=a), 2125),
        _ok(wire, M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=12,
                                           fromTimestamp=now - 7 * 86_400_000, toTimestamp=now), 2138),
        _ok(wire, M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=1,
                                          fromTimestamp=now - 60_000, toTimestamp=now), 2146),
    ]
    market = _ok(wire, M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=1, tradeSide=1,
                                            volume=100_000), EXECUTION_EVENT)
    limit = _ok(wire, M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=2, tradeSide=1,
                                           volume=100_000, limitPrice=1.08), EXECUTION_EVENT)
    stop = _ok(wire, M.ProtoOANewOrderReq(ctidTraderAccountId=a, symbolId=1, orderType=3, tradeSide=1,
                                          volume=100_000, stopPrice=1.09), EXECUTION_EVENT)
    position = wire.call(M.ProtoOAReconcileReq(ctidTraderAccountId=a)).message.position[0]
    answers += [market, limit, stop]
    pnl = _ok(wire, M.ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=a), 2188)
    details = _ok(wire, M.ProtoOAOrderDetailsReq(ctidTraderAccountId=a, orderId=limit.order.orderId), 2182)
    by_position = _ok(wire, M.ProtoOAOrderListByPositionIdReq(ctidTraderAccountId=a,
                                                              positionId=position.positionId), 2184)
    cancel = _ok(wire, M.ProtoOACancelOrderReq(ctidTraderAccountId=a, orderId=stop.order.orderId), EXECUTION_EVENT)
    close = _ok(wire, M.ProtoOAClosePositionReq(ctidTraderAccountId=a, positionId=position.positionId,
                                                volume=100_000), EXECUTION_EVENT)
    wire.answer(f"c{wire.n}")  # the close's ORDER_FILLED
    deal_id = wire.call(M.ProtoOADealListReq(ctidTraderAccountId=a)).message.deal[-1].dealId
    offsets = _ok(wire, M.ProtoOADealOffsetListReq(ctidTraderAccountId=a, dealId=deal_id), 2186)
    answers += [pnl, details, by_position, cancel, close, offsets]
    assert len(answers) == 21
    assert [p.positionId for p in pnl.positionUnrealizedPnL] == [position.positionId]
    assert len(by_position.order) == 1 and cancel.executionType == 5 and close.executionType == 2
    assert len(offsets.offsetting) == 1


def test_readme_simulator_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The trading example in README's simulator section runs and prints what it says."""
    text = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    section = text[text.index("Testing your bot with the simulator"):text.index("\nPerformance\n")]
    blocks = section.split(".. code-block:: python\n\n")[1:]
    example = next(b for b in blocks if "set_price" in b)
    code = "\n".join(line[4:] for line in example.splitlines() if line.startswith("    ") or not line.strip())
    code = code[:code.index("\n\n\n")] if "\n\n\n" in code else code
    exec(compile(code, "README.rst", "exec"), {})
    assert capsys.readouterr().out.split() == ["101000", "11004.0"]


def test_reference_profile_leverage_and_margin_calls(make: Harness) -> None:
    sim, wire = make(spot_interval=0)
    a, b = wire.login(accounts=2)
    other = make.wire(sim)
    other.login(accounts=1)
    classes = _ok(wire, M.ProtoOAAssetClassListReq(ctidTraderAccountId=a), 2154).assetClass
    categories = _ok(wire, M.ProtoOASymbolCategoryListReq(ctidTraderAccountId=a), 2161).symbolCategory
    symbols = _ok(wire, M.ProtoOASymbolsListReq(ctidTraderAccountId=a), 2115).symbol
    assert {c.assetClassId for c in categories} <= {c.id for c in classes}
    assert {s.symbolCategoryId for s in symbols} <= {c.id for c in categories}
    details = _ok(wire, M.ProtoOASymbolByIdReq(ctidTraderAccountId=a, symbolId=[1]), 2117).symbol[0]
    leverage = _ok(wire, M.ProtoOAGetDynamicLeverageByIDReq(ctidTraderAccountId=a, leverageId=details.leverageId),
                   2178).leverage
    assert leverage.leverageId == details.leverageId and len(leverage.tiers) >= 1
    profile = _ok(wire, M.ProtoOAGetCtidProfileByTokenReq(accessToken=sim.access_token), 2152).profile
    assert profile.userId > 0
    calls = _ok(wire, M.ProtoOAMarginCallListReq(ctidTraderAccountId=a), 2168).marginCall
    assert [c.marginCallType for c in calls] == [61, 62, 63]
    update = M.ProtoOAMarginCallUpdateReq(ctidTraderAccountId=a)
    update.marginCall.marginCallType = 62
    update.marginCall.marginLevelThreshold = 80.0
    _ok(wire, update, 2170)
    event = other.next(lambda f: f.payloadType == 2171)
    assert event.clientMsgId is None and event.message.marginCall.marginLevelThreshold == 80.0
    calls = _ok(wire, M.ProtoOAMarginCallListReq(ctidTraderAccountId=a), 2168).marginCall
    assert [c.marginLevelThreshold for c in calls] == [100.0, 80.0, 50.0]
    assert _ok(wire, M.ProtoOAMarginCallListReq(ctidTraderAccountId=b), 2168).marginCall[1].marginLevelThreshold \
        == 70.0, "margin calls are per account"
    logout = _ok(wire, M.ProtoOAAccountLogoutReq(ctidTraderAccountId=b), 2163)
    assert logout.ctidTraderAccountId == b and sim.connections[0].authorized_accounts == {a}
