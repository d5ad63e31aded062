"""A port of the official OpenApiPy Jupyter sample's behaviour (own code): daily bars of one symbol.

The notebook chains deferreds (application auth -> account auth -> symbols list -> trendbars),
unwraps each answer with ``Protobuf.extract`` and stops the reactor when the bars are in; the cells
after it build a table of (time, open, high, low, close, volume) and a "next bar is up" label.

Ported twice, as a notebook user would:

* :func:`daily_bars_chained`: the same callback chain, with ``future.add_done_callback`` in place of
  ``deferred.addCallbacks`` and an ``Event`` in place of ``reactor.run()``/``reactor.stop()``;
  ``Protobuf.extract`` calls are kept (they return the already extracted answers unchanged);
* :func:`daily_bars`: the straight-line version a cell can run again and again (no reactor to
  restart), with ``client.request``.
"""

from __future__ import annotations

import calendar
import datetime
import threading
from typing import Any

from ctrader_sync import Client, Protobuf
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOAGetTrendbarsReq,
    ProtoOASymbolsListReq,
)
from ctrader_sync.messages.OpenApiModelMessages_pb2 import ProtoOATrendbarPeriod

Bar = list[Any]
"""[open time (UTC datetime), open, high, low, close, volume], as the notebook's transformTrendbar."""


def transform_trendbar(trendbar: Any) -> Bar:
    """The notebook's ``transformTrendbar``: absolute prices from ``low`` and the deltas."""
    open_time = datetime.datetime.fromtimestamp(trendbar.utcTimestampInMinutes * 60, datetime.timezone.utc)
    return [open_time, (trendbar.low + trendbar.deltaOpen) / 100000.0, (trendbar.low + trendbar.deltaHigh) / 100000.0,
            trendbar.low / 100000.0, (trendbar.low + trendbar.deltaClose) / 100000.0, trendbar.volume]


def _range_ms(weeks: int) -> tuple[int, int]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (calendar.timegm((now - datetime.timedelta(weeks=weeks)).utctimetuple()) * 1000,
            calendar.timegm(now.utctimetuple()) * 1000)


def _pick(symbols: Any, name: str) -> Any:
    matches = [s for s in symbols.symbol if s.symbolName == name]
    if not matches:
        raise LookupError(f"no symbol matches {name}")
    if len(matches) > 1:
        raise LookupError(f"more than one symbol matches {name}: {matches}")
    return matches[0]


def daily_bars_chained(client: Client, credentials: dict[str, Any], symbol_name: str = "EURUSD",
                       timeout: float = 30.0) -> list[Bar]:
    """The notebook's callback chain; ``client`` is started here, as ``client.startService()`` was."""
    daily_bars: list[Bar] = []
    errors: list[BaseException] = []
    done = threading.Event()  # reactor.stop()

    def then(future: Any, step: Any) -> None:
        """``deferred.addCallbacks(step, onError)``."""
        def callback(f: Any) -> None:
            error = f.exception()
            if error is not None:
                errors.append(error)
                done.set()
                return
            try:
                step(f.result())
            except Exception as exc:  # the chain stops, as a raising Twisted callback would
                errors.append(exc)
                done.set()
        future.add_done_callback(callback)

    def trendbars_response(result: Any) -> None:
        trendbars = Protobuf.extract(result)
        daily_bars.clear()
        daily_bars.extend(map(transform_trendbar, trendbars.trendbar))
        done.set()

    def symbols_response(result: Any) -> None:
        symbol = _pick(Protobuf.extract(result), symbol_name)
        start, end = _range_ms(50)
        request = ProtoOAGetTrendbarsReq(symbolId=symbol.symbolId, ctidTraderAccountId=credentials["AccountId"],
                                         period=ProtoOATrendbarPeriod.D1, fromTimestamp=start, toTimestamp=end)
        then(client.send(request), trendbars_response)

    def account_auth_response(result: Any) -> None:
        request = ProtoOASymbolsListReq(ctidTraderAccountId=credentials["AccountId"], includeArchivedSymbols=False)
        then(client.send(request), symbols_response)

    def application_auth_response(result: Any) -> None:
        request = ProtoOAAccountAuthReq(ctidTraderAccountId=credentials["AccountId"],
                                        accessToken=credentials["AccessToken"])
        then(client.send(request), account_auth_response)

    def connected(c: Client) -> None:
        request = ProtoOAApplicationAuthReq(clientId=credentials["ClientId"], clientSecret=credentials["Secret"])
        then(c.send(request), application_auth_response)

    client.setConnectedCallback(connected)
    client.startService()
    try:
        if not done.wait(timeout):
            raise TimeoutError(f"no daily bars within {timeout:g} s")
    finally:
        client.stopService()
    if errors:
        raise errors[0]
    return daily_bars


def daily_bars(client: Client, credentials: dict[str, Any], symbol_name: str = "EURUSD") -> list[Bar]:
    """The same answer without callbacks (``client`` connected; each call can be re-run in a cell)."""
    client.request(ProtoOAApplicationAuthReq(clientId=credentials["ClientId"], clientSecret=credentials["Secret"]))
    client.request(ProtoOAAccountAuthReq(ctidTraderAccountId=credentials["AccountId"],
                                         accessToken=credentials["AccessToken"]))
    symbols = client.request(ProtoOASymbolsListReq(ctidTraderAccountId=credentials["AccountId"]))
    start, end = _range_ms(50)
    bars = client.request(ProtoOAGetTrendbarsReq(symbolId=_pick(symbols, symbol_name).symbolId,
                                                 ctidTraderAccountId=credentials["AccountId"],
                                                 period=ProtoOATrendbarPeriod.D1, fromTimestamp=start, toTimestamp=end))
    return [transform_trendbar(bar) for bar in bars.trendbar]


def labels(bars: list[Bar]) -> list[int]:
    """The notebook's label column: 1 if the *next* bar closes above its open, else 0 (last bar dropped)."""
    return [int(nxt[4] > nxt[1]) for nxt in bars[1:]]
