"""Toolkit I: the paging machinery against scripted servers (no sockets): windows, ``hasMore`` pages,
pieces, answers that hold the oldest or the newest rows, weekend gaps, refused windows, bad bars."""

from __future__ import annotations

import io
import itertools
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from ctrader_sync import ServerError
from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.messages.OpenApiModelMessages_pb2 import ProtoOADeal, ProtoOATrendbar
from ctrader_sync.simulator._recording import max_in_window
from ctrader_sync.toolkit import Account, BadBarError, BadBarWarning, SymbolInfo, _paging
from ctrader_sync.toolkit._history import TRENDBAR_WINDOW_MS, WEEK_MS, period_value, to_ms

UTC = timezone.utc
HOUR = 3_600_000


@pytest.fixture(autouse=True)
def unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted servers answer at once and have no budget: no pacing between requests."""
    monkeypatch.setattr(_paging, "HISTORICAL_PER_SECOND", 0)


class FakeClient:
    """Answers requests at once from ``serve(message)``; records every request."""

    def __init__(self, serve: Callable[[Any], Any]) -> None:
        self.serve = serve
        self.requests: list[Any] = []
        self.authorized_accounts = [7]

    def send(self, message: Any, clientMsgId: str | None = None, timeout: float | None = None,
             **fields: Any) -> Future[Any]:
        self.requests.append(message)
        future: Future[Any] = Future()
        try:
            future.set_result(self.serve(message))
        except ServerError as exc:
            future.set_exception(exc)
        return future

    def request(self, message: Any, timeout: float | None = None, **fields: Any) -> Any:
        return self.send(message).result()

    def on(self, message_type: Any, callback: Any) -> Any:
        return None


def _symbol() -> SymbolInfo:
    return SymbolInfo(id=1, name="EURUSD", description="", digits=5, pip_position=4, lot_size=Decimal(100000),
                      min_volume=Decimal(1000), max_volume=Decimal(10**8), step_volume=Decimal(1000),
                      base_asset="EUR", quote_asset="USD")


def _account(client: FakeClient) -> Account:
    account = Account(client, 7)
    symbol = _symbol()
    catalog = account.symbols
    catalog._by_id, catalog._by_name, catalog._loaded = {1: symbol}, {"EURUSD": symbol, "eurusd": symbol}, True
    return account


def _is_weekend(ms: int) -> bool:
    """Closed from Friday 22:00 to Sunday 22:00 UTC, like an FX market."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    hours = when.weekday() * 24 + when.hour
    return 4 * 24 + 22 <= hours < 6 * 24 + 22


def bar_server(chunks: list[int], step: int = HOUR, weekends: bool = True,
               bad_at: set[int] | None = None) -> Callable[[Any], Any]:
    """Trendbars with ``hasMore`` backwards from toTimestamp; the n-th answer holds ``chunks[n]``
    bars at most (the last chunk repeats); windows wider than the documented maximum refused."""
    answers = [0]

    def serve(msg: Any) -> Any:
        assert isinstance(msg, M.ProtoOAGetTrendbarsReq)
        if msg.toTimestamp - msg.fromTimestamp > TRENDBAR_WINDOW_MS[msg.period]:
            raise ServerError("INCORRECT_BOUNDARIES", "window too wide")
        limit = chunks[min(answers[0], len(chunks) - 1)]
        answers[0] += 1
        first = -(-msg.fromTimestamp // step)
        last = (msg.toTimestamp - 1) // step
        times = [i * step for i in range(first, last + 1) if not (weekends and _is_weekend(i * step))]
        res = M.ProtoOAGetTrendbarsRes(ctidTraderAccountId=7, period=msg.period, timestamp=0, symbolId=1,
                                       hasMore=len(times) > limit)
        for t in times[-limit:]:
            high = 0 if bad_at and t in bad_at else 30
            res.trendbar.append(ProtoOATrendbar(volume=5, period=msg.period, low=100_000 + (t // step) % 50,
                                                deltaOpen=10, deltaClose=20, deltaHigh=high,
                                                utcTimestampInMinutes=t // 60_000))
        return res

    return serve


def _windows(client: FakeClient) -> list[tuple[int, int]]:
    return [(r.fromTimestamp, r.toTimestamp) for r in client.requests]


def test_a_year_of_h1_in_windows_pieces_and_pages() -> None:
    client = FakeClient(bar_server([700, 700, 300]))  # the server's chunk shrinks: pieces need pages too
    start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    calls: list[tuple[int, int]] = []
    bars = _account(client).trendbars("eurusd", "H1", start, end, progress=lambda d, t: calls.append((d, t)))
    asked = _windows(client)
    assert len(asked) == len(set(asked)), "a window was asked twice"
    assert all(hi - lo <= TRENDBAR_WINDOW_MS[9] for lo, hi in asked)
    times = [b.time for b in bars]
    assert times == sorted(set(times)), "not ascending or duplicated"
    expected = [t for t in range(to_ms(start, "s"), to_ms(end, "e"), HOUR) if not _is_weekend(t)]
    assert [to_ms(t, "t") for t in times] == expected  # contiguous apart from weekends
    assert 6000 < len(bars) < 6400
    assert bars.requests == len(asked)
    # progress: (0, n) first, then one call per answer, ending at (requests, requests)
    assert calls[0][0] == 0 and calls[-1] == (bars.requests, bars.requests)
    assert [d for d, _ in calls] == list(range(bars.requests + 1))
    assert all(d <= t for d, t in calls)
    assert isinstance(bars[0].open, float) and bars[0].time.tzinfo is not None


def test_windows_follow_the_period_limits() -> None:
    client = FakeClient(bar_server([10_000], step=60_000, weekends=False))
    bars = _account(client).trendbars(1, "M1", datetime(2024, 1, 1), datetime(2024, 3, 1))  # 60 days of M1
    asked = _windows(client)
    assert all(hi - lo <= TRENDBAR_WINDOW_MS[1] for lo, hi in asked)
    assert len(bars) == 60 * 1440
    # 86 400 bars, 10 000 per answer: the fewest requests possible
    assert len(asked) <= math.ceil(60 * 1440 / 10_000) + 2  # at most one more per window than the fewest


def test_a_refused_window_is_split() -> None:
    serve = bar_server([5000])

    def stricter(msg: Any) -> Any:
        if msg.toTimestamp - msg.fromTimestamp > 150 * 86_400_000:
            raise ServerError("INCORRECT_BOUNDARIES", "too wide for this server")
        return serve(msg)

    client = FakeClient(stricter)
    bars = _account(client).trendbars("EURUSD", "H1", datetime(2023, 1, 1), datetime(2023, 8, 1))
    refused = [(lo, hi) for lo, hi in _windows(client) if hi - lo > 150 * 86_400_000]
    assert len(refused) == 1  # the 212-day window, then its halves
    times = [to_ms(b.time, "t") for b in bars]
    assert times == [t for t in range(to_ms(datetime(2023, 1, 1), "s"), to_ms(datetime(2023, 8, 1), "e"), HOUR)
                     if not _is_weekend(t)]


def test_other_server_errors_are_raised() -> None:
    def refuse(msg: Any) -> Any:
        raise ServerError("SYMBOL_NOT_FOUND", "no symbol")

    with pytest.raises(ServerError, match="SYMBOL_NOT_FOUND"):
        _account(FakeClient(refuse)).trendbars("EURUSD", "H1", datetime(2023, 1, 1), datetime(2023, 2, 1))


def test_bad_bars_are_reported_not_silently_kept() -> None:
    start = to_ms(datetime(2023, 1, 2), "s")
    bad_at = {start + 5 * HOUR, start + 9 * HOUR}
    make = lambda: _account(FakeClient(bar_server([5000], bad_at=bad_at)))  # noqa: E731
    with pytest.warns(BadBarWarning, match="2 bad EURUSD"):
        bars = make().trendbars("EURUSD", "H1", start, start + 24 * HOUR)
    assert len(bars) == 22 and [to_ms(b.time, "t") for b in bars.bad] == sorted(bad_at)
    assert all(b.high >= max(b.open, b.close) >= min(b.open, b.close) >= b.low for b in bars)
    assert len(bars.raw) == 22
    with pytest.warns(BadBarWarning):
        kept = make().trendbars("EURUSD", "H1", start, start + 24 * HOUR, on_bad="keep")
    assert len(kept) == 24 and len(kept.bad) == 2
    with pytest.raises(BadBarError) as caught:
        make().trendbars("EURUSD", "H1", start, start + 24 * HOUR, on_bad="raise")
    assert len(caught.value.bad) == 2
    with pytest.raises(ValueError, match="on_bad"):
        make().trendbars("EURUSD", "H1", start, start + HOUR, on_bad="fix")


def test_arguments() -> None:
    assert period_value("h1") == period_value(9) == 9
    with pytest.raises(ValueError, match="H4"):
        period_value("H2")
    assert to_ms(datetime(2024, 1, 1), "s") == to_ms(datetime(2024, 1, 1, tzinfo=UTC), "s") == 1_704_067_200_000
    assert to_ms(datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), "s") == 1_704_067_200_000
    assert to_ms("2024-01-01", "s") == to_ms("2024-01-01T00:00:00Z", "s") == 1_704_067_200_000
    assert to_ms(1_704_067_200_000, "s") == 1_704_067_200_000
    with pytest.raises(ValueError):
        to_ms("yesterday", "s")
    account = _account(FakeClient(bar_server([10])))
    with pytest.raises(ValueError, match="before"):
        account.trendbars("EURUSD", "H1", datetime(2024, 2, 1), datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        account.trendbars("EURUSD", "H1", None, datetime(2024, 1, 1))  # type: ignore[arg-type]


def deal_server(times: list[int], page: int, newest_first: bool) -> Callable[[Any], Any]:
    """Deals at ``times``; an answer holds ``page`` of them, the oldest or the newest, ``hasMore``."""

    def serve(msg: Any) -> Any:
        assert msg.toTimestamp - msg.fromTimestamp <= WEEK_MS
        chosen = [(i, t) for i, t in enumerate(times) if msg.fromTimestamp <= t <= msg.toTimestamp]
        part = chosen[-page:] if newest_first else chosen[:page]
        res = M.ProtoOADealListRes(ctidTraderAccountId=7, hasMore=len(chosen) > page)
        for i, t in part:
            res.deal.append(ProtoOADeal(dealId=i + 1, orderId=i + 1, positionId=1, volume=100, filledVolume=100,
                                        symbolId=1, createTimestamp=t, executionTimestamp=t, tradeSide=1,
                                        dealStatus=2))
        return res

    return serve


@pytest.mark.parametrize("newest_first", [False, True])
def test_deals_paging_whichever_end_an_answer_holds(newest_first: bool) -> None:
    start = to_ms(datetime(2024, 1, 1), "s")
    times = sorted({start + (i * 7_919_993) % (20 * 86_400_000) for i in range(300)})
    times += [times[100]] * 3  # deals in the same millisecond across a page boundary
    times.sort()
    client = FakeClient(deal_server(times, 25, newest_first))
    deals = _account(client).deals(start, start + 21 * 86_400_000)
    assert [d.executionTimestamp for d in deals] == times
    assert len({d.dealId for d in deals}) == len(times)
    asked = _windows(client)
    assert len(asked) == len(set(asked)) and all(hi - lo <= WEEK_MS for lo, hi in asked)
    assert deals.requests == len(asked)


def test_requests_are_handed_over_evenly_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_paging, "HISTORICAL_PER_SECOND", 5)
    sent: list[float] = []
    serve = bar_server([20])

    def timed(msg: Any) -> Any:
        sent.append(time.monotonic())
        return serve(msg)

    client = FakeClient(timed)
    bars = _account(client).trendbars("EURUSD", "H1", datetime(2023, 1, 2), datetime(2023, 1, 7), progress=False)
    assert bars.requests == len(sent) >= 6
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.2, gaps  # one every 1.05 / 5 s, never a burst
    assert max_in_window(sent, 1.0) <= 5
    assert bars.seconds < bars.requests / 5 * 1.1 + 0.5


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_progress_shows_a_bar_only_on_a_terminal_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    start, end = datetime(2023, 1, 2), datetime(2023, 1, 7)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys.modules["ctrader_sync.toolkit._progress"], "AUTO_AFTER", 3600.0)
    bars = _account(FakeClient(bar_server([20]))).trendbars("EURUSD", "H1", start, end)
    assert terminal.getvalue() == ""  # quick: no bar
    monkeypatch.setattr(sys.modules["ctrader_sync.toolkit._progress"], "AUTO_AFTER", 0.0)
    _account(FakeClient(bar_server([20]))).trendbars("EURUSD", "H1", start, end)
    shown = terminal.getvalue()
    assert f"EURUSD H1 [{'#' * 30}] {bars.requests}/{bars.requests} requests" in shown and shown.endswith("\n")
    plain = io.StringIO()  # not a terminal: never a bar
    monkeypatch.setattr(sys, "stderr", plain)
    _account(FakeClient(bar_server([20]))).trendbars("EURUSD", "H1", start, end)
    assert plain.getvalue() == ""
