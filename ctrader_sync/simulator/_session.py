"""The protocol session of one connection: authorization state, dispatch, answers and pushes.

A :class:`Session` sits between its :class:`~._transport.Connection` (below: bytes, threads) and
the request handlers (beside it, through the dispatch table); the exchange sees it as a
:class:`~._exchange.Sink`.  Its state is changed on the connection's I/O thread; ``authorized`` is
also read by other threads under the exchange's lock.
"""

from __future__ import annotations

import threading
from typing import Any

from google.protobuf.message import DecodeError, Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiCommonMessages_pb2 import ProtoErrorRes
from ..protobuf import REGISTRY
from ._framing import frame
from ._h_market import drop_spot
from ._handlers import HANDLERS
from ._options import World
from ._preamble import error_res
from ._trading import Refusal
from ._transport import Connection

__all__ = ["Session"]


class Session:
    """One connection's protocol state and its way to answer and push."""

    def __init__(self, conn: Connection, world: World) -> None:
        self.conn = conn
        self.world = world
        self.record = conn.record
        self.app_authorized = False
        self.authorized: set[int] = set()

    # -- ConnectionHooks ---------------------------------------------------------------------

    def dispatch(self, payload_type: int, payload: bytes, cid: str | None) -> None:
        """Decode and handle one request (``UNSUPPORTED_MESSAGE`` when no handler serves it)."""
        handler = HANDLERS.get(payload_type)
        cls = REGISTRY.get(payload_type)
        if handler is None or cls is None:
            self.respond(ProtoErrorRes(errorCode="UNSUPPORTED_MESSAGE",
                                       description=f"payload type {payload_type} is not supported"), cid)
            return
        try:
            message: Any = cls.FromString(payload)
        except DecodeError as exc:
            self.respond(ProtoErrorRes(errorCode="INVALID_REQUEST",
                                       description=f"{cls.__name__} does not parse: {exc}"), cid)
            return
        handler(self, message, cid)

    def accounts(self) -> list[int]:
        """The accounts authorized on this connection, sorted."""
        return sorted(self.authorized)

    def logout(self, account_id: int) -> None:
        """Forget ``account_id`` on this connection, with its subscriptions."""
        ex = self.world.exchange
        with ex.lock:
            self.authorized.discard(account_id)
            for aid, symbol_id in list(ex.spots(self)):
                if aid == account_id:
                    drop_spot(self, aid, symbol_id)
            for key in [k for k in ex.depth(self) if k[0] == account_id]:
                ex.depth(self).discard(key)
        self.record.note_account(account_id, False)

    def on_closed(self) -> None:
        """The connection closed: its session is gone (the record keeps its last state)."""
        self.world.exchange.detach(self)

    # -- Peer: answers -----------------------------------------------------------------------

    def respond(self, message: Message, client_msg_id: str | None) -> None:
        """Queue ``message`` as (part of) the answer to the request being handled."""
        self.conn.respond(message, client_msg_id)

    def error(self, cid: str | None, code: str, description: str, account_id: int | None = None) -> None:
        """Answer ``ProtoOAErrorRes``."""
        self.conn.respond(error_res(code, description, account_id), cid)

    def refuse(self, cid: str | None, account_id: int, refusal: Refusal) -> None:
        """Answer ``ProtoOAOrderErrorEvent`` for a refused trading request."""
        event = M.ProtoOAOrderErrorEvent(ctidTraderAccountId=account_id, errorCode=refusal.code,
                                         description=refusal.description)
        if refusal.order_id is not None:
            event.orderId = refusal.order_id
        if refusal.position_id is not None:
            event.positionId = refusal.position_id
        self.conn.respond(event, cid)

    def execute(self, cid: str | None, account_id: int, events: list[Message]) -> None:
        """Answer a trading request with its events (hold the exchange lock) and push them to the
        account's other connections; trader updates go without the clientMsgId."""
        for event in events:
            self.conn.respond(event, None if isinstance(event, M.ProtoOATraderUpdatedEvent) else cid)
        self.world.exchange.broadcast(account_id, events, self)
        self.record.note_events(events)

    # -- Sink --------------------------------------------------------------------------------

    def holds(self, account_id: int) -> bool:
        """True if ``account_id`` is authorized on this connection now."""
        return account_id in self.authorized

    def deliver(self, messages: list[Message], done: threading.Event | None) -> None:
        """Push ``messages`` on the connection's I/O thread (any thread may call this)."""
        items = [frame(m) for m in messages]
        self.conn.post(lambda: self._pushed(items, messages), done)

    def _pushed(self, items: list[Any], messages: list[Message]) -> None:
        self.conn.write_items(items)
        self.record.note_events(messages)

    def start_flood(self) -> bool:
        """Benchmark mode: start a spot-event flood; False when not in benchmark mode."""
        count = self.world.options.flood_count
        if self.conn.bench is None or count <= 0:
            return False
        self.conn.flood_remaining += count
        return True
