"""P&L: unrealized from the server (``ProtoOAGetPositionUnrealizedPnLReq``), a periodic refresh,
and realized P&L of closed positions from deals.

The server computes unrealized P&L in the account currency, with the conversion the quote
currency needs; ``net`` deducts what closing would cost.  Cheaper than converting by hand, and
the documented way: refresh every 2-3 s, not on every tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..errors import ClientClosedError
from ..messages.OpenApiMessages_pb2 import ProtoOAGetPositionUnrealizedPnLReq
from ._trade_types import ClosedPosition, PnL, money, ms_time, side_name

__all__ = ["PnLRefresher", "closed_positions", "fetch_unrealized"]

log = logging.getLogger("ctrader_sync.toolkit")


def fetch_unrealized(client: Any, account_id: int, timeout: float) -> dict[int, PnL]:
    """Unrealized P&L of every open position, by position id (``Decimal``, account currency)."""
    res = client.request(ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=account_id), timeout)
    digits = int(res.moneyDigits)
    now = datetime.now(timezone.utc)
    return {int(p.positionId): PnL(int(p.positionId), money(p.grossUnrealizedPnL, digits),
                                   money(p.netUnrealizedPnL, digits), now)
            for p in res.positionUnrealizedPnL}


class PnLRefresher:
    """Fetch unrealized P&L every ``every`` seconds on a background thread and hand it to ``sink``.

    Returned by ``Account.refresh_pnl()``; a context manager; ``stop()`` ends the thread (it also
    ends by itself when the client is closed).  A failed refresh is logged and tried again at the
    next tick.  ``wait(n, timeout)`` blocks until ``n`` refreshes succeeded.
    """

    def __init__(self, client: Any, account_id: int, every: float, sink: Callable[[dict[int, PnL]], None],
                 timeout: float = 10.0) -> None:
        if every <= 0:
            raise ValueError("every must be positive (the documented refresh is every 2-3 s)")
        self._client = client
        self.account_id = account_id
        self.every = every
        self._sink = sink
        self._timeout = timeout
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.refreshes = 0
        """How many refreshes succeeded."""
        self.last_error: BaseException | None = None
        """The error of the last failed refresh, if the last one failed."""
        self._thread = threading.Thread(target=self._run, name=f"ctrader_sync-pnl-{account_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pnl = fetch_unrealized(self._client, self.account_id, min(self._timeout, max(self.every, 1.0)))
            except ClientClosedError:
                return
            except Exception as exc:  # a lost connection, a timeout: try again at the next tick
                self.last_error = exc
                log.info("ctrader_sync: P&L refresh for account %d failed: %s", self.account_id, exc)
            else:
                self.last_error = None
                self._sink(pnl)
                with self._cond:
                    self.refreshes += 1
                    self._cond.notify_all()
            self._stop.wait(self.every)

    def wait(self, refreshes: int = 1, timeout: float | None = None) -> bool:
        """Block until ``refreshes`` refreshes succeeded in total; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.refreshes < refreshes:
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self.refreshes >= refreshes
                self._cond.wait(min(remaining, 1.0))
        return True

    def stop(self) -> None:
        """Stop refreshing and join the thread (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._timeout + 1.0)

    def __enter__(self) -> PnLRefresher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_positions(deals: Iterable[Any], lookup: Callable[[int], Any]) -> list[ClosedPosition]:
    """Realized results by position from ``ProtoOADeal`` objects (closing deals only), in the order
    of their last closing deal.  Partial closes of one position add up."""
    by_position: dict[int, list[Any]] = {}
    for deal in deals:
        if deal.HasField("closePositionDetail"):
            by_position.setdefault(int(deal.positionId), []).append(deal)
    out: list[ClosedPosition] = []
    for pid, closing in by_position.items():
        closing.sort(key=lambda d: int(d.executionTimestamp))
        info = lookup(int(closing[0].symbolId))
        gross = swap = commission = Decimal(0)
        volume = 0
        value = 0.0
        for deal in closing:
            detail = deal.closePositionDetail
            digits = int(detail.moneyDigits) if detail.HasField("moneyDigits") else (
                int(deal.moneyDigits) if deal.HasField("moneyDigits") else 2)
            gross += money(detail.grossProfit, digits)
            swap += money(detail.swap, digits)
            commission += money(detail.commission, digits)
            closed = int(detail.closedVolume) if detail.HasField("closedVolume") else int(deal.filledVolume)
            volume += closed
            value += float(deal.executionPrice) * closed
        last = closing[-1]
        out.append(ClosedPosition(
            position_id=pid, symbol=info.name if info is not None else str(last.symbolId),
            # the closing deal trades against the position: the position's side is the other one
            side=side_name(2 if int(last.tradeSide) == 1 else 1), volume=volume / 100.0,
            lots=float(info.volume_to_lots(volume)) if info is not None else float("nan"),
            entry_price=float(last.closePositionDetail.entryPrice),
            close_price=value / volume if volume else float("nan"),
            close_time=ms_time(last.executionTimestamp), gross_profit=gross, swap=swap,
            commission=commission, net_profit=gross + swap + commission, deals=tuple(closing)))
    out.sort(key=lambda c: c.close_time)
    return out
