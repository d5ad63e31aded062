"""The seeded price path of each symbol: one tree of bars from weeks down to ticks.

Every FX week (Sunday 22:00 to Friday 22:00 UTC) gets an open, close, high and low from the seed;
it splits into 5 trading days, each day into 24 hours, each hour into 60 minutes and each minute
into 60 ticks (one a second, on whole seconds).  A split picks the children's boundary prices
along a seeded bridge from the parent's open to its close, inside the parent's low and high, and
hands the parent's high to one child and its low to another, so the parent is exactly the
aggregate of its children.  Hence bars of every period and ticks agree: M1 bars aggregate into H1
bars and into D1 bars, every tick lies inside its bars, and there are no ticks or bars on
weekends.  A node is computed from its parent only, so any bar is cheap to reach.

D1 and H4/H12 bars start at 22:00 UTC (the FX trading day), W1 bars on Sunday 22:00 UTC, MN1 bars
on the first of each calendar month at 00:00 UTC, M1-H1 bars on UTC minute/hour boundaries.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import math
import random
from collections.abc import Iterator
from typing import NamedTuple

from ._market import DAY_MS, FX_OPEN_MS, WEEK_MS, WEEK_ORIGIN_MS, SymbolInfo, fx_open

__all__ = ["TICKS_PER_MINUTE", "Bar", "PricePath", "period_span"]

TICKS_PER_MINUTE = 60
"""Historical ticks are one a second, on whole seconds, while the market is open."""

_MASK = (1 << 64) - 1
_CACHE_LIMIT = 2_000  # split nodes kept (each up to 60 children): bounded memory


class Bar(NamedTuple):
    """One aggregated bar: start (Unix ms), open, high, low, close (1/100000), tick volume."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int


class _Node(NamedTuple):
    open: int
    close: int
    high: int
    low: int


def _mix(x: int) -> int:
    """A 64-bit integer hash (splitmix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def period_span(period: int) -> tuple[int, int] | None:
    """``(span_ms, anchor_ms)`` of a fixed-length trendbar period, None for MN1 or unknown ones."""
    minutes = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 10, 7: 15, 8: 30, 9: 60, 10: 240, 11: 720, 12: 1440,
               13: 10080}.get(period)
    if minutes is None:
        return None
    return minutes * 60_000, (0 if minutes <= 60 else WEEK_ORIGIN_MS)


class PricePath:
    """The deterministic historical bid path of one symbol for one seed."""

    def __init__(self, seed: int, symbol: SymbolInfo) -> None:
        self.seed = seed
        self.symbol = symbol
        self._key = _mix(_mix(seed & _MASK) ^ symbol.symbol_id)
        self._phase = (self._key >> 11) / float(1 << 53) * 2 * math.pi
        self._cache: dict[tuple[int, ...], list[_Node]] = {}

    # -- the tree ---------------------------------------------------------------------------

    def _rng(self, *key: int) -> random.Random:
        h = self._key
        for k in key:
            h = _mix(h ^ (k & _MASK))
        return random.Random(h)

    def _round(self, price: float) -> int:
        point = self.symbol.point
        return max(point, round(price / point) * point)

    def _week(self, w: int) -> _Node:
        base = self.symbol.base_price

        def level(i: int) -> float:
            return base * (1 + 0.02 * math.sin(i / 6.0 + self._phase) + 0.006 * (self._rng(i, 1).random() - 0.5))

        rng = self._rng(w, 2)
        o = self._round(level(w))
        c = self._round(level(w + 1) * (1 + 0.0008 * (rng.random() - 0.5)))
        h = self._round(max(o, c) + base * 0.004 * (0.5 + rng.random()))
        lo = self._round(min(o, c) - base * 0.004 * (0.5 + rng.random()))
        return _Node(o, c, h, lo)

    def _split(self, node: _Node, n: int, key: tuple[int, ...]) -> list[_Node]:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rng = self._rng(*key)
        o, c, h, lo = node
        walk = [0.0]
        for _ in range(n):
            walk.append(walk[-1] + rng.gauss(0.0, 1.0))
        amp = (h - lo) * 0.6 / math.sqrt(n)
        pts = [o]
        for k in range(1, n):
            p = o + (c - o) * k / n + (walk[k] - walk[n] * k / n) * amp
            pts.append(min(h, max(lo, self._round(p))))
        pts.append(c)
        ih = max(range(n), key=lambda k: max(pts[k], pts[k + 1]))
        il = min(range(n), key=lambda k: min(pts[k], pts[k + 1]))
        if il == ih and n > 1:
            il = (ih + 1 + int(rng.random() * (n - 1))) % n
        children = []
        for k in range(n):
            a, b = pts[k], pts[k + 1]
            top, bottom = max(a, b), min(a, b)
            ch = h if k == ih else min(h, self._round(top + (h - top) * 0.4 * rng.random()))
            cl = lo if k == il else max(lo, self._round(bottom - (bottom - lo) * 0.4 * rng.random()))
            children.append(_Node(a, b, max(ch, top), min(cl, bottom)))
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = children
        return children

    def _day(self, w: int, d: int) -> _Node:
        return self._split(self._week(w), 5, (1, w))[d]

    def _hour(self, w: int, d: int, hr: int) -> _Node:
        return self._split(self._day(w, d), 24, (2, w, d))[hr]

    def _minute(self, w: int, d: int, hr: int, mi: int) -> _Node:
        return self._split(self._hour(w, d, hr), 60, (3, w, d, hr))[mi]

    def _minute_ticks(self, w: int, d: int, hr: int, mi: int) -> list[int]:
        """The 60 tick bids of one minute: first the open, last the close, touching high and low."""
        key = (4, w, d, hr, mi)
        cached = self._cache.get(key)
        if cached is not None:
            return [n.open for n in cached]
        o, c, h, lo = self._minute(w, d, hr, mi)
        rng = self._rng(*key)
        n = TICKS_PER_MINUTE - 1
        walk = [0.0]
        for _ in range(n):
            walk.append(walk[-1] + rng.gauss(0.0, 1.0))
        amp = (h - lo) * 0.5 / math.sqrt(n)
        pts = [o] + [min(h, max(lo, self._round(o + (c - o) * k / n + (walk[k] - walk[n] * k / n) * amp)))
                     for k in range(1, n)] + [c]
        inner = list(range(1, n))
        rng.shuffle(inner)
        if max(pts) < h:
            pts[inner[0]] = h
        if min(pts) > lo:
            pts[inner[1]] = lo
        self._cache[key] = [_Node(p, p, p, p) for p in pts]
        return pts

    @staticmethod
    def _locate(t_ms: int) -> tuple[int, int, int, int, int] | None:
        """``(week, day, hour, minute, second)`` of an open instant, None on a weekend."""
        w, off = divmod(t_ms - WEEK_ORIGIN_MS, WEEK_MS)
        if off >= FX_OPEN_MS:
            return None
        m, ms = divmod(off, 60_000)
        return w, m // 1440, (m % 1440) // 60, m % 60, ms // 1000

    # -- bars ---------------------------------------------------------------------------------

    def _bar_fixed(self, start: int, span: int) -> Bar | None:
        loc = self._locate(start)
        if loc is None:
            return None
        w, d, hr, mi, _ = loc
        if span == WEEK_MS:
            nodes = [self._week(w)]
        elif span == DAY_MS:
            nodes = [self._day(w, d)]
        elif span > 3_600_000:
            nodes = [self._hour(w, d, hr + k) for k in range(span // 3_600_000)]
        elif span == 3_600_000:
            nodes = [self._hour(w, d, hr)]
        else:
            nodes = [self._minute(w, d, hr, mi + k) for k in range(span // 60_000)]
        minutes = span // 60_000 if span < WEEK_MS else FX_OPEN_MS // 60_000
        return _aggregate(start, nodes, minutes * TICKS_PER_MINUTE)

    def _bar_month(self, start: int, end: int) -> Bar | None:
        nodes = []
        minutes = 0
        t = start
        while t < end:
            loc = self._locate(t)
            if loc is None:
                t = _next_open(t)
                continue
            w, d, hr, _, _ = loc
            if hr == 0 and t + DAY_MS <= end:  # a whole trading day inside the month
                nodes.append(self._day(w, d))
                minutes += 1440
                t += DAY_MS
            else:
                nodes.append(self._hour(w, d, hr))
                minutes += 60
                t += 3_600_000
        return _aggregate(start, nodes, minutes * TICKS_PER_MINUTE) if nodes else None

    def bars_back(self, period: int, from_ms: int, to_ms: int) -> Iterator[Bar]:
        """Bars starting in ``[from_ms, to_ms)``, newest first (weekends have none)."""
        fixed = period_span(period)
        if fixed is None:  # MN1
            month = _dt.datetime.fromtimestamp((to_ms - 1) / 1000, tz=_dt.timezone.utc)
            y, mo = month.year, month.month
            while True:
                start = int(calendar.timegm((y, mo, 1, 0, 0, 0)) * 1000)
                if start < from_ms:
                    return
                ny, nm = (y + 1, 1) if mo == 12 else (y, mo + 1)
                bar = self._bar_month(start, int(calendar.timegm((ny, nm, 1, 0, 0, 0)) * 1000))
                if bar is not None:
                    yield bar
                y, mo = (y - 1, 12) if mo == 1 else (y, mo - 1)
        span, anchor = fixed
        start = (to_ms - 1 - anchor) // span * span + anchor
        while start >= from_ms:
            if span >= DAY_MS or fx_open(start):
                bar = self._bar_fixed(start, span)
                if bar is not None:
                    yield bar
                start -= span
            else:  # jump over the weekend
                offset = (start - WEEK_ORIGIN_MS) % WEEK_MS
                start -= (offset - FX_OPEN_MS) // span * span + span
        return

    # -- ticks ---------------------------------------------------------------------------------

    def tick(self, t_ms: int) -> int | None:
        """The bid of the tick at whole second ``t_ms``, None when the market is closed then."""
        loc = self._locate(t_ms)
        if loc is None:
            return None
        w, d, hr, mi, s = loc
        return self._minute_ticks(w, d, hr, mi)[s]

    def ticks_back(self, from_ms: int, to_ms: int) -> Iterator[tuple[int, int]]:
        """``(time, bid)`` of the ticks in ``[from_ms, to_ms]``, newest first."""
        t = to_ms - to_ms % 1000
        while t >= from_ms:
            loc = self._locate(t)
            if loc is None:
                offset = (t - WEEK_ORIGIN_MS) % WEEK_MS
                t -= offset - FX_OPEN_MS + 1000  # the last second before the weekend
                continue
            w, d, hr, mi, s = loc
            ticks = self._minute_ticks(w, d, hr, mi)
            base = t - s * 1000
            for k in range(s, -1, -1):
                tk = base + k * 1000
                if tk < from_ms:
                    return
                yield tk, ticks[k]
            t = base - 1000

    def next_tick_time(self, t_ms: int) -> int:
        """The first whole second after ``t_ms`` when the market is open."""
        return _next_open(t_ms - t_ms % 1000 + 1000)


def _next_open(t_ms: int) -> int:
    offset = (t_ms - WEEK_ORIGIN_MS) % WEEK_MS
    return t_ms if offset < FX_OPEN_MS else t_ms + WEEK_MS - offset


def _aggregate(start: int, nodes: list[_Node], volume: int) -> Bar:
    return Bar(start, nodes[0].open, max(n.high for n in nodes), min(n.low for n in nodes), nodes[-1].close,
               volume)
