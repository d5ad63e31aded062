"""Injected faults: what each one does to a connection, and the state the lasting ones keep.

:class:`FaultState` belongs to one connection and is only touched on its I/O thread.  It decides
what happens to each inbound message (counted against armed faults, dropped) and to each answer
(held for reordering, delayed); the actions on the connection itself go through the
:class:`FaultTarget` it is given.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from ..messages.OpenApiCommonMessages_pb2 import ProtoMessage
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOAClientDisconnectEvent,
)
from ._framing import OutItem

__all__ = ["FAULT_KINDS", "Fault", "FaultState", "FaultTarget"]

log = logging.getLogger("ctrader_sync.simulator")

FAULT_KINDS = frozenset({
    "close", "freeze", "stop_reading", "delay", "drop", "reorder", "garbage", "huge_length",
    "bad_payload", "client_disconnect_event", "token_invalidated", "account_disconnect",
})
"""Every fault :meth:`Simulator.inject` accepts."""

_IO_FAULTS = frozenset({"close", "freeze", "stop_reading", "client_disconnect_event"})
"""Faults after which the message that triggered them is not handled."""


@dataclass
class Fault:
    """A fault waiting to trigger on one connection (see :meth:`Simulator.inject`)."""

    kind: str
    after: int = 0
    payload_type: int | None = None
    delay: float = 0.0


class FaultTarget(Protocol):
    """The connection actions faults need."""

    def close_now(self) -> None:
        """Close at once, without a TLS close_notify."""

    def start_closing(self) -> None:
        """Flush what is queued, then close."""

    def push(self, message: Message) -> None:
        """Send a push event now."""

    def write_raw(self, data: bytes, payload_type: int = -1) -> None:
        """Append raw bytes to the send buffer."""

    def write_items(self, items: list[OutItem]) -> None:
        """Append ready frames to the send buffer."""

    def session_accounts(self) -> list[int]:
        """The accounts authorized on this connection, sorted."""

    def session_logout(self, account_id: int) -> None:
        """Log ``account_id`` out on this connection."""

    def default_accounts(self) -> list[int]:
        """Every simulated account id."""


class FaultState:
    """Armed and lasting faults of one connection (I/O thread only)."""

    def __init__(self, target: FaultTarget, index: int) -> None:
        self.target = target
        self.index = index
        self.armed: list[Fault] = []
        self.frozen = False
        self.reading = True
        self.delay = 0.0
        self.drop_all = False
        self.drop_types: set[int] = set()
        self.reorder = 0  # 0 off, 1 waiting for the first answer, 2 holding it
        self.held: list[OutItem] = []
        self.delayed: deque[tuple[float, list[OutItem]]] = deque()

    def add(self, fault: Fault) -> None:
        """Arm ``fault``: now when ``after`` is 0, else after that many inbound messages."""
        if fault.after <= 0:
            self.activate(fault)
        else:
            self.armed.append(fault)

    def clear(self) -> list[OutItem]:
        """Disarm everything, undo the lasting faults; return the answers held back, to send now."""
        self.armed.clear()
        self.frozen = False
        self.reading = True
        self.delay = 0.0
        self.drop_all = False
        self.drop_types.clear()
        self.reorder = 0
        held, self.held = self.held, []
        delayed = [item for _, items in self.delayed for item in items]
        self.delayed.clear()
        return delayed + held

    def activate(self, fault: Fault) -> None:
        """Apply ``fault`` now."""
        kind, t = fault.kind, self.target
        log.debug("connection %d: fault %s", self.index, kind)
        if kind == "close":
            t.close_now()
        elif kind == "freeze":
            self.frozen = True
        elif kind == "stop_reading":
            self.reading = False
        elif kind == "delay":
            self.delay = fault.delay
        elif kind == "drop":
            if fault.payload_type is None:
                self.drop_all = True
            else:
                self.drop_types.add(fault.payload_type)
        elif kind == "reorder":
            self.reorder = 1
        elif kind == "garbage":
            t.write_raw(b"\x00\x00\x00\x04\xff\xff\xff\xff")
        elif kind == "huge_length":
            t.write_raw(b"\x80\x00\x00\x00\x08\x33")
        elif kind == "bad_payload":
            body = ProtoMessage(payloadType=2105, payload=b"\xff\xff\xff").SerializeToString()
            t.write_raw(len(body).to_bytes(4, "big") + body, 2105)
        elif kind == "client_disconnect_event":
            t.push(ProtoOAClientDisconnectEvent(reason="simulated server disconnect"))
            t.start_closing()
        elif kind == "token_invalidated":
            accounts = t.session_accounts() or t.default_accounts()
            t.push(ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=accounts,
                                                        reason="simulated token invalidation"))
            for account_id in accounts:
                t.session_logout(account_id)
        elif kind == "account_disconnect":
            accounts = t.session_accounts() or t.default_accounts()[:1]
            t.push(ProtoOAAccountDisconnectEvent(ctidTraderAccountId=accounts[0]))
            t.session_logout(accounts[0])
        else:  # pragma: no cover - inject() validates kinds
            raise ValueError(kind)

    def count_message(self) -> bool:
        """Count one inbound message against armed faults; False if it must not be handled."""
        if not self.armed:
            return True
        handle = True
        still: list[Fault] = []
        fired: list[Fault] = []
        for fault in self.armed:
            fault.after -= 1
            (fired if fault.after <= 0 else still).append(fault)
        self.armed = still
        for fault in fired:
            self.activate(fault)
            if fault.kind in _IO_FAULTS:
                handle = False
        return handle and not self.frozen

    def drops(self, payload_type: int) -> bool:
        """True if requests of ``payload_type`` are dropped unanswered."""
        return self.drop_all or payload_type in self.drop_types

    def emit(self, items: list[OutItem]) -> None:
        """Send one request's answers, reordered or delayed as the faults say."""
        if not items:
            return
        if self.reorder == 1:
            self.held = items
            self.reorder = 2
            return
        if self.reorder == 2:
            items = items + self.held
            self.held = []
            self.reorder = 0
        if self.delay > 0 or self.delayed:
            self.delayed.append((time.monotonic() + self.delay, items))
            return
        self.target.write_items(items)

    def due(self, now: float) -> float:
        """Send the delayed answers now due; return when the next one is (inf: none)."""
        while self.delayed and self.delayed[0][0] <= now:
            self.target.write_items(self.delayed.popleft()[1])
        return self.delayed[0][0] if self.delayed else float("inf")
