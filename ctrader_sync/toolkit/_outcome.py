"""Certain outcomes: what became of an order whose answer was lost.

Nothing is ever re-sent.  Once the session is back (the client reconnects and re-authorises by
itself after ``login``), the order is looked up on the server: the open orders and positions of a
``ProtoOAReconcileReq`` and the order history (``ProtoOAOrderListReq``) of the minutes around the
moment it was sent, matched by ``clientOrderId`` (or, for requests that carry none, by what they
were meant to do).  The lookup either finds the order, or learns that the server has none, or runs
out of time; only the last is "unknown".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import (
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    RequestTimeoutError,
)
from ..messages.OpenApiMessages_pb2 import ProtoOAOrderListReq, ProtoOAReconcileReq

__all__ = ["HISTORY_MARGIN_MS", "Lookup", "OutcomeUnknown", "Snapshot"]

log = logging.getLogger("ctrader_sync.toolkit")

HISTORY_MARGIN_MS = 120_000
"""The order history is searched from this long before the order was sent (clock differences)."""
_MAX_PAGES = 20
_RETRYABLE = (ConnectionLostError, RequestTimeoutError, TimeoutError)


class OutcomeUnknown(Exception):
    """Internal: the server could not be asked within the deadline."""


class Snapshot:
    """What one lookup learned: the open positions and orders, and the recent order history."""

    def __init__(self, reconcile: Any, history: list[Any]) -> None:
        self.positions = {int(p.positionId): p for p in reconcile.position}
        self.open_orders = list(reconcile.order)
        self.history = history

    def find(self, match: Callable[[Any], bool]) -> Any | None:
        """The first order matching ``match``: an open one before one from the history."""
        for order in self.open_orders:
            if match(order):
                return order
        best = None
        for order in self.history:
            if match(order) and (best is None or order.utcLastUpdateTimestamp >= best.utcLastUpdateTimestamp):
                best = order
        return best


class Lookup:
    """Ask the server about one account's orders, retrying across reconnects until a deadline."""

    def __init__(self, client: Any, account_id: int) -> None:
        self._client = client
        self.account_id = account_id
        self.lookups = 0
        """How many lookups ran to completion (for tests and diagnostics)."""

    def snapshot(self, since_ms: int, deadline: float) -> Snapshot:
        """Open orders and positions, and the order history from ``since_ms`` to now.

        Waits for the session to be back when the connection is down.

        Raises:
            OutcomeUnknown: the server could not be asked before ``deadline`` (the cause is chained).
        """
        client = self._client
        last: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutcomeUnknown(f"could not ask the server in time (last error: {last})") from last
            try:
                client.wait_connected(remaining)
                reconcile_f = client.send(ProtoOAReconcileReq(ctidTraderAccountId=self.account_id),
                                          timeout=max(0.1, remaining))
                history = self._history(since_ms - HISTORY_MARGIN_MS, deadline)
                reconcile = reconcile_f.result(max(0.1, deadline - time.monotonic()) + 1.0)
            except ClientClosedError as exc:
                raise OutcomeUnknown("the client is closed") from exc
            except ConnectTimeoutError as exc:
                last = exc
                continue
            except ConnectError as exc:  # the client gave up reconnecting
                raise OutcomeUnknown(f"the client is not connected: {exc}") from exc
            except AuthenticationError as exc:
                # Recovery re-authorises the account before the connection is ready again; a
                # refusal now means the account lost its session for good (until a new login).
                raise OutcomeUnknown(f"the account is not authorized ({exc.error_code})") from exc
            except _RETRYABLE as exc:
                last = exc
                log.info("ctrader_sync: order lookup for account %d interrupted (%s); retrying",
                         self.account_id, exc)
                continue
            self.lookups += 1
            return Snapshot(reconcile, history)

    def _history(self, from_ms: int, deadline: float) -> list[Any]:
        """Orders of ``ProtoOAOrderListReq`` from ``from_ms`` to now, following ``hasMore``."""
        client = self._client
        to_ms = int(time.time() * 1000) + HISTORY_MARGIN_MS
        out: list[Any] = []
        seen: set[int] = set()
        for _ in range(_MAX_PAGES):
            remaining = max(0.1, deadline - time.monotonic())
            res = client.request(ProtoOAOrderListReq(ctidTraderAccountId=self.account_id, fromTimestamp=from_ms,
                                                     toTimestamp=to_ms), remaining)
            fresh = [o for o in res.order if int(o.orderId) not in seen]
            out.extend(fresh)
            seen.update(int(o.orderId) for o in fresh)
            if not res.hasMore or not fresh:
                break
            times = [int(o.tradeData.openTimestamp) for o in fresh if o.tradeData.HasField("openTimestamp")]
            if not times or min(times) <= from_ms:
                break
            to_ms = min(times)  # the answer holds the newest orders (by creation): ask for older ones
        return out
