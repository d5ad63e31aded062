"""Retry policies as small immutable values: ``ReconnectPolicy`` (when to connect again) and
``RateLimitRetry`` (when to re-send a request the server refused for its frequency)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimitRetry", "ReconnectPolicy"]


@dataclass(frozen=True)
class ReconnectPolicy:
    """When to try connecting again after a failed attempt or a lost connection.

    The n-th consecutive failure (n = 1, 2, ...) waits
    ``min(maximum, initial * multiplier ** (n - 1))`` seconds, reduced by a random fraction of
    up to ``jitter`` (so many clients do not reconnect in lockstep).

    Args:
        initial: the first delay, in seconds.
        maximum: the cap on any delay, in seconds.
        multiplier: growth factor between consecutive delays.
        jitter: fraction in [0, 1] of each delay that is randomized away.
        max_attempts: consecutive failed attempts before giving up; ``None`` retries forever.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.multiplier < 1:
            raise ValueError("ReconnectPolicy needs initial >= 0, maximum >= 0 and multiplier >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``attempt``-th consecutive failure (``attempt`` >= 1)."""
        exponent = min(max(0, attempt - 1), 64)  # the cap is reached long before; avoid overflow
        base = min(self.maximum, self.initial * self.multiplier ** exponent)
        return base * (1.0 - self.jitter * rand())

    def gives_up(self, attempt: int) -> bool:
        """Whether to stop after ``attempt`` consecutive failures."""
        return self.max_attempts is not None and attempt >= self.max_attempts


@dataclass(frozen=True)
class RateLimitRetry:
    """How a request refused with ``REQUEST_FREQUENCY_EXCEEDED`` or ``BLOCKED_PAYLOAD_TYPE`` is re-sent.

    A refused request was not executed, so it is queued again (keeping its place before newer
    requests) and re-sent after a delay: the server's ``retryAfter`` when the error carries one,
    else ``min(maximum, initial * multiplier ** (n - 1))`` seconds before the n-th re-send.  After
    ``retries`` re-sends the request fails with :class:`~ctrader_sync.errors.RateLimitError`.

    ``Client(rate_limit_retry=RateLimitRetry(...))`` sets it; the default matches
    ``rate_limit_retries=3``: re-sends after 0.5, 1 and 2 s.

    Args:
        retries: re-sends before the request fails (0: fail at once).
        initial: the delay before the first re-send, in seconds.
        multiplier: growth factor between consecutive delays.
        maximum: the cap on any delay, in seconds.
    """

    retries: int = 3
    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 8.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.initial < 0 or self.maximum < 0 or self.multiplier < 1:
            raise ValueError("RateLimitRetry needs retries >= 0, initial >= 0, maximum >= 0 and multiplier >= 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the ``attempt``-th re-send (``attempt`` >= 1), or ``None`` when
        the request must fail instead; ``retry_after`` is the server's hint, used when given."""
        if attempt > self.retries:
            return None
        if retry_after:
            return float(retry_after)
        exponent = min(max(0, attempt - 1), 64)
        return min(self.maximum, self.initial * self.multiplier ** exponent)
