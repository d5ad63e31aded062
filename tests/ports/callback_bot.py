"""A bot written the way public OpenApiPy bots are written (own code), ported by changing imports only.

The idioms it keeps, each of which must keep working:

* a state machine in the message-received callback, switching on
  ``message.payloadType == Protobuf.get_type('ProtoOA...Res')`` (the idiom that silently did
  nothing when ``get_type`` returned a class);
* heartbeat filtering: ``if message.payloadType == ProtoHeartbeatEvent().payloadType: return``;
* ``SomeRes().ParseFromString(message.payload)`` and ``Protobuf.extract(message)`` on the envelope;
* ``message.clientMsgId`` to tie execution events (the fill after the acceptance) to the order
  request that caused them;
* ``Protobuf.extract`` in a done-callback (the deferred callback of old code);
* sending by name: ``client.send("ProtoOATraderReq", ctidTraderAccountId=...)``;
* a periodic status task (``task.LoopingCall`` there, ``every`` here).

What changed in the port: the imports, ``reactor.run()`` -> :meth:`CallbackBot.run` waiting on an
event, ``d.addCallback(f)`` -> ``future.add_done_callback(lambda fut: f(fut.result()))``,
``LoopingCall(f).start(s)`` -> ``every(s, f)``.
"""

from __future__ import annotations

import threading
from typing import Any

from ctrader_sync import Client, Protobuf, every
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOANewOrderReq,
    ProtoOASubscribeSpotsReq,
    ProtoOATraderRes,
)

BUY, MARKET = 1, 1
ORDER_ACCEPTED, ORDER_FILLED = 2, 3


class CallbackBot:
    """Authorize, read the balance, watch a few spots, buy once, and record the fill of that order.

    ``heartbeats_before_trade``: trade only after the server has sent that many heartbeats (proof
    that the connection is alive).
    """

    def __init__(self, client: Client, client_id: str, secret: str, token: str, account: int,
                 symbol_id: int = 1, spots_before_trade: int = 5, volume: int = 100000,
                 heartbeats_before_trade: int = 0) -> None:
        self.client = client
        self.client_id, self.secret, self.token, self.account = client_id, secret, token, account
        self.symbol_id, self.spots_before_trade, self.volume = symbol_id, spots_before_trade, volume
        self.heartbeats_before_trade = heartbeats_before_trade
        self.state = "CONNECTING"
        self.states: list[str] = []
        self.balance: float | None = None
        self.spots: list[float] = []
        self.heartbeats = 0
        self.order_msg_id: str | None = None
        self.executions: dict[str, list[int]] = {}
        """clientMsgId -> execution types received for it, in order."""
        self.fill_price: float | None = None
        self.status_lines: list[str] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self._traded = False

    def _go(self, state: str) -> None:
        self.state = state
        self.states.append(state)

    # -- the state machine ------------------------------------------------------------------------

    def on_connected(self, client: Client) -> None:
        self._go("APP_AUTH")
        self._watch(client.send(ProtoOAApplicationAuthReq(clientId=self.client_id, clientSecret=self.secret)))

    def on_message(self, client: Client, message: Any) -> None:
        if message.payloadType == ProtoHeartbeatEvent().payloadType:
            self.heartbeats += 1
            return
        if message.payloadType == Protobuf.get_type("ProtoOAApplicationAuthRes"):
            self._go("ACCOUNT_AUTH")
            self._watch(client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=self.token)))
        elif message.payloadType == Protobuf.get_type("ProtoOAAccountAuthRes"):
            self._go("TRADER")
            future = client.send("ProtoOATraderReq", ctidTraderAccountId=self.account)
            # old: d.addCallback(lambda m: print(Protobuf.extract(m).trader.balance))
            future.add_done_callback(lambda f: self.status_lines.append(
                f"balance {Protobuf.extract(f.result()).trader.balance}"))
            self._watch(future)
        elif message.payloadType == Protobuf.get_type("ProtoOATraderRes"):
            res = ProtoOATraderRes()
            res.ParseFromString(message.payload)
            self.balance = res.trader.balance / 10 ** res.trader.moneyDigits
            self._go("WATCHING")
            self._watch(client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account,
                                                             symbolId=[self.symbol_id])))
        elif message.payloadType == Protobuf.get_type("ProtoOASpotEvent"):
            spot = Protobuf.extract(message)
            if spot.HasField("bid"):
                self.spots.append(spot.bid / 100000)
            if (len(self.spots) >= self.spots_before_trade and self.heartbeats >= self.heartbeats_before_trade
                    and not self._traded):
                self._traded = True
                self._go("ORDERING")
                future = client.send(ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=self.symbol_id,
                                                        orderType=MARKET, tradeSide=BUY, volume=self.volume))
                self.order_msg_id = future.clientMsgId
                self._watch(future)
        elif message.payloadType == Protobuf.get_type("ProtoOAExecutionEvent"):
            event = Protobuf.extract(message)
            self.executions.setdefault(message.clientMsgId, []).append(int(event.executionType))
            if message.clientMsgId == self.order_msg_id and event.executionType == ORDER_FILLED:
                self.fill_price = event.deal.executionPrice
                self._go("FILLED")
                self.done.set()

    def _watch(self, future: Any) -> None:
        def check(f: Any) -> None:
            if not f.cancelled() and f.exception() is not None:
                self.errors.append(f.exception())
                self.done.set()
        future.add_done_callback(check)

    def status(self) -> None:
        """The periodic task (a ``LoopingCall`` in the old bot)."""
        self.status_lines.append(f"{self.state}: {len(self.spots)} spots, {self.heartbeats} heartbeats")

    # -- running ----------------------------------------------------------------------------------

    def run(self, timeout: float = 30.0, status_every: float = 0.1) -> bool:
        """Run until the order is filled (or an error, or ``timeout``); True if it was filled."""
        self.client.setConnectedCallback(self.on_connected)
        self.client.setMessageReceivedCallback(self.on_message)
        loop = every(status_every, self.status)
        self.client.startService()
        try:
            return self.done.wait(timeout) and not self.errors
        finally:
            loop.stop()
            self.client.stopService()
