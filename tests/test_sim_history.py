"""Simulator history through a plain TLS client: consistent bars and ticks, weekends, paging, windows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simtools import OA_ERROR_RES, Harness, Wire, harness, oa_error

from ctrader_sync.messages import OpenApiMessages_pb2 as M

FRIDAY_CLOSE = 1_700_258_400_000  # Friday 2023-11-17 22:00 UTC, when the FX week closes
WEEK_OPEN = FRIDAY_CLOSE - 5 * 86_400_000  # Sunday 2023-11-12 22:00 UTC
M1, H1, D1, W1, MN1 = 1, 9, 12, 13, 14
HOUR, DAY = 3_600_000, 86_400_000


@pytest.fixture
def make() -> Iterator[Harness]:
    """Start simulators and clients; close them all and check no simulator thread survives."""
    yield from harness()


def bars(wire: Wire, account: int, period: int, from_ms: int, to_ms: int,
         **extra: Any) -> tuple[list[tuple[int, ...]], bool]:
    """``[(start_ms, open, high, low, close, volume)]`` oldest first, and ``hasMore``."""
    res = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=account, symbolId=1, period=period,
                                             fromTimestamp=from_ms, toTimestamp=to_ms, **extra))
    assert res.payloadType == 2138, res
    out = [(b.utcTimestampInMinutes * 60_000, b.low + b.deltaOpen, b.low + b.deltaHigh, b.low,
            b.low + b.deltaClose, b.volume) for b in res.message.trendbar]
    return out, res.message.hasMore


def aggregate(parts: list[tuple[int, ...]]) -> tuple[int, ...]:
    return (parts[0][0], parts[0][1], max(p[2] for p in parts), min(p[3] for p in parts), parts[-1][4],
            sum(p[5] for p in parts))


def ticks(wire: Wire, account: int, from_ms: int, to_ms: int, kind: int = 1) -> tuple[list[tuple[int, int]], bool]:
    """``[(time, price)]`` newest first (delta-decoded), and ``hasMore``."""
    res = wire.call(M.ProtoOAGetTickDataReq(ctidTraderAccountId=account, symbolId=1, type=kind,
                                            fromTimestamp=from_ms, toTimestamp=to_ms))
    assert res.payloadType == 2146, res
    t = p = 0
    out = []
    for tick in res.message.tickData:
        t, p = t + tick.timestamp, p + tick.tick
        out.append((t, p))
    return out, res.message.hasMore


def test_m1_aggregates_to_h1_and_h1_to_d1(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    days, more = bars(wire, a, D1, WEEK_OPEN, FRIDAY_CLOSE)
    assert len(days) == 5 and not more, "five trading days, each starting 22:00 UTC"
    day = days[2]
    hours, _ = bars(wire, a, H1, day[0], day[0] + DAY)
    assert len(hours) == 24 and aggregate(hours) == day
    for hour in (hours[0], hours[13], hours[23]):
        minutes, _ = bars(wire, a, M1, hour[0], hour[0] + HOUR)
        assert len(minutes) == 60 and aggregate(minutes) == hour
    week, _ = bars(wire, a, W1, WEEK_OPEN, FRIDAY_CLOSE)
    assert week == [aggregate(days)]
    for b in days + hours:
        assert b[3] <= min(b[1], b[4]) and b[2] >= max(b[1], b[4])


def test_same_seed_same_history_other_seed_other_history(make: Harness) -> None:
    _s1, w1 = make(seed=3, historical_limit=0)
    _s2, w2 = make(seed=3, historical_limit=0)
    _s3, w3 = make(seed=4, historical_limit=0)
    got = []
    for w in (w1, w2, w3):
        (a,) = w.login()
        got.append(bars(w, a, H1, WEEK_OPEN, WEEK_OPEN + DAY)[0])
    assert got[0] == got[1] and got[0] != got[2]


def test_ticks_lie_within_their_minute_bars(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    start = WEEK_OPEN + 2 * DAY + 7 * HOUR
    minutes, _ = bars(wire, a, M1, start, start + 3 * 60_000)
    got, more = ticks(wire, a, start, start + 3 * 60_000 - 1)
    assert len(got) == 180 and not more
    by_minute: dict[int, list[int]] = {}
    for t, price in reversed(got):
        by_minute.setdefault(t - t % 60_000, []).append(price)
    for start_ms, o, h, lo, c, volume in minutes:
        prices = by_minute[start_ms]
        assert (prices[0], max(prices), min(prices), prices[-1], len(prices)) == (o, h, lo, c, volume)
    ask, _ = ticks(wire, a, start, start + 59_999, kind=2)
    spread = wire.sim.symbol(1).spread
    assert [p for _, p in ask] == [p + spread for t, p in got if t < start + 60_000]


def test_no_bars_or_ticks_on_weekends(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    hours, _ = bars(wire, a, H1, FRIDAY_CLOSE - 2 * HOUR, FRIDAY_CLOSE + 2 * DAY + 2 * HOUR)
    assert [h[0] for h in hours] == [FRIDAY_CLOSE - 2 * HOUR, FRIDAY_CLOSE - HOUR,
                                     FRIDAY_CLOSE + 2 * DAY, FRIDAY_CLOSE + 2 * DAY + HOUR]
    days, _ = bars(wire, a, D1, WEEK_OPEN - 21 * DAY, FRIDAY_CLOSE + 2 * DAY)
    assert len(days) == 20
    for d in days:  # every day bar starts at 22:00 UTC, Sunday to Thursday
        assert d[0] % DAY == 22 * HOUR and (d[0] // DAY + 4) % 7 in (0, 1, 2, 3, 4)
    weekend, more = ticks(wire, a, FRIDAY_CLOSE, FRIDAY_CLOSE + 2 * DAY - 1)
    assert weekend == [] and not more
    around, _ = ticks(wire, a, FRIDAY_CLOSE - 2_000, FRIDAY_CLOSE + 2 * DAY + 1_000)
    assert [t for t, _ in around] == [FRIDAY_CLOSE + 2 * DAY + 1_000, FRIDAY_CLOSE + 2 * DAY,
                                      FRIDAY_CLOSE - 1_000, FRIDAY_CLOSE - 2_000]


def test_trendbars_page_backwards_with_has_more(make: Harness) -> None:
    _small, wire = make(request_limit=0, historical_limit=0, trendbar_chunk=100, tick_chunk=500)
    _big, whole = make(historical_limit=0)
    (a,) = wire.login()
    (b,) = whole.login()
    start, end = WEEK_OPEN + DAY, WEEK_OPEN + DAY + 6 * HOUR
    pages, to = [], end
    while True:
        page, more = bars(wire, a, M1, start, to)
        assert len(page) == (100 if more else 60)
        pages = page + pages
        if not more:
            break
        to = page[0][0]  # the next page ends where this one starts
    assert pages == bars(whole, b, M1, start, end)[0] and len(pages) == 360
    got, to = [], start + HOUR - 1
    while True:
        part, more = ticks(wire, a, start, to)
        got += part
        if not more:
            break
        to = part[-1][0] - 1
    assert len(got) == 3600 and [t for t, _ in got] == sorted({t for t, _ in got}, reverse=True)


def test_count_without_from_gives_the_newest_bars_skipping_the_weekend(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    res = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=H1, count=4,
                                             toTimestamp=FRIDAY_CLOSE + 2 * DAY + 2 * HOUR)).message
    assert res.hasMore
    assert [b.utcTimestampInMinutes * 60_000 for b in res.trendbar] == [
        FRIDAY_CLOSE - 2 * HOUR, FRIDAY_CLOSE - HOUR, FRIDAY_CLOSE + 2 * DAY, FRIDAY_CLOSE + 2 * DAY + HOUR]
    months = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=MN1,
                                                fromTimestamp=1_672_531_200_000, toTimestamp=1_704_067_200_000))
    assert len(months.message.trendbar) == 12, "one MN1 bar per calendar month of 2023"


@pytest.mark.parametrize(("period", "days"), [(M1, 35), (5, 35), (6, 245), (H1, 245), (10, 366), (D1, 366),
                                              (W1, 1830), (MN1, 1830)])
def test_trendbar_windows_are_enforced(make: Harness, period: int, days: int) -> None:
    _sim, wire = make(historical_limit=0, trendbar_chunk=10)
    (a,) = wire.login()
    ok = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=period,
                                            fromTimestamp=FRIDAY_CLOSE - days * DAY, toTimestamp=FRIDAY_CLOSE))
    assert ok.payloadType == 2138 and ok.message.hasMore
    wide = wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=period,
                                              fromTimestamp=FRIDAY_CLOSE - days * DAY - 1, toTimestamp=FRIDAY_CLOSE))
    assert wide.payloadType == OA_ERROR_RES and oa_error(wide) == "INCORRECT_BOUNDARIES"


def test_tick_and_cash_flow_windows_are_one_week(make: Harness) -> None:
    _sim, wire = make(historical_limit=0)
    (a,) = wire.login()
    week = 7 * DAY
    assert oa_error(wire.call(M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=1,
                                                      fromTimestamp=FRIDAY_CLOSE - week - 1,
                                                      toTimestamp=FRIDAY_CLOSE))) == "INCORRECT_BOUNDARIES"
    assert wire.call(M.ProtoOACashFlowHistoryListReq(ctidTraderAccountId=a, fromTimestamp=FRIDAY_CLOSE - week,
                                                     toTimestamp=FRIDAY_CLOSE)).payloadType == 2144
    assert oa_error(wire.call(M.ProtoOACashFlowHistoryListReq(
        ctidTraderAccountId=a, fromTimestamp=FRIDAY_CLOSE - week - 1, toTimestamp=FRIDAY_CLOSE))) \
        == "INCORRECT_BOUNDARIES"
    assert oa_error(wire.call(M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=M1,
                                                       fromTimestamp=FRIDAY_CLOSE, toTimestamp=FRIDAY_CLOSE - 1))) \
        == "INCORRECT_BOUNDARIES"


def test_history_requests_count_against_the_historical_limit(make: Harness) -> None:
    sim, wire = make(request_limit=0, historical_limit=5)
    (a,) = wire.login()
    reqs = [M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=M1, fromTimestamp=WEEK_OPEN,
                                     toTimestamp=WEEK_OPEN + HOUR),
            M.ProtoOACashFlowHistoryListReq(ctidTraderAccountId=a, fromTimestamp=WEEK_OPEN, toTimestamp=FRIDAY_CLOSE),
            M.ProtoOAOrderListReq(ctidTraderAccountId=a), M.ProtoOADealListReq(ctidTraderAccountId=a),
            M.ProtoOAGetTrendbarsReq(ctidTraderAccountId=a, symbolId=1, period=H1, fromTimestamp=WEEK_OPEN,
                                     toTimestamp=FRIDAY_CLOSE),
            M.ProtoOAGetTickDataReq(ctidTraderAccountId=a, symbolId=1, type=1, fromTimestamp=WEEK_OPEN,
                                    toTimestamp=WEEK_OPEN + 10_000)]
    wire.sock.sendall(b"".join(wire.codec.encode(r, f"h{i}") for i, r in enumerate(reqs)))
    answers = [wire.answer(f"h{i}") for i in range(len(reqs))]
    assert [f.payloadType for f in answers[:5]] == [2138, 2144, 2176, 2134, 2138]
    assert oa_error(answers[5]) == "REQUEST_FREQUENCY_EXCEEDED"
    assert sim.connections[0].max_requests_in_window(historical=True) == 6
