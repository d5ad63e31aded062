"""Protobuf: the payload-type registry, built from payloadType defaults."""

from __future__ import annotations

import pytest

from ctrader_sync import Protobuf, UnknownPayloadTypeError
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoMessage
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)


def test_registry_has_96_types_keyed_by_default_not_name() -> None:
    types = Protobuf.payload_types()
    assert len(types) == 96
    # 2149's enum name does not follow the message name.
    assert types[2149] is ProtoOAGetAccountListByAccessTokenReq
    assert Protobuf.get_class("PROTO_OA_GET_ACCOUNTS_BY_ACCESS_TOKEN_REQ") is ProtoOAGetAccountListByAccessTokenReq
    assert Protobuf.get_type("PROTO_OA_GET_ACCOUNTS_BY_ACCESS_TOKEN_REQ") == 2149
    for number, cls in types.items():
        assert cls().payloadType == number
        assert Protobuf.payload_type(cls) == number


@pytest.mark.parametrize("key", [2104, "ProtoOAVersionReq", "VersionReq", "PROTO_OA_VERSION_REQ"])
def test_get_by_number_name_short_name_and_enum_name(key: int | str) -> None:
    assert isinstance(Protobuf.get(key), ProtoOAVersionReq)
    assert Protobuf.get_class(key) is ProtoOAVersionReq
    assert Protobuf.get_type(key) == 2104  # the number, as the old SDK's get_type


def test_get_sets_fields() -> None:
    msg = Protobuf.get("ProtoOAVersionRes", version="91")
    assert isinstance(msg, ProtoOAVersionRes) and msg.version == "91"
    assert Protobuf.get("ErrorRes", errorCode="X").errorCode == "X"  # "Proto" + name


def test_unknown_name_is_a_keyerror_and_valueerror_with_close_matches() -> None:
    with pytest.raises(UnknownPayloadTypeError) as info:
        Protobuf.get("ProtoOAVersonReq")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert "ProtoOAVersonReq" in str(err) and "ProtoOAVersionReq" in err.suggestions
    assert "did you mean" in str(err)


def test_unknown_number_names_it_and_neighbours() -> None:
    with pytest.raises(KeyError) as info:
        Protobuf.get_class(9999)
    assert "9999" in str(info.value)
    with pytest.raises(IndexError):  # what the old SDK raised
        Protobuf.get_type(9999)
    with pytest.raises(ValueError):
        Protobuf.get_class(True)  # a bool is not a payload type
    with pytest.raises(UnknownPayloadTypeError):
        Protobuf.payload_type(ProtoMessage)  # the envelope class has no fixed payload type


def test_extract_wrap_and_idempotence() -> None:
    inner = ProtoOAVersionRes(version="1.2")
    envelope = Protobuf.wrap(inner, clientMsgId="c1")
    assert envelope.payloadType == 2105 and envelope.clientMsgId == "c1"
    assert Protobuf.payload_type(envelope) == 2105
    out = Protobuf.extract(envelope)
    assert out == inner and isinstance(out, ProtoOAVersionRes)
    assert Protobuf.extract(out) is out  # already extracted: unchanged
    with pytest.raises(UnknownPayloadTypeError):
        Protobuf.extract(ProtoMessage(payloadType=7777, payload=b""))


def test_payload_type_of_a_number_and_get_class_vs_get_type() -> None:
    # Callers written when get_type returned the class keep working through payload_type().
    assert Protobuf.payload_type(Protobuf.get_type("ProtoOAVersionReq")) == 2104
    assert Protobuf.payload_type(Protobuf.get_class("ProtoOAVersionReq")) == 2104
    with pytest.raises(UnknownPayloadTypeError):
        Protobuf.payload_type(9999)
    with pytest.raises(UnknownPayloadTypeError):
        Protobuf.payload_type(True)
    assert Protobuf.get_class(0) is ProtoMessage and Protobuf.get_type("ProtoMessage") == 0  # as the old SDK
    assert Protobuf.get_type(2104.0) == 2104
    with pytest.raises(UnknownPayloadTypeError):
        Protobuf.get_class(2104.5)
    assert Protobuf.get("Nope", fail=False) is None


def test_envelope_fields_on_extracted_messages_name_the_migration_step() -> None:
    """``message.clientMsgId`` / ``message.payload`` on an extracted message (what futures, ``on()``
    and ``events()`` give) raise an ``AttributeError`` that says what to do instead."""
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAExecutionEvent, ProtoOATraderRes, ProtoOAVersionRes

    for message in (ProtoOATraderRes(), ProtoOAExecutionEvent()):
        with pytest.raises(AttributeError, match=r"clientMsgId.*future\.clientMsgId.*envelope=True") as info:
            _ = message.clientMsgId
        assert info.value.name == "clientMsgId"
        with pytest.raises(AttributeError, match=r"payload.*already extracted"):
            _ = message.payload
        assert not hasattr(message, "clientMsgId") and not hasattr(message, "payload")
        assert getattr(message, "clientMsgId", None) is None
        with pytest.raises(AttributeError, match="no_such_field"):
            _ = message.no_such_field  # other names: a plain AttributeError, as before
        assert message.payloadType == Protobuf.payload_type(message)  # fields unaffected
    envelope = Protobuf.wrap(ProtoOAVersionRes(version="91"), clientMsgId="c1")
    assert envelope.clientMsgId == "c1" and isinstance(envelope.payload, bytes)  # the envelope has them
