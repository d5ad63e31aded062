"""``every()``: the replacement of Twisted's ``task.LoopingCall``."""

from __future__ import annotations

import logging
import threading

import pytest
from clienttools import Recorder, wait_until

from ctrader_sync import Every, every


def test_calls_at_once_then_on_a_fixed_rate_until_stopped() -> None:
    calls = Recorder()
    loop = every(0.02, calls, "a")
    try:
        calls.wait_for(4)
    finally:
        assert loop.stop()
    assert all(c == ("a",) for c in calls.calls)
    assert loop.calls == len(calls.calls) >= 4 and not loop.running  # nothing after stop()
    assert "stopped" in repr(loop) and isinstance(loop, Every)
    assert any(t.name.startswith("ctrader_sync-every-") for t in [loop._thread])


def test_arguments_reach_the_function() -> None:
    seen: list[tuple[tuple[object, ...], dict[str, object]]] = []
    done = threading.Event()

    def fn(*args: object, **kwargs: object) -> None:
        seen.append((args, kwargs))
        done.set()

    with every(10.0, fn, 1, 2, key="v"):
        assert done.wait(5)
    assert seen == [((1, 2), {"key": "v"})]  # now=True: the first call at once, the next 10 s later


def test_now_false_waits_one_period_first() -> None:
    done = threading.Event()
    loop = every(30.0, done.set, now=False)
    try:
        assert not done.wait(0.1)  # nothing at once (a 30 s period)
    finally:
        assert loop.stop()
    assert loop.calls == 0


def test_an_exception_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = Recorder()

    def flaky() -> None:
        calls()
        if len(calls.calls) == 1:
            raise RuntimeError("first call fails")

    with caplog.at_level(logging.ERROR, logger="ctrader_sync"):
        loop = every(0.01, flaky)
        try:
            calls.wait_for(3)
        finally:
            loop.stop()
    assert loop.errors == 1 and "first call fails" in caplog.text


def test_stop_from_inside_the_function() -> None:
    holder: list[Every] = []
    ready = threading.Event()

    def stop_self() -> None:
        ready.wait(5)
        holder[0].stop()

    holder.append(every(0.01, stop_self))
    ready.set()
    wait_until(lambda: not holder[0].running, 5, "the loop to end after stopping itself")
    assert holder[0].calls == 1


def test_bad_arguments() -> None:
    for seconds in (0, -1, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError):
            every(seconds, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        every(1.0, "not callable")  # type: ignore[arg-type]
