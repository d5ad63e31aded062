#!/usr/bin/env python3
"""Write ``examples/quickstart.ipynb`` from the cells below, executed, with its outputs.

Edit the cells here (``CELLS``: one ``(kind, text)`` entry per cell, ``"md"`` or ``"code"``, in
order; add a section by inserting entries), then run::

    pip install -e '.[examples]'              # nbclient, ipykernel, nbformat, matplotlib (the chart)
    python examples/make_quickstart.py        # runs every cell in a fresh kernel, writes the outputs
    python examples/make_quickstart.py --no-execute   # cells only, no outputs (no kernel needed)

The notebook is committed with its outputs (tables and charts), so readers see a real session
without running it; ``tests/test_notebook.py`` checks that its cells are these and runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    ("md", """# ctrader_sync quickstart

A whole session against the **bundled simulator** (a local cTrader Open API server with TEST-ONLY
certificates and credentials): connect, login, live spot prices, H1 trendbars as a table, a market
order, reconcile, close.

Nothing here needs a reactor: every call blocks until its answer (or returns a
`concurrent.futures.Future` with `send`), so cells run top to bottom, and the whole notebook can be
run again in the same kernel. To use the real demo server, replace the simulator's host, port, TLS
context and credentials with `EndPoints.PROTOBUF_DEMO_HOST`, `EndPoints.PROTOBUF_PORT` (default TLS
settings) and your application's credentials."""),
    ("code", """import itertools
import threading
import time

from ctrader_sync import Client
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAClosePositionReq,
    ProtoOAExecutionEvent,
    ProtoOAGetTrendbarsReq,
    ProtoOANewOrderReq,
    ProtoOAReconcileReq,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOASymbolByIdReq,
    ProtoOASymbolsListReq,
    ProtoOAUnsubscribeSpotsReq,
    ProtoOAVersionReq,
)
from ctrader_sync.messages.OpenApiModelMessages_pb2 import (
    ProtoOAExecutionType,
    ProtoOAOrderType,
    ProtoOATradeSide,
    ProtoOATrendbarPeriod,
)
from ctrader_sync.simulator import Simulator
from ctrader_sync.units import decode_trendbars, price_from_raw, volume_from_raw"""),
    ("md", """## Connect

The simulator listens on a free local port. `Client.start()` connects in background threads;
`wait_connected()` blocks until the TLS session is up."""),
    ("code", """sim = Simulator(seed=1)
client = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context())
client.start()
client.wait_connected(timeout=10)
client"""),
    ("md", """## Login

`login()` runs application auth, the account list of the access token and account auth, and
remembers them: after a reconnect the client restores the session (and its subscriptions) by
itself."""),
    ("code", """accounts = client.login(sim.client_id, sim.client_secret, sim.access_token,
                        accounts=[sim.account_ids[0]])
account_id = accounts[0].ctidTraderAccountId
for account in accounts:
    print(account.ctidTraderAccountId, "live" if account.isLive else "demo", account.traderLogin)"""),
    ("md", """## Symbols

`request()` sends and waits for the answer (`send()` returns the future instead)."""),
    ("code", """symbols = client.request(ProtoOASymbolsListReq(ctidTraderAccountId=account_id), timeout=10)
eurusd = next(s for s in symbols.symbol if s.symbolName == "EURUSD")
symbol = client.request(ProtoOASymbolByIdReq(ctidTraderAccountId=account_id, symbolId=[eurusd.symbolId]),
                        timeout=10).symbol[0]
digits = symbol.digits
print(len(symbols.symbol), "symbols; EURUSD id", eurusd.symbolId, "digits", digits)"""),
    ("md", """## The trader's toolkit: symbols by name, a year of bars, a chart

`client.account()` is the toolkit's entry point for one account. Its `symbols` catalogue finds
symbols by name (ids differ between brokers), and `trendbars()` downloads any range: it splits it
into windows the server accepts, follows `hasMore`, keeps within the historical rate limit, checks
every bar and returns float rows with UTC times. `to_pandas()` needs the `ctrader-sync[pandas]`
extra."""),
    ("code", """from datetime import datetime, timedelta, timezone

toolkit_account = client.account()
info = toolkit_account.symbols["eurusd"]
print(info.name, "id", info.id, "digits", info.digits, "min volume", info.min_volume, "units")
end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
year = toolkit_account.trendbars("EURUSD", "H1", end - timedelta(days=365), end)
print(len(year), "H1 bars in", year.requests, "requests,", f"{year.seconds:.1f} s")"""),
    ("code", """try:
    frame = year.to_pandas()
except ImportError as exc:
    frame = None
    print(exc)
try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed: pip install matplotlib for the chart")
if frame is not None and plt is not None:
    frame["close"].plot(figsize=(8, 3), title=f"EURUSD H1 close, {len(frame)} bars (simulator)")
    plt.show()
frame.tail() if frame is not None else year[-5:]"""),
    ("md", """## Live spot prices

`client.events(...)` is a blocking iterator over pushed messages; as a context manager it stops
listening when the block ends. Prices are raw integers in 1/100000: `price_from_raw` turns them into
exact `Decimal`s with the symbol's digits."""),
    ("code", """with client.events(ProtoOASpotEvent, timeout=5) as spots:
    client.request(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account_id, symbolId=[eurusd.symbolId]),
                   timeout=10)
    for spot in itertools.islice(spots, 5):
        print("bid", price_from_raw(spot.bid, digits), "ask", price_from_raw(spot.ask, digits))
_ = client.request(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account_id, symbolId=[eurusd.symbolId]),
                   timeout=10)"""),
    ("md", """## H1 trendbars as a table

Trendbars arrive as a low price plus deltas; `decode_trendbars` turns them into rows of absolute
prices (exact `Decimal`s). With pandas installed they become a `DataFrame` (not a dependency of
ctrader_sync); without it, an HTML table."""),
    ("code", """now = int(time.time() * 1000)
week_ago = now - 7 * 86_400_000  # a week always holds 5 trading days, even on a weekend
answer = client.request(ProtoOAGetTrendbarsReq(
    ctidTraderAccountId=account_id, symbolId=eurusd.symbolId, period=ProtoOATrendbarPeriod.H1,
    fromTimestamp=week_ago, toTimestamp=now, count=24), timeout=10)  # the newest 24 bars
bars = decode_trendbars(answer, digits)
try:
    import pandas as pd
except ImportError:
    pd = None
print(len(bars), "bars; the last ten:")
if pd is not None:
    table = pd.DataFrame(bars).set_index("time").tail(10)
else:
    from IPython.display import HTML

    head = "".join(f"<th>{name}</th>" for name in ("time (UTC)", "open", "high", "low", "close", "ticks"))
    body = "".join(f"<tr><td>{b.time:%Y-%m-%d %H:%M}</td><td>{b.open}</td><td>{b.high}</td><td>{b.low}</td>"
                   f"<td>{b.close}</td><td>{b.volume}</td></tr>" for b in bars[-10:])
    table = HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
table"""),
    ("md", """## ... and as a chart

Plotting needs floats: `float(bar.close)` converts the exact prices. The chart appears when
matplotlib is installed (`pip install matplotlib`)."""),
    ("code", """try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
if plt is None:
    print("matplotlib is not installed: pip install matplotlib for the chart")
else:
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([bar.time for bar in bars], [float(bar.close) for bar in bars], marker=".", label="close")
    ax.fill_between([bar.time for bar in bars], [float(bar.low) for bar in bars],
                    [float(bar.high) for bar in bars], alpha=0.2, label="low-high")
    ax.set_title(f"EURUSD H1, {len(bars)} bars (simulator)")
    ax.set_ylabel("price")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    plt.show()"""),
    ("md", """## A market order

A trading request's future resolves with its first `ProtoOAExecutionEvent` (the order accepted); the
fill follows as another event, read here from an event stream opened before sending."""),
    ("code", """with client.events(ProtoOAExecutionEvent, timeout=10) as executions:
    accepted = client.request(ProtoOANewOrderReq(
        ctidTraderAccountId=account_id, symbolId=eurusd.symbolId, orderType=ProtoOAOrderType.MARKET,
        tradeSide=ProtoOATradeSide.BUY, volume=symbol.minVolume), timeout=10)
    filled = next(e for e in executions
                  if e.executionType == ProtoOAExecutionType.ORDER_FILLED
                  and e.order.orderId == accepted.order.orderId)
position_id = filled.position.positionId
print("bought", volume_from_raw(symbol.minVolume), "units at", filled.deal.executionPrice, "position", position_id)"""),
    ("md", "## Reconcile, then close the position (with a future this time)"),
    ("code", """positions = client.request(ProtoOAReconcileReq(ctidTraderAccountId=account_id), timeout=10).position
print([p.positionId for p in positions])
assert position_id in [p.positionId for p in positions]

with client.events(ProtoOAExecutionEvent, timeout=10) as executions:
    future = client.send(ProtoOAClosePositionReq(ctidTraderAccountId=account_id, positionId=position_id,
                                                 volume=symbol.minVolume))
    future.result(timeout=10)
    closing = next(e for e in executions
                   if e.executionType == ProtoOAExecutionType.ORDER_FILLED and e.position.positionId == position_id)
print("closed at", closing.deal.executionPrice)"""),
    ("md", """## Positions and P&L with the toolkit

The toolkit's trading half does the same in fewer lines: `market_order` takes lots and stop loss /
take profit in pips and returns after the fill (not just the acceptance); `account.positions` is a
live mirror kept current from execution events; `unrealized_pnl()` asks the server for each
position's P&L in the account currency (money as `Decimal`, prices as floats)."""),
    ("code", """fill = toolkit_account.market_order("EURUSD", "buy", lots=0.1, stop_loss_pips=20, take_profit_pips=40)
toolkit_account.market_order("EURUSD", "sell", lots=0.05)
pnl = toolkit_account.unrealized_pnl()
for pid, p in toolkit_account.positions.items():
    print(f"position {pid}: {p.side} {p.lots} lots {p.symbol} at {p.entry_price}, SL {p.stop_loss}, "
          f"TP {p.take_profit}, P&L {pnl[pid].gross} (net {pnl[pid].net})")
print("balance", toolkit_account.balance, "equity", toolkit_account.equity())"""),
    ("code", """for pid in list(toolkit_account.positions):
    print("closed", pid, "at", toolkit_account.close_position(pid).price)
print("open positions:", len(toolkit_account.positions), "balance", toolkit_account.balance)"""),
    ("md", """## The same client from asyncio

A notebook already runs an event loop, so cells can `await`. `ctrader_sync.aio.AsyncClient` wraps
the same threaded client (no second connection, no loop inside the SDK), and its `account()` makes
every toolkit call awaitable; see the README's asyncio section for `async for` over events."""),
    ("code", """from ctrader_sync.aio import AsyncClient

aclient = AsyncClient(client)
version = await aclient.request(ProtoOAVersionReq(), timeout=10)
print("server version, awaited:", version.version)
aaccount = await aclient.account()
print("open positions, awaited:", len(await aaccount.positions), "balance", await aaccount.balance)"""),
    ("md", """## Close

`close()` ends the connection and joins the client's threads; the simulator's `close()` does the
same for its own. Nothing is left running, so this notebook can be run again in the same kernel."""),
    ("code", """client.close()
sim.close()"""),
    ("code", """left = [t.name for t in threading.enumerate() if t.name.startswith("ctrader_sync")]
print("ctrader_sync threads left:", left)
assert left == [], left"""),
]


def build() -> nbformat.NotebookNode:
    """Return the quickstart notebook built from :data:`CELLS`."""
    # fixed cell ids keep the file identical between runs of this script
    cells = [new_markdown_cell(text, id=f"cell-{i:02d}") if kind == "md" else new_code_cell(text, id=f"cell-{i:02d}")
             for i, (kind, text) in enumerate(CELLS, 1)]
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(nb)
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 120) -> nbformat.NotebookNode:
    """Run every cell of ``nb`` in a fresh ``python3`` kernel (this interpreter) and return it with outputs."""
    import nbclient

    here = Path(__file__).resolve().parent
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(here)}})
    return client.execute()


def main(argv: list[str] | None = None) -> int:
    """Write the notebook next to this script, executed unless ``--no-execute``."""
    parser = argparse.ArgumentParser(description="Write examples/quickstart.ipynb from CELLS.")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    path = Path(__file__).resolve().parent / "quickstart.ipynb"
    nb = build()
    if not args.no_execute:
        nb = execute(nb)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            print(f"a cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}", file=sys.stderr)
            return 1
        nb.metadata.pop("widgets", None)
    nbformat.write(nb, str(path))
    print(f"wrote {path}" + ("" if args.no_execute else " (executed, with outputs)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
