"""``TcpProtocol``: the sans-I/O wire codec (no sockets, no threads).

Wire format: every frame is a 4-byte big-endian length followed by that many bytes holding one
serialized ``ProtoMessage`` {payloadType = 1 (uint32), payload = 2 (bytes), clientMsgId = 3 (string)}.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError, EncodeError, Message

from .errors import (
    FrameTooLargeError,
    InvalidRequestError,
    MessageDecodeError,
    ProtocolError,
    TruncatedStreamError,
)
from .messages.OpenApiCommonMessages_pb2 import ProtoMessage
from .protobuf import REGISTRY, TYPE_OF

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "Frame", "TcpProtocol", "decode_body", "encode_varint", "envelope_of"]

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Default cap on one frame's length (16 MiB): historical data answers can be megabytes."""

_from_string = ProtoMessage.FromString
_unpack_length = struct.Struct(">I").unpack_from
_new_frame = tuple.__new__  # Frame(...) without the Python-level namedtuple __new__
_PARSERS = {pt: cls.FromString for pt, cls in REGISTRY.items()}


class Frame(NamedTuple):
    """One decoded frame.

    ``message`` is the extracted inner message, or the raw ``ProtoMessage`` when the payload
    type is not in the schema.
    """

    payloadType: int
    clientMsgId: str | None
    message: Any


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_PREFIX: dict[type[Message], bytes] = {cls: b"\x08" + encode_varint(pt) for cls, pt in TYPE_OF.items()}
_HEAD: dict[type[Message], bytes] = {cls: prefix + b"\x12" for cls, prefix in _PREFIX.items()}
_SMALL = [bytes((i,)) for i in range(0x80)]


def _missing_fields(message: Message) -> str:
    errors: list[str] = getattr(message, "FindInitializationErrors", list)()
    return ", ".join(errors) or "?"


def _serialize(message: Message) -> bytes:
    """``SerializeToString`` with a clear error naming the missing required fields."""
    try:
        return message.SerializeToString()
    except EncodeError:
        raise InvalidRequestError(
            f"{type(message).__name__} is missing required fields: {_missing_fields(message)}") from None


class TcpProtocol:
    """Encode messages into frames and decode a byte stream into ``Frame`` items.

    The class is passed to ``Client(host, port, TcpProtocol)`` as in the old SDK; the client
    makes one instance per connection.  It can also be used on its own::

        codec = TcpProtocol()
        data = codec.encode(ProtoOAVersionReq(), clientMsgId="1")
        for payload_type, client_msg_id, message in codec.feed(data):
            ...

    Args:
        max_frame_size: the largest frame body accepted, in bytes; a length prefix above it raises
            :class:`~ctrader_sync.errors.FrameTooLargeError` before anything of the frame is buffered.
    """

    __slots__ = ("_buf", "_failed", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size <= 0:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._failed: ProtocolError | None = None

    # -- encoding -------------------------------------------------------------------------

    @staticmethod
    def encode_body(message: Message, clientMsgId: str | None = None) -> bytes:
        """Serialize ``message`` into a ``ProtoMessage`` body (no length prefix).

        ``message`` is an inner message (e.g. ``ProtoOAVersionReq``) or a ready ``ProtoMessage``.

        Raises:
            InvalidRequestError: the message is not an Open API message or misses required fields.
        """
        prefix = _PREFIX.get(type(message))
        if prefix is None:
            if isinstance(message, ProtoMessage):
                if clientMsgId is not None:
                    copy = ProtoMessage()
                    copy.CopyFrom(message)
                    copy.clientMsgId = clientMsgId
                    message = copy
                try:
                    return message.SerializeToString()
                except EncodeError:
                    raise InvalidRequestError(
                        f"ProtoMessage is missing required fields: {_missing_fields(message)}") from None
            raise InvalidRequestError(
                f"{type(message).__name__} is not an Open API message with a payload type")
        payload = _serialize(message)
        n = len(payload)
        body = prefix + b"\x12" + (bytes((n,)) if n < 0x80 else encode_varint(n)) + payload
        if clientMsgId is not None:
            cid = clientMsgId.encode("utf-8")
            m = len(cid)
            body += b"\x1a" + (bytes((m,)) if m < 0x80 else encode_varint(m)) + cid
        return body

    def encode(self, message: Message, clientMsgId: str | None = None) -> bytes:
        """Return one complete frame (length prefix + ``ProtoMessage``) for ``message``.

        Raises:
            InvalidRequestError: see :meth:`encode_body`, or the frame exceeds ``max_frame_size``.
        """
        head = _HEAD.get(type(message))
        if head is None:  # a ready ProtoMessage, or not an Open API message (the slow path explains)
            body = self.encode_body(message, clientMsgId)
            size = len(body)
            if size > self.max_frame_size:
                raise InvalidRequestError(
                    f"{type(message).__name__} encodes to {size} bytes, over the frame limit "
                    f"of {self.max_frame_size}")
            return size.to_bytes(4, "big") + body
        payload = _serialize(message)
        # Hand-built envelope, one allocation: payloadType (field 1), payload (2), clientMsgId (3).
        n = len(payload)
        n_bytes = _SMALL[n] if n < 0x80 else encode_varint(n)
        if clientMsgId is None:
            size = len(head) + len(n_bytes) + n
            if size > self.max_frame_size:
                raise InvalidRequestError(f"{type(message).__name__} encodes to {size} bytes, over the "
                                          f"frame limit of {self.max_frame_size}")
            return b"".join((size.to_bytes(4, "big"), head, n_bytes, payload))
        cid = clientMsgId.encode("utf-8")
        m = len(cid)
        m_bytes = _SMALL[m] if m < 0x80 else encode_varint(m)
        size = len(head) + len(n_bytes) + n + 1 + len(m_bytes) + m
        if size > self.max_frame_size:
            raise InvalidRequestError(f"{type(message).__name__} encodes to {size} bytes, over the "
                                      f"frame limit of {self.max_frame_size}")
        return b"".join((size.to_bytes(4, "big"), head, n_bytes, payload, b"\x1a", m_bytes, cid))

    # -- decoding -------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (part of an incomplete frame)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget buffered bytes and any earlier error (for a new connection)."""
        self._buf = bytearray()
        self._failed = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order.

        Chunks may split frames anywhere and may hold many frames; an empty chunk returns ``[]``.

        Raises:
            FrameTooLargeError: a length prefix over ``max_frame_size`` (nothing of it is buffered).
            MessageDecodeError: a body that is not a ``ProtoMessage`` or a payload that fails to parse
                (the error names the payload type).  Missing required fields are tolerated on
                receive (as protobuf's parser does); they are enforced on send.
            ProtocolError: the codec already failed; once a stream broke its framing it stays broken
                until :meth:`reset`.

            Frames decoded before the failing one in the same call are on the exception's
            ``frames`` attribute, so a caller can still deliver them.
        """
        if self._failed is not None:
            raise ProtocolError(f"stream already failed: {self._failed}")
        buf = self._buf
        if buf:
            buf += data
            view = memoryview(buf)
        else:
            view = memoryview(data)
        total = len(view)
        frames: list[Frame] = []
        pos = 0
        limit = self.max_frame_size
        try:
            while total - pos >= 4:
                length = _unpack_length(view, pos)[0]
                if length > limit:
                    raise FrameTooLargeError(length, limit)
                end = pos + 4 + length
                if end > total:
                    break
                frames.append(_decode_body(view[pos + 4:end]))
                pos = end
            rest = view[pos:].tobytes() if not buf and pos < total else None
        except ProtocolError as exc:
            view.release()
            self._failed = exc
            self._buf = bytearray()
            exc.frames = frames  # type: ignore[attr-defined]
            raise
        view.release()
        if buf:
            del buf[:pos]
        elif rest is not None:
            self._buf = bytearray(rest)
        return frames

    def eof(self) -> None:
        """Signal the end of the stream.

        Raises:
            TruncatedStreamError: the stream ended inside a frame.
        """
        if self._buf:
            n = len(self._buf)
            self._buf = bytearray()
            raise TruncatedStreamError(f"stream ended inside a frame ({n} bytes of it received)")


def envelope_of(frame: Frame | tuple[int, str | None, Any]) -> ProtoMessage:
    """The ``ProtoMessage`` envelope of a decoded frame, as the old SDK handed it to callbacks.

    ``payload`` is the inner message serialized again (it parses to an equal message; unknown
    fields are kept); ``clientMsgId`` is set only when the frame carried one.  A frame whose payload
    type is not in the schema already holds its envelope, which is returned as is.
    """
    pt, cid, message = frame
    if type(message) is ProtoMessage:
        return message
    envelope = ProtoMessage(payloadType=pt, payload=message.SerializeToString())
    if cid is not None:
        envelope.clientMsgId = cid
    return envelope


def decode_body(body: bytes) -> Frame:
    """Decode one ``ProtoMessage`` body (without the length prefix) into a :class:`Frame`."""
    return _decode_body(body)


def _decode_body(body: Any) -> Frame:
    try:
        envelope = _from_string(body)
    except DecodeError as exc:
        raise MessageDecodeError(f"frame body is not a ProtoMessage ({exc})") from None
    pt = envelope.payloadType
    cid = envelope.clientMsgId if envelope.HasField("clientMsgId") else None
    cls = _PARSERS.get(pt)
    if cls is None:
        return _new_frame(Frame, (pt, cid, envelope))
    try:
        return _new_frame(Frame, (pt, cid, cls(envelope.payload)))
    except DecodeError as exc:
        raise MessageDecodeError(
            f"payload of type {pt} ({REGISTRY[pt].__name__}) does not parse: {exc}", pt) from None

