"""Helpers for client tests: a simulator + client pair and event waiting (no sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ctrader_sync import Client, ReconnectPolicy
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
)
from ctrader_sync.simulator import Simulator

FAST_RECONNECT = ReconnectPolicy(initial=0.01, maximum=0.05, multiplier=2.0, jitter=0.5)


def make_client(sim: Simulator, **options: Any) -> Client:
    """A client for ``sim`` with fast reconnects unless overridden."""
    options.setdefault("reconnect", FAST_RECONNECT)
    return Client(sim.host, sim.port, ssl_context=sim.client_ssl_context(), **options)


@contextmanager
def connected(sim: Simulator, **options: Any) -> Iterator[Client]:
    """A started, connected client; closed (and checked to be fully stopped) on exit."""
    client = make_client(sim, **options)
    client.start()
    try:
        client.wait_connected(10)
        yield client
    finally:
        client.close()


def manual_login(client: Client, sim: Simulator, account: int | None = None) -> int:
    """Application auth + one account auth, by hand (the base client has no session helper)."""
    client.send(ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret)).result(10)
    account = account if account is not None else sim.account_ids[0]
    client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=sim.access_token)).result(10)
    return account


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for ``predicate`` using a condition poll on a short event wait (no bare sleeps)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        tick.wait(0.005)


class Recorder:
    """Collects callback calls and lets a test wait for a count of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def __call__(self, *args: Any) -> None:
        with self._cond:
            self.calls.append(args)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[Any, ...]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= n, timeout):
                raise AssertionError(f"expected {n} calls within {timeout} s, got {len(self.calls)}: {self.calls}")
            return list(self.calls)
