"""Futures resolved by the reader without the core lock: whoever waits or watches never misses the
answer, and an answer and ``cancel()`` racing each other end a request exactly one way."""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures import CancelledError
from typing import Any

from clienttools import connected

from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionReq, ProtoOAVersionRes
from ctrader_sync.simulator import Simulator

N = 2000


def test_a_done_callback_added_while_the_answer_arrives_runs_exactly_once() -> None:
    with Simulator(request_limit=0) as sim, connected(sim, numberOfMessagesToSendPerSecond=None) as client:
        calls: dict[str, int] = {}
        lock = threading.Lock()
        all_called = threading.Event()

        def done(future: Any) -> None:
            with lock:
                calls[future.clientMsgId] = calls.get(future.clientMsgId, 0) + 1
                if len(calls) == N:
                    all_called.set()

        futures = []
        for _ in range(N):
            future = client.send(ProtoOAVersionReq())
            future.add_done_callback(done)  # races the reader resolving it
            futures.append(future)
        assert all_called.wait(30), f"{N - len(calls)} done-callbacks never ran"
        assert set(calls.values()) == {1}
        assert all(isinstance(f.result(10), ProtoOAVersionRes) for f in futures)


def test_waiters_on_other_threads_and_concurrent_futures_wait_see_every_answer() -> None:
    with Simulator(request_limit=0) as sim, connected(sim, numberOfMessagesToSendPerSecond=None) as client:
        futures = [client.send(ProtoOAVersionReq()) for _ in range(N)]
        results: list[Any] = []
        errors: list[BaseException] = []

        def wait_all(part: list[Any]) -> None:
            try:
                results.extend(f.result(30) for f in part)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=wait_all, args=(futures[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        done, not_done = concurrent.futures.wait(futures, timeout=30)
        for t in threads:
            t.join(30)
        assert not errors and not not_done and len(done) == N
        assert len(results) == N and all(isinstance(r, ProtoOAVersionRes) for r in results)
        assert sum(1 for _ in concurrent.futures.as_completed(futures, timeout=10)) == N


def test_cancel_racing_the_answer_ends_each_request_one_way() -> None:
    with Simulator(request_limit=0) as sim, connected(sim, numberOfMessagesToSendPerSecond=None) as client:
        futures = [client.send(ProtoOAVersionReq()) for _ in range(N)]
        futures[N // 4].result(10)  # answers are streaming in now: cancels race them
        cancelled = [f.cancel() for f in futures]
        for future, ok in zip(futures, cancelled, strict=True):
            if ok:
                assert future.cancelled()
                try:
                    future.result(0)
                except CancelledError:
                    pass
                else:
                    raise AssertionError("cancel() returned True, yet the future has a result")
            else:
                assert not future.cancelled()
                assert isinstance(future.result(10), ProtoOAVersionRes)
        assert client.pending_count == 0
