"""Shared fixtures: repository paths and a check that no test leaves a ctrader_sync thread behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def _ours() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ctrader_sync")]


def wait_no_threads(timeout: float = 5.0) -> list[threading.Thread]:
    """Wait until no ``ctrader_sync-*`` thread is alive; return the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    left = _ours()
    for t in left:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in _ours() if t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a ``ctrader_sync-*`` thread alive after it ends."""
    before = set(_ours())
    yield
    left = [t for t in wait_no_threads() if t not in before]
    assert not left, f"threads left behind: {[t.name for t in left]}"
