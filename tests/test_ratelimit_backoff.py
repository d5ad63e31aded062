"""Units with a fake clock: the sliding-window limiter and the reconnect backoff."""

from __future__ import annotations

import random

import pytest

from ctrader_sync import ReconnectPolicy
from ctrader_sync._ratelimit import SlidingWindowLimiter


def max_in_window(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def drive(limiter: SlidingWindowLimiter, n: int, jitter: random.Random | None = None) -> list[float]:
    """Write n events as fast as the limiter allows, with a fake clock."""
    now, times = 0.0, []
    while len(times) < n:
        wait = limiter.wait_time(now)
        if wait > 0:
            now += wait
            continue
        limiter.record(now)
        times.append(now)
        now += jitter.random() * 0.003 if jitter else 0.0
    return times


def test_never_more_than_n_in_any_window_even_from_a_cold_start() -> None:
    limiter = SlidingWindowLimiter(50, 1.0, margin=0.0)
    times = drive(limiter, 500)
    assert max_in_window(times, 1.0) == 50
    # A token bucket would allow 50 at t=0 and ~50 more just under 1 s later: 99 in one window.
    assert times[50] >= 1.0


def test_margin_keeps_arrivals_apart() -> None:
    limiter = SlidingWindowLimiter(5, 1.0, margin=0.05)
    times = drive(limiter, 50, random.Random(1))
    assert max_in_window(times, 1.05 - 1e-9) == 5


def test_available_counts_free_slots() -> None:
    limiter = SlidingWindowLimiter(3, 1.0, margin=0.0)
    assert limiter.available(0.0) == 3
    for t in (0.0, 0.1, 0.2):
        limiter.record(t)
    assert limiter.available(0.5) == 0
    assert limiter.wait_time(0.5) == pytest.approx(0.5)
    assert limiter.available(1.15) == 2
    limiter.reset()
    assert limiter.available(1.15) == 3
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0)


def test_backoff_grows_exponentially_to_the_cap_with_jitter() -> None:
    policy = ReconnectPolicy(initial=0.5, maximum=8.0, multiplier=2.0, jitter=0.5)
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(3, rand=lambda: 1.0) == 1.0  # half of 2.0 taken away by full jitter
    rng = random.Random(7)
    delays = [policy.delay(4, rng.random) for _ in range(200)]
    assert min(delays) >= 2.0 and max(delays) <= 4.0 and len(set(delays)) > 100
    assert policy.delay(10_000, rand=lambda: 0.0) == 8.0  # no overflow


def test_attempt_limit_and_validation() -> None:
    assert not ReconnectPolicy().gives_up(10**6)
    assert ReconnectPolicy(max_attempts=3).gives_up(3)
    assert not ReconnectPolicy(max_attempts=3).gives_up(2)
    for bad in ({"multiplier": 0.5}, {"jitter": 2.0}, {"max_attempts": 0}, {"initial": -1.0}):
        with pytest.raises(ValueError):
            ReconnectPolicy(**bad)  # type: ignore[arg-type]


def test_restamp_counts_a_delayed_write_when_it_left() -> None:
    """Claimed at t=0 but written at t=0.4 (a writer held up by the GIL or a busy machine): the next
    write must wait for 1 s after 0.4, or the server would see the two bursts within one second."""
    limiter = SlidingWindowLimiter(3, 1.0, margin=0.0)
    for _ in range(3):
        limiter.record(0.0)
    limiter.restamp(3, 0.4)
    assert limiter.wait_time(1.1) == pytest.approx(0.3)
    assert limiter.available(1.39) == 0 and limiter.available(1.41) == 3
    limiter.restamp(2, 0.1)  # never moves a stamp back
    assert limiter.available(1.39) == 0
