"""Toolkit I against the bundled simulator: history over any range, the historical budget on the
wire, ticks of both sides, deal/order paging, numbers pandas can plot, CSV, progress."""

from __future__ import annotations

import importlib.util
import io
import itertools
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ctrader_sync import Client
from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.protobuf import Protobuf
from ctrader_sync.simulator import Simulator
from ctrader_sync.toolkit import Account, Bars, Ticks
from ctrader_sync.toolkit._history import TRENDBAR_WINDOW_MS, WEEK_MS
from tests.clienttools import connected

UTC = timezone.utc
TRENDBARS = Protobuf.payload_type(M.ProtoOAGetTrendbarsReq)


class Spy:
    """Records every request the client sends (through its public ``send``)."""

    def __init__(self, client: Client) -> None:
        self.sent: list[Any] = []
        original = client.send

        def send(message: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent.append(message)
            return original(message, *args, **kwargs)

        client.send = send  # type: ignore[method-assign]

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


@contextmanager
def open_session(**options: Any) -> Iterator[tuple[Simulator, Account, Spy]]:
    """A simulator (with ``options``), a logged-in client, its account and a spy on its requests."""
    options.setdefault("spot_interval", 0)
    with Simulator(seed=5, **options) as sim, connected(sim) as client:
        client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
        account = client.account()
        assert len(account.symbols) > 0  # loaded before the spy: only history requests are counted
        yield sim, account, Spy(client)


@pytest.fixture
def session() -> Iterator[tuple[Account, Spy]]:
    with open_session() as (_, account, spy):
        yield account, spy


def _fx_open(when: datetime) -> bool:
    """The FX market (and so the simulator's history) is closed from Friday to Sunday 22:00 UTC."""
    hours = when.weekday() * 24 + when.hour
    return not 4 * 24 + 22 <= hours < 6 * 24 + 22


def _check_bars(bars: Bars, start: datetime, end: datetime, minutes: int) -> None:
    times = [b.time for b in bars]
    assert times == sorted(set(times)), "bars not ascending or duplicated"
    step = timedelta(minutes=minutes)
    expected = []
    t = start
    while t < end:
        if _fx_open(t):
            expected.append(t)
        t += step
    assert times == expected, "bars missing or extra (they are contiguous apart from weekends)"
    assert all(b - a == step or not _fx_open(a + step) for a, b in itertools.pairwise(times))
    assert all(b.high >= max(b.open, b.close) >= min(b.open, b.close) >= b.low for b in bars)
    assert all(isinstance(b.close, float) for b in bars)


def _windows(requests: list[Any]) -> list[tuple[int, int]]:
    return [(r.fromTimestamp, r.toTimestamp) for r in requests]


def test_a_year_of_h1_over_several_windows_and_pages() -> None:
    with open_session(trendbar_chunk=700) as (sim, account, spy):  # small answers: several pages a window
        start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
        bars = account.trendbars("EURUSD", "H1", start, end, progress=False)
        on_wire = [r for r in sim.connections[-1].requests() if r.payload_type == TRENDBARS]
    _check_bars(bars, start, end, 60)
    assert 6200 < len(bars) < 6300
    asked = _windows(spy.of(M.ProtoOAGetTrendbarsReq))
    assert len(asked) == len(set(asked)), "a window was asked twice"
    assert all(hi - lo <= TRENDBAR_WINDOW_MS[9] for lo, hi in asked)
    assert len(on_wire) == len(asked) == bars.requests
    assert 9 <= bars.requests <= 14  # 2 windows, 700 bars an answer (12 pieces of 699 hours at most)
    print(f"\nyear of H1, chunk 700: {len(bars)} bars, {bars.requests} requests, {bars.seconds:.2f} s "
          f"(requests / 5 = {bars.requests / 5:.2f} s)")


def test_a_month_of_m1_within_the_historical_budget() -> None:
    with open_session() as (sim, account, spy):  # the default chunk (4000 bars)
        start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
        calls: list[tuple[int, int]] = []
        bars = account.trendbars("eurusd", "M1", start, end, progress=lambda d, t: calls.append((d, t)))
        record = sim.connections[-1]
    _check_bars(bars, start, end, 1)
    asked = _windows(spy.of(M.ProtoOAGetTrendbarsReq))
    assert len(asked) == len(set(asked)) == bars.requests > 5
    assert record.max_requests_in_window(1.0, historical=True) <= 5, "historical budget exceeded on the wire"
    # the download takes about requests / 5 seconds (first five at once); a loose sanity bound only
    budget = bars.requests / 5
    print(f"\nmonth of M1, default chunk: {len(bars)} bars, {bars.requests} requests, {bars.seconds:.2f} s "
          f"(requests / 5 = {budget:.2f} s)")
    assert bars.seconds < 3 * budget + 5
    assert calls[0][0] == 0 and calls[-1] == (bars.requests, bars.requests)
    assert [d for d, _ in calls] == list(range(bars.requests + 1))


def test_ticks_of_both_sides_merged() -> None:
    with open_session(tick_chunk=400) as (sim, account, spy):
        start = datetime(2024, 3, 4, 10, tzinfo=UTC)
        end = start + timedelta(minutes=30)
        ticks = account.ticks("EURUSD", start, end, side="both", progress=False)
        bid = account.ticks("EURUSD", start, end, side="bid", progress=False)
        with pytest.raises(ValueError, match="side"):
            account.ticks("EURUSD", start, end, side="mid")
    assert isinstance(ticks, Ticks) and ticks.columns == ["bid", "ask"]
    assert len(ticks) == 1800  # one a second on each side, same times: one row each
    times = [t.time for t in ticks]
    assert times == sorted(set(times)) and times[0] == start and times[-1] == end - timedelta(seconds=1)
    spread = sim.symbols[0].spread / 100_000
    assert all(math.isclose(t.ask - t.bid, spread, abs_tol=1e-9) for t in ticks)
    sides = [r.type for r in spy.of(M.ProtoOAGetTickDataReq)]
    assert sides.count(1) >= 5 + 5 and sides.count(2) >= 5  # several pages of each side (bid twice)
    assert [t.bid for t in bid] == [t.bid for t in ticks] and all(math.isnan(t.ask) for t in bid)
    assert [t.time for t in bid] == times


class Clock:
    """A simulated wall clock a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


def _trade(account: Account, clock: Clock, start: datetime, hours: list[float]) -> None:
    """Open and close a minimal position at each of ``hours`` after ``start`` (simulated time)."""
    symbol = account.symbols["EURUSD"]
    client = account.client
    for h in hours:
        clock.now = (start + timedelta(hours=h)).timestamp()
        with client.events(M.ProtoOAExecutionEvent, timeout=10) as executions:
            accepted = client.request(M.ProtoOANewOrderReq(
                ctidTraderAccountId=account.id, symbolId=symbol.id, orderType=1, tradeSide=1, volume=100_000),
                timeout=10)
            filled = next(e for e in executions if e.executionType == 3 and e.order.orderId == accepted.order.orderId)
        position = filled.position.positionId
        clock.now += 60
        account.client.request(M.ProtoOAClosePositionReq(ctidTraderAccountId=account.id, positionId=position,
                                                         volume=100_000), timeout=10)


def test_deals_orders_and_cash_flow_over_weeks_and_pages() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    clock = Clock(start)
    hours = [i * 30.5 for i in range(16)]  # 16 round trips over 20 days
    with open_session(list_chunk=5, clock=clock) as (sim, account, spy):
        _trade(account, clock, start, hours)
        deposits = [start + timedelta(hours=h + 7) for h in hours]
        for i, when in enumerate(deposits):
            clock.now = when.timestamp()
            sim.deposit(account.id, 100.0 + i)
        clock.now = (start + timedelta(days=30)).timestamp()
        end = start + timedelta(days=21)
        deals = account.deals(start, end, progress=False)
        orders = account.order_history(start, end, progress=False)
        cash = account.cash_flow(start, end, progress=False)
    opened = [int((start + timedelta(hours=h)).timestamp() * 1000) for h in hours]
    assert len(deals) == 32 and len({d.dealId for d in deals}) == 32
    assert [d.executionTimestamp for d in deals] == sorted(opened + [t + 60_000 for t in opened])
    assert len(orders) == 32 and len({o.orderId for o in orders}) == 32
    assert [o.tradeData.openTimestamp for o in orders] == sorted(opened + [t + 60_000 for t in opened])
    assert [c.changeBalanceTimestamp for c in cash] == [int(d.timestamp() * 1000) for d in deposits]
    assert [c.delta for c in cash] == [10_000 + 100 * i for i in range(16)]  # cents of USD
    for kind, records in ((M.ProtoOADealListReq, deals), (M.ProtoOAOrderListReq, orders),
                          (M.ProtoOACashFlowHistoryListReq, cash)):
        asked = _windows(spy.of(kind))
        assert len(asked) == len(set(asked)) == records.requests, kind.__name__
        assert all(hi - lo <= WEEK_MS for lo, hi in asked)
    assert deals.requests > 32 / 5 and orders.requests > 32 / 5  # five an answer: pages in every week
    assert cash.requests == 3  # three weeks, no paging
    if importlib.util.find_spec("pandas") is not None:
        frame = deals.to_pandas()
        assert list(frame["dealId"]) == [d.dealId for d in deals]
        assert str(frame["executionTimestamp"].dt.tz) == "UTC"
        assert frame["executionTimestamp"].iloc[0].value // 1_000_000 == deals[0].executionTimestamp
        assert set(frame["tradeSide"]) == {"BUY", "SELL"} and "closePositionDetail.grossProfit" in frame.columns
        assert list(orders.to_pandas()["tradeData.symbolId"].unique()) == [account.symbols["EURUSD"].id]


def test_order_history(session: tuple[Account, Spy]) -> None:
    account, _ = session
    symbol = account.symbols["EURUSD"]
    for price in (1.0, 1.01):
        account.client.request(M.ProtoOANewOrderReq(ctidTraderAccountId=account.id, symbolId=symbol.id,
                                                    orderType=2, tradeSide=1, volume=100_000, limitPrice=price),
                               timeout=10)
    orders = account.order_history(datetime.now(UTC) - timedelta(days=2))
    assert sorted(o.limitPrice for o in orders) == [1.0, 1.01]
    assert orders.requests == 1


def test_to_pandas_dtypes_and_plot(session: tuple[Account, Spy], tmp_path: Any) -> None:
    pd = pytest.importorskip("pandas")
    account, _ = session
    bars = account.trendbars("EURUSD", "H4", datetime(2024, 1, 1), datetime(2024, 2, 1), progress=False)
    frame = bars.to_pandas()
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(str(dtype) == "float64" for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp(bars[0].time) and len(frame) == len(bars) > 100
    assert frame["close"].iloc[-1] == bars[-1].close
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = frame["close"].plot()
    assert len(ax.get_lines()[0].get_xdata()) == len(bars)
    ax.figure.savefig(tmp_path / "bars.png")
    plt.close("all")
    ticks = account.ticks("EURUSD", datetime(2024, 1, 2), datetime(2024, 1, 2, 0, 5), side="both", progress=False)
    tframe = ticks.to_pandas()
    assert list(tframe.columns) == ["bid", "ask"] and all(str(d) == "float64" for d in tframe.dtypes)
    assert str(tframe.index.tz) == "UTC"


def test_records_to_pandas_gives_money_as_floats_in_the_account_currency() -> None:
    """Money fields of deals and cash flow are scaled by their own ``moneyDigits``; ids are not."""
    pytest.importorskip("pandas")
    from ctrader_sync.messages import OpenApiModelMessages_pb2 as MM
    from ctrader_sync.toolkit import Records

    deal = MM.ProtoOADeal(dealId=5, orderId=6, positionId=7, volume=100_000, filledVolume=100_000, symbolId=1,
                          createTimestamp=1_700_000_000_000, executionTimestamp=1_700_000_000_000,
                          commission=-345, moneyDigits=2, closePositionDetail=MM.ProtoOAClosePositionDetail(
                              entryPrice=1.1, grossProfit=123_456, swap=-7, commission=-9, balance=1_000_000,
                              moneyDigits=3))
    row = Records([deal]).to_pandas().iloc[0]
    assert (row["commission"], row["closePositionDetail.grossProfit"]) == (-3.45, 123.456)
    assert (row["closePositionDetail.balance"], row["closePositionDetail.swap"]) == (1000.0, -0.007)
    assert (row["dealId"], row["volume"]) == (5, 100_000)
    cash = MM.ProtoOADepositWithdraw(operationType=MM.BALANCE_DEPOSIT, balanceHistoryId=1, balance=1_050_000,
                                     delta=50_000, changeBalanceTimestamp=1_700_000_000_000, equity=1_049_000,
                                     moneyDigits=2)
    row = Records([cash]).to_pandas().iloc[0]
    assert (row["balance"], row["delta"], row["equity"]) == (10_500.0, 500.0, 10_490.0)


def test_without_pandas_a_clear_import_error(session: tuple[Account, Spy], monkeypatch: pytest.MonkeyPatch) -> None:
    account, _ = session
    bars = account.trendbars("EURUSD", "D1", datetime(2024, 1, 1), datetime(2024, 1, 10), progress=False)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"ctrader-sync\[pandas\]"):
        bars.to_pandas()


def test_csv_round_trip(session: tuple[Account, Spy], tmp_path: Any) -> None:
    account, _ = session
    bars = account.trendbars("USDJPY", "H1", datetime(2024, 1, 1), datetime(2024, 1, 3), progress=False)
    path = tmp_path / "bars.csv"
    assert bars.to_csv(path) == len(bars) == 48
    lines = path.read_text().splitlines()
    assert lines[0] == "time,open,high,low,close,volume"
    assert lines[1].startswith("2024-01-01T00:00:00+00:00,") and len(lines[1].split(",")[1].split(".")[1]) == 3
    again = Bars.read_csv(path)
    assert list(again) == list(bars)
    buffer = io.StringIO()
    bars.to_csv(buffer)
    assert buffer.getvalue() == path.read_text()
    ticks = account.ticks("USDJPY", datetime(2024, 1, 2), datetime(2024, 1, 2, 0, 0, 10), side="ask", progress=False)
    out = io.StringIO()
    assert ticks.to_csv(out) == 10
    assert out.getvalue().splitlines()[:2] == ["time,ask", f"2024-01-02T00:00:00.000+00:00,{ticks[0].ask:.3f}"]


def test_progress_bar_on_stderr(session: tuple[Account, Spy], capsys: pytest.CaptureFixture[str]) -> None:
    account, _ = session
    bars = account.trendbars("EURUSD", "D1", datetime(2023, 1, 1), datetime(2024, 1, 1), progress=True)
    err = capsys.readouterr().err
    assert f"{bars.requests}/{bars.requests} requests" in err and "EURUSD D1" in err
    account.trendbars("EURUSD", "D1", datetime(2023, 1, 1), datetime(2024, 1, 1))  # default: not a terminal
    assert capsys.readouterr().err == ""


def test_a_download_survives_a_lost_connection() -> None:
    with open_session(trendbar_chunk=700) as (sim, account, spy):
        start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
        sim.inject("close", after=4)  # the connection drops on the 4th request of the download
        bars = account.trendbars("EURUSD", "H1", start, end, progress=False)
        assert len(sim.connections) == 2
    _check_bars(bars, start, end, 60)  # complete, ascending, each bar once
    asked = _windows(spy.of(M.ProtoOAGetTrendbarsReq))
    assert len(asked) > len(set(asked)), "the window whose answer was lost is asked again"
    assert len(asked) - len(set(asked)) <= 3
