"""Frames on the wire: encode a message into a length-prefixed frame, and the benchmark scanner."""

from __future__ import annotations

from google.protobuf.message import Message

from .._codec import TcpProtocol
from ..protobuf import TYPE_OF

__all__ = ["OutItem", "frame", "scan_client_msg_id"]

OutItem = tuple[bytes, int, "str | None"]
"""A ready frame with its payload type and clientMsgId (for the recording)."""


def frame(message: Message, client_msg_id: str | None = None) -> OutItem:
    """Encode ``message`` into a length-prefixed frame, with its payload type and clientMsgId."""
    body = TcpProtocol.encode_body(message, client_msg_id)
    return len(body).to_bytes(4, "big") + body, TYPE_OF[type(message)], client_msg_id


def scan_client_msg_id(body: bytes) -> bytes | None:
    """Return the raw ``clientMsgId`` field (tag included) of a ``ProtoMessage`` body, or None.

    A minimal wire-format walk for the benchmark fast path: no protobuf parsing.
    """
    pos = 0
    n = len(body)
    while pos < n:
        start = pos
        tag = body[pos]
        pos += 1
        wire = tag & 7
        value = 0
        shift = 0
        while True:  # varint: a value (wire 0) or a length (wire 2)
            b = body[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if wire == 2:
            pos += value
            if tag == 0x1A:
                return body[start:pos]
        elif wire != 0:
            return None
    return None
