"""asyncio bridge: ``await`` requests and ``async for`` events on the same threaded :class:`Client`.

The SDK stays synchronous: it runs no event loop and needs none.  This module only adapts what it
already returns (``concurrent.futures.Future`` and callbacks) to a running asyncio loop, so a
FastAPI service, a chat bot or a Jupyter cell (which already runs a loop) can use one client::

    from ctrader_sync import Client
    from ctrader_sync.aio import AsyncClient

    async def main() -> None:
        async with AsyncClient(Client(host, port)) as client:     # start + wait_connected, close on exit
            await client.login(client_id, client_secret, access_token)
            version = await client.request(ProtoOAVersionReq())
            async with client.events(ProtoOASpotEvent, timeout=10) as spots:
                async for spot in spots:
                    ...

* ``await client.request(...)`` / ``await client.send(...)`` wrap the request's future with
  :func:`asyncio.wrap_future`.  Cancelling the awaiting task cancels the request with the client's
  three cases: not yet written, it is never written; written but not answered, the late answer is
  discarded; already answered, the request is unaffected (the task still ends with
  ``CancelledError``, because it asked to be cancelled).
* ``async for`` over :meth:`AsyncClient.events` uses no thread of its own: the client's dispatcher
  thread appends each event to a bounded buffer (when full, the *oldest* event is dropped and
  counted in ``dropped``, as for :meth:`Client.events`) and wakes the loop with
  ``call_soon_threadsafe`` only when the consumer is waiting.
* Calls that block (``login``, ``close``, the toolkit's orders and history) run in a worker thread
  (:func:`asyncio.to_thread`), so they never stall the loop; :class:`AsyncAccount` does that for
  every method and property of a toolkit ``Account``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .errors import RequestTimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from google.protobuf.message import Message

    from ._client import Client, EventHandle

__all__ = ["AsyncAccount", "AsyncClient", "AsyncEventStream", "wrap"]

_COLLECTIONS = (Mapping, Sequence, Set, str, bytes, bytearray, memoryview)
"""Iterable results that are values, not streams (returned as they are)."""
_POLL = 0.5
"""Seconds between checks that the client is still open while an event stream waits."""


def wrap(future: Future[Any]) -> asyncio.Future[Any]:
    """An asyncio future for a request's ``concurrent.futures.Future`` (needs a running loop).

    Cancelling the asyncio future (or the task awaiting it) calls ``future.cancel()``: a request not
    yet written is never written, a written one has its answer discarded, an answered one is
    unaffected.
    """
    return asyncio.wrap_future(future)


def _running_loop(what: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"{what} needs a running asyncio event loop (call it from a coroutine)") from None


def _client_closed(client: Client) -> bool:
    from ._supervisor import ClientState

    return client.state is ClientState.CLOSED


class AsyncEventStream:
    """Received messages of chosen types as an async iterator, bound to the loop that created it.

    Overflow policy as for :class:`~ctrader_sync.EventStream`: at most ``maxsize`` events wait;
    when full, the oldest is dropped and counted in :attr:`dropped`.  Iteration ends when no event
    arrived for ``timeout`` seconds (if given), when the stream is closed, or when the client is
    closed.  No thread is created: events are buffered by the client's dispatcher thread, which
    wakes the loop only while a consumer waits.
    """

    def __init__(self, client: Client, types: tuple[type[Message] | int | str, ...], maxsize: int = 10_000,
                 timeout: float | None = None, envelope: bool = False) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self._loop = _running_loop("AsyncEventStream")
        self.maxsize = maxsize
        self.timeout = timeout
        self.dropped = 0
        """Events dropped because the consumer fell ``maxsize`` behind."""
        self._client = client
        self._items: deque[Message] = deque()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        on = functools.partial(client.on, envelope=True) if envelope else client.on
        self._handles: list[EventHandle] = [on(t, self._put) for t in types] if types else [on(None, self._put)]

    def _put(self, message: Message) -> None:
        """Runs on the client's dispatcher thread."""
        with self._lock:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(message)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    async def get(self, timeout: float | None = None) -> Message:
        """Return the next event, waiting up to ``timeout`` seconds (``None``: the stream's timeout).

        Raises:
            TimeoutError: nothing arrived in time.
            EOFError: the stream or the client is closed and nothing is left.
        """
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed or _client_closed(self._client):
                    raise EOFError("the event stream is closed")
                remaining = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError(f"no event within {wait:g} s")
                waiter = self._waiter = self._loop.create_future()
            try:
                await asyncio.wait((waiter,), timeout=remaining)
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get()
        except (TimeoutError, EOFError):
            raise StopAsyncIteration from None

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop receiving; events already buffered can still be read with :meth:`get`."""
        for handle in self._handles:
            handle.remove()
        with self._lock:
            self._closed = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class AsyncClient:
    """Awaitable access to a threaded :class:`~ctrader_sync.Client` (which keeps working as before).

    The wrapped client is :attr:`client`; its synchronous methods and callbacks stay available.
    ``async with AsyncClient(client)`` starts it and waits for the connection in a worker thread,
    and closes it on exit.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        """The wrapped synchronous client."""

    def __repr__(self) -> str:
        return f"<AsyncClient {self.client!r}>"

    def send(self, message: Message | int | str, clientMsgId: str | None = None, timeout: float | None = None,
             **fields: Any) -> asyncio.Future[Any]:
        """Queue a request (as :meth:`Client.send`, at once) and return an awaitable asyncio future.

        Cancelling the returned future, or the task awaiting it, cancels the request.
        """
        _running_loop("AsyncClient.send")
        return wrap(self.client.send(message, clientMsgId, timeout, **fields))

    async def request(self, message: Message | int | str, timeout: float | None = None,
                      clientMsgId: str | None = None, **fields: Any) -> Any:
        """Send and await the answer; ``timeout`` covers queueing and answer, as :meth:`Client.request`.

        Raises what the request's future raises; ``RequestTimeoutError`` when nothing came in time
        (the request is cancelled then, so a late answer is discarded).
        """
        future = self.send(message, clientMsgId, timeout, **fields)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout + 1.0)
        except asyncio.TimeoutError as exc:  # asyncio.wait_for cancelled the request
            if isinstance(exc, RequestTimeoutError):
                raise
            name = message if isinstance(message, (int, str)) else type(message).__name__
            raise RequestTimeoutError(f"no answer to {name} within {timeout:g} s") from None

    def events(self, *types: type[Message] | int | str, maxsize: int = 10_000,
               timeout: float | None = None, envelope: bool = False) -> AsyncEventStream:
        """An async iterator over received messages of ``types`` (all if none); use ``async with``.

        As :meth:`Client.events`: ``envelope=True`` yields ``ProtoMessage`` envelopes instead.
        """
        return AsyncEventStream(self.client, types, maxsize, timeout, envelope)

    async def start(self, timeout: float | None = None) -> None:
        """Start the client and wait (in a worker thread) until it is connected."""
        self.client.start()
        await asyncio.to_thread(self.client.wait_connected, timeout)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """:meth:`Client.wait_connected` in a worker thread."""
        await asyncio.to_thread(self.client.wait_connected, timeout)

    async def login(self, clientId: str, clientSecret: str, accessToken: str, accounts: list[int] | None = None,
                    timeout: float = 30.0) -> list[Any]:
        """:meth:`Client.login` in a worker thread."""
        return await asyncio.to_thread(self.client.login, clientId, clientSecret, accessToken, accounts, timeout)

    async def refresh_access_token(self, refreshToken: str, timeout: float = 30.0) -> Any:
        """:meth:`Client.refresh_access_token` in a worker thread."""
        return await asyncio.to_thread(self.client.refresh_access_token, refreshToken, timeout)

    async def close(self) -> None:
        """:meth:`Client.close` in a worker thread (it joins the client's threads)."""
        await asyncio.to_thread(self.client.close)

    async def account(self, ctidTraderAccountId: int | None = None) -> AsyncAccount:
        """The toolkit's ``Account`` of this client (``client.account(...)``), wrapped in :class:`AsyncAccount`."""
        factory = getattr(self.client, "account", None)
        if factory is None:
            raise NotImplementedError("this version of ctrader_sync has no toolkit Account (client.account)")
        return AsyncAccount(await asyncio.to_thread(factory, ctidTraderAccountId))

    async def __aenter__(self) -> AsyncClient:
        try:
            await self.start(self.client.connect_timeout + 5.0)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _AsyncIterator:
    """A blocking iterable (a stream) read in a worker thread, one item per ``await``."""

    def __init__(self, source: Iterable[Any]) -> None:
        self.source = source
        """The wrapped synchronous stream (its own methods, e.g. ``dropped``, stay reachable)."""
        self._iterator: Iterator[Any] = iter(source)

    def __aiter__(self) -> _AsyncIterator:
        return self

    async def __anext__(self) -> Any:
        done = object()
        item = await asyncio.to_thread(next, self._iterator, done)
        if item is done:
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> _AsyncIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


class _Deferred:
    """A property read in a worker thread when awaited (and never, without a warning, if not)."""

    def __init__(self, obj: Any, name: str) -> None:
        self._obj = obj
        self._name = name

    def __await__(self) -> Any:
        return asyncio.to_thread(getattr, self._obj, self._name).__await__()

    def __repr__(self) -> str:
        return f"<awaitable {type(self._obj).__name__}.{self._name}>"


class AsyncAccount:
    """Every method and property of a (toolkit) ``Account`` awaitable, run in a worker thread.

    ``await acc.market_order(...)``, ``await acc.trendbars(...)``: each call runs the blocking
    method with :func:`asyncio.to_thread`, so a fill or a long history download never stalls the
    loop.  Properties, which may block on first use (``positions``, ``balance``, the ``symbols``
    catalogue), are awaited too: ``await acc.positions``.  A method that returns an iterator (a
    change or quote stream) gives an async iterator reading one item per ``await`` in a worker
    thread.  Plain instance attributes (``id``, ``client``) are returned as they are.  The wrapper
    holds no state of its own: it works with any object.
    """

    def __init__(self, account: Any) -> None:
        self.account = account
        """The wrapped synchronous object."""

    def __repr__(self) -> str:
        return f"<AsyncAccount {self.account!r}>"

    async def get(self, name: str) -> Any:
        """``getattr(account, name)`` in a worker thread (for any attribute, by name)."""
        return await asyncio.to_thread(getattr, self.account, name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        static = inspect.getattr_static(self.account, name)
        if isinstance(static, property):
            return _Deferred(self.account, name)
        value = getattr(self.account, name)
        return _coroutine_method(value) if callable(value) else value


def _coroutine_method(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        result = await asyncio.to_thread(method, *args, **kwargs)
        if isinstance(result, Iterable) and not isinstance(result, _COLLECTIONS):
            return _AsyncIterator(result)  # a stream: read it item by item off the loop
        return result

    return call
