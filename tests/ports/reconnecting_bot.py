"""A spot watcher written the old way (own code): it re-authorizes by itself on every connection.

Public OpenApiPy bots do their authorization in the connected callback and chain the rest from
the message-received callback, so a reconnect (Twisted's ``ClientService`` reconnects) re-runs
the whole chain.  That keeps working: ``setConnectedCallback`` fires once per connection, queued
requests wait for it, and ``setDisconnectedCallback`` tells why the previous one ended.  Alongside,
a ``LoopingCall`` that polled the account (``ProtoOAReconcileReq`` by name, the answer unwrapped
with ``Protobuf.extract`` in the deferred's callback) becomes ``every()`` with a done-callback.

Nothing here uses ``client.login()``, which would do the re-authorization for you.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ctrader_sync import AuthenticationError, Client, ConnectionLostError, Protobuf, every
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAAccountAuthRes,
    ProtoOAApplicationAuthReq,
    ProtoOAApplicationAuthRes,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
)


class SpotWatcher:
    """Counts spots per connection; polls positions every ``poll_every`` seconds."""

    def __init__(self, client: Client, client_id: str, secret: str, token: str, account: int,
                 symbol_id: int = 1, poll_every: float = 0.05) -> None:
        self.client = client
        self.client_id, self.secret, self.token, self.account = client_id, secret, token, account
        self.symbol_id, self.poll_every = symbol_id, poll_every
        self.connection = 0
        self.spots: Counter[int] = Counter()
        """connection number -> spot events received on it."""
        self.disconnects: list[BaseException] = []
        self.polls: list[int] = []
        """Position counts seen by the polling task."""
        self.poll_errors: list[BaseException] = []
        self.polls_too_early = 0
        """Polls that reached a new connection before its account auth (the bot polls again later)."""
        self.authorized = False
        self.changed = threading.Condition()
        self._loop: Any = None

    def connected(self, client: Client) -> None:
        with self.changed:
            self.connection += 1
            self.changed.notify_all()
        client.send(ProtoOAApplicationAuthReq(clientId=self.client_id, clientSecret=self.secret))

    def disconnected(self, client: Client, reason: BaseException) -> None:
        self.authorized = False
        with self.changed:
            self.disconnects.append(reason)
            self.changed.notify_all()

    def message_received(self, client: Client, message: Any) -> None:
        if message.payloadType == ProtoHeartbeatEvent().payloadType:
            return
        if message.payloadType == ProtoOAApplicationAuthRes().payloadType:
            client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=self.token))
        elif message.payloadType == ProtoOAAccountAuthRes().payloadType:
            self.authorized = True
            client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[self.symbol_id]))
        elif message.payloadType == ProtoOASpotEvent().payloadType:
            with self.changed:
                self.spots[self.connection] += 1
                self.changed.notify_all()

    def poll(self) -> None:
        """The old ``LoopingCall``: ask for the open positions, count them in the answer's callback."""
        if not (self.client.isConnected and self.authorized):
            return
        future = self.client.send("ProtoOAReconcileReq", ctidTraderAccountId=self.account)

        def answered(f: Any) -> None:
            error = None if f.cancelled() else f.exception()
            if error is not None:
                if isinstance(error, AuthenticationError) and error.error_code == "ACCOUNT_NOT_AUTHORIZED":
                    self.polls_too_early += 1  # queued across a reconnect, written before the account auth
                elif not isinstance(error, ConnectionLostError):
                    self.poll_errors.append(error)
                return
            if not f.cancelled():
                self.polls.append(len(Protobuf.extract(f.result()).position))

        future.add_done_callback(answered)

    def start(self) -> None:
        """``client.startService()`` and ``LoopingCall(poll).start(...)``; no reactor to run."""
        self.client.setConnectedCallback(self.connected)
        self.client.setDisconnectedCallback(self.disconnected)
        self.client.setMessageReceivedCallback(self.message_received)
        self.client.startService()
        self._loop = every(self.poll_every, self.poll)

    def stop(self) -> None:
        """``LoopingCall.stop()`` and ``client.stopService()``."""
        if self._loop is not None:
            self._loop.stop()
        self.client.stopService()

    def wait(self, predicate: Any, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)
