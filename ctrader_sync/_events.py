"""The event bus: who is told about received messages and connection changes, and how.

* ``EventBus`` keeps the callbacks (``Client.on``, the old SDK's message/connected/disconnected
  callbacks) and runs them on the dispatcher thread (``_dispatch``), one item per read.
* ``EventHandle`` unregisters one callback.
* ``EventStream``: received messages as a blocking iterator, for scripts and notebooks.

Lock: ``EventBus._lock`` serializes registrations (a leaf lock).  The handler table is replaced,
never changed in place, so the dispatcher reads it without a lock.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from ._bounded import BoundedStream
from ._codec import envelope_of
from ._dispatch import Dispatcher
from ._keepalive import TokenRefreshFailed
from .protobuf import REGISTRY, Protobuf

__all__ = ["EVENT_TYPES", "EventBus", "EventHandle", "EventStream", "is_event"]

log = logging.getLogger("ctrader_sync")

EVENT_TYPES = frozenset(pt for pt, cls in REGISTRY.items()
                        if cls.__name__.endswith("Event") and cls.__name__ != "ProtoHeartbeatEvent")
"""Payload types of pushed events (not answers, not heartbeats): the only frames ever dropped."""


def is_event(frame: tuple[int, Any, Any]) -> bool:
    """True for a received frame that is a pushed event (may be dropped when callbacks lag)."""
    return frame[0] in EVENT_TYPES


LOCAL_EVENTS: tuple[type, ...] = (TokenRefreshFailed,)
"""The client's own events (not server messages) that ``Client.on``/``events`` accept."""


class _WantsEnvelope:
    """A callback registered with ``on(..., envelope=True)``: it receives the ``ProtoMessage``."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], Any]) -> None:
        self.callback = callback


class EventHandle:
    """Returned by :meth:`Client.on`: ``remove()`` unregisters the callback (idempotent)."""

    __slots__ = ("_bus", "_callback", "_key")

    def __init__(self, bus: EventBus, key: Any, callback: Callable[..., Any]) -> None:
        self._bus = bus
        self._key = key
        self._callback = callback

    def remove(self) -> None:
        """Stop calling the callback. Safe to call more than once."""
        self._bus.remove(self._key, self._callback)


class EventBus:
    """Callbacks for received messages and connection changes, run on the dispatcher thread.

    ``client`` is passed as the first argument of the old SDK's callbacks (it is not used here).
    """

    def __init__(self, client: object, dispatcher: Dispatcher) -> None:
        # Weak: the callbacks' threads must not keep a forgotten client alive (see _lifecycle).
        self._client = weakref.ref(client)
        self._dispatcher = dispatcher
        # Serializes registrations (the handler table is replaced, never changed in place); a leaf.
        self._lock = threading.Lock()
        self.on_connected: Callable[[Any], Any] | None = None
        self.on_disconnected: Callable[[Any, BaseException], Any] | None = None
        self._on_message: Callable[[Any, Any], Any] | None = None
        self._handlers: dict[Any, list[Callable[..., Any]]] = {}
        self.wanted = False
        """True while any message callback is registered (else received frames are not posted)."""
        self._envelopes = False  # some callback wants ProtoMessage envelopes (see _deliver)
        self.closed = False
        """Set when the client closes: event streams end."""

    def set_message_callback(self, callback: Callable[[Any, Any], Any] | None) -> None:
        """The old SDK's ``setMessageReceivedCallback``: ``callback(client, envelope)``."""
        with self._lock:
            self._on_message = callback
            self.wanted = bool(self._handlers) or callback is not None
            self._envelopes = callback is not None or self._wants_envelopes(self._handlers)

    @staticmethod
    def _wants_envelopes(handlers: dict[Any, list[Callable[..., Any]]]) -> bool:
        return any(isinstance(c, _WantsEnvelope) for callbacks in handlers.values() for c in callbacks)

    def on(self, message_type: type[Message] | type[object] | int | str | None, callback: Callable[[Any], Any],
           envelope: bool = False) -> EventHandle:
        """See :meth:`Client.on` (also one of :data:`LOCAL_EVENTS`, the client's own events)."""
        key: Any
        if message_type is None or message_type in LOCAL_EVENTS:
            key = message_type
        elif isinstance(message_type, type):
            key = Protobuf.payload_type(message_type)  # type: ignore[arg-type]
        else:
            key = Protobuf.get_type(message_type)
        stored: Callable[..., Any] = _WantsEnvelope(callback) if envelope else callback  # type: ignore[assignment]
        with self._lock:
            self._handlers = {**self._handlers, key: [*self._handlers.get(key, []), stored]}
            self.wanted = True
            self._envelopes = self._envelopes or envelope
        return EventHandle(self, key, stored)

    def remove(self, key: Any, callback: Callable[..., Any]) -> None:
        """Unregister ``callback`` for ``key`` (see :class:`EventHandle`)."""
        with self._lock:
            callbacks = [c for c in self._handlers.get(key, []) if c is not callback]
            handlers = dict(self._handlers)
            if callbacks:
                handlers[key] = callbacks
            else:
                handlers.pop(key, None)
            self._handlers = handlers
            self.wanted = bool(handlers) or self._on_message is not None
            self._envelopes = self._on_message is not None or self._wants_envelopes(handlers)

    def post(self, frames: list[Any]) -> None:
        """Hand one read's frames to the dispatcher (one item; counted per event), if any callback
        wants them."""
        if self.wanted:
            self._dispatcher.post_events(self._deliver, frames)

    def post_local(self, event: object) -> None:
        """Run the callbacks registered for ``type(event)``, one of the client's own events
        (:data:`LOCAL_EVENTS`), on the dispatcher thread."""
        self._dispatcher.post(self._deliver_local, event)

    def _deliver_local(self, event: object) -> None:
        for callback in self._handlers.get(type(event), []):
            target = callback.callback if isinstance(callback, _WantsEnvelope) else callback
            try:
                target(event)
            except BaseException:
                log.exception("ctrader_sync: a callback for %s raised", type(event).__name__)

    def connected(self) -> None:
        """A connection is up: run the connected callback (if any) on the dispatcher thread."""
        if self.on_connected is not None:
            self._dispatcher.post(self.on_connected, self._client())

    def disconnected(self, reason: BaseException) -> None:
        """A connection was lost: run the disconnected callback (if any) on the dispatcher thread."""
        if self.on_disconnected is not None:
            self._dispatcher.post(self.on_disconnected, self._client(), reason)

    def _deliver(self, frames: list[Any]) -> None:
        """Run the callbacks for received messages, in order (on the dispatcher thread)."""
        if self._envelopes:
            self._deliver_envelopes(frames)
            return
        handlers = self._handlers
        everything = handlers.get(None, ())
        by_type: dict[int, tuple[Callable[..., Any], ...]] = {}
        for pt, _, message in frames:
            callbacks = by_type.get(pt)
            if callbacks is None:
                callbacks = by_type[pt] = (*handlers.get(pt, ()), *everything)
            for callback in callbacks:
                try:
                    callback(message)
                except BaseException:  # SystemExit too: the callbacks of later messages still run
                    log.exception("ctrader_sync: a callback for %s raised (%s); I/O continues",
                                  type(message).__name__, getattr(callback, "__qualname__", callback))


    def _deliver_envelopes(self, frames: list[Any]) -> None:
        """:meth:`_deliver` when the message-received callback or an ``envelope=True`` handler is set:
        the ``ProtoMessage`` envelope is rebuilt from the frame (once per frame, only then)."""
        on_message = self._on_message
        handlers = self._handlers
        everything = handlers.get(None, ())
        client = self._client()
        for frame in frames:
            message = frame[2]
            envelope = None
            if on_message is not None:
                envelope = envelope_of(frame)
                try:
                    on_message(client, envelope)
                except BaseException:  # SystemExit too: the callbacks of later messages still run
                    log.exception("ctrader_sync: the message callback raised; I/O continues")
            for callback in (*handlers.get(frame[0], ()), *everything):
                if type(callback) is _WantsEnvelope:
                    if envelope is None:
                        envelope = envelope_of(frame)
                    target, arg = callback.callback, envelope
                else:
                    target, arg = callback, message
                try:
                    target(arg)
                except BaseException:  # SystemExit too: the callbacks of later messages still run
                    log.exception("ctrader_sync: a callback for %s raised (%s); I/O continues",
                                  type(message).__name__, getattr(target, "__qualname__", target))


class EventStream(BoundedStream[Message]):
    """Messages of chosen types, queued by the dispatcher and read by the caller's thread.

    Overflow policy: a bounded queue (``maxsize``); when it is full the *oldest* event is dropped
    (for prices the newest matters most) and counted in :attr:`dropped`.  Iteration ends when no
    event arrived for ``timeout`` seconds (if given), when the stream is closed, or when the client
    is closed.  Use :meth:`get` for one event with its own timeout.  With ``envelope=True`` the
    stream holds ``ProtoMessage`` envelopes (``payloadType``, ``clientMsgId``, ``payload``) instead
    of extracted messages.
    """

    _noun = "event"

    def __init__(self, bus: EventBus, types: tuple[type[Message] | int | str, ...], maxsize: int,
                 timeout: float | None, envelope: bool = False) -> None:
        super().__init__(maxsize, timeout)
        self._bus = bus
        self._handles: list[EventHandle] = []
        try:
            for t in types or (None,):
                self._handles.append(bus.on(t, self._put, envelope))
        except BaseException:
            for handle in self._handles:  # an unknown type registers nothing
                handle.remove()
            raise

    def _ended(self) -> bool:
        return self._closed or self._bus.closed

    def close(self) -> None:
        """Stop receiving; events already queued can still be read with :meth:`get`."""
        for handle in self._handles:
            handle.remove()
        self._end()

    def __enter__(self) -> EventStream:
        return self
