"""History over any range: trendbars, ticks, deals, orders and cash flow, through :mod:`._paging`.

Windows: the server accepts at most a fixed span per request (trendbars: by period, see
:data:`TRENDBAR_WINDOW_MS`; ticks, deals, orders, cash flow: one week, the limit up to release 88,
safe on every release). An answer holds at most a fixed number of rows and says ``hasMore`` when
its window holds more; it then holds the newest rows (paging goes backwards from ``toTimestamp``).
Once one answer has shown how many rows an answer holds, the rest of the window is split into
pieces that one answer can hold, so they are all asked at once instead of one after the other.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from ..errors import CTraderError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOACashFlowHistoryListReq,
    ProtoOADealListReq,
    ProtoOAGetTickDataReq,
    ProtoOAGetTrendbarsReq,
    ProtoOAOrderListReq,
)
from ..messages.OpenApiModelMessages_pb2 import ProtoOAQuoteType, ProtoOATrendbarPeriod
from ..units import datetime_to_ms, ms_to_datetime
from ._paging import Job, pieces, windows
from ._rows import Bar, Tick
from ._symbols import SymbolInfo

__all__ = [
    "PERIOD_MINUTES",
    "TRENDBAR_WINDOW_MS",
    "WEEK_MS",
    "BadBarError",
    "BadBarWarning",
    "ListPager",
    "TickPager",
    "TrendbarPager",
    "period_value",
    "to_ms",
]

log = logging.getLogger("ctrader_sync")

WEEK_MS = 604_800_000
"""The widest window for ticks, deals, orders and cash flow (1 week)."""

PERIOD_MINUTES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 10, 7: 15, 8: 30, 9: 60, 10: 240, 11: 720, 12: 1440,
                  13: 10_080, 14: 44_640}
"""``ProtoOATrendbarPeriod`` value -> minutes (MN1 as its longest month, 31 days)."""

TRENDBAR_WINDOW_MS = {
    **dict.fromkeys((1, 2, 3, 4, 5), 3_024_000_000),  # M1..M5: 35 days
    **dict.fromkeys((6, 7, 8, 9), 21_168_000_000),  # M10..H1: 245 days
    **dict.fromkeys((10, 11, 12), 31_622_400_000),  # H4..D1: 366 days
    **dict.fromkeys((13, 14), 158_112_000_000),  # W1, MN1: 1830 days
}
"""The widest window per trendbar period (the documented maximum up to release 88)."""

_PIECES_PER_SPLIT = 16  # ticks: at most this many pieces from one answer's density


class BadBarError(CTraderError, ValueError):
    """The server sent trendbars that break high >= max(open, close) >= min(open, close) >= low.

    Attributes:
        bad: the bad bars (:class:`Bar` rows).
    """

    def __init__(self, bad: list[Bar]) -> None:
        self.bad = list(bad)
        first = bad[0]
        super().__init__(f"{len(bad)} bad bar(s) from the server, first at {first.time.isoformat()}: "
                         f"open {first.open} high {first.high} low {first.low} close {first.close}")


class BadBarWarning(UserWarning):
    """Some trendbars broke high >= max(open, close) >= min(open, close) >= low (see ``Bars.bad``)."""


# -- arguments -------------------------------------------------------------------------------------


def to_ms(when: datetime | date | int | float | str | None, name: str, default: int | None = None) -> int:
    """A time argument -> Unix ms: an aware datetime, a naive one (taken as UTC), a date (midnight
    UTC), epoch milliseconds, or an ISO 8601 text."""
    if when is None:
        if default is None:
            raise TypeError(f"{name} is required")
        return default
    if isinstance(when, bool):
        raise TypeError(f"{name} must be a datetime or epoch milliseconds, not bool")
    if isinstance(when, (int, float)):
        if not math.isfinite(when) or when < 0:
            raise ValueError(f"{name} must be a non-negative number of epoch milliseconds, got {when!r}")
        return int(when)
    if isinstance(when, str):
        text = when.strip()
        try:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{name} is not an ISO 8601 date or time: {text!r}") from None
    if not isinstance(when, datetime):
        if isinstance(when, date):
            when = datetime(when.year, when.month, when.day)
        else:
            raise TypeError(f"{name} must be a datetime, a date or epoch milliseconds, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=timezone.utc)
    return datetime_to_ms(when)


def period_value(period: str | int) -> int:
    """A ``ProtoOATrendbarPeriod`` name (``"H1"``, any case) or value -> its value."""
    if isinstance(period, bool):
        raise TypeError("period must be a name like 'H1' or a ProtoOATrendbarPeriod value")
    if isinstance(period, int):
        if period not in PERIOD_MINUTES:
            raise ValueError(f"unknown trendbar period {period}; periods: {', '.join(ProtoOATrendbarPeriod.keys())}")
        return period
    if isinstance(period, str):
        try:
            return int(ProtoOATrendbarPeriod.Value(period.strip().upper()))
        except ValueError:
            raise ValueError(f"unknown trendbar period {period!r}; periods: "
                             f"{', '.join(ProtoOATrendbarPeriod.keys())}") from None
    raise TypeError(f"period must be a name like 'H1' or a ProtoOATrendbarPeriod value, not {type(period).__name__}")


# -- trendbars -------------------------------------------------------------------------------------


class TrendbarPager:
    """Trendbars of one symbol and period over ``[lo, hi)``."""

    def __init__(self, account_id: int, symbol: SymbolInfo, period: int, lo: int, hi: int) -> None:
        self.account_id = account_id
        self.symbol = symbol
        self.period = period
        self.step = PERIOD_MINUTES[period] * 60_000
        self.lo, self.hi = lo, hi
        self.bars: dict[int, Any] = {}
        self.duplicates = 0
        self.chunk = 0
        """The most bars one answer held (learned from the first ``hasMore`` answer)."""

    def jobs(self) -> list[Job]:
        """The first windows, newest first."""
        return windows(self.lo, self.hi, TRENDBAR_WINDOW_MS[self.period])

    def request(self, job: Job) -> ProtoOAGetTrendbarsReq:
        """The request for a window."""
        return ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account_id, symbolId=self.symbol.id,
                                      period=ProtoOATrendbarPeriod.ValueType(self.period),
                                      fromTimestamp=job.lo, toTimestamp=job.hi)

    def take(self, job: Job, response: Any) -> list[Job]:
        """Keep the bars; after ``hasMore``, the rest of the window in pieces one answer can hold."""
        oldest = None
        bars = self.bars
        for bar in response.trendbar:
            t = int(bar.utcTimestampInMinutes) * 60_000
            if t in bars:
                self.duplicates += 1
            bars[t] = bar
            oldest = t if oldest is None or t < oldest else oldest
        if not response.hasMore:
            return []
        if oldest is None or oldest <= job.lo:
            log.warning("ctrader_sync: trendbars answer with hasMore but nothing older in %d..%d; "
                        "treating the window as drained", job.lo, job.hi)
            return []
        self.chunk = max(self.chunk, len(response.trendbar))
        # Pieces of chunk - 1 periods hold at most `chunk` bars even if both ends are inclusive.
        return pieces(job.lo, oldest, max(1, self.chunk - 1) * self.step)

    def estimate(self, job: Job) -> int:
        """Requests a window will take, from the chunk learned so far."""
        if not self.chunk or job.kind != "window":
            return 1
        return max(1, math.ceil((job.hi - job.lo) / self.step / self.chunk))

    def rows(self, on_bad: str) -> tuple[list[Bar], list[Bar], list[Any]]:
        """(good rows, bad rows, good raw bars) in ascending time, inside ``[lo, hi)``."""
        price = self.symbol.price
        good: list[Bar] = []
        bad: list[Bar] = []
        raw: list[Any] = []
        for t in sorted(self.bars):
            if not self.lo <= t < self.hi:
                continue
            bar = self.bars[t]
            low = int(bar.low)
            row = Bar(ms_to_datetime(t), price(low + int(bar.deltaOpen)), price(low + int(bar.deltaHigh)), price(low),
                      price(low + int(bar.deltaClose)), int(bar.volume))
            body_high = max(int(bar.deltaOpen), int(bar.deltaClose))
            if int(bar.deltaHigh) < body_high or low <= 0:
                bad.append(row)
                if on_bad != "keep":
                    continue
            good.append(row)
            raw.append(bar)
        if bad:
            if on_bad == "raise":
                raise BadBarError(bad)
            what = "kept" if on_bad == "keep" else "left out"
            text = (f"{len(bad)} bad {self.symbol.name} bar(s) from the server (high below open/close), {what}; "
                    f"see Bars.bad; first at {bad[0].time.isoformat()}")
            log.warning("ctrader_sync: %s", text)
            warnings.warn(text, BadBarWarning, stacklevel=4)
        return good, bad, raw


# -- ticks -----------------------------------------------------------------------------------------


class TickPager:
    """Ticks of one symbol and one side (bid or ask) over ``[lo, hi)``."""

    def __init__(self, account_id: int, symbol: SymbolInfo, side: str, lo: int, hi: int) -> None:
        self.account_id = account_id
        self.symbol = symbol
        self.side = side
        self.quote_type = ProtoOAQuoteType.Value(side.upper())
        self.lo, self.hi = lo, hi
        self.ticks: set[tuple[int, int]] = set()

    def jobs(self) -> list[Job]:
        """The first windows, newest first."""
        return windows(self.lo, self.hi, WEEK_MS)

    def request(self, job: Job) -> ProtoOAGetTickDataReq:
        """The request for a window."""
        return ProtoOAGetTickDataReq(ctidTraderAccountId=self.account_id, symbolId=self.symbol.id,
                                     type=ProtoOAQuoteType.ValueType(self.quote_type),
                                     fromTimestamp=job.lo, toTimestamp=job.hi)

    def take(self, job: Job, response: Any) -> list[Job]:
        """Keep the ticks; after ``hasMore``, the rest of the window in pieces as dense as this answer."""
        t = p = 0
        oldest = None
        keep = self.ticks.add
        for entry in response.tickData:  # newest first, delta-encoded
            t += int(entry.timestamp)
            p += int(entry.tick)
            keep((t, p))
            oldest = t if oldest is None or t < oldest else oldest
        if not response.hasMore:
            return []
        if oldest is None or oldest <= job.lo:
            log.warning("ctrader_sync: tick answer with hasMore but nothing older in %d..%d; "
                        "treating the window as drained", job.lo, job.hi)
            return []
        span = max(1000, job.hi - oldest)
        return pieces(job.lo, oldest, span, "page", most=_PIECES_PER_SPLIT)

    def estimate(self, job: Job) -> int:
        """One request per window not yet answered (tick density is not known in advance)."""
        return 1

    def series(self) -> list[tuple[int, float]]:
        """(ms, price) ascending, inside ``[lo, hi)``."""
        price = self.symbol.price
        return [(t, price(p)) for t, p in sorted(self.ticks) if self.lo <= t < self.hi]


def merge_ticks(bid: list[tuple[int, float]] | None, ask: list[tuple[int, float]] | None) -> list[Tick]:
    """One row per time a side ticked, with the latest bid and ask known then (``nan`` before the first)."""
    nan = math.nan
    events: list[tuple[int, int, float]] = [(t, 0, p) for t, p in bid or ()] + [(t, 1, p) for t, p in ask or ()]
    events.sort(key=lambda e: (e[0], e[1]))
    rows: list[Tick] = []
    last = [nan, nan]
    for index, (t, side, p) in enumerate(events):
        last[side] = p
        if index + 1 < len(events) and events[index + 1][0] == t:
            continue  # the same millisecond: one row with everything known at its end
        rows.append(Tick(ms_to_datetime(t), last[0], last[1]))
    return rows


# -- deals, orders, cash flow ------------------------------------------------------------------------


class ListPager:
    """Deals, orders or cash-flow records over ``[lo, hi]`` in one-week windows.

    Paging follows ``hasMore`` without assuming which end of the window an answer holds: it asks
    the parts of the window on both sides of the rows received until one of them brings new rows
    (then only that side), and keeps each record once by its id.
    """

    def __init__(self, kind: str, account_id: int, lo: int, hi: int) -> None:
        self.kind = kind
        self.account_id = account_id
        self.lo, self.hi = lo, hi
        self.records: dict[int, Any] = {}
        self.direction: str | None = None
        """``"older"`` or ``"newer"``: where the rest of a window was found after ``hasMore``."""
        build, self._field, self._id, self._time = _LISTS[kind]
        self._build: Callable[..., Any] = build

    def jobs(self) -> list[Job]:
        """The first windows, newest first."""
        return windows(self.lo, self.hi, WEEK_MS)

    def request(self, job: Job) -> Any:
        """The request for a window."""
        return self._build(ctidTraderAccountId=self.account_id, fromTimestamp=job.lo, toTimestamp=job.hi)

    def take(self, job: Job, response: Any) -> list[Job]:
        """Keep the records; after ``hasMore``, ask the rest of the window on the side(s) it can be."""
        times = []
        new = 0
        for record in getattr(response, self._field):
            key = int(getattr(record, self._id))
            new += key not in self.records
            self.records[key] = record
            times.append(self._time(record))
        if new and job.kind in ("older", "newer") and self.direction is None:
            self.direction = job.kind  # this side held more: the server pages from the other end
            log.debug("ctrader_sync: %s pages run toward the %s rows", self.kind, job.kind)
        if not getattr(response, "hasMore", False) or not times:
            return []
        first, last = min(times), max(times)
        more = []
        # The answer holds the newest rows (the rest is at or before `first`) or the oldest (the
        # rest is at or after `last`); until an answer has shown which, ask both.
        if first < job.hi and self.direction != "newer":
            more.append(Job(job.lo, first, "older"))
        if last > job.lo and self.direction != "older":
            more.append(Job(last, job.hi, "newer"))
        if not more:
            log.warning("ctrader_sync: more %s at %d ms than one answer holds; some may be missing",
                        self.kind, first)
        return more

    def estimate(self, job: Job) -> int:
        """One request per window."""
        return 1

    def sorted(self) -> list[Any]:
        """The records inside ``[lo, hi]``, ascending by time, then id."""
        chosen = [r for r in self.records.values() if self.lo <= self._time(r) <= self.hi]
        return sorted(chosen, key=lambda r: (self._time(r), int(getattr(r, self._id))))


def _order_time(order: Any) -> int:
    """When the order was created (what the order list's range is about)."""
    if order.tradeData.HasField("openTimestamp"):
        return int(order.tradeData.openTimestamp)
    return int(order.utcLastUpdateTimestamp)


_LISTS: dict[str, tuple[Any, str, str, Callable[[Any], int]]] = {
    "deals": (ProtoOADealListReq, "deal", "dealId", lambda d: int(d.executionTimestamp)),
    "orders": (ProtoOAOrderListReq, "order", "orderId", _order_time),
    "cash_flow": (ProtoOACashFlowHistoryListReq, "depositWithdraw", "balanceHistoryId",
                  lambda c: int(c.changeBalanceTimestamp)),
}

