"""``ReconnectPolicy``: exponential backoff with jitter and a cap."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ReconnectPolicy"]


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
