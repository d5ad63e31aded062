"""The trading half of :class:`~ctrader_sync.toolkit.Account` (orders, positions, P&L, quotes, depth).

``TradingMixin`` relies on ``self.client``, ``self.id``, ``self.symbols`` (a
:class:`~ctrader_sync.toolkit.SymbolCatalog`), ``self.timeout`` and ``self._lock``, which
``Account`` provides.  Each method is thin: the work is in :mod:`._orders` / :mod:`._existing`
(trading and certain outcomes), :mod:`._mirror` (positions, orders, balance), :mod:`._pnl`,
:mod:`._quotes` and :mod:`._depth`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

from ..errors import OrderError, OrderOutcomeUnknownError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOANewOrderReq,
    ProtoOAReconcileReq,
    ProtoOASubscribeDepthQuotesReq,
    ProtoOASubscribeSpotsReq,
    ProtoOAUnsubscribeDepthQuotesReq,
    ProtoOAUnsubscribeSpotsReq,
)
from . import _existing
from ._changes import Change, ChangeHandle, ChangeStream
from ._depth import DepthBook
from ._feeds import Feed
from ._mirror import Mirror
from ._orders import Desk, new_client_order_id, units_of
from ._outcome import OutcomeUnknown
from ._pnl import PnLRefresher, closed_positions, fetch_unrealized
from ._quotes import Quotes
from ._refusals import resolve_for_order
from ._trade_types import ClosedPosition, Fill, Order, PnL, Position, side_value

__all__ = ["KEEP", "TradingMixin"]

KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP", "__doc__": "Keep the current value."})()
"""Default of ``stop_loss``/``take_profit`` in amendments: keep the current leg (``None`` removes it)."""

_MARKET, _LIMIT, _STOP = 1, 2, 3
_GTD = 1
_DAY_MS = 86_400_000


class _Trading:
    """Per-account state of the trading half (created on first use)."""

    def __init__(self, account: Any) -> None:
        self.desk = Desk(account.client, account.id, account._symbol_by_id)
        self.mirror = Mirror(account.client, account.id, account._symbol_by_id, account._trade_timeout())
        self.spots = Feed(account.client, account.id, ProtoOASubscribeSpotsReq, ProtoOAUnsubscribeSpotsReq)
        self.depth = Feed(account.client, account.id, ProtoOASubscribeDepthQuotesReq, ProtoOAUnsubscribeDepthQuotesReq)


class TradingMixin:
    """Trading half of :class:`Account`: orders that wait for their outcome, a live mirror of
    positions, orders and balance, P&L, quotes and depth."""

    client: Any
    id: int
    symbols: Any
    timeout: float | None
    _lock: Any
    deals: Any  # Account.deals (the history half)

    # -- plumbing ---------------------------------------------------------------------------

    def _trading(self) -> _Trading:
        state: _Trading | None = self.__dict__.get("_trading_state")
        if state is None:
            with self._lock:
                state = self.__dict__.get("_trading_state")
                if state is None:
                    state = _Trading(self)
                    self.__dict__["_trading_state"] = state
        return state

    def _trade_timeout(self) -> float:
        return float(self.timeout) if self.timeout else 30.0

    def _symbol_by_id(self, symbol_id: int) -> Any:
        return self.symbols.get(int(symbol_id))

    def _raw_position(self, position: Any, timeout: float) -> Any:
        pid = int(position.position_id if isinstance(position, Position) else position)
        mirror = self._trading().mirror
        if mirror.ready:
            raw = mirror.raw_positions().get(pid)
            if raw is not None:
                return raw
        res = self.client.request(ProtoOAReconcileReq(ctidTraderAccountId=self.id), timeout)
        for raw in res.position:
            if int(raw.positionId) == pid:
                return raw
        raise OrderError("POSITION_NOT_FOUND", f"position {pid} is not open on account {self.id}", position_id=pid)

    def _raw_order(self, order: Any, timeout: float) -> Any:
        oid = int(order.order_id if isinstance(order, Order) else order)
        res = self.client.request(ProtoOAReconcileReq(ctidTraderAccountId=self.id), timeout)
        for raw in res.order:
            if int(raw.orderId) == oid:
                return raw
        raise OrderError("ORDER_NOT_FOUND", f"order {oid} is not pending on account {self.id}", order_id=oid)

    # -- orders -----------------------------------------------------------------------------

    def market_order(self, symbol: Any, side: Any, *, lots: Any = None, volume: Any = None,
                     stop_loss_pips: float | None = None, take_profit_pips: float | None = None,
                     label: str | None = None, comment: str | None = None, timeout: float = 30) -> Fill:
        """Buy or sell at market and wait for the fill.

        ``side`` is ``"buy"``/``"sell"`` (or ``ProtoOATradeSide``); give exactly one of ``lots``
        or ``volume`` (units); it is normalised to the symbol's step (rounded down) and checked
        against its min/max before anything is sent.  ``stop_loss_pips``/``take_profit_pips``
        become the relative fields market orders take; the position carries the absolute prices.
        Waits for ORDER_FILLED (after any partial fills), not just ORDER_ACCEPTED.

        Raises:
            OrderError: the server refused (``error_code``, ``order_id``/``position_id`` when known);
                also a volume outside the symbol's limits (``TRADING_BAD_VOLUME``, an
                ``InvalidRequestError`` too) or an unknown symbol (``SYMBOL_NOT_FOUND``, an
                ``UnknownSymbolError`` too), refused before anything is sent.
            OrderNotPlacedError: the answer was lost and the server has no such order (safe to retry).
            OrderOutcomeUnknownError: the answer was lost and the truth could not be learned within
                ``timeout``; ask later with :meth:`find_order` ``(error.client_order_id)``.
            ValueError: other bad arguments (side, lots and volume both or neither...; nothing was sent).
            ConnectionLostError, RequestTimeoutError: only from the requests made *before* the
                order (loading the symbol catalogue): the order itself was not sent.
        """
        info = resolve_for_order(self.symbols, symbol)
        request = ProtoOANewOrderReq(ctidTraderAccountId=self.id, symbolId=info.id, orderType=cast(Any, _MARKET),
                                     tradeSide=cast(Any, side_value(side)), volume=units_of(info, lots, volume))
        if stop_loss_pips is not None:
            request.relativeStopLoss = _relative(info, stop_loss_pips, "stop_loss_pips")
        if take_profit_pips is not None:
            request.relativeTakeProfit = _relative(info, take_profit_pips, "take_profit_pips")
        _texts(request, label, comment)
        request.clientOrderId = new_client_order_id()
        fill: Fill = self._trading().desk.place(request, float(timeout), want_fill=True)  # type: ignore[assignment]
        return fill

    def limit_order(self, symbol: Any, side: Any, price: float, *, lots: Any = None, volume: Any = None,
                    stop_loss: float | None = None, take_profit: float | None = None,
                    stop_loss_pips: float | None = None, take_profit_pips: float | None = None,
                    expiry: datetime | int | None = None, label: str | None = None, comment: str | None = None,
                    timeout: float = 30) -> Order:
        """Place a resting LIMIT order at ``price``; return the :class:`Order` once accepted.

        Protection is absolute (``stop_loss``/``take_profit`` prices) or in pips from ``price``.
        ``expiry`` (a ``datetime`` or epoch ms) makes it good till that date.  Raises as
        :meth:`market_order`.
        """
        return self._pending(_LIMIT, symbol, side, price, lots, volume, stop_loss, take_profit, stop_loss_pips,
                             take_profit_pips, expiry, label, comment, timeout)

    def stop_order(self, symbol: Any, side: Any, price: float, *, lots: Any = None, volume: Any = None,
                   stop_loss: float | None = None, take_profit: float | None = None,
                   stop_loss_pips: float | None = None, take_profit_pips: float | None = None,
                   expiry: datetime | int | None = None, label: str | None = None, comment: str | None = None,
                   timeout: float = 30) -> Order:
        """Place a resting STOP order at ``price``; return the :class:`Order` once accepted.

        Same arguments and errors as :meth:`limit_order`.
        """
        return self._pending(_STOP, symbol, side, price, lots, volume, stop_loss, take_profit, stop_loss_pips,
                             take_profit_pips, expiry, label, comment, timeout)

    def _pending(self, kind: int, symbol: Any, side: Any, price: float, lots: Any, volume: Any,
                 stop_loss: float | None, take_profit: float | None, sl_pips: float | None, tp_pips: float | None,
                 expiry: datetime | int | None, label: str | None, comment: str | None, timeout: float) -> Order:
        info = resolve_for_order(self.symbols, symbol)
        trade_side = side_value(side)
        if not price or price <= 0:
            raise ValueError(f"price must be positive, got {price!r}")
        request = ProtoOANewOrderReq(ctidTraderAccountId=self.id, symbolId=info.id, orderType=cast(Any, kind),
                                     tradeSide=cast(Any, trade_side), volume=units_of(info, lots, volume))
        if kind == _LIMIT:
            request.limitPrice = float(price)
        else:
            request.stopPrice = float(price)
        sign = 1 if trade_side == 1 else -1
        if (stop_loss is not None and sl_pips is not None) or (take_profit is not None and tp_pips is not None):
            raise ValueError("give a protection leg as a price or in pips, not both")
        if sl_pips is not None:
            stop_loss = round(price - sign * _positive(sl_pips, "stop_loss_pips") * info.pip, info.digits)
        if tp_pips is not None:
            take_profit = round(price + sign * _positive(tp_pips, "take_profit_pips") * info.pip, info.digits)
        if stop_loss is not None:
            request.stopLoss = float(stop_loss)
        if take_profit is not None:
            request.takeProfit = float(take_profit)
        if expiry is not None:
            request.timeInForce = cast(Any, _GTD)
            request.expirationTimestamp = _ms(expiry)
        _texts(request, label, comment)
        request.clientOrderId = new_client_order_id()
        order: Order = self._trading().desk.place(request, float(timeout), want_fill=False)  # type: ignore[assignment]
        return order

    def close_position(self, position: Position | int, lots: Any = None, *, volume: Any = None,
                       timeout: float = 30) -> Fill:
        """Close a position (a :class:`Position` or its id), wholly or ``lots``/``volume`` of it.

        A part is normalised to the symbol's step like an order; asking for more than is open
        closes it all.  Returns the :class:`Fill` of the closing order.  Raises as
        :meth:`market_order` (``POSITION_NOT_FOUND`` when it is not open).
        """
        raw = self._raw_position(position, float(timeout))
        info = self._symbol_by_id(int(raw.tradeData.symbolId))
        open_volume = int(raw.tradeData.volume)
        amount = open_volume if lots is None and volume is None else min(open_volume, units_of(info, lots, volume))
        return _existing.close_position(self._trading().desk, raw, info, amount, float(timeout))

    def amend_position(self, position: Position | int, *, stop_loss: Any = KEEP, take_profit: Any = KEEP,
                       timeout: float = 30) -> Position:
        """Set a position's stop loss and/or take profit (absolute prices; ``None`` removes a leg).

        Both legs are always sent, the one not given kept at its current value, since an
        amendment that omits a leg removes it.  Returns the updated :class:`Position`.
        """
        raw = self._raw_position(position, float(timeout))
        info = self._symbol_by_id(int(raw.tradeData.symbolId))
        sl = (float(raw.stopLoss) if raw.HasField("stopLoss") else None) if stop_loss is KEEP else stop_loss
        tp = (float(raw.takeProfit) if raw.HasField("takeProfit") else None) if take_profit is KEEP else take_profit
        return _existing.amend_position(self._trading().desk, raw, info, sl, tp, float(timeout))

    def cancel_order(self, order: Order | int, *, timeout: float = 30) -> Order:
        """Cancel a pending order (an :class:`Order` or its id); return it as cancelled."""
        raw = self._raw_order(order, float(timeout))
        info = self._symbol_by_id(int(raw.tradeData.symbolId))
        return _existing.cancel_order(self._trading().desk, raw, info, float(timeout))

    def amend_order(self, order: Order | int, *, price: float | None = None, lots: Any = None,
                    volume: Any = None, stop_loss: Any = KEEP, take_profit: Any = KEEP,
                    timeout: float = 30) -> Order:
        """Change a pending order's price, size (``lots`` or ``volume``) or protection.

        Protection legs not given are kept (both are sent); ``None`` removes one.  Returns the
        amended :class:`Order`.
        """
        raw = self._raw_order(order, float(timeout))
        info = self._symbol_by_id(int(raw.tradeData.symbolId))
        fields: dict[str, Any] = {}
        if price is not None:
            fields["limitPrice" if raw.orderType in (_LIMIT, 6) else "stopPrice"] = float(price)
        if lots is not None or volume is not None:
            fields["volume"] = units_of(info, lots, volume)
        sl = (float(raw.stopLoss) if raw.HasField("stopLoss") else None) if stop_loss is KEEP else stop_loss
        tp = (float(raw.takeProfit) if raw.HasField("takeProfit") else None) if take_profit is KEEP else take_profit
        if sl is not None:
            fields["stopLoss"] = float(sl)
        if tp is not None:
            fields["takeProfit"] = float(tp)
        return _existing.amend_order(self._trading().desk, raw, info, fields, float(timeout))

    def find_order(self, client_order_id: str, *, since: datetime | int | None = None,
                   timeout: float = 30) -> Fill | Order | None:
        """What became of the order sent with ``client_order_id`` (e.g. after
        ``OrderOutcomeUnknownError``): a :class:`Fill` for an executed market order, an
        :class:`Order` for a pending, cancelled or expired one, ``None`` when the server has none.

        The order history is searched from ``since`` (default: when this account sent it, or the
        last 24 hours).

        Raises:
            OrderOutcomeUnknownError: the server could not be asked within ``timeout``.
            OrderError: the order was rejected.
        """
        desk = self._trading().desk
        sent = desk.sent_at(client_order_id)
        since_ms = _ms(since) if since is not None else (sent if sent is not None
                                                         else int(time.time() * 1000) - _DAY_MS)
        try:
            snapshot = desk.lookup.snapshot(since_ms, time.monotonic() + float(timeout))
        except OutcomeUnknown as exc:
            raise OrderOutcomeUnknownError(client_order_id, f"could not ask the server: {exc}") from exc
        order = snapshot.find(lambda o: o.clientOrderId == client_order_id)
        if order is None:
            return None
        info = self._symbol_by_id(int(order.tradeData.symbolId))
        found = desk.from_lookup(order, snapshot, info, client_order_id, order.orderType == _MARKET)
        return found if found is not None else Order.from_proto(order, info)

    # -- the mirror -------------------------------------------------------------------------

    def _ready_mirror(self) -> Mirror:
        mirror = self._trading().mirror
        len(self.symbols)  # the catalogue loads here, on the caller's thread, not in a callback
        mirror.ensure_ready(self._trade_timeout())
        return mirror

    @property
    def positions(self) -> dict[int, Position]:
        """Open positions by id, kept current from execution events (rebuilt after reconnects).

        The first use loads them (waits up to the account's timeout, 30 s by default).
        """
        return self._ready_mirror().positions()

    @property
    def orders(self) -> dict[int, Order]:
        """Pending (limit/stop) orders by id, kept current like :attr:`positions`."""
        return self._ready_mirror().orders()

    @property
    def balance(self) -> Decimal:
        """The balance (``Decimal``, account currency), kept current like :attr:`positions`."""
        balance = self._ready_mirror().balance()
        assert balance is not None  # a ready mirror has one
        return balance

    def on_change(self, callback: Callable[[Change], Any]) -> ChangeHandle:
        """Call ``callback(change)`` (a :class:`Change`) on the client's dispatcher thread for every
        change of positions, orders or balance; returns a handle whose ``remove()`` stops it."""
        handle = self._trading().mirror.on_change(callback)
        self._ready_mirror()
        return handle

    def changes(self, timeout: float | None = None, maxsize: int = 10_000) -> ChangeStream:
        """An iterator over :class:`Change` objects from now on (like ``client.events``); use it as
        a context manager; iteration ends after ``timeout`` seconds without a change."""
        stream = self._trading().mirror.changes(timeout, maxsize)
        try:
            self._ready_mirror()
        except BaseException:
            stream.close()
            raise
        return stream

    # -- P&L --------------------------------------------------------------------------------

    def unrealized_pnl(self, timeout: float | None = None) -> dict[int, PnL]:
        """Unrealized P&L of each open position (gross and net, ``Decimal``, account currency),
        from ``ProtoOAGetPositionUnrealizedPnLReq``; it also updates ``Position.pnl``."""
        pnl = fetch_unrealized(self.client, self.id, timeout or self._trade_timeout())
        self._trading().mirror.set_pnl(pnl)
        return pnl

    def equity(self, timeout: float | None = None) -> Decimal:
        """Balance plus the net unrealized P&L of all open positions (``Decimal``)."""
        pnl = self.unrealized_pnl(timeout)
        return self.balance + sum((p.net for p in pnl.values()), Decimal(0))

    def refresh_pnl(self, every: float = 2.5) -> PnLRefresher:
        """Refresh ``Position.pnl`` every ``every`` seconds on a background thread (the documented
        pace is every 2-3 s).  Returns the refresher: ``stop()`` it, or use it as a context manager."""
        mirror = self._trading().mirror
        return PnLRefresher(self.client, self.id, every, mirror.set_pnl, self._trade_timeout())

    def closed_positions(self, start: Any, end: Any = None, timeout: float | None = None) -> list[ClosedPosition]:
        """Realized P&L of positions closed between ``start`` and ``end`` (default now; times as
        :meth:`deals` takes them), from their closing deals: gross and net profit, swap and
        commission (``Decimal``, account currency), partial closes added up."""
        deals = self.deals(start, end, timeout=timeout)  # the history half: windows, paging, pacing
        return closed_positions(deals, self._symbol_by_id)

    # -- market data ------------------------------------------------------------------------

    def quotes(self, *symbols: Any) -> Quotes:
        """Live quotes of ``symbols``: ``with account.quotes("EURUSD") as q: q.wait("EURUSD")``.

        Subscribed when returned (so ``q = account.quotes("EURUSD")`` works too: ``q.close()``
        unsubscribes); the ``with`` block unsubscribes on leaving.  Several ``Quotes`` may be open
        at once, also on the same symbols: they share the account's subscriptions (the server
        allows one per symbol)."""
        if not symbols:
            raise ValueError("give at least one symbol")
        return Quotes(self.client, self.id, [self.symbols.resolve(s) for s in symbols], self._trade_timeout(),
                      feed=self._trading().spots).open()

    def depth(self, symbol: Any) -> DepthBook:
        """A live :class:`DepthBook` of ``symbol``: ``with account.depth("EURUSD") as book: ...``.

        Subscribed when returned (``book.close()`` unsubscribes; the ``with`` block does it on
        leaving).  Several books of one symbol may be open at once: they share the subscription."""
        return DepthBook(self.client, self.id, self.symbols.resolve(symbol), timeout=self._trade_timeout(),
                         feed=self._trading().depth).open()


def _relative(info: Any, pips: float, name: str) -> int:
    return int(info.pips_to_raw(_positive(pips, name)))


def _positive(value: float, name: str) -> float:
    if not value or value <= 0:
        raise ValueError(f"{name} must be a positive distance in pips, got {value!r}")
    return float(value)


def _texts(request: Any, label: str | None, comment: str | None) -> None:
    if label:
        request.label = label
    if comment:
        request.comment = comment


def _ms(when: datetime | int) -> int:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return int(when.timestamp() * 1000)
    if isinstance(when, timedelta):
        raise TypeError("give a datetime or epoch milliseconds, not a timedelta")
    return int(when)
