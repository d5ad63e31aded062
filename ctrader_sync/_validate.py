"""Checks of what a user hands to the client, so that nonsense is refused where it is given.

A NaN timeout would never fire, a negative receive timeout would declare every connection dead at
once (tens of reconnects a second), a port out of range fails only later and less clearly, and a
``clientMsgId`` that is bytes or holds a lone surrogate cannot go on the wire as given.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ClientClosedError, InvalidRequestError

__all__ = ["PROCESS", "client_msg_id", "foreign_process", "optional_seconds", "port_number", "positive_seconds"]


class _Process:
    """The current process id, kept current across ``fork()`` (no system call per check)."""

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = os.getpid()

    def _forked(self) -> None:
        self.pid = os.getpid()


PROCESS = _Process()
"""``PROCESS.pid`` is this process's id; a client remembers the one that created it."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PROCESS._forked)


def foreign_process(owner: int) -> ClientClosedError:
    """The error for a client created in process ``owner`` and used in this one (after ``fork()``):
    its threads do not exist here and its connection belongs to the parent, so it must not be
    touched (a write would corrupt the parent's TLS session)."""
    return ClientClosedError(
        f"this client was created in process {owner} and cannot be used in process {PROCESS.pid} "
        "(after fork()); create a new Client in this process")


def positive_seconds(name: str, value: Any) -> float:
    """``value`` as a finite, positive number of seconds, else ``ValueError``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if not (0.0 < seconds < math.inf):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return seconds


def optional_seconds(name: str, value: Any) -> float:
    """``value`` as a finite, positive number of seconds, or 0.0 for ``None``/0 ("never"), else
    ``ValueError``."""
    if value is None or value == 0:
        return 0.0
    return positive_seconds(name, value)


def port_number(value: Any) -> int:
    """``value`` as a TCP port (1-65535), else ``ValueError``."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"port must be an integer in 1-65535, not {value!r}") from None
    if isinstance(value, bool) or (port != value and not isinstance(value, str)) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1-65535, not {value!r}")
    return port


def client_msg_id(value: Any) -> str:
    """A user's ``clientMsgId`` as the text sent on the wire, else ``InvalidRequestError``
    (bytes would go out as ``"b'...'"``; a lone surrogate cannot be encoded as UTF-8)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidRequestError(f"clientMsgId must be a str, not {type(value).__name__}")
    cid = str(value)
    try:
        cid.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"clientMsgId {cid!r} cannot be encoded as UTF-8: {exc.reason}") from None
    return cid
