"""Per-connection request limits: sliding one-second windows for all and for historical requests."""

from __future__ import annotations

from collections import deque

from ..protobuf import HISTORICAL_PAYLOAD_TYPES

__all__ = ["RequestLimiter"]


class RequestLimiter:
    """Counts requests in sliding 1 s windows (0: no limit); a historical request counts in both."""

    def __init__(self, request_limit: int, historical_limit: int) -> None:
        self.request_limit = request_limit
        self.historical_limit = historical_limit
        self._all: deque[float] = deque()
        self._historical: deque[float] = deque()

    def over(self, payload_type: int, now: float) -> bool:
        """Count one request at ``now`` (monotonic s); True if it is over a limit (then not counted)."""
        if self.request_limit > 0:
            q = self._all
            while q and now - q[0] >= 1.0:
                q.popleft()
            if len(q) >= self.request_limit:
                return True
        if self.historical_limit > 0 and payload_type in HISTORICAL_PAYLOAD_TYPES:
            h = self._historical
            while h and now - h[0] >= 1.0:
                h.popleft()
            if len(h) >= self.historical_limit:
                return True
            h.append(now)
        if self.request_limit > 0:
            self._all.append(now)
        return False
