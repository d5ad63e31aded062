"""Envelopes for old-style callbacks: built from frames only when a callback asks for them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ctrader_sync import Client, Protobuf
from ctrader_sync._codec import TcpProtocol, envelope_of
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoMessage
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOAVersionRes


def _frames() -> list[Any]:
    codec = TcpProtocol()
    data = (codec.encode(ProtoOAVersionRes(version="91"), clientMsgId="v-1")
            + codec.encode(ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=1, bid=110000))
            + len(body := ProtoMessage(payloadType=7777, payload=b"\x08\x01").SerializeToString()).to_bytes(4, "big")
            + body)
    return TcpProtocol().feed(data)


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client("127.0.0.1", 1)  # never started: only its dispatcher-side delivery is used
    yield c
    c.close()


def test_envelope_of_rebuilds_what_came_on_the_wire() -> None:
    version, spot, unknown = _frames()
    env = envelope_of(version)
    assert isinstance(env, ProtoMessage) and env.payloadType == 2105 and env.clientMsgId == "v-1"
    assert Protobuf.extract(env) == ProtoOAVersionRes(version="91")
    env = envelope_of(spot)
    assert not env.HasField("clientMsgId") and env.clientMsgId == ""  # as the old SDK showed it
    assert Protobuf.extract(env) == spot.message
    assert envelope_of(unknown) is unknown.message  # a payload type outside the schema: already an envelope


def test_callbacks_get_envelopes_or_messages_as_registered(client: Client) -> None:
    got: list[tuple[str, Any]] = []
    client.setMessageReceivedCallback(lambda c, m: got.append(("all", m)))
    client.on(ProtoOASpotEvent, lambda m: got.append(("plain", m)))
    client.on(ProtoOASpotEvent, lambda m: got.append(("env", m)), envelope=True)
    client.on(None, lambda m: got.append(("any-env", m)), envelope=True)
    frames = _frames()
    client._bus._deliver(frames)
    kinds = [(k, type(m).__name__) for k, m in got]
    assert kinds == [("all", "ProtoMessage"), ("any-env", "ProtoMessage"),
                     ("all", "ProtoMessage"), ("plain", "ProtoOASpotEvent"), ("env", "ProtoMessage"),
                     ("any-env", "ProtoMessage"),
                     ("all", "ProtoMessage"), ("any-env", "ProtoMessage")]
    spot_envelopes = [m for k, m in got if k in ("all", "env", "any-env") and m.payloadType == 2131]
    assert len(spot_envelopes) == 3 and spot_envelopes[0] is spot_envelopes[1]  # built once per frame


def test_the_fast_path_comes_back_when_envelope_callbacks_go(client: Client) -> None:
    assert not client._bus._envelopes
    handle = client.on(ProtoOASpotEvent, print, envelope=True)
    assert client._bus._envelopes
    plain = client.on(ProtoOASpotEvent, print)
    handle.remove()
    assert not client._bus._envelopes
    client.setMessageReceivedCallback(print)
    assert client._bus._envelopes
    client.setMessageReceivedCallback(None)
    assert not client._bus._envelopes
    plain.remove()
    assert client._bus._handlers == {}


def test_a_raising_envelope_callback_is_logged_and_the_rest_still_run(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    after: list[Any] = []

    def boom(envelope: Any) -> None:
        raise RuntimeError("user bug in an envelope callback")

    client.on(ProtoOASpotEvent, boom, envelope=True)
    client.on(ProtoOASpotEvent, after.append)
    with caplog.at_level(logging.ERROR, logger="ctrader_sync"):
        client._bus._deliver(_frames())
    assert "user bug in an envelope callback" in caplog.text and len(after) == 1
