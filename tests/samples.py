"""Build a valid, populated instance of any Open API message (every field set, recursively)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _value(field: FieldDescriptor, seed: int) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values
        return values[seed % len(values)].number
    if t == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{seed}-é"
    if t == FieldDescriptor.TYPE_BYTES:
        return bytes(range(seed % 7 + 1))
    if t == FieldDescriptor.TYPE_BOOL:
        return seed % 2 == 0
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return seed + 0.5
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        return 1_000_000 + seed
    return -(1_000_000 + seed) if seed % 3 == 0 else 1_000_000 + seed


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def fill(message: Message, seed: int = 1, depth: int = 0) -> Message:
    """Set every field of ``message`` (two items for repeated fields) and return it."""
    for field in message.DESCRIPTOR.fields:
        if field.name == "payloadType":
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 3:
                continue
            if _repeated(field):
                for i in range(2):
                    fill(getattr(message, field.name).add(), seed + i, depth + 1)
            else:
                fill(getattr(message, field.name), seed, depth + 1)
        elif _repeated(field):
            getattr(message, field.name).extend([_value(field, seed), _value(field, seed + 1)])
        else:
            setattr(message, field.name, _value(field, seed))
    return message
