"""The downloads behind ``Account.trendbars``, ``ticks``, ``deals``, ``order_history``, ``cash_flow``."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from ..messages.OpenApiModelMessages_pb2 import ProtoOATrendbarPeriod
from ._api import ClientLike
from ._history import ListPager, TickPager, TrendbarPager, merge_ticks, period_value, to_ms
from ._paging import Download, Job
from ._progress import Progress, reporter
from ._rows import Bars, Records, Ticks
from ._symbols import SymbolInfo

__all__ = ["ON_BAD", "SIDES", "TimeLike", "fetch_list", "fetch_ticks", "fetch_trendbars", "time_range"]

log = logging.getLogger("ctrader_sync")

TimeLike = datetime | date | int | float | str
"""A time: an aware datetime, a naive one (UTC), a date (midnight UTC), epoch ms, or ISO 8601 text."""

ON_BAD = ("drop", "keep", "raise")
"""What ``on_bad=`` takes: leave bad bars out (warning), keep them (warning), or raise ``BadBarError``."""

SIDES = ("bid", "ask", "both")
"""What ``side=`` takes for ticks."""


def time_range(start: TimeLike, end: TimeLike | None) -> tuple[int, int]:
    """``(start, end)`` in Unix ms; ``end`` defaults to now. ValueError if start is not before end."""
    lo = to_ms(start, "start")
    hi = to_ms(end, "end", default=int(time.time() * 1000))
    if lo >= hi:
        raise ValueError(f"start must be before end (start {lo} ms, end {hi} ms)")
    return lo, hi


def fetch_trendbars(client: ClientLike, account_id: int, symbol: SymbolInfo, period: str | int,
                    start: TimeLike, end: TimeLike | None, *, progress: Progress, on_bad: str,
                    timeout: float | None) -> Bars:
    """Download the bars of ``[start, end)``; see ``Account.trendbars``."""
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {', '.join(ON_BAD)}, not {on_bad!r}")
    value = period_value(period)
    lo, hi = time_range(start, end)
    pager = TrendbarPager(account_id, symbol, value, lo, hi)
    name = ProtoOATrendbarPeriod.Name(value)  # type: ignore[arg-type]
    download = Download(client, pager, reporter(progress, f"{symbol.name} {name}"), timeout=timeout)
    download.run(pager.jobs())
    good, bad, raw = pager.rows(on_bad)
    bars = Bars(good, symbol.name, name, symbol.digits, bad, raw)
    bars.requests, bars.seconds = download.requests, download.seconds
    log.debug("ctrader_sync: %s %s: %d bars in %d requests, %.2f s (%d duplicates dropped)", symbol.name, name,
              len(good), download.requests, download.seconds, pager.duplicates)
    return bars


def fetch_ticks(client: ClientLike, account_id: int, symbol: SymbolInfo, start: TimeLike,
                end: TimeLike | None, side: str, *, progress: Progress, timeout: float | None) -> Ticks:
    """Download the ticks of ``[start, end)``; see ``Account.ticks``."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, not {side!r}")
    lo, hi = time_range(start, end)
    pagers = {s: TickPager(account_id, symbol, s, lo, hi) for s in (("bid", "ask") if side == "both" else (side,))}
    jobs = [replace(job, tag=s) for s, pager in pagers.items() for job in pager.jobs()]
    download = Download(client, _Combined(pagers), reporter(progress, f"{symbol.name} ticks"), timeout=timeout)
    download.run(jobs)
    series = {s: p.series() for s, p in pagers.items()}
    ticks = Ticks(merge_ticks(series.get("bid"), series.get("ask")), symbol.name, side, symbol.digits)
    ticks.requests, ticks.seconds = download.requests, download.seconds
    return ticks


class _Combined:
    """Runs the bid and ask pagers in one download (each job tagged with its side)."""

    def __init__(self, pagers: dict[str, TickPager]) -> None:
        self.pagers = pagers

    def request(self, job: Job) -> Any:
        return self.pagers[job.tag].request(job)

    def take(self, job: Job, response: Any) -> list[Job]:
        return [replace(j, tag=job.tag) for j in self.pagers[job.tag].take(job, response)]

    def estimate(self, job: Job) -> int:
        return 1


def fetch_list(client: ClientLike, account_id: int, kind: str, start: TimeLike, end: TimeLike | None, *,
               progress: Progress, timeout: float | None) -> Records[Any]:
    """Download deals, orders or cash-flow records of ``[start, end]``."""
    lo, hi = time_range(start, end)
    pager = ListPager(kind, account_id, lo, hi)
    download = Download(client, pager, reporter(progress, kind.replace("_", " ")), timeout=timeout)
    download.run(pager.jobs())
    records: Records[Any] = Records(pager.sorted())
    records.requests, records.seconds = download.requests, download.seconds
    return records
