"""What the simulator saw on each connection: every message in and out, with helpers for tests."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Literal, NamedTuple

from google.protobuf.message import Message

from ..messages.OpenApiMessages_pb2 import ProtoOAExecutionEvent, ProtoOATraderUpdatedEvent
from ..messages.OpenApiModelMessages_pb2 import ORDER_FILLED, ProtoOADeal
from ..protobuf import HISTORICAL_PAYLOAD_TYPES

__all__ = ["HEARTBEAT", "HISTORICAL_PAYLOAD_TYPES", "ConnectionRecord", "Record", "max_in_window"]

HEARTBEAT = 51
"""Payload type of ``ProtoHeartbeatEvent``."""



class Record(NamedTuple):
    """One message on the wire, as the simulator saw it.

    ``time`` is ``time.monotonic()`` when the message was received (``"in"``) or handed to the
    socket's send buffer (``"out"``).
    """

    time: float
    direction: Literal["in", "out"]
    payload_type: int
    client_msg_id: str | None


def max_in_window(times: list[float], window: float) -> int:
    """Return the most items of sorted ``times`` inside any half-open interval ``window`` long.

    Two items count together when the later one is less than ``window`` seconds after the earlier.
    """
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class ConnectionRecord:
    """The record of one accepted connection (kept after it closed).

    Attributes:
        index: 1-based position in accept order.
        messages: every message in and out, in order (a live list; read a copy with ``list(...)``).
        closed: set once the simulator has closed this connection, for any reason.
    """

    def __init__(self, index: int, record: bool = True) -> None:
        self.index = index
        self.messages: list[Record] = []
        self.closed = threading.Event()
        self.recording = record
        self._lock = threading.Lock()
        self._authorized: set[int] = set()
        self._subscriptions: set[int] = set()
        self.app_authorized = False
        self.inbound_count = 0
        self._events: list[Message] = []

    def __repr__(self) -> str:
        state = "closed" if self.closed.is_set() else "open"
        return f"<ConnectionRecord #{self.index} {state} messages={len(self.messages)}>"

    # -- session state, written by the connection's I/O thread ---------------------------

    @property
    def authorized_accounts(self) -> set[int]:
        """The accounts authorized on this connection now (a copy)."""
        with self._lock:
            return set(self._authorized)

    @property
    def subscriptions(self) -> set[int]:
        """The symbol ids this connection is subscribed to for spots now (a copy)."""
        with self._lock:
            return set(self._subscriptions)

    def note_account(self, account_id: int, authorized: bool) -> None:
        """Simulator internal: ``account_id`` was authorized (True) or logged out on this connection."""
        with self._lock:
            if authorized:
                self._authorized.add(account_id)
            else:
                self._authorized.discard(account_id)

    def note_subscription(self, symbol_id: int, subscribed: bool) -> None:
        """Simulator internal: this connection (un)subscribed spots of ``symbol_id``."""
        with self._lock:
            if subscribed:
                self._subscriptions.add(symbol_id)
            else:
                self._subscriptions.discard(symbol_id)

    def note_events(self, messages: Iterable[Message]) -> None:
        """Simulator internal: keep the trading events among ``messages`` sent on this connection."""
        if not self.recording:
            return
        keep = [m for m in messages if isinstance(m, (ProtoOAExecutionEvent, ProtoOATraderUpdatedEvent))]
        if keep:
            with self._lock:
                self._events.extend(keep)

    # -- queries ---------------------------------------------------------------------------

    def inbound(self) -> list[Record]:
        """Every message received, heartbeats included."""
        return [r for r in list(self.messages) if r.direction == "in"]

    def outbound(self) -> list[Record]:
        """Every message sent, heartbeats and push events included."""
        return [r for r in list(self.messages) if r.direction == "out"]

    def requests(self) -> list[Record]:
        """Every message received except heartbeats."""
        return [r for r in list(self.messages) if r.direction == "in" and r.payload_type != HEARTBEAT]

    def max_requests_in_window(self, window: float = 1.0, historical: bool = False) -> int:
        """Return the most requests received within any ``window`` seconds.

        Args:
            window: the window length in seconds.
            historical: count only historical-data requests (trendbars, ticks, deal lists, ...).
        """
        times = [r.time for r in self.requests()
                 if not historical or r.payload_type in HISTORICAL_PAYLOAD_TYPES]
        times.sort()
        return max_in_window(times, window)

    def heartbeats_received(self) -> int:
        """Return how many ``ProtoHeartbeatEvent`` the client sent."""
        return sum(1 for r in list(self.messages) if r.direction == "in" and r.payload_type == HEARTBEAT)

    def duplicate_client_msg_ids(self) -> list[str]:
        """Return the ``clientMsgId`` values the client used on more than one inbound message."""
        counts = Counter(r.client_msg_id for r in self.inbound() if r.client_msg_id is not None)
        return [cid for cid, n in counts.items() if n > 1]

    def first_time(self, direction: Literal["in", "out"], payload_type: int) -> float | None:
        """Return the time of the first message of ``payload_type`` in ``direction``, or None."""
        for r in list(self.messages):
            if r.direction == direction and r.payload_type == payload_type:
                return r.time
        return None

    # -- trading ---------------------------------------------------------------------------

    def executions(self, account_id: int | None = None) -> list[ProtoOAExecutionEvent]:
        """Every ``ProtoOAExecutionEvent`` sent on this connection (answers and pushes), in order."""
        with self._lock:
            events = list(self._events)
        return [e for e in events if isinstance(e, ProtoOAExecutionEvent)
                and (account_id is None or e.ctidTraderAccountId == account_id)]

    def fills(self, account_id: int | None = None) -> list[ProtoOADeal]:
        """The deal of every ORDER_FILLED execution sent on this connection, in order."""
        return [e.deal for e in self.executions(account_id) if e.executionType == ORDER_FILLED and e.HasField("deal")]

    def balance_changes(self, account_id: int | None = None) -> list[int]:
        """The balance (raw, in the account's ``moneyDigits``) of every ``ProtoOATraderUpdatedEvent``
        sent on this connection, in order."""
        with self._lock:
            events = list(self._events)
        return [e.trader.balance for e in events if isinstance(e, ProtoOATraderUpdatedEvent)
                and (account_id is None or e.ctidTraderAccountId == account_id)]
