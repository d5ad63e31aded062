"""A port of the official OpenApiPy KleinWebAppSample's request/answer flow (own code) to the stdlib.

The sample is a Klein web app on the Twisted reactor: ``/get-data?token=...&command=...`` runs one
console-style command and answers with the JSON of the API's answer (``MessageToJson(
Protobuf.extract(result))``), or ``{"result": "..."}`` for text.  Klein returned the command's
deferred and Twisted wrote the answer when it fired.

Here an ``http.server.ThreadingHTTPServer`` does the serving; each request thread sends the API
request and waits on its future (``future.result(timeout)``) - no reactor, no deferred plumbing.
Error answers: the old deferred fired with the error message, whose JSON went back to the browser;
here the future raises ``ServerError``, whose ``response`` (the same error message) is encoded.
The OAuth pages (``/``, ``/redirect``, ``/client-area``) and static files are left out: they are
HTML and ``Auth`` calls, covered by the migration tests.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToJson

from ctrader_sync import Client, Protobuf, ServerError
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAAssetListReq,
    ProtoOACancelOrderReq,
    ProtoOAClosePositionReq,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOANewOrderReq,
    ProtoOAReconcileReq,
    ProtoOASymbolsListReq,
    ProtoOATraderReq,
    ProtoOAVersionReq,
)
from ctrader_sync.messages.OpenApiModelMessages_pb2 import ProtoOAOrderType, ProtoOATradeSide


class WebApp:
    """The app's state (token, current account) and its command table.

    Args:
        client: a connected client on which the application is authorized.
        timeout: seconds a web request waits for the API's answer.
    """

    def __init__(self, client: Client, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout
        self.token = ""
        self.current_account_id: int | None = None
        self.authorized_accounts: set[int] = set()
        self.commands: dict[str, Callable[..., Any]] = {
            "setAccount": self.set_account,
            "ProtoOAVersionReq": lambda: self.client.send(ProtoOAVersionReq()),
            "ProtoOAGetAccountListByAccessTokenReq":
                lambda: self.client.send(ProtoOAGetAccountListByAccessTokenReq(accessToken=self.token)),
            "ProtoOAAssetListReq": lambda: self._account(ProtoOAAssetListReq),
            "ProtoOASymbolsListReq": lambda archived="False": self._account(
                ProtoOASymbolsListReq, includeArchivedSymbols=archived.lower() == "true"),
            "ProtoOATraderReq": lambda: self._account(ProtoOATraderReq),
            "ProtoOAReconcileReq": lambda: self._account(ProtoOAReconcileReq),
            "NewMarketOrder": lambda symbol, side, volume: self._order(symbol, "MARKET", side, volume),
            "NewLimitOrder": lambda symbol, side, volume, price: self._order(symbol, "LIMIT", side, volume, price),
            "ClosePosition": lambda position, volume: self._account(
                ProtoOAClosePositionReq, positionId=int(position), volume=int(volume) * 100),
            "CancelOrder": lambda order: self._account(ProtoOACancelOrderReq, orderId=int(order)),
        }

    def _account(self, cls: Any, **fields: Any) -> Any:
        return self.client.send(cls(ctidTraderAccountId=self.current_account_id, **fields))

    def _order(self, symbol: str, order_type: str, side: str, volume: str, price: str | None = None) -> Any:
        request = ProtoOANewOrderReq(ctidTraderAccountId=self.current_account_id, symbolId=int(symbol),
                                     orderType=ProtoOAOrderType.Value(order_type),
                                     tradeSide=ProtoOATradeSide.Value(side.upper()), volume=int(volume) * 100)
        if price is not None:
            request.limitPrice = float(price)
        return self.client.send(request)

    def set_account(self, account_id: str) -> Any:
        self.current_account_id = int(account_id)
        if self.current_account_id in self.authorized_accounts:
            return "Account changed successfully"
        future = self.client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=self.current_account_id,
                                                        accessToken=self.token))
        future.add_done_callback(
            lambda f: f.exception() is None and self.authorized_accounts.add(int(account_id)))
        return future

    def encode(self, result: Any) -> bytes:
        """The sample's ``encodeResult``: text as ``{"result": ...}``, a message as its JSON."""
        if isinstance(result, str):
            return json.dumps({"result": result}).encode()
        return MessageToJson(Protobuf.extract(result)).encode()

    def get_data(self, token: str | None, command: str | None) -> bytes:
        """Answer ``/get-data``: run the command, wait for the API, encode its answer."""
        if not token:
            return self.encode("Invalid Token")
        if not command:
            return self.encode(f"Invalid Command: {command}")
        self.token = token
        name, *parameters = command.split(" ")
        handler = self.commands.get(name)
        if handler is None:
            return self.encode(f"Invalid Command: {name}")
        try:
            result = handler(*parameters)
        except (TypeError, ValueError) as exc:
            return self.encode(f"Invalid parameters: {exc}")
        if isinstance(result, str):
            return self.encode(result)
        try:
            return self.encode(result.result(self.timeout))
        except ServerError as exc:  # the old deferred fired with the error message itself
            return self.encode(exc.response if exc.response is not None else str(exc))

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        """Start serving ``/get-data`` on a thread; ``shutdown()`` and ``server_close()`` stop it."""
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/get-data":
                    self.send_error(404)
                    return
                query = urllib.parse.parse_qs(url.query)
                body = app.get_data(query.get("token", [None])[0], query.get("command", [None])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="web-app-port", daemon=True)
        thread.start()
        self.server_thread = thread
        return server
