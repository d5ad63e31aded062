"""Sliding-window rate limiting: "at most N writes in any window of W seconds".

A token bucket that starts full lets N requests go at once and then refills, so up to 2N - 1 can
land inside one second.  Instead we keep the times of the last N writes and allow a write only when
the oldest of them is more than ``window + margin`` seconds old.  The margin absorbs network jitter
that can bunch requests together on arrival at the server.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """Allow at most ``limit`` events in any ``window``-second interval (plus ``margin``).

    Not thread-safe: the client uses it under its own lock.  Times come from the caller, so tests
    drive it with a fake clock.
    """

    __slots__ = ("_times", "limit", "margin", "window")

    def __init__(self, limit: int, window: float = 1.0, margin: float = 0.02) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.window = window
        self.margin = margin
        self._times: deque[float] = deque(maxlen=limit)

    def wait_time(self, now: float) -> float:
        """Seconds to wait before the next event is allowed (0.0 if allowed now)."""
        times = self._times
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window + self.margin - now)

    def available(self, now: float) -> int:
        """How many events may happen at ``now`` without breaking the limit."""
        times = self._times
        span = self.window + self.margin
        free = self.limit - len(times)
        for t in times:
            if t + span <= now:
                free += 1
            else:
                break
        return free

    def record(self, now: float) -> None:
        """Count one event at time ``now`` (times must not decrease)."""
        self._times.append(now)

    def restamp(self, count: int, now: float) -> None:
        """Move the newest ``count`` events to ``now`` (never earlier than they were).

        The client counts a write when it claims the requests and stamps them again when the
        bytes have left, so a writer delayed between the two (the GIL, a busy machine) cannot make
        the server see more than the limit in one window.
        """
        times = self._times
        for i in range(1, min(count, len(times)) + 1):
            if times[-i] < now:
                times[-i] = now

    def reset(self) -> None:
        """Forget past events.  The client calls it when a new connection becomes current: the
        server's limits are per connection, so the new one starts with a full budget."""
        self._times.clear()
