"""``ctrader_sync.aio``: awaiting requests, cancelling them (three cases), async event streams,
blocking calls off the loop, under ``asyncio.run`` and in a Jupyter kernel (top-level ``await``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clienttools import Recorder, connected, make_client, wait_until

from ctrader_sync import ClientClosedError, RequestTimeoutError
from ctrader_sync.aio import AsyncAccount, AsyncClient, AsyncEventStream, wrap
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOAUnsubscribeSpotsReq,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator


def cids_on_wire(sim: Simulator) -> list[str]:
    return [r.client_msg_id for c in sim.connections for r in c.messages
            if r.direction == "in" and r.client_msg_id is not None]


def test_await_request_and_send_under_asyncio_run() -> None:
    async def main(sim: Simulator) -> tuple[Any, Any, Any]:
        async with AsyncClient(make_client(sim)) as client:
            version = await client.request(ProtoOAVersionReq(), timeout=10)
            by_name = await client.request("ProtoOAVersionReq", timeout=10)
            future = client.send(ProtoOAVersionReq(), clientMsgId="mine")
            assert isinstance(future, asyncio.Future)
            return version, by_name, await future

    with Simulator() as sim:
        answers = asyncio.run(main(sim))
        assert all(isinstance(a, ProtoOAVersionRes) and a.version for a in answers)
        assert "mine" in cids_on_wire(sim)


def test_errors_reach_the_awaiting_task() -> None:
    async def main(sim: Simulator) -> None:
        async with AsyncClient(make_client(sim)) as client:
            sim.inject("drop")
            with pytest.raises(RequestTimeoutError):
                await client.request(ProtoOAVersionReq(), timeout=0.3)
            assert client.client.pending_count == 0
        with pytest.raises(ClientClosedError):
            client.send(ProtoOAVersionReq())

    with Simulator() as sim:
        asyncio.run(main(sim))


def test_cancel_before_write_is_never_written() -> None:
    """Case 1: the awaiting task is cancelled while its request is still queued."""
    async def main(sim: Simulator) -> None:
        client = AsyncClient(make_client(sim))  # not started: requests stay queued
        try:
            keep = asyncio.ensure_future(client.request(ProtoOAVersionReq(), clientMsgId="keep"))
            drop = asyncio.ensure_future(client.request(ProtoOAVersionReq(), clientMsgId="drop"))
            await asyncio.sleep(0)  # both tasks have sent their request (one loop turn, not a timing wait)
            assert client.client.pending_count == 2
            drop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await drop
            assert client.client.pending_count == 1  # removed from the queue at once
            await client.start(10)
            await keep
            await client.request(ProtoOAVersionReq(), clientMsgId="after", timeout=10)
        finally:
            await client.close()

    with Simulator() as sim:
        asyncio.run(main(sim))
        assert cids_on_wire(sim) == ["keep", "after"]


def test_cancel_after_write_discards_the_late_answer() -> None:
    """Case 2: written, not answered: the task ends cancelled and the late answer is discarded."""
    async def main(sim: Simulator, answers: Recorder) -> None:
        async with AsyncClient(make_client(sim)) as client:
            client.client.on(ProtoOAVersionRes, answers)
            sim.inject("delay", delay=0.3)
            task = asyncio.ensure_future(client.request(ProtoOAVersionReq(), clientMsgId="late"))
            await asyncio.to_thread(wait_until, lambda: "late" in cids_on_wire(sim), 10.0, "the request on the wire")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.to_thread(answers.wait_for, 1)  # the late answer arrived ...
            assert client.client.pending_count == 0  # ... and was discarded, nothing waits for it

    with Simulator() as sim:
        asyncio.run(main(sim, Recorder()))
        assert cids_on_wire(sim) == ["late"]


def test_cancel_after_answer_leaves_the_request_alone() -> None:
    """Case 3: the answer is in before the cancel: the request keeps its answer."""
    async def main(sim: Simulator) -> None:
        async with AsyncClient(make_client(sim)) as client:
            request = client.client.send(ProtoOAVersionReq())
            awaitable = wrap(request)
            response = request.result(10)  # answered while the loop was busy (it has not seen it yet)
            assert awaitable.cancel()  # the awaiting side gives up ...
            with pytest.raises(asyncio.CancelledError):
                await awaitable
            assert not request.cancelled() and request.result(0) is response  # ... the request is unaffected
            done = client.send(ProtoOAVersionReq())
            answer = await done
            assert done.cancel() is False and done.result() is answer  # after the await: nothing to cancel

    with Simulator() as sim:
        asyncio.run(main(sim))


def test_async_for_over_spot_events_uses_no_thread_per_stream() -> None:
    async def main(sim: Simulator) -> list[ProtoOASpotEvent]:
        async with AsyncClient(make_client(sim)) as client:
            accounts = await client.login(sim.client_id, sim.client_secret, sim.access_token,
                                          accounts=[sim.account_ids[0]])
            account = accounts[0].ctidTraderAccountId
            before = threading.active_count()
            streams = [client.events(ProtoOASpotEvent, timeout=10) for _ in range(3)]
            await client.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]), timeout=10)

            async def take(stream: AsyncEventStream, n: int) -> list[Any]:
                async with stream:
                    return [spot async for spot in _islice(stream, n)]

            envelopes = client.events(ProtoOASpotEvent, timeout=10, envelope=True)
            streams.append(envelopes)
            results = await asyncio.gather(*(take(s, 5) for s in streams))
            assert all(e.payloadType == 2131 and e.payload for e in results[-1]), "envelopes, not messages"
            results = results[:-1]
            assert threading.active_count() == before, "a stream must not start a thread"
            await client.request(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]), timeout=10)
            assert all(len(r) == 5 for r in results)
            return results[0]

    with Simulator(spot_interval=0.01) as sim:
        spots = asyncio.run(main(sim))
        stamps = [s.timestamp for s in spots]
        assert stamps == sorted(stamps)


async def _islice(stream: AsyncEventStream, n: int) -> Any:
    count = 0
    async for item in stream:
        yield item
        count += 1
        if count == n:
            return


def test_async_stream_slow_consumer_drops_oldest_and_counts() -> None:
    async def main(sim: Simulator) -> None:
        async with AsyncClient(make_client(sim)) as client:
            accounts = await client.login(sim.client_id, sim.client_secret, sim.access_token,
                                          accounts=[sim.account_ids[0]])
            account = accounts[0].ctidTraderAccountId
            async with client.events(ProtoOASpotEvent, maxsize=5, timeout=2.0) as stream:
                await client.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]), timeout=10)
                await asyncio.to_thread(wait_until, lambda: stream.dropped >= 10, 10.0, "overflow")
                assert len(stream) == 5
                got = [await stream.get(1.0)]
                async for spot in stream:
                    got.append(spot)
                    if len(got) == 20:
                        break
                stamps = [s.timestamp for s in got]
                assert len(got) == 20 and stamps == sorted(stamps)

    with Simulator(spot_interval=0.002) as sim:
        asyncio.run(main(sim))


def test_async_stream_ends_on_timeout_close_and_client_close() -> None:
    async def main(sim: Simulator) -> None:
        client = AsyncClient(make_client(sim))
        await client.start(10)
        quiet = client.events(ProtoOASpotEvent, timeout=0.2)
        assert [s async for s in quiet] == []  # nothing subscribed: ends after its timeout
        with pytest.raises(TimeoutError):
            await quiet.get(0.05)
        closed = client.events(ProtoOASpotEvent)
        closed.close()
        with pytest.raises(EOFError):
            await closed.get()
        waiting = client.events(ProtoOASpotEvent)  # no timeout: only the client's close ends it
        task = asyncio.ensure_future(waiting.get())
        await client.close()
        with pytest.raises(EOFError):
            await asyncio.wait_for(task, 5)

    with Simulator() as sim:
        asyncio.run(main(sim))


def test_stream_outside_a_loop_is_a_clear_error() -> None:
    with Simulator() as sim, connected(sim) as client:
        with pytest.raises(RuntimeError, match="running asyncio event loop"):
            AsyncClient(client).events(ProtoOASpotEvent)
        # the synchronous API needs no loop at all
        assert client.request(ProtoOAVersionReq(), timeout=10).version


class _FakeAccount:
    """Stands in for the toolkit's Account: blocking methods, a property, an iterator method."""

    def __init__(self) -> None:
        self.id = 7
        self.release = threading.Event()
        self.threads: list[str] = []

    @property
    def label(self) -> str:
        """A plain property."""
        return "acc-7"

    def market_order(self, symbol: str, lots: float) -> tuple[str, float]:
        """Blocks until released, like an order waiting for its fill."""
        self.threads.append(threading.current_thread().name)
        assert self.release.wait(10)
        return symbol, lots

    def changes(self) -> _Stream:
        """A blocking stream of three items (iterable, closable, like the toolkit's streams)."""
        return _Stream([1, 2, 3])

    def history(self) -> list[int]:
        """A list is a value, not a stream."""
        return [4, 5]


class _Stream:
    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)

    def close(self) -> None:
        self.closed = True


def test_async_account_runs_blocking_calls_off_the_loop() -> None:
    async def main() -> None:
        account = _FakeAccount()
        acc = AsyncAccount(account)
        assert acc.id == 7 and await acc.label == "acc-7" and await acc.get("label") == "acc-7"
        assert "label" in repr(acc.label)  # not awaited: nothing runs, no warning
        order = asyncio.ensure_future(acc.market_order("EURUSD", lots=0.01))
        ticks = 0
        while not account.threads:  # the loop keeps running while the order blocks its worker thread
            ticks += 1
            await asyncio.sleep(0)
        account.release.set()
        assert await order == ("EURUSD", 0.01)
        assert ticks > 0 and account.threads[0] != threading.current_thread().name
        async with await acc.changes() as stream:
            assert [x async for x in stream] == [1, 2, 3]
        assert stream.source.closed  # leaving the block closed the synchronous stream
        assert await acc.history() == [4, 5]
        assert acc.market_order.__doc__ == _FakeAccount.market_order.__doc__
        with pytest.raises(AttributeError):
            _ = acc.no_such_method

    asyncio.run(main())


def test_async_client_account_needs_the_toolkit_or_wraps_it() -> None:
    async def main(sim: Simulator) -> None:
        async with AsyncClient(make_client(sim)) as client:
            if hasattr(client.client, "account"):  # the toolkit is there: drive the real Account
                await client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
                acc = await client.account(sim.account_ids[0])
                assert isinstance(acc, AsyncAccount) and acc.id == sim.account_ids[0]
                if hasattr(acc.account, "market_order"):  # the trading half (Toolkit II)
                    fill = await acc.market_order("EURUSD", "buy", lots=0.01)
                    assert fill.position_id in await acc.positions
                    closed = await acc.close_position(fill.position_id)
                    assert closed.position_id == fill.position_id
                    assert fill.position_id not in await acc.positions
            else:
                with pytest.raises(NotImplementedError):
                    await client.account()

    with Simulator() as sim:
        asyncio.run(main(sim))


# -- a Jupyter kernel, which already runs a loop: top-level await in cells ----------------------------

CELLS = [
    """import asyncio, itertools, threading
from ctrader_sync import Client
from ctrader_sync.aio import AsyncClient
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOASubscribeSpotsReq, ProtoOAVersionReq
from ctrader_sync.simulator import Simulator
sim = Simulator(seed=1, spot_interval=0.01)
client = AsyncClient(Client(sim.host, sim.port, ssl_context=sim.client_ssl_context()))
await client.start(10)""",
    """accounts = await client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
print("version", (await client.request(ProtoOAVersionReq(), timeout=10)).version)""",
    """async with client.events(ProtoOASpotEvent, timeout=10) as spots:
    await client.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=accounts[0].ctidTraderAccountId,
                                                  symbolId=[1]), timeout=10)
    n = 0
    async for spot in spots:
        n += 1
        if n == 3:
            break
print("spots", n)""",
    """await client.close()
sim.close()
print("left", [t.name for t in threading.enumerate() if t.name.startswith("ctrader_sync")])""",
]


def test_top_level_await_in_a_notebook_kernel(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    empty = tmp_path / "kernels"
    empty.mkdir()
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(empty)]))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    try:
        ran = nbclient.NotebookClient(nb, km=km, timeout=60, startup_timeout=60).execute()
    finally:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    outputs = list(itertools.chain.from_iterable(c.get("outputs", []) for c in ran.cells))
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "version " in text and "spots 3" in text, json.dumps(text)
    assert "left []" in text, text



def test_the_readme_asyncio_example_runs() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")
    section = readme.split("\nasyncio\n=======\n", 1)[1]
    block = section.split(".. code-block:: python\n\n", 1)[1].split("\n\n* ", 1)[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit(), result.stdout  # one raw bid price
