"""``Quotes``: the latest bid/ask of a few symbols, merged from spot events.

The server may send a spot event with only a bid or only an ask (the side that changed); the
other side keeps its last value.  The first event after subscribing carries both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import RequestTimeoutError
from ..messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOASubscribeSpotsReq, ProtoOAUnsubscribeSpotsReq
from ._feeds import Feed

if TYPE_CHECKING:  # pragma: no cover
    from .._client import EventHandle
    from ._trade_types import InfoLike

__all__ = ["Quote", "Quotes"]

_PRICE_SCALE = 100_000


@dataclass(frozen=True)
class Quote:
    """One symbol's latest prices: ``Quote(bid, ask, time)``, ``bid`` and ``ask`` as floats, ``time``
    (aware UTC) of the last change, and the ``symbol``'s name."""

    bid: float
    """Latest bid price."""
    ask: float
    """Latest ask price."""
    time: datetime
    """When either side last changed (aware UTC)."""
    symbol: str = ""
    """The symbol's name."""

    @property
    def mid(self) -> float:
        """``(bid + ask) / 2``."""
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float:
        """``ask - bid``."""
        return self.ask - self.bid


class Quotes:
    """Live quotes of some symbols: ``quotes["EURUSD"]`` is the latest :class:`Quote`.

    A context manager: entering subscribes to the symbols' spots, leaving unsubscribes (several
    ``Quotes`` of one account share a symbol's subscription: the last one to leave ends it).  Reconnects
    need nothing from you: the client's session recovery subscribes again and prices keep coming.
    Keys may be names (any case), ids or ``SymbolInfo`` objects.
    """

    def __init__(self, client: Any, account_id: int, symbols: list[InfoLike],
                 timeout: float = 30.0, feed: Feed | None = None) -> None:
        self._client = client
        self._feed = feed if feed is not None else Feed(client, account_id, ProtoOASubscribeSpotsReq,
                                                        ProtoOAUnsubscribeSpotsReq)
        self.account_id = account_id
        self.timeout = timeout
        self._symbols = {int(s.id): s for s in symbols}
        self._names = {s.name.lower(): int(s.id) for s in symbols}
        self._bid: dict[int, int] = {}
        self._ask: dict[int, int] = {}
        self._time: dict[int, datetime] = {}
        self._cond = threading.Condition()
        self._handle: EventHandle | None = None
        self._subscribed = False

    def _key(self, symbol: object) -> int:
        if isinstance(symbol, str):
            sid = self._names.get(symbol.strip().lower())
        elif isinstance(symbol, int):
            sid = symbol if symbol in self._symbols else None
        else:
            sid = getattr(symbol, "id", None)
            sid = sid if sid in self._symbols else None
        if sid is None:
            names = ", ".join(s.name for s in self._symbols.values())
            raise KeyError(f"{symbol!r} is not one of these quotes' symbols ({names})")
        return int(sid)

    def apply(self, event: Any) -> None:
        """Merge one ``ProtoOASpotEvent`` (other symbols and accounts are ignored)."""
        sid = int(event.symbolId)
        if sid not in self._symbols or int(event.ctidTraderAccountId) != self.account_id:
            return
        has_bid, has_ask = event.HasField("bid"), event.HasField("ask")
        if not (has_bid or has_ask):
            return  # a trendbar-only event
        when = (datetime.fromtimestamp(event.timestamp / 1000.0, tz=timezone.utc) if event.HasField("timestamp")
                else datetime.now(timezone.utc))
        with self._cond:
            if has_bid:
                self._bid[sid] = int(event.bid)
            if has_ask:
                self._ask[sid] = int(event.ask)
            self._time[sid] = when
            self._cond.notify_all()

    def _quote_locked(self, sid: int) -> Quote | None:
        bid, ask = self._bid.get(sid), self._ask.get(sid)
        if bid is None or ask is None:
            return None
        symbol = self._symbols[sid]
        digits = int(symbol.digits)
        return Quote(round(bid / _PRICE_SCALE, digits), round(ask / _PRICE_SCALE, digits), self._time[sid],
                     symbol.name)

    def get(self, symbol: object) -> Quote | None:
        """The latest quote, or ``None`` while both sides are not known yet."""
        sid = self._key(symbol)
        with self._cond:
            return self._quote_locked(sid)

    def __getitem__(self, symbol: object) -> Quote:
        quote = self.get(symbol)
        if quote is None:
            raise KeyError(f"no price for {symbol!r} yet; use quotes.wait({symbol!r}, timeout) for the first one")
        return quote

    def __contains__(self, symbol: object) -> bool:
        try:
            return self.get(symbol) is not None
        except KeyError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter([s.name for s in self._symbols.values()])

    def __len__(self) -> int:
        return len(self._symbols)

    def wait(self, symbol: object, timeout: float | None = None) -> Quote:
        """Block until ``symbol`` has a bid and an ask; return its quote.

        Raises:
            RequestTimeoutError: (a ``TimeoutError``) no price within ``timeout`` (default: 30 s).
        """
        sid = self._key(symbol)
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                quote = self._quote_locked(sid)
                if quote is not None:
                    return quote
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeoutError(f"no price for {self._symbols[sid].name} within {wait:g} s")
                self._cond.wait(remaining)

    def __repr__(self) -> str:
        with self._cond:
            shown = [repr(self._quote_locked(sid)) for sid in self._symbols]
        return f"<Quotes {', '.join(shown)}>"

    # -- subscription ---------------------------------------------------------------------

    def open(self) -> Quotes:
        """Subscribe to the symbols' spots (idempotent); ``with`` does it for you."""
        client = self._client
        if client is None or self._subscribed:
            return self
        self._handle = client.on(ProtoOASpotEvent, self.apply)
        try:
            earlier = self._feed.acquire(self, sorted(self._symbols), self.timeout)
        except BaseException:
            self._handle.remove()
            self._handle = None
            raise
        self._subscribed = True
        for other in earlier:
            self._start_from(other)
        return self

    def _start_from(self, other: Quotes) -> None:
        """Take the prices another ``Quotes`` on the same subscription already has (the server
        sends the latest quote only right after subscribing).  ``other`` listened first, so it
        has seen every event this one has: its values are never older."""
        with other._cond:
            known = [(sid, other._bid.get(sid), other._ask.get(sid), other._time.get(sid))
                     for sid in self._symbols if sid in other._time]
        with self._cond:
            for sid, bid, ask, when in known:
                if bid is not None:
                    self._bid[sid] = bid
                if ask is not None:
                    self._ask[sid] = ask
                if when is not None:
                    self._time[sid] = when
            self._cond.notify_all()

    def close(self) -> None:
        """Unsubscribe and stop updating (idempotent; waits at most 5 s for the answer; never raises
        for a lost connection or a closed client)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        client = self._client
        if client is None or not self._subscribed:
            return
        self._subscribed = False
        self._feed.release(self, sorted(self._symbols), min(self.timeout, 5.0))

    def __enter__(self) -> Quotes:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
