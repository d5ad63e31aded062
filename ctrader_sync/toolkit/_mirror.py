"""The live account mirror: open positions, pending orders and balance, kept from events.

How it stays right (see RELIABILITY notes in README "Trader's toolkit"):

* it listens first (``client.on``) and asks for a snapshot second (``ProtoOAReconcileReq`` for
  positions and orders, ``ProtoOATraderReq`` for the balance).  Every message reaches the
  listeners in the order the server sent it, so an execution event that comes before the snapshot
  is older than it (the snapshot replaces it) and one that comes after is newer (it is applied):
  nothing between "subscribe" and "snapshot" is lost or applied twice;
* every account re-authorisation (``ProtoOAAccountAuthRes`` for the account: session recovery
  after a reconnect, or a new ``login``) marks the mirror stale and asks for a new snapshot; a
  connection that changed without one (no ``login``) is noticed on the next read.  Changes found
  by a rebuild are reported like the others, then a ``ready`` change;
* readers (``positions``, ``orders``, ``balance``) wait until the mirror is ready on the current
  connection, within a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import RequestTimeoutError, ServerError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthRes,
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOAExecutionEvent,
    ProtoOAReconcileReq,
    ProtoOAReconcileRes,
    ProtoOATraderReq,
    ProtoOATraderRes,
    ProtoOATraderUpdatedEvent,
)
from ._changes import Change, ChangeHandle, ChangeStream
from ._trade_types import InfoLike, Order, PnL, Position, money
from ._watch import refuse_client_thread

if TYPE_CHECKING:  # pragma: no cover
    from .._client import EventHandle

__all__ = ["Mirror"]

log = logging.getLogger("ctrader_sync.toolkit")

_OPEN, _CLOSED = 1, 2
_PENDING_TYPES = frozenset({2, 3, 6})  # LIMIT, STOP, STOP_LIMIT
_ACCEPTED = 1
_RECHECK = 0.25  # how often a waiting reader re-checks the connection


class Mirror:
    """Positions, pending orders and balance of one account, kept current (see the module doc)."""

    def __init__(self, client: Any, account_id: int, lookup: Callable[[int], InfoLike | None],
                 timeout: float = 30.0) -> None:
        self._client = client
        self.account_id = account_id
        self._lookup = lookup
        self.timeout = timeout
        self._cond = threading.Condition()
        self._positions: dict[int, Any] = {}
        self._orders: dict[int, Any] = {}
        self._pnl: dict[int, PnL] = {}
        self._balance: Decimal | None = None
        self._handles: list[EventHandle] = []
        self._started = False
        self._missing: set[str] = {"reconcile", "trader"}
        self._ready = False
        self._requested_on = -1  # connection number the last snapshot request was made on
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Change], Any]] = []
        self._streams: list[ChangeStream] = []
        self.rebuilds = 0
        """How many snapshots the mirror was rebuilt from (first use included)."""

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Listen to the account's events (idempotent); the first read asks for the snapshot."""
        with self._cond:
            if self._started:
                return
            self._started = True
        client = self._client
        self._handles = [
            client.on(ProtoOAExecutionEvent, self._on_execution),
            client.on(ProtoOAReconcileRes, self._on_reconcile),
            client.on(ProtoOATraderRes, self._on_trader),
            client.on(ProtoOATraderUpdatedEvent, self._on_trader),
            client.on(ProtoOAAccountAuthRes, self._on_auth),
            client.on(ProtoOAAccountDisconnectEvent, self._on_account_lost),
            client.on(ProtoOAAccountsTokenInvalidatedEvent, self._on_account_lost),
        ]

    def stop(self) -> None:
        """Stop listening (the last state stays readable without waiting)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        with self._cond:
            self._started = False
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()

    @property
    def ready(self) -> bool:
        """True when the mirror reflects the account on the current connection."""
        with self._cond:
            return self._ready_locked()

    def _ready_locked(self) -> bool:
        client = self._client
        return self._ready and client.is_connected and self._requested_on == client.connection_count

    def _request_snapshot(self) -> None:
        """Ask for positions/orders and the balance (non-blocking; the answers reach the handlers)."""
        client = self._client
        with self._cond:
            self._ready = False
            self._missing = {"reconcile", "trader"}
            self._requested_on = client.connection_count
            self._error = None
        try:
            futures = [client.send(ProtoOAReconcileReq(ctidTraderAccountId=self.account_id), timeout=self.timeout),
                       client.send(ProtoOATraderReq(ctidTraderAccountId=self.account_id), timeout=self.timeout)]
        except Exception as exc:  # closed client, full queue
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            return
        for future in futures:
            future.add_done_callback(self._snapshot_done)

    def _snapshot_done(self, future: Any) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, ServerError):
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        elif exc is not None:
            log.debug("ctrader_sync: account %d snapshot request failed (%s); it is asked again",
                      self.account_id, exc)
            with self._cond:
                self._requested_on = -1  # ask again on the next read or re-authorisation
                self._cond.notify_all()

    def ensure_ready(self, timeout: float | None = None) -> None:
        """Start if needed and wait until the mirror is ready on the current connection.

        Raises:
            RequestTimeoutError: not ready within ``timeout`` (default: the mirror's).
            ServerError: the server refused the snapshot (e.g. the account is not authorised).
        """
        self.start()
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        client = self._client
        threads = getattr(client, "threads", None)
        if threads is not None and threading.current_thread() in threads():
            # A callback (e.g. on_change) cannot wait for the events its own thread delivers:
            # it reads what the mirror has, once it has had a first snapshot.
            if self.rebuilds:
                return
            refuse_client_thread(client, "the first read of the account mirror")
        while True:
            with self._cond:
                if self._ready_locked():
                    return
                if self._error is not None and isinstance(self._error, ServerError):
                    error, self._error = self._error, None
                    self._requested_on = -1
                    raise error
                ask = client.is_connected and self._requested_on != client.connection_count
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeoutError(f"the mirror of account {self.account_id} was not ready "
                                              f"within {wait:g} s")
                if not ask:
                    self._cond.wait(min(remaining, _RECHECK))
                    continue
            self._request_snapshot()

    # -- reading --------------------------------------------------------------------------

    def raw_positions(self) -> dict[int, Any]:
        """The open positions as ``ProtoOAPosition`` (no waiting)."""
        with self._cond:
            return dict(self._positions)

    def positions(self) -> dict[int, Position]:
        """Open positions by id, converted (no waiting: call :meth:`ensure_ready` first)."""
        with self._cond:
            raw, pnl = dict(self._positions), dict(self._pnl)
        return {pid: Position.from_proto(p, self._lookup(int(p.tradeData.symbolId)), pnl.get(pid))
                for pid, p in sorted(raw.items())}

    def orders(self) -> dict[int, Order]:
        """Pending orders by id, converted (no waiting)."""
        with self._cond:
            raw = dict(self._orders)
        return {oid: Order.from_proto(o, self._lookup(int(o.tradeData.symbolId))) for oid, o in sorted(raw.items())}

    def balance(self) -> Decimal | None:
        """The balance in the account currency (no waiting)."""
        with self._cond:
            return self._balance

    def set_pnl(self, pnl: dict[int, PnL]) -> None:
        """Record the latest unrealized P&L (shown as ``Position.pnl``)."""
        with self._cond:
            self._pnl = {pid: value for pid, value in pnl.items()}

    # -- listeners ------------------------------------------------------------------------

    def on_change(self, callback: Callable[[Change], Any]) -> ChangeHandle:
        """Call ``callback(change)`` on the client's dispatcher thread for every change."""
        self.start()
        with self._cond:
            self._callbacks = [*self._callbacks, callback]

        def remove() -> None:
            with self._cond:
                self._callbacks = [c for c in self._callbacks if c is not callback]
        return ChangeHandle(remove)

    def changes(self, timeout: float | None, maxsize: int) -> ChangeStream:
        """A :class:`ChangeStream` of every change from now on."""
        self.start()

        def detach(stream: ChangeStream) -> None:
            with self._cond:
                self._streams = [s for s in self._streams if s is not stream]
        stream = ChangeStream(timeout, maxsize, detach)
        with self._cond:
            self._streams = [*self._streams, stream]
        return stream

    def _emit(self, changes: list[Change]) -> None:
        if not changes:
            return
        with self._cond:
            callbacks, streams = self._callbacks, self._streams
        for change in changes:
            for stream in streams:
                stream.put(change)
            for callback in callbacks:
                try:
                    callback(change)
                except Exception:
                    log.exception("ctrader_sync: an on_change callback raised; the mirror continues")

    def _position(self, raw: Any) -> Position:
        return Position.from_proto(raw, self._lookup(int(raw.tradeData.symbolId)), self._pnl.get(int(raw.positionId)))

    def _order(self, raw: Any) -> Order:
        return Order.from_proto(raw, self._lookup(int(raw.tradeData.symbolId)))

    # -- handlers (dispatcher thread, in the order the server sent the messages) -------------

    def _mine(self, message: Any) -> bool:
        return int(message.ctidTraderAccountId) == self.account_id

    def _on_execution(self, event: Any) -> None:
        if not self._mine(event):
            return
        found: list[tuple[str, int | None, int | None, Any, Any, Decimal | None]] = []
        with self._cond:
            if event.HasField("position"):
                raw = event.position
                pid = int(raw.positionId)
                if raw.positionStatus == _OPEN:
                    kind = "position_changed" if pid in self._positions else "position_opened"
                    self._positions[pid] = raw
                    found.append((kind, pid, None, raw, None, None))
                elif raw.positionStatus == _CLOSED and pid in self._positions:
                    del self._positions[pid]
                    self._pnl.pop(pid, None)
                    found.append(("position_closed", pid, None, raw, None, None))
            if event.HasField("order"):
                raw = event.order
                oid = int(raw.orderId)
                if raw.orderType in _PENDING_TYPES and not raw.closingOrder:
                    if raw.orderStatus == _ACCEPTED:
                        kind = "order_changed" if oid in self._orders else "order_placed"
                        self._orders[oid] = raw
                        found.append((kind, None, oid, None, raw, None))
                    elif oid in self._orders:
                        del self._orders[oid]
                        found.append(("order_removed", None, oid, None, raw, None))
            balance = _balance_of(event)
            if balance is not None and balance != self._balance:
                self._balance = balance
                found.append(("balance", None, None, None, None, balance))
            self._cond.notify_all()
        self._emit([self._change(kind, pid, oid, pos, order, bal, event)
                    for kind, pid, oid, pos, order, bal in found])

    def _change(self, kind: str, pid: int | None, oid: int | None, pos: Any, order: Any,
                balance: Decimal | None, message: Any) -> Change:
        return Change(kind, pid, oid, self._position(pos) if pos is not None else None,
                      self._order(order) if order is not None else None, balance, message)

    def _on_reconcile(self, res: Any) -> None:
        if not self._mine(res):
            return
        positions = {int(p.positionId): p for p in res.position if p.positionStatus == _OPEN}
        orders = {int(o.orderId): o for o in res.order
                  if o.orderType in _PENDING_TYPES and not o.closingOrder and o.orderStatus == _ACCEPTED}
        with self._cond:
            old_positions, old_orders = self._positions, self._orders
            self._positions, self._orders = positions, orders
            self._pnl = {pid: v for pid, v in self._pnl.items() if pid in positions}
            changes = _diff(old_positions, positions, "position") + _diff(old_orders, orders, "order")
            became_ready = self._snapshot_part("reconcile")
            self._cond.notify_all()
        self._emit([self._change(kind, key if what == "position" else None, key if what == "order" else None,
                                 raw if what == "position" else None, raw if what == "order" else None, None, None)
                    for kind, what, key, raw in changes] + self._ready_change(became_ready))

    def _on_trader(self, message: Any) -> None:
        if not self._mine(message):
            return
        trader = message.trader
        balance = money(trader.balance, trader.moneyDigits if trader.HasField("moneyDigits") else 2)
        with self._cond:
            changed = balance != self._balance
            self._balance = balance
            became_ready = self._snapshot_part("trader") if isinstance(message, ProtoOATraderRes) else False
            self._cond.notify_all()
        self._emit(([Change("balance", balance=balance, message=message)] if changed else [])
                   + self._ready_change(became_ready))

    def _snapshot_part(self, part: str) -> bool:
        """Note that one part of the snapshot arrived; True when the mirror just became ready."""
        if not self._missing:
            return False
        self._missing.discard(part)
        if self._missing:
            return False
        self._ready = True
        self.rebuilds += 1
        return True

    def _ready_change(self, became_ready: bool) -> list[Change]:
        return [Change("ready")] if became_ready else []

    def _on_auth(self, res: Any) -> None:
        if not self._mine(res):
            return
        # A new session for the account (recovery after a reconnect, or a new login): what
        # happened while it was away is only known from a new snapshot.
        self._request_snapshot()

    def _on_account_lost(self, event: Any) -> None:
        ids = ([int(event.ctidTraderAccountId)] if isinstance(event, ProtoOAAccountDisconnectEvent)
               else [int(a) for a in event.ctidTraderAccountIds])
        if self.account_id in ids:
            with self._cond:
                self._ready = False
                self._requested_on = -1
                self._cond.notify_all()


def _diff(old: dict[int, Any], new: dict[int, Any], what: str) -> list[tuple[str, str, int, Any]]:
    opened, changed, closed = ("position_opened", "position_changed", "position_closed") if what == "position" \
        else ("order_placed", "order_changed", "order_removed")
    out = [(closed, what, key, raw) for key, raw in old.items() if key not in new]
    for key, raw in new.items():
        if key not in old:
            out.append((opened, what, key, raw))
        elif raw != old[key]:
            out.append((changed, what, key, raw))
    return out


def _balance_of(event: Any) -> Decimal | None:
    """The balance an execution event reports (after a close or a deposit/withdrawal), if any."""
    if event.HasField("deal") and event.deal.HasField("closePositionDetail"):
        detail = event.deal.closePositionDetail
        digits = detail.moneyDigits if detail.HasField("moneyDigits") else (
            event.deal.moneyDigits if event.deal.HasField("moneyDigits") else 2)
        return money(detail.balance, digits)
    if event.HasField("depositWithdraw"):
        dw = event.depositWithdraw
        return money(dw.balance, dw.moneyDigits if dw.HasField("moneyDigits") else 2)
    return None


