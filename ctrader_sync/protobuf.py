"""The payload-type registry: ``Protobuf`` (public, compatible with the old SDK's helper).

The registry is built from each message's ``payloadType`` default, never from names: names and
numbers do not follow one rule (2149, ``PROTO_OA_GET_ACCOUNTS_BY_ACCESS_TOKEN_REQ``, is
``ProtoOAGetAccountListByAccessTokenReq``).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from google.protobuf.message import Message

from .errors import InvalidRequestError, UnknownPayloadTypeError
from .messages import (
    OpenApiCommonMessages_pb2,
    OpenApiCommonModelMessages_pb2,
    OpenApiMessages_pb2,
    OpenApiModelMessages_pb2,
)
from .messages.OpenApiCommonMessages_pb2 import ProtoMessage

__all__ = ["HISTORICAL_PAYLOAD_TYPES", "WITHDRAWN_PAYLOAD_TYPES", "PayloadKey", "Protobuf"]

PayloadKey = int | str
"""A payload type number, a message name (``"ProtoOAVersionReq"``), its short form
(``"VersionReq"``) or the payload type's enum name (``"PROTO_OA_VERSION_REQ"``)."""

_MODULES = (
    OpenApiCommonModelMessages_pb2,
    OpenApiCommonMessages_pb2,
    OpenApiModelMessages_pb2,
    OpenApiMessages_pb2,
)


def _build() -> tuple[dict[int, type[Message]], dict[str, type[Message]], dict[type[Message], int]]:
    by_type: dict[int, type[Message]] = {}
    by_name: dict[str, type[Message]] = {}
    type_of: dict[type[Message], int] = {}
    for module in _MODULES:
        for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
            field = descriptor.fields_by_name.get("payloadType")
            if field is None or not field.has_default_value:
                continue  # ProtoMessage (the envelope) and model messages
            number = int(field.default_value)
            cls: type[Message] = getattr(module, name)
            if number in by_type:  # pragma: no cover - a schema error, caught by tests
                raise RuntimeError(f"payload type {number} used by {by_type[number].__name__} and {name}")
            by_type[number] = cls
            type_of[cls] = number
            by_name[name] = cls
            by_name[field.enum_type.values_by_number[number].name] = cls
    return by_type, by_name, type_of


_BY_TYPE, _BY_NAME, _TYPE_OF = _build()

_MIGRATION = "see README.rst, 'Migrating from the old SDK'"
_ENVELOPE_HINTS = {
    "clientMsgId": "ctrader_sync gives answers and events already extracted from their ProtoMessage "
                   "envelope, which carried the id: a request's id is future.clientMsgId; for a received "
                   "message's id use client.on(..., envelope=True), client.events(..., envelope=True) or "
                   "setMessageReceivedCallback (they give envelopes)",
    "payload": "the message is already extracted from its ProtoMessage envelope: use its fields directly "
               "(no ParseFromString(message.payload) or Protobuf.extract needed); for envelopes use "
               "client.on(..., envelope=True) or setMessageReceivedCallback",
}
_HOT_EVENTS = ("ProtoOASpotEvent", "ProtoOADepthEvent", "ProtoHeartbeatEvent")
"""Left without the hint: a class ``__getattr__`` doubles the cost of every field read (upb's
attribute lookup then goes through Python's hook), and these arrive by the thousand."""


def _envelope_field_hint(self: Message, name: str) -> Any:
    """Called only when normal attribute lookup failed: name the migration step for the envelope's
    fields (``clientMsgId``, ``payload``), a plain ``AttributeError`` for anything else."""
    hint = _ENVELOPE_HINTS.get(name)
    if hint is None:
        raise AttributeError(name, name=name, obj=self)
    raise AttributeError(f"{type(self).__name__} has no {name!r}: {hint}; {_MIGRATION}", name=name, obj=self)


for _cls in _BY_TYPE.values():
    if _cls.__name__ not in _HOT_EVENTS:
        _cls.__getattr__ = _envelope_field_hint  # type: ignore[attr-defined]


class Protobuf:
    """Look up, build and unwrap Open API messages by payload type or name.

    All methods are class methods; the class is never instantiated (as in the old SDK).  The old
    SDK's methods keep their meaning: :meth:`get` builds a message, :meth:`get_type` returns the
    payload-type **number**, :meth:`extract` unwraps a ``ProtoMessage`` envelope and
    :meth:`populate` returns the registry.  :meth:`get_class` is the class lookup.

    Keys: a payload type number (``2104``), a message name (``"ProtoOAVersionReq"``), its short
    form (``"VersionReq"``, ``"HeartbeatEvent"``) or the payload type's enum name
    (``"PROTO_OA_VERSION_REQ"``).  As in the old SDK, ``0``, ``"ProtoMessage"`` and ``"Message"``
    name the envelope class ``ProtoMessage``.

    Withdrawn messages: payload types 2189-2193 (the v1 PnL-change messages) are part of schema
    release 91 and still encode and decode here, but were removed upstream afterwards; they are
    listed in ``Protobuf.WITHDRAWN_PAYLOAD_TYPES``.  Use ``ProtoOAGetPositionUnrealizedPnLReq``.
    """

    WITHDRAWN_PAYLOAD_TYPES: frozenset[int] = frozenset({2189, 2190, 2191, 2192, 2193})
    """Payload types withdrawn upstream after release 91 (see the class docstring)."""

    @staticmethod
    def get_class(payload: PayloadKey) -> type[Message]:
        """Return the message class for a payload type number or name.

        Raises:
            UnknownPayloadTypeError: (a ``KeyError``, ``IndexError`` and ``ValueError``) naming the key
                and close matches.
        """
        if isinstance(payload, bool):
            raise UnknownPayloadTypeError(payload)
        if isinstance(payload, float):  # the old SDK's dict lookup accepted 2104.0
            if not (math.isfinite(payload) and payload == int(payload)):
                raise UnknownPayloadTypeError(payload)
            payload = int(payload)
        if isinstance(payload, int):
            cls = _BY_TYPE.get(payload)
            if cls is None:
                if payload == 0:
                    return ProtoMessage
                near = sorted(_BY_TYPE, key=lambda n: abs(n - payload))[:3]
                raise UnknownPayloadTypeError(payload, [f"{n} ({_BY_TYPE[n].__name__})" for n in near])
            return cls
        if isinstance(payload, str):
            for candidate in (payload, "ProtoOA" + payload, "Proto" + payload):
                cls = _BY_NAME.get(candidate)
                if cls is not None:
                    return cls
            if payload in ("ProtoMessage", "Message"):
                return ProtoMessage
            raise UnknownPayloadTypeError(payload, difflib.get_close_matches(payload, list(_BY_NAME), n=3))
        raise UnknownPayloadTypeError(payload)

    @classmethod
    def get_type(cls, payload: PayloadKey, **params: Any) -> int:
        """Return the payload type **number** for a payload type number or name (as the old SDK).

        ``Protobuf.get_type("ProtoOATraderRes") == 2122``, so the old idiom
        ``message.payloadType == Protobuf.get_type("ProtoOATraderRes")`` works.  ``params`` are
        accepted and ignored: the number does not depend on them.  (The old SDK built a message with
        them, so there a field the message lacks raised ``ValueError``; here it does not.)

        Raises:
            UnknownPayloadTypeError: (a ``KeyError``, ``IndexError`` and ``ValueError``) unknown key.
        """
        message_class = cls.get_class(payload)
        if message_class is ProtoMessage:
            return 0
        return _TYPE_OF[message_class]

    @classmethod
    def get(cls, payload: PayloadKey, fail: bool = True, **fields: Any) -> Any:
        """Build a message of the given payload type or name, with ``fields`` set.

        ``Protobuf.get("ProtoOAVersionReq")``, ``Protobuf.get(2104)`` and
        ``Protobuf.get("VersionReq")`` all build a ``ProtoOAVersionReq``.

        Args:
            fail: as in the old SDK, ``False`` returns ``None`` for an unknown payload type or name
                instead of raising.

        Raises:
            UnknownPayloadTypeError: no message has that payload type or name (an ``IndexError``, as
                the old SDK raised, and a ``KeyError`` and ``ValueError``).
            InvalidRequestError: (a ``ValueError``) a field that does not exist, or a value of the
                wrong type or out of its range (e.g. ``2**70`` for an ``int64``, an unknown enum value).
        """
        if fail:
            message_class = cls.get_class(payload)
        else:
            try:
                message_class = cls.get_class(payload)
            except UnknownPayloadTypeError:
                return None
        try:
            return message_class(**fields)
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(f"{message_class.__name__}: {exc}") from None

    @staticmethod
    def payload_type(message: Message | type[Message] | int) -> int:
        """Return the payload type number of a message or message class.

        For a ``ProtoMessage`` envelope, its ``payloadType`` field; a known payload type number is
        returned as is (so ``payload_type(get_type(...))`` works).
        """
        if isinstance(message, int):
            if isinstance(message, bool) or message not in _BY_TYPE:
                raise UnknownPayloadTypeError(message)
            return message
        if isinstance(message, ProtoMessage):
            return int(message.payloadType)
        cls = message if isinstance(message, type) else type(message)
        number = _TYPE_OF.get(cls)
        if number is None:
            raise UnknownPayloadTypeError(getattr(cls, "__name__", repr(cls)))
        return number

    @classmethod
    def extract(cls, message: Message) -> Message:
        """Return the inner message of a ``ProtoMessage`` envelope.

        A message that is not an envelope (already extracted: what futures, ``on()`` and
        ``events()`` give) is returned unchanged, so old code calling ``extract`` on everything it
        receives works with both.  (The old SDK raised ``AttributeError`` for an extracted message.)

        Raises:
            UnknownPayloadTypeError: the envelope's payload type is not in the schema.
            google.protobuf.message.DecodeError: the payload does not parse.
        """
        if not isinstance(message, ProtoMessage):
            return message
        inner = cls.get_class(int(message.payloadType))()
        inner.ParseFromString(message.payload)
        return inner

    @staticmethod
    def wrap(message: Message, clientMsgId: str | None = None) -> ProtoMessage:
        """Wrap an inner message into a ``ProtoMessage`` envelope (with an optional ``clientMsgId``)."""
        if isinstance(message, ProtoMessage):
            return message
        envelope = ProtoMessage(payloadType=Protobuf.payload_type(message),
                                payload=message.SerializeToString())
        if clientMsgId is not None:
            envelope.clientMsgId = clientMsgId
        return envelope

    @staticmethod
    def payload_types() -> dict[int, type[Message]]:
        """Return a copy of the registry: payload type number -> message class (96 entries)."""
        return dict(_BY_TYPE)

    @staticmethod
    def populate() -> dict[int, type[Message]]:
        """The old SDK's name: the registry (a copy), with ``0`` for the ``ProtoMessage`` envelope as there."""
        return {0: ProtoMessage, **_BY_TYPE}


HISTORICAL_PAYLOAD_TYPES = frozenset(_TYPE_OF[cls] for cls in (
    OpenApiMessages_pb2.ProtoOAGetTrendbarsReq,
    OpenApiMessages_pb2.ProtoOAGetTickDataReq,
    OpenApiMessages_pb2.ProtoOADealListReq,
    OpenApiMessages_pb2.ProtoOACashFlowHistoryListReq,
    OpenApiMessages_pb2.ProtoOADealListByPositionIdReq,
    OpenApiMessages_pb2.ProtoOAOrderListReq,
))
"""Historical-data requests: they count against the 5/s limit as well as the general 50/s one (the
first three per the API documentation, the others assumed; the client and the simulator share this)."""

WITHDRAWN_PAYLOAD_TYPES = Protobuf.WITHDRAWN_PAYLOAD_TYPES
# 2189 ProtoOAv1PnLChangeEvent, 2190/2191 ProtoOAv1PnLChangeSubscribeReq/Res,
# 2192/2193 ProtoOAv1PnLChangeUnSubscribeReq/Res
"""The v1 PnL-change messages: in schema release 91 (kept, so they still encode and decode) but
withdrawn upstream afterwards (upstream ``main`` no longer compiles them).  Do not build on them:
ask ``ProtoOAGetPositionUnrealizedPnLReq`` for unrealized P&L instead.  The simulator answers their
requests ``UNSUPPORTED_MESSAGE``."""

# Exposed for the codec (hot path): direct dict access, no method call.
REGISTRY = _BY_TYPE
TYPE_OF = _TYPE_OF
