"""A port of the official OpenApiPy ConsoleSample's behaviour to ctrader_sync (own code, same behaviour).

The sample connects, authorizes the application, then runs one console command at a time: ``help``,
``setAccount`` and 20 request commands (22 entries).  Its Twisted idioms and what replaced them:

* ``client.setMessageReceivedCallback(onMessageReceived)``, filtering on ``message.payloadType``
  and printing ``Protobuf.extract(message)``: unchanged (the callback gets the ``ProtoMessage``
  envelope, as before);
* ``deferred.addErrback(onError)``: ``future.add_done_callback``, reporting ``future.exception()``
  (an error answer is a ``ServerError`` here; the old SDK handed it to the success path);
* ``reactor.callLater(3, executeUserCommand)``: ``threading.Timer``; ``reactor.callLater(n,
  unsubscribe, symbolId)``: ``threading.Timer`` too, cancelled on exit;
* ``inputimeout(prompt, timeout=18)``: ``read_command(timeout)``, a callable given to the program
  (stdin when run by hand, a queue in the tests);
* ``reactor.run()``: the program's :meth:`ConsoleSample.run` returns when the input ends.

The one change in behaviour: the sample asked for the next command after *every* message received
(so a spot subscription opened a prompt per spot event); here the next command is read once the
previous one is answered (or failed), which is what the sample meant.

Run by hand against the bundled simulator::

    python tests/ports/console_sample.py
"""

from __future__ import annotations

import calendar
import datetime
import threading
from collections.abc import Callable
from typing import Any

from ctrader_sync import Client, Protobuf
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAAccountAuthRes,
    ProtoOAAccountLogoutReq,
    ProtoOAAccountLogoutRes,
    ProtoOAApplicationAuthReq,
    ProtoOAApplicationAuthRes,
    ProtoOAAssetClassListReq,
    ProtoOAAssetListReq,
    ProtoOACancelOrderReq,
    ProtoOAClosePositionReq,
    ProtoOADealOffsetListReq,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOAGetPositionUnrealizedPnLReq,
    ProtoOAGetTickDataReq,
    ProtoOAGetTrendbarsReq,
    ProtoOANewOrderReq,
    ProtoOAOrderDetailsReq,
    ProtoOAOrderListByPositionIdReq,
    ProtoOAReconcileReq,
    ProtoOASubscribeSpotsReq,
    ProtoOASubscribeSpotsRes,
    ProtoOASymbolCategoryListReq,
    ProtoOASymbolsListReq,
    ProtoOATraderReq,
    ProtoOAUnsubscribeSpotsReq,
    ProtoOAVersionReq,
)
from ctrader_sync.messages.OpenApiModelMessages_pb2 import (
    ProtoOAOrderType,
    ProtoOAQuoteType,
    ProtoOATradeSide,
    ProtoOATrendbarPeriod,
)

HELP = [
    "Commands (Parameters with an * are required), ignore the description inside ()",
    "setAccount(For all subsequent requests this account will be used) *accountId",
    "ProtoOAVersionReq clientMsgId",
    "ProtoOAGetAccountListByAccessTokenReq clientMsgId",
    "ProtoOAAssetListReq clientMsgId",
    "ProtoOAAssetClassListReq clientMsgId",
    "ProtoOASymbolCategoryListReq clientMsgId",
    "ProtoOASymbolsListReq includeArchivedSymbols(True/False) clientMsgId",
    "ProtoOATraderReq clientMsgId",
    "ProtoOASubscribeSpotsReq *symbolId *timeInSeconds(Unsubscribes after this time) "
    "subscribeToSpotTimestamp(True/False) clientMsgId",
    "ProtoOAReconcileReq clientMsgId",
    "ProtoOAGetTrendbarsReq *weeks *period *symbolId clientMsgId",
    "ProtoOAGetTickDataReq *days *type *symbolId clientMsgId",
    "NewMarketOrder *symbolId *tradeSide *volume clientMsgId",
    "NewLimitOrder *symbolId *tradeSide *volume *price clientMsgId",
    "NewStopOrder *symbolId *tradeSide *volume *price clientMsgId",
    "ClosePosition *positionId *volume clientMsgId",
    "CancelOrder *orderId clientMsgId",
    "DealOffsetList *dealId clientMsgId",
    "GetPositionUnrealizedPnL clientMsgId",
    "OrderDetails *orderId clientMsgId",
    "OrderListByPositionId *positionId fromTimestamp toTimestamp clientMsgId",
]

QUIET = (ProtoOASubscribeSpotsRes().payloadType, ProtoOAAccountLogoutRes().payloadType,
         ProtoHeartbeatEvent().payloadType)
"""Payload types the sample's message callback does not print."""


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")


def _utc_ms(moment: datetime.datetime) -> int:
    return calendar.timegm(moment.utctimetuple()) * 1000


class ConsoleSample:
    """The console program: command table, callbacks, one command at a time.

    Args:
        client: a ``Client`` not started yet.
        app_client_id, app_client_secret, access_token: the credentials the sample asked for.
        read_command: ``read_command(timeout)`` returns the next command line, ``None`` when nothing
            came within ``timeout`` seconds, or ``""`` at the end of the input.
        write: prints one line (``print`` by default).
        pause: seconds between an answer and the next prompt (the sample's ``callLater(3, ...)``).
    """

    def __init__(self, client: Client, app_client_id: str, app_client_secret: str, access_token: str,
                 read_command: Callable[[float], str | None], write: Callable[[str], Any] = print,
                 pause: float = 3.0) -> None:
        self.client = client
        self.app_client_id, self.app_client_secret, self.access_token = app_client_id, app_client_secret, access_token
        self.read_command = read_command
        self.write = write
        self.pause = pause
        self.current_account_id: int | None = None
        self.received: list[Any] = []
        """Every message the callback received, extracted (for whoever drives the program)."""
        self.finished = threading.Event()
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self.commands: dict[str, Callable[..., Any]] = {
            "help": self.show_help,
            "setAccount": self.set_account,
            "ProtoOAVersionReq": self.send_version_req,
            "ProtoOAGetAccountListByAccessTokenReq": self.send_account_list_req,
            "ProtoOAAssetListReq": self.send_asset_list_req,
            "ProtoOAAssetClassListReq": self.send_asset_class_list_req,
            "ProtoOASymbolCategoryListReq": self.send_symbol_category_list_req,
            "ProtoOASymbolsListReq": self.send_symbols_list_req,
            "ProtoOATraderReq": self.send_trader_req,
            "ProtoOASubscribeSpotsReq": self.send_subscribe_spots_req,
            "ProtoOAReconcileReq": self.send_reconcile_req,
            "ProtoOAGetTrendbarsReq": self.send_trendbars_req,
            "ProtoOAGetTickDataReq": self.send_tick_data_req,
            "NewMarketOrder": self.send_new_market_order,
            "NewLimitOrder": self.send_new_limit_order,
            "NewStopOrder": self.send_new_stop_order,
            "ClosePosition": self.send_close_position_req,
            "CancelOrder": self.send_cancel_order_req,
            "DealOffsetList": self.send_deal_offset_list_req,
            "GetPositionUnrealizedPnL": self.send_unrealized_pnl_req,
            "OrderDetails": self.send_order_details_req,
            "OrderListByPositionId": self.send_order_list_by_position_req,
        }

    # -- the program ---------------------------------------------------------------------------

    def run(self, timeout: float | None = None) -> None:
        """Connect, then serve commands until the input ends (the sample's ``reactor.run()``)."""
        self.client.setConnectedCallback(self.connected)
        self.client.setDisconnectedCallback(self.disconnected)
        self.client.setMessageReceivedCallback(self.on_message_received)
        self.client.startService()
        try:
            self.finished.wait(timeout)
        finally:
            with self._lock:
                timers, self._timers = self._timers, []
            for timer in timers:
                timer.cancel()
            self.client.stopService()
            for timer in timers:
                timer.join(5.0)

    def later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> None:
        """``reactor.callLater(seconds, fn, *args)``."""
        timer = threading.Timer(seconds, fn, args)
        timer.daemon = True
        with self._lock:
            if self.finished.is_set():
                return
            self._timers.append(timer)
        timer.start()

    def connected(self, client: Client) -> None:
        self.write("\nConnected")
        future = client.send(ProtoOAApplicationAuthReq(clientId=self.app_client_id,
                                                       clientSecret=self.app_client_secret))
        future.add_done_callback(self.on_error)

    def disconnected(self, client: Client, reason: BaseException) -> None:
        self.write(f"\nDisconnected: {reason}")

    def on_message_received(self, client: Client, message: Any) -> None:
        self.received.append(Protobuf.extract(message))
        if message.payloadType in QUIET:
            return
        if message.payloadType == ProtoOAApplicationAuthRes().payloadType:
            self.write("API Application authorized\n")
            self.write("Please use setAccount command to set the authorized account before sending any other "
                       "command, try help for more detail\n")
            self.write("To get account IDs use ProtoOAGetAccountListByAccessTokenReq command")
            if self.current_account_id is not None:
                self.send_account_auth_req()
                return
            self.later(self.pause, self.execute_user_command)
        elif message.payloadType == ProtoOAAccountAuthRes().payloadType:
            res = Protobuf.extract(message)
            self.write(f"Account {res.ctidTraderAccountId} has been authorized\n")
            self.write("This acccount will be used for all future requests\n")
            self.write("You can change the account by using setAccount command")
        else:
            self.write(f"Message received: \n{Protobuf.extract(message)}")

    def on_error(self, future: Any) -> None:
        """The sample's ``addErrback(onError)``: report a failure."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.write(f"Message Error: {error}")

    def _sent(self, future: Any) -> None:
        future.add_done_callback(self.on_error)
        future.add_done_callback(lambda _: self.later(self.pause, self.execute_user_command))

    def execute_user_command(self) -> None:
        self.write("\n")
        line = self.read_command(18.0)
        if line is None:
            self.write("Command Input Timeout")
            self.later(self.pause, self.execute_user_command)
            return
        if line == "":
            self.finished.set()
            return
        command, *parameters = line.split(" ")
        parameters = [p[1:] if p.startswith("*") else p for p in parameters if p]
        handler = self.commands.get(command)
        if handler is None:
            self.write(f"Invalid Command: {line}")
            self.later(self.pause, self.execute_user_command)
            return
        try:
            handler(*parameters)
        except Exception as exc:  # a bad parameter: report and ask again, as the sample's try/except
            self.write(f"Invalid parameters: {line} ({exc})")
            self.later(self.pause, self.execute_user_command)

    # -- commands ------------------------------------------------------------------------------

    def show_help(self) -> None:
        for line in HELP:
            self.write(line)
        self.later(self.pause, self.execute_user_command)

    def set_account(self, account_id: str) -> None:
        if self.current_account_id is not None:
            self.client.send(ProtoOAAccountLogoutReq(ctidTraderAccountId=self.current_account_id)) \
                .add_done_callback(self.on_error)
        self.current_account_id = int(account_id)
        self.send_account_auth_req()

    def send_account_auth_req(self, client_msg_id: str | None = None) -> None:
        self._sent(self.client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=self.current_account_id,
                                                          accessToken=self.access_token), clientMsgId=client_msg_id))

    def send_version_req(self, client_msg_id: str | None = None) -> None:
        self._sent(self.client.send(ProtoOAVersionReq(), clientMsgId=client_msg_id))

    def send_account_list_req(self, client_msg_id: str | None = None) -> None:
        request = ProtoOAGetAccountListByAccessTokenReq(accessToken=self.access_token)
        self._sent(self.client.send(request, clientMsgId=client_msg_id))

    def _account_request(self, cls: Any, client_msg_id: str | None = None, **fields: Any) -> None:
        request = cls(ctidTraderAccountId=self.current_account_id, **fields)
        self._sent(self.client.send(request, clientMsgId=client_msg_id))

    def send_asset_list_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAAssetListReq, client_msg_id)

    def send_asset_class_list_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAAssetClassListReq, client_msg_id)

    def send_symbol_category_list_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOASymbolCategoryListReq, client_msg_id)

    def send_symbols_list_req(self, include_archived: Any = False, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOASymbolsListReq, client_msg_id, includeArchivedSymbols=_as_bool(include_archived))

    def send_trader_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOATraderReq, client_msg_id)

    def send_unsubscribe_spots_req(self, symbol_id: str, client_msg_id: str | None = None) -> None:
        request = ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=self.current_account_id, symbolId=[int(symbol_id)])
        self.client.send(request, clientMsgId=client_msg_id).add_done_callback(self.on_error)

    def send_subscribe_spots_req(self, symbol_id: str, seconds: str, with_timestamp: Any = False,
                                 client_msg_id: str | None = None) -> None:
        request = ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.current_account_id, symbolId=[int(symbol_id)],
                                           subscribeToSpotTimestamp=_as_bool(with_timestamp))
        self._sent(self.client.send(request, clientMsgId=client_msg_id))
        self.later(float(seconds), self.send_unsubscribe_spots_req, symbol_id)

    def send_reconcile_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAReconcileReq, client_msg_id)

    def send_trendbars_req(self, weeks: str, period: str, symbol_id: str, client_msg_id: str | None = None) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self._account_request(ProtoOAGetTrendbarsReq, client_msg_id, period=ProtoOATrendbarPeriod.Value(period),
                              fromTimestamp=_utc_ms(now - datetime.timedelta(weeks=int(weeks))),
                              toTimestamp=_utc_ms(now), symbolId=int(symbol_id))

    def send_tick_data_req(self, days: str, quote_type: str, symbol_id: str, client_msg_id: str | None = None) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self._account_request(ProtoOAGetTickDataReq, client_msg_id, type=ProtoOAQuoteType.Value(quote_type.upper()),
                              fromTimestamp=_utc_ms(now - datetime.timedelta(days=int(days))),
                              toTimestamp=_utc_ms(now), symbolId=int(symbol_id))

    def send_new_order_req(self, symbol_id: str, order_type: str, trade_side: str, volume: str,
                           price: str | None = None, client_msg_id: str | None = None) -> None:
        request = ProtoOANewOrderReq(ctidTraderAccountId=self.current_account_id, symbolId=int(symbol_id),
                                     orderType=ProtoOAOrderType.Value(order_type.upper()),
                                     tradeSide=ProtoOATradeSide.Value(trade_side.upper()), volume=int(volume) * 100)
        if request.orderType == ProtoOAOrderType.LIMIT:
            request.limitPrice = float(price or "nan")
        elif request.orderType == ProtoOAOrderType.STOP:
            request.stopPrice = float(price or "nan")
        self._sent(self.client.send(request, clientMsgId=client_msg_id))

    def send_new_market_order(self, symbol_id: str, trade_side: str, volume: str,
                              client_msg_id: str | None = None) -> None:
        self.send_new_order_req(symbol_id, "MARKET", trade_side, volume, client_msg_id=client_msg_id)

    def send_new_limit_order(self, symbol_id: str, trade_side: str, volume: str, price: str,
                             client_msg_id: str | None = None) -> None:
        self.send_new_order_req(symbol_id, "LIMIT", trade_side, volume, price, client_msg_id)

    def send_new_stop_order(self, symbol_id: str, trade_side: str, volume: str, price: str,
                            client_msg_id: str | None = None) -> None:
        self.send_new_order_req(symbol_id, "STOP", trade_side, volume, price, client_msg_id)

    def send_close_position_req(self, position_id: str, volume: str, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAClosePositionReq, client_msg_id, positionId=int(position_id),
                              volume=int(volume) * 100)

    def send_cancel_order_req(self, order_id: str, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOACancelOrderReq, client_msg_id, orderId=int(order_id))

    def send_deal_offset_list_req(self, deal_id: str, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOADealOffsetListReq, client_msg_id, dealId=int(deal_id))

    def send_unrealized_pnl_req(self, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAGetPositionUnrealizedPnLReq, client_msg_id)

    def send_order_details_req(self, order_id: str, client_msg_id: str | None = None) -> None:
        self._account_request(ProtoOAOrderDetailsReq, client_msg_id, orderId=int(order_id))

    def send_order_list_by_position_req(self, position_id: str, from_timestamp: str | None = None,
                                        to_timestamp: str | None = None, client_msg_id: str | None = None) -> None:
        request = ProtoOAOrderListByPositionIdReq(ctidTraderAccountId=self.current_account_id,
                                                  positionId=int(position_id))
        # As the sample: the timestamps go to send() as keywords (None when not given).  The old
        # SDK ignored them there; so does ctrader_sync while they are None.
        self._sent(self.client.send(request, fromTimestamp=int(from_timestamp) if from_timestamp else None,
                                    toTimestamp=int(to_timestamp) if to_timestamp else None,
                                    clientMsgId=client_msg_id))


def main() -> None:  # pragma: no cover - interactive
    """Run the console against the bundled simulator, reading commands from stdin."""
    import sys

    from ctrader_sync.simulator import Simulator

    def read_command(timeout: float) -> str | None:
        sys.stdout.write("Command (ex help): ")
        sys.stdout.flush()
        line = sys.stdin.readline()
        return line.strip() if line else ""

    with Simulator() as sim:
        print(f"simulator accounts: {sim.account_ids}")
        client = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context())
        ConsoleSample(client, sim.client_id, sim.client_secret, sim.access_token, read_command, pause=0.2).run()


if __name__ == "__main__":  # pragma: no cover
    main()
