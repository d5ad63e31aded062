"""Orders that return what happened: placing, waiting for the fill, and certain outcomes.

Every request goes the same way: validate and normalise first (nothing is written for a bad
volume or an unknown symbol), open an :class:`ExecutionWatch` *before* writing, send, then wait
for the event that settles it (ORDER_FILLED after any partial fills for a market order,
ORDER_ACCEPTED for a pending one, ...).  A refusal raises ``OrderError`` with the server's code and
ids.  When the answer is lost (``ConnectionLostError``, timeout, or a reconnect while waiting),
the order is looked up on the server (:mod:`._outcome`) and the truth is returned or raised:
``OrderNotPlacedError`` when the server has no such order, ``OrderOutcomeUnknownError`` only when
it could not be asked within the call's timeout.  Nothing is ever re-sent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from ..errors import (
    ClientClosedError,
    ConnectionLostError,
    InvalidRequestError,
    OrderError,
    OrderNotPlacedError,
    OrderOutcomeUnknownError,
    RequestTimeoutError,
)
from ..messages.OpenApiMessages_pb2 import ProtoOAExecutionEvent
from ._outcome import Lookup, OutcomeUnknown, Snapshot
from ._refusals import bad_volume
from ._trade_types import Fill, Order, fill_from_events
from ._watch import ExecutionWatch, LostConnection, refuse_client_thread

__all__ = ["ANSWER_SHARE", "Desk", "new_client_order_id"]

ACCEPTED, FILLED, REPLACED, CANCELLED, EXPIRED, REJECTED, CANCEL_REJECTED, PARTIAL = 2, 3, 4, 5, 6, 7, 8, 11
_ST_ACCEPTED, _ST_FILLED, _ST_REJECTED, _ST_EXPIRED, _ST_CANCELLED = 1, 2, 3, 4, 5
_STATUS_NAMES = {_ST_REJECTED: "ORDER_REJECTED", _ST_EXPIRED: "ORDER_EXPIRED", _ST_CANCELLED: "ORDER_CANCELLED"}
ANSWER_SHARE = 2.0 / 3.0
"""Share of a call's timeout spent waiting for the answer; the rest is kept to learn the truth."""
_REMEMBERED = 10_000

Decision = Callable[[list[Any]], Any]
"""Looks at the events collected so far; returns the outcome (or raises) once they settle it."""


def new_client_order_id() -> str:
    """A unique ``clientOrderId`` for one order."""
    return "cts-" + uuid.uuid4().hex[:24]


def _order_error(event: Any, default: str) -> OrderError:
    order = event.order if event.HasField("order") else None
    code = event.errorCode if event.HasField("errorCode") and event.errorCode else default
    return OrderError(code, f"the server answered {default}",
                      order_id=int(order.orderId) if order is not None and order.orderId else None,
                      position_id=int(event.position.positionId) if event.HasField("position") else None,
                      response=event)


class Desk:
    """Sends one account's trading requests and settles each one (see the module doc)."""

    def __init__(self, client: Any, account_id: int, resolve: Callable[[int], Any]) -> None:
        self.client = client
        self.account_id = account_id
        self._resolve = resolve  # symbol id -> SymbolInfo (or None)
        self.lookup = Lookup(client, account_id)
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, int] = OrderedDict()  # clientOrderId -> when sent (ms)

    def sent_at(self, client_order_id: str) -> int | None:
        """When this desk sent the order with ``client_order_id`` (epoch ms), if it did."""
        with self._lock:
            return self._sent.get(client_order_id)

    def _remember(self, client_order_id: str, sent_ms: int) -> None:
        with self._lock:
            self._sent[client_order_id] = sent_ms
            while len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)

    # -- new orders -------------------------------------------------------------------------

    def place(self, request: Any, timeout: float, *, want_fill: bool) -> Fill | Order:
        """Send a ``ProtoOANewOrderReq`` (with its ``clientOrderId`` set) and settle it.

        ``want_fill``: wait for the fill (market orders) instead of the acceptance (pending ones).
        """
        coid = request.clientOrderId
        info = self._resolve(int(request.symbolId))
        known: dict[str, int] = {}

        def mine(event: Any) -> bool:
            if not event.HasField("order"):
                return False
            order = event.order
            return order.clientOrderId == coid or (known.get("order") == int(order.orderId) > 0)

        def decide(events: list[Any]) -> Fill | Order | None:
            ours = [e for e in events if mine(e)]
            for event in ours:
                if event.order.orderId:
                    known["order"] = int(event.order.orderId)
                if event.executionType == REJECTED:
                    raise _order_error(event, "ORDER_REJECTED")
            if not ours:
                return None
            last = ours[-1]
            if not want_fill:
                if last.executionType in (ACCEPTED, FILLED, PARTIAL, REPLACED):
                    return Order.from_proto(last.order, info)
                if last.executionType in (CANCELLED, EXPIRED):
                    raise _order_error(last, "ORDER_CANCELLED" if last.executionType == CANCELLED else "ORDER_EXPIRED")
                return None
            fills = [e for e in ours if e.executionType in (FILLED, PARTIAL)]
            if last.executionType == FILLED or (last.executionType in (CANCELLED, EXPIRED) and fills):
                return fill_from_events(fills, info, coid)
            if last.executionType in (CANCELLED, EXPIRED):
                raise _order_error(last, "ORDER_CANCELLED" if last.executionType == CANCELLED else "ORDER_EXPIRED")
            return None

        def settle(snapshot: Snapshot) -> Fill | Order | None:
            order = snapshot.find(lambda o: o.clientOrderId == coid)
            if order is None:
                raise OrderNotPlacedError(coid)
            known["order"] = int(order.orderId)
            return self.from_lookup(order, snapshot, info, coid, want_fill)

        result: Fill | Order = self._run(request, timeout, decide, settle, coid, known)
        return result

    def from_lookup(self, order: Any, snapshot: Snapshot, info: Any, coid: str,
                    want_fill: bool) -> Fill | Order | None:
        """What a looked-up order means for the caller (``None``: not settled yet, keep waiting)."""
        status = int(order.orderStatus)
        executed = int(order.executedVolume) if order.HasField("executedVolume") else 0
        if not want_fill:
            if status == _ST_REJECTED:
                raise OrderError("ORDER_REJECTED", "the server rejected the order", order_id=int(order.orderId))
            return Order.from_proto(order, info)
        if status == _ST_FILLED or (status in (_ST_CANCELLED, _ST_EXPIRED) and executed):
            event = ProtoOAExecutionEvent(ctidTraderAccountId=self.account_id, executionType=cast(Any, FILLED),
                                          order=order)
            position = snapshot.positions.get(int(order.positionId)) if order.HasField("positionId") else None
            if position is not None:
                event.position.CopyFrom(position)
            return fill_from_events([event], info, coid, recovered=True)
        if status == _ST_ACCEPTED:
            return None  # accepted, not filled yet: its fill will come on this connection
        raise OrderError(_STATUS_NAMES.get(status, "ORDER_REJECTED"), "the order did not execute",
                         order_id=int(order.orderId))

    # -- the common path --------------------------------------------------------------------

    def _run(self, request: Any, timeout: float, decide: Decision, settle: Callable[[Snapshot], Any],
             coid: str, known: dict[str, int]) -> Any:
        """Watch, send, wait; on a lost answer look the outcome up (never re-send)."""
        client = self.client
        refuse_client_thread(client, "a trading call")
        start = time.monotonic()
        deadline = start + timeout
        answer_deadline = start + timeout * ANSWER_SHARE
        sent_ms = int(time.time() * 1000)
        with ExecutionWatch(client, self.account_id) as watch:
            if coid:
                self._remember(coid, sent_ms)
            future = client.send(request, timeout=max(0.05, answer_deadline - time.monotonic()))
            lost: BaseException | None = None
            try:
                first = future.result(max(0.05, answer_deadline - time.monotonic()) + 1.0)
                if first.HasField("order") and first.order.orderId:
                    known.setdefault("order", int(first.order.orderId))
            except OrderError:
                raise
            except (ConnectionLostError, RequestTimeoutError, TimeoutError, ClientClosedError) as exc:
                lost = exc
            if lost is None:
                try:
                    outcome = watch.wait(decide, answer_deadline)
                except LostConnection:
                    outcome = None
                    lost = ConnectionLostError("the connection was lost before the order was settled")
                if outcome is not None:
                    return outcome
                if lost is None:
                    lost = RequestTimeoutError("accepted, but not settled within the time left for the answer")
            else:
                outcome = decide(watch.events())  # events read before the loss may settle it
                if outcome is not None:
                    return outcome
            return self._recover(watch, decide, settle, coid, known, sent_ms, deadline, lost)

    def _recover(self, watch: ExecutionWatch, decide: Decision, settle: Callable[[Snapshot], Any], coid: str,
                 known: dict[str, int], sent_ms: int, deadline: float, lost: BaseException | None) -> Any:
        """The answer was lost: look the request up (repeating across reconnects) until settled."""
        while True:
            try:
                snapshot = self.lookup.snapshot(sent_ms, deadline)
            except OutcomeUnknown as exc:
                raise OrderOutcomeUnknownError(
                    coid, f"the answer to order {coid or known.get('order')!r} was lost ({lost}) and its outcome "
                    f"could not be learned in time ({exc}); ask again with Account.find_order()",
                    order_id=known.get("order")) from lost
            watch.rebase()
            outcome = decide(watch.events())
            if outcome is None:
                outcome = settle(snapshot)
            if outcome is not None:
                return outcome
            try:  # known but not settled: its events come on the new connection
                outcome = watch.wait(decide, deadline)
            except LostConnection:
                continue
            if outcome is not None:
                return outcome
            raise OrderOutcomeUnknownError(
                coid, f"order {coid or known.get('order')!r} was accepted but not settled within the timeout",
                order_id=known.get("order"))

    # -- requests on existing positions and orders ----------------------------------------

    def settle_existing(self, request: Any, timeout: float, decide: Decision,
                        settle: Callable[[Snapshot], Any], known: dict[str, int]) -> Any:
        """Send a close/amend/cancel request (no ``clientOrderId``) and settle it the same way.

        ``known["order"]`` is set to the order id of the first answer, when it has one.
        """
        return self._run(request, timeout, decide, settle, "", known)


def units_of(info: Any, lots: Any, volume: Any) -> int:
    """Protocol volume (cents) for exactly one of ``lots`` or ``volume`` (units), normalised by the
    symbol's min/step/max *before* anything is sent.

    Raises:
        ValueError: neither or both given.
        OrderArgumentError: outside the symbol's limits (an ``InvalidRequestError``, so a
            ``ValueError``, and an ``OrderError`` with ``error_code`` ``"TRADING_BAD_VOLUME"``).
    """
    if (lots is None) == (volume is None):
        raise ValueError("give exactly one of lots= or volume= (units)")
    if lots is not None:
        units = Decimal(info.lots_to_volume(lots)) / 100
    else:
        units = Decimal(repr(volume)) if isinstance(volume, float) else Decimal(volume)
    try:
        normal = info.normalize_volume(units)
    except InvalidRequestError as exc:
        raise bad_volume(exc) from None
    return int(info.units_to_volume(normal))
