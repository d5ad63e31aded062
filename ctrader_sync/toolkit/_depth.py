"""``DepthBook``: a live order book kept from the incremental ``ProtoOADepthEvent``.

Each event adds or replaces quotes (``newQuotes``: id, size in cents, a bid or an ask price) and
removes others (``deletedQuotes``: ids).  The book keeps the quotes by id and shows them as price
levels: ``bids`` best (highest) first, ``asks`` best (lowest) first, each ``(price, size)`` with the
price a float and the size in units, sizes of quotes at the same price added up.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import RequestTimeoutError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthRes,
    ProtoOADepthEvent,
    ProtoOASubscribeDepthQuotesReq,
    ProtoOAUnsubscribeDepthQuotesReq,
)
from ._feeds import Feed

if TYPE_CHECKING:  # pragma: no cover
    from .._client import EventHandle
    from ._trade_types import InfoLike

__all__ = ["DepthBook"]

_PRICE_SCALE = 100_000


class DepthBook:
    """The depth of market of one symbol, kept current from depth events.

    Use it as a context manager (``with account.depth("EURUSD") as book:``): entering subscribes,
    leaving unsubscribes (several books of one account share a symbol's subscription, a later one
    starting from the book an earlier one holds; the last one to leave ends it).  ``bids``/``asks``
    are snapshots (lists of ``(price, size)``), safe to read from any thread.  After a reconnect the
    client's recovery subscribes again and the server sends the book afresh; the quotes of the lost
    connection are dropped at re-authorisation.
    """

    def __init__(self, client: Any, account_id: int, symbol: InfoLike | None,
                 symbol_id: int | None = None, timeout: float = 30.0, feed: Feed | None = None) -> None:
        self._client = client
        self._feed = feed if feed is not None else Feed(client, account_id, ProtoOASubscribeDepthQuotesReq,
                                                        ProtoOAUnsubscribeDepthQuotesReq)
        self.account_id = account_id
        self.symbol = symbol
        self.symbol_id = int(symbol.id if symbol is not None else symbol_id or 0)
        self.timeout = timeout
        self.updates = 0
        """How many depth events were applied."""
        self._digits = int(symbol.digits) if symbol is not None else 5
        self._quotes: dict[int, tuple[bool, float, float]] = {}  # id -> (is_bid, price, size)
        self._cond = threading.Condition()
        self._handles: list[EventHandle] = []
        self._subscribed = False

    # -- the book -------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Apply one ``ProtoOADepthEvent`` (events of other symbols or accounts are ignored)."""
        if int(event.symbolId) != self.symbol_id or (
                event.HasField("ctidTraderAccountId") and int(event.ctidTraderAccountId) != self.account_id):
            return
        with self._cond:
            for quote_id in event.deletedQuotes:
                self._quotes.pop(int(quote_id), None)
            for quote in event.newQuotes:
                is_bid = quote.HasField("bid")
                raw = quote.bid if is_bid else quote.ask
                price = round(int(raw) / _PRICE_SCALE, self._digits)
                self._quotes[int(quote.id)] = (is_bid, price, int(quote.size) / 100.0)
            self.updates += 1
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every quote (the next events rebuild the book)."""
        with self._cond:
            self._quotes.clear()
            self._cond.notify_all()

    def _levels(self, bid: bool) -> list[tuple[float, float]]:
        with self._cond:
            levels: dict[float, float] = {}
            for is_bid, price, size in self._quotes.values():
                if is_bid == bid:
                    levels[price] = levels.get(price, 0.0) + size
        return sorted(levels.items(), key=lambda level: -level[0] if bid else level[0])

    @property
    def bids(self) -> list[tuple[float, float]]:
        """Bid levels ``(price, size in units)``, highest price first."""
        return self._levels(True)

    @property
    def asks(self) -> list[tuple[float, float]]:
        """Ask levels ``(price, size in units)``, lowest price first."""
        return self._levels(False)

    @property
    def best_bid(self) -> float | None:
        """The highest bid price, or ``None`` when the book has no bid."""
        bids = self.bids
        return bids[0][0] if bids else None

    @property
    def best_ask(self) -> float | None:
        """The lowest ask price, or ``None`` when the book has no ask."""
        asks = self.asks
        return asks[0][0] if asks else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._quotes)

    def wait(self, timeout: float | None = None, *, updates: int = 1) -> DepthBook:
        """Block until at least ``updates`` depth events were applied in total; return the book.

        Raises:
            RequestTimeoutError: (a ``TimeoutError``) not within ``timeout`` (default: the book's).
        """
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while self.updates < updates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeoutError(f"no depth for symbol {self.symbol_id} within {wait:g} s")
                self._cond.wait(remaining)
        return self

    def __repr__(self) -> str:
        name = self.symbol.name if self.symbol is not None else self.symbol_id
        return f"<DepthBook {name} bid={self.best_bid} ask={self.best_ask} quotes={len(self)}>"

    # -- subscription ---------------------------------------------------------------------

    def _on_auth(self, message: Any) -> None:
        if int(message.ctidTraderAccountId) == self.account_id:
            self.clear()  # a new session: the server sends the book again

    def open(self) -> DepthBook:
        """Subscribe to the symbol's depth quotes (idempotent); ``with`` does it for you."""
        client = self._client
        if client is None or self._subscribed:
            return self
        self._handles = [client.on(ProtoOADepthEvent, self.apply), client.on(ProtoOAAccountAuthRes, self._on_auth)]
        try:
            earlier = self._feed.acquire(self, [self.symbol_id], self.timeout)
        except BaseException:
            self._remove_handles()
            raise
        self._subscribed = True
        if earlier:
            self._start_from(earlier[0])
        return self

    def _start_from(self, other: DepthBook) -> None:
        """Take the book another ``DepthBook`` on the same subscription holds (the server sends the
        whole book only right after subscribing).  ``other`` listened first, so it has applied
        every event this one has, and applying an event twice changes nothing."""
        with other._cond:
            quotes, updates = dict(other._quotes), other.updates
        if not updates:
            return  # nothing there yet: the book the server sends on subscribing reaches both
        with self._cond:
            self._quotes = quotes
            self.updates += 1
            self._cond.notify_all()

    def _remove_handles(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def close(self) -> None:
        """Unsubscribe and stop updating (idempotent; waits at most 5 s for the answer; never raises
        for a lost connection or a closed client)."""
        client = self._client
        self._remove_handles()
        if client is None or not self._subscribed:
            return
        self._subscribed = False
        self._feed.release(self, [self.symbol_id], min(self.timeout, 5.0))

    def __enter__(self) -> DepthBook:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
