"""The exchange: live quotes of every symbol, the market thread, subscriptions and fan-out.

One :class:`Exchange` per simulator.  Its lock guards the quotes, the accounts' trading state and
the subscriptions; everything that changes them (requests on the connections' I/O threads, the
market thread, :meth:`set_price` from a test) takes it, and posts the resulting events to the
connections while still holding it, so every connection sees them in the order they happened.

Live quotes replay each symbol's seeded :class:`PricePath` from :data:`LIVE_ANCHOR_MS`, one
path tick per ``spot_interval`` while the symbol is active (someone subscribes to it or has an
order or position on it); :meth:`set_price` moves the level, and the path's steps continue from
there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    BALANCE_DEPOSIT,
    BALANCE_WITHDRAW,
    DEPOSIT_WITHDRAW,
    POSITION_STATUS_OPEN,
    ProtoOADepthQuote,
    ProtoOATrendbar,
)
from ._accounts import Account, trader_proto
from ._fills import Fills
from ._history import PricePath
from ._market import PERIOD_MINUTES, SymbolInfo, fx_open
from ._money import Money, MoneyModel
from ._trading import Trading

__all__ = ["DEPTH_LEVELS", "LIVE_ANCHOR_MS", "Exchange", "Sink"]

LIVE_ANCHOR_MS = 1_704_067_200_000
"""Monday 2024-01-01 00:00 UTC: where live quotes start replaying each symbol's path."""
DEPTH_LEVELS = 5
"""Depth quotes on each side of the simulated order book."""


class Sink(Protocol):
    """A connection as the exchange sees it: which accounts it holds, and a way to push to it."""

    def holds(self, account_id: int) -> bool:
        """True if ``account_id`` is authorized on this connection now."""

    def deliver(self, messages: list[Message], done: threading.Event | None) -> None:
        """Push ``messages`` (no clientMsgId) on the connection's thread; set ``done`` after."""


@dataclass
class _Feed:
    t_ms: int
    offset: int
    spread: int


class Exchange:
    """Quotes, matching and subscriptions of one simulator."""

    def __init__(self, *, seed: int, symbols: Sequence[SymbolInfo], accounts: Mapping[int, Account],
                 spot_interval: float, market_hours: str = "always",
                 clock: Callable[[], float] | None = None, money: MoneyModel | None = None) -> None:
        if market_hours not in ("always", "fx"):
            raise ValueError("market_hours must be 'always' or 'fx'")
        self.lock = threading.RLock()
        self.symbols: dict[int, SymbolInfo] = {s.symbol_id: s for s in symbols}
        self.accounts = accounts
        self.spot_interval = spot_interval
        self.market_hours = market_hours
        self._clock = clock or time.time
        self.paths = {s.symbol_id: PricePath(seed, s) for s in symbols}
        self._feeds: dict[int, _Feed] = {}
        self._quotes: dict[int, tuple[int, int]] = {}
        for s in symbols:
            t = self.paths[s.symbol_id].next_tick_time(LIVE_ANCHOR_MS - 1000)
            self._feeds[s.symbol_id] = _Feed(t, 0, s.spread)
            bid = self.paths[s.symbol_id].tick(t) or s.base_price
            self._quotes[s.symbol_id] = (bid, bid + s.spread)
        self.money = Money(symbols, self.quote, money or MoneyModel())
        self.fills = Fills(self.symbols, self.money, self.quote, self.now_ms)
        self.trading = Trading(self.symbols, self.fills, self.market_open)
        self.paused = False
        self._sinks: list[Sink] = []
        self._spots: dict[Sink, set[tuple[int, int]]] = {}
        self._bars: dict[Sink, set[tuple[int, int, int]]] = {}
        self._depth: dict[Sink, set[tuple[int, int]]] = {}
        self._live_bars: dict[tuple[int, int], list[int]] = {}
        self._books: dict[int, dict[tuple[int, int, int], int]] = {s.symbol_id: {} for s in symbols}
        self._depth_delta: dict[int, tuple[list[ProtoOADepthQuote], list[int]]] = {}
        self._next_quote_id = 1
        for s in symbols:
            self._rebuild_book(s.symbol_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: set[int] = set()
        """Symbols set_price moved while the market was closed: matched when it opens."""

    # -- clock, hours, quotes -----------------------------------------------------------------

    def now_ms(self) -> int:
        """The simulator's clock in Unix ms (the wall clock unless a test clock was given)."""
        return int(self._clock() * 1000)

    def market_open(self) -> bool:
        """True when trading is possible: always by default, FX hours with ``market_hours="fx"``."""
        return self.market_hours == "always" or fx_open(self.now_ms())

    def quote(self, symbol_id: int) -> tuple[int, int]:
        """The current ``(bid, ask)`` of ``symbol_id`` in 1/100000."""
        return self._quotes[symbol_id]

    # -- the market thread --------------------------------------------------------------------

    def start(self) -> None:
        """Start the market thread (moves active symbols every ``spot_interval``, expires orders)."""
        self._thread = threading.Thread(target=self._run, name="ctrader_sync-sim-market", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the market thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        interval = self.spot_interval if self.spot_interval > 0 else 0.05
        while not self._stop.wait(interval):
            with self.lock:
                changed: list[int] = []
                is_open = self.market_open()
                if self.spot_interval > 0 and not self.paused and is_open:
                    for symbol_id in self._active():
                        self._step(symbol_id)
                        changed.append(symbol_id)
                # At the open, what set_price crossed while the market was closed executes.
                matched = sorted(set(changed) | self._held) if is_open else []
                if is_open:
                    self._held.clear()
                executions = [x for sid in matched for x in self.trading.match(self.accounts.values(), sid)]
                executions += self.trading.expire(self.accounts.values(), self.now_ms())
                self._publish(changed, executions, None)

    def _active(self) -> list[int]:
        active = {sid for subs in self._spots.values() for _, sid in subs}
        active |= {sid for subs in self._depth.values() for _, sid in subs}
        for account in self.accounts.values():
            active |= {o.symbol_id for o in account.orders.values()}
            active |= {p.symbol_id for p in account.positions.values() if p.status == POSITION_STATUS_OPEN}
        return sorted(active)

    def _step(self, symbol_id: int) -> None:
        feed = self._feeds[symbol_id]
        path = self.paths[symbol_id]
        feed.t_ms = path.next_tick_time(feed.t_ms)
        point = self.symbols[symbol_id].point
        bid = max(point, (path.tick(feed.t_ms) or 0) + feed.offset)
        self._move(symbol_id, bid, bid + feed.spread)

    def _move(self, symbol_id: int, bid: int, ask: int) -> None:
        self._quotes[symbol_id] = (bid, ask)
        minute = self.now_ms() // 60_000
        for (sid, period), bar in self._live_bars.items():
            if sid != symbol_id:
                continue
            span = PERIOD_MINUTES.get(period, 1)
            start = minute - minute % span
            if not bar or bar[0] != start:
                bar[:] = [start, bid, bid, bid, bid, 0]
            bar[2], bar[3], bar[4] = max(bar[2], bid), min(bar[3], bid), bid
            bar[5] += 1
        self._depth_delta[symbol_id] = self._rebuild_book(symbol_id)

    def _rebuild_book(self, symbol_id: int) -> tuple[list[ProtoOADepthQuote], list[int]]:
        bid, ask = self._quotes[symbol_id]
        point = self.symbols[symbol_id].point
        wanted = set()
        for k in range(DEPTH_LEVELS):
            size = (k + 1) * 5_000_000
            wanted.add((1, bid - k * point * 2, size))
            wanted.add((2, ask + k * point * 2, size))
        book = self._books[symbol_id]
        deleted = [book.pop(key) for key in list(book) if key not in wanted]
        added = []
        for key in sorted(wanted - set(book)):
            book[key] = self._next_quote_id
            self._next_quote_id += 1
            added.append(_depth_quote(book[key], key))
        return added, deleted

    def depth_snapshot(self, symbol_id: int) -> list[ProtoOADepthQuote]:
        """Every quote of the symbol's book now (the first depth event after subscribing)."""
        return [_depth_quote(i, key) for key, i in sorted(self._books[symbol_id].items())]

    # -- test control -------------------------------------------------------------------------

    def set_price(self, symbol_id: int, bid: int, ask: int, timeout: float = 5.0) -> None:
        """Move ``symbol_id`` to ``(bid, ask)`` now: spot events, then matching (when the market is
        open; else when it opens), then return.

        Returns once every connection's I/O thread has queued the resulting events.
        """
        if bid <= 0 or ask < bid:
            raise ValueError(f"need 0 < bid <= ask, got bid={bid} ask={ask}")
        with self.lock:
            feed = self._feeds[symbol_id]
            feed.offset = bid - (self.paths[symbol_id].tick(feed.t_ms) or bid)
            feed.spread = ask - bid
            self._move(symbol_id, bid, ask)
            # A closed market moves quotes but executes nothing until it opens again (see _run).
            executions = []
            if self.market_open():
                executions = self.trading.match(self.accounts.values(), symbol_id)
            else:
                self._held.add(symbol_id)
            executions += self.trading.expire(self.accounts.values(), self.now_ms())
            dones = self._publish([symbol_id], executions, timeout)
        deadline = time.monotonic() + timeout
        for done in dones:
            done.wait(max(0.0, deadline - time.monotonic()))

    def deposit(self, account_id: int, amount: float, note: str, timeout: float = 5.0) -> None:
        """Deposit (or withdraw, when negative) ``amount``; push the events; wait until queued."""
        account = self.accounts[account_id]
        with self.lock:
            delta = self.money.scale(amount, account.money_digits)
            if delta == 0 or account.balance + delta < 0:
                raise ValueError(f"cannot change a balance of {account.balance} by {delta}")
            entry = account.change_balance(delta, self.now_ms(), BALANCE_DEPOSIT if delta > 0 else BALANCE_WITHDRAW,
                                           note)
            events: list[Message] = [
                M.ProtoOAExecutionEvent(ctidTraderAccountId=account_id, executionType=DEPOSIT_WITHDRAW,
                                        depositWithdraw=entry, isServerEvent=True),
                M.ProtoOATraderUpdatedEvent(ctidTraderAccountId=account_id, trader=trader_proto(account))]
            dones = self._publish([], [(account_id, events)], timeout)
        deadline = time.monotonic() + timeout
        for done in dones:
            done.wait(max(0.0, deadline - time.monotonic()))

    def pause(self, paused: bool) -> None:
        """Stop (True) or restart (False) the automatic price path."""
        with self.lock:
            self.paused = paused

    # -- connections and subscriptions --------------------------------------------------------

    def attach(self, sink: Sink) -> None:
        """A connection opened: it receives execution events of the accounts it holds."""
        with self.lock:
            self._sinks.append(sink)
            self._spots[sink], self._bars[sink], self._depth[sink] = set(), set(), set()

    def detach(self, sink: Sink) -> None:
        """A connection closed: forget it and its subscriptions."""
        with self.lock:
            if sink in self._sinks:
                self._sinks.remove(sink)
            for table in (self._spots, self._bars, self._depth):
                table.pop(sink, None)

    def spots(self, sink: Sink) -> set[tuple[int, int]]:
        """The ``(account, symbol)`` spot subscriptions of ``sink`` (live set: hold the lock)."""
        return self._spots[sink]

    def trendbars(self, sink: Sink) -> set[tuple[int, int, int]]:
        """The ``(account, symbol, period)`` live trendbar subscriptions of ``sink`` (hold the lock)."""
        return self._bars[sink]

    def depth(self, sink: Sink) -> set[tuple[int, int]]:
        """The ``(account, symbol)`` depth subscriptions of ``sink`` (hold the lock)."""
        return self._depth[sink]

    def watch_bars(self, symbol_id: int, period: int) -> None:
        """Start keeping the live bar of ``(symbol_id, period)`` (hold the lock)."""
        self._live_bars.setdefault((symbol_id, period), [])

    def spot_event(self, sink: Sink, account_id: int, symbol_id: int) -> M.ProtoOASpotEvent:
        """The spot event of ``symbol_id`` for ``account_id`` on ``sink`` now (hold the lock)."""
        bid, ask = self._quotes[symbol_id]
        event = M.ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol_id, bid=bid, ask=ask,
                                   timestamp=self.now_ms())
        for acc, sid, period in sorted(self._bars.get(sink, ())):
            bar = self._live_bars.get((sid, period))
            if acc == account_id and sid == symbol_id and bar:
                event.trendbar.append(ProtoOATrendbar(
                    volume=bar[5], period=period, low=bar[3], deltaOpen=bar[1] - bar[3],  # type: ignore[arg-type]
                    deltaClose=bar[4] - bar[3], deltaHigh=bar[2] - bar[3], utcTimestampInMinutes=bar[0]))
        return event

    def broadcast(self, account_id: int, events: Iterable[Message], exclude: Sink | None) -> None:
        """Push ``events`` of ``account_id`` to every other connection holding it (hold the lock)."""
        events = list(events)
        for sink in self._sinks:
            if sink is not exclude and sink.holds(account_id):
                sink.deliver(events, None)

    def _publish(self, changed: Sequence[int], executions: list[tuple[int, list[Message]]],
                 timeout: float | None) -> list[threading.Event]:
        dones: list[threading.Event] = []
        changed_set = set(changed)
        for sink in self._sinks:
            messages: list[Message] = []
            for account_id, symbol_id in sorted(self._spots.get(sink, ())):
                if symbol_id in changed_set:
                    messages.append(self.spot_event(sink, account_id, symbol_id))
            for account_id, symbol_id in sorted(self._depth.get(sink, ())):
                delta = self._depth_delta.get(symbol_id)
                if symbol_id in changed_set and delta and (delta[0] or delta[1]):
                    messages.append(M.ProtoOADepthEvent(ctidTraderAccountId=account_id, symbolId=symbol_id,
                                                        newQuotes=delta[0], deletedQuotes=delta[1]))
            for account_id, events in executions:
                if sink.holds(account_id):
                    messages.extend(events)
            if messages:
                done = threading.Event() if timeout is not None else None
                sink.deliver(messages, done)
                if done is not None:
                    dones.append(done)
        return dones


def _depth_quote(quote_id: int, key: tuple[int, int, int]) -> ProtoOADepthQuote:
    side, price, size = key
    q = ProtoOADepthQuote(id=quote_id, size=size)
    if side == 1:
        q.bid = price
    else:
        q.ask = price
    return q
