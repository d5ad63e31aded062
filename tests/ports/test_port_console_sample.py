"""The ConsoleSample port, driven command by command against the simulator, on real answers."""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path
from typing import Any

from clienttools import make_client, wait_until

from ctrader_sync.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_sample import HELP, ConsoleSample

ACCEPTED, FILLED, CANCELLED = 2, 3, 5


class Console:
    """Feeds the program its commands and watches what it prints and receives."""

    def __init__(self, sim: Simulator) -> None:
        self.commands: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self.client = make_client(sim)
        self.app = ConsoleSample(self.client, sim.client_id, sim.client_secret, sim.access_token,
                                 self.read_command, self.lines.append, pause=0.0)
        self.thread = threading.Thread(target=self.app.run, kwargs={"timeout": 120}, name="console-port")

    def read_command(self, timeout: float) -> str | None:
        try:
            return self.commands.get(timeout=timeout)
        except queue.Empty:
            return None

    def run(self, command: str, expect: type | str, n: int = 1, timeout: float = 15.0) -> list[Any]:
        """Type ``command``; return the first ``n`` new messages of type ``expect`` (or lines containing it)."""
        seen_messages, seen_lines = len(self.app.received), len(self.lines)
        self.commands.put(command)
        if isinstance(expect, str):
            wait_until(lambda: sum(expect in line for line in self.lines[seen_lines:]) >= n, timeout,
                       f"{expect!r} printed after {command!r}")
            return [line for line in self.lines[seen_lines:] if expect in line][:n]

        def found() -> list[Any]:
            return [m for m in self.app.received[seen_messages:] if isinstance(m, expect)]

        wait_until(lambda: len(found()) >= n, timeout, f"{expect.__name__} after {command!r}")
        return found()[:n]


def test_console_sample_port_runs_every_command() -> None:
    from ctrader_sync.messages.OpenApiMessages_pb2 import (
        ProtoOAAccountAuthRes,
        ProtoOAAssetClassListRes,
        ProtoOAAssetListRes,
        ProtoOADealOffsetListRes,
        ProtoOAExecutionEvent,
        ProtoOAGetAccountListByAccessTokenRes,
        ProtoOAGetPositionUnrealizedPnLRes,
        ProtoOAGetTickDataRes,
        ProtoOAGetTrendbarsRes,
        ProtoOAOrderDetailsRes,
        ProtoOAOrderListByPositionIdRes,
        ProtoOAReconcileRes,
        ProtoOASpotEvent,
        ProtoOASubscribeSpotsRes,
        ProtoOASymbolCategoryListRes,
        ProtoOASymbolsListRes,
        ProtoOATraderRes,
        ProtoOAUnsubscribeSpotsRes,
        ProtoOAVersionRes,
    )

    with Simulator(spot_interval=0.05) as sim:
        console = Console(sim)
        console.thread.start()
        try:
            wait_until(lambda: any("API Application authorized" in line for line in console.lines), 15,
                       "application auth")
            assert len(console.app.commands) == 22  # help, setAccount and 20 requests

            help_lines = console.run("help", "OrderListByPositionId *positionId", 1)
            assert help_lines and all(line in console.lines for line in HELP)
            assert console.run("nonsense 1 2", "Invalid Command")

            account = sim.account_ids[0]
            (auth,) = console.run(f"setAccount *{account}", ProtoOAAccountAuthRes)
            assert auth.ctidTraderAccountId == account
            assert any(f"Account {account} has been authorized" in line for line in console.lines)

            (version,) = console.run("ProtoOAVersionReq", ProtoOAVersionRes)
            assert version.version == sim.version
            (listing,) = console.run("ProtoOAGetAccountListByAccessTokenReq", ProtoOAGetAccountListByAccessTokenRes)
            assert sorted(a.ctidTraderAccountId for a in listing.ctidTraderAccount) == sorted(sim.account_ids)
            (assets,) = console.run("ProtoOAAssetListReq", ProtoOAAssetListRes)
            assert {a.name for a in assets.asset} >= {"EUR", "USD"}
            (classes,) = console.run("ProtoOAAssetClassListReq", ProtoOAAssetClassListRes)
            assert len(classes.assetClass) > 0 and all(c.name for c in classes.assetClass)
            (categories,) = console.run("ProtoOASymbolCategoryListReq", ProtoOASymbolCategoryListRes)
            assert {c.assetClassId for c in categories.symbolCategory} <= {c.id for c in classes.assetClass}
            (symbols,) = console.run("ProtoOASymbolsListReq False", ProtoOASymbolsListRes)
            assert "EURUSD" in {s.symbolName for s in symbols.symbol}
            (trader,) = console.run("ProtoOATraderReq", ProtoOATraderRes)
            assert trader.trader.ctidTraderAccountId == account and trader.trader.balance > 0

            # Subscribe for one second: spots arrive and are printed, then the timer unsubscribes.
            console.run("ProtoOASubscribeSpotsReq *1 *1", ProtoOASubscribeSpotsRes)
            wait_until(lambda: sum(isinstance(m, ProtoOASpotEvent) for m in console.app.received) >= 3, 10, "spots")
            wait_until(lambda: any(isinstance(m, ProtoOAUnsubscribeSpotsRes) for m in console.app.received), 10,
                       "the timed unsubscribe")
            spots = [m for m in console.app.received if isinstance(m, ProtoOASpotEvent)]
            assert all(s.symbolId == 1 and (s.bid > 0 or s.ask > 0) for s in spots)

            (reconcile,) = console.run("ProtoOAReconcileReq", ProtoOAReconcileRes)
            assert reconcile.ctidTraderAccountId == account and not reconcile.position
            (bars,) = console.run("ProtoOAGetTrendbarsReq 1 H1 1", ProtoOAGetTrendbarsRes)
            assert len(bars.trendbar) > 0 and all(b.low > 0 for b in bars.trendbar)
            # 3 days back from now hold trading hours whatever the day (the weekend is 48 hours).
            (ticks,) = console.run("ProtoOAGetTickDataReq 3 bid 1", ProtoOAGetTickDataRes)
            assert len(ticks.tickData) > 0

            accepted, filled = console.run("NewMarketOrder 1 BUY 1000", ProtoOAExecutionEvent, 2)
            assert (accepted.executionType, filled.executionType) == (ACCEPTED, FILLED)
            position_id, deal_id = filled.position.positionId, filled.deal.dealId
            assert filled.position.tradeData.volume == 100000  # the sample's "volume * 100"

            # With the position open: its unrealized P&L, its orders, the order's details.
            (pnl,) = console.run("GetPositionUnrealizedPnL", ProtoOAGetPositionUnrealizedPnLRes)
            assert [p.positionId for p in pnl.positionUnrealizedPnL] == [position_id]
            # The sample passes fromTimestamp=None, toTimestamp=None to send(): ignored, as before.
            (by_position,) = console.run(f"OrderListByPositionId {position_id}", ProtoOAOrderListByPositionIdRes)
            assert [o.orderId for o in by_position.order] == [accepted.order.orderId]
            (details,) = console.run(f"OrderDetails {accepted.order.orderId}", ProtoOAOrderDetailsRes)
            assert details.order.orderId == accepted.order.orderId and [d.dealId for d in details.deal] == [deal_id]

            (limit,) = console.run("NewLimitOrder 1 BUY 1000 0.5", ProtoOAExecutionEvent)
            assert limit.executionType == ACCEPTED and limit.order.limitPrice == 0.5
            (stop,) = console.run("NewStopOrder 1 BUY 1000 5.0", ProtoOAExecutionEvent)
            assert stop.executionType == ACCEPTED and stop.order.stopPrice == 5.0
            (cancelled,) = console.run(f"CancelOrder {limit.order.orderId}", ProtoOAExecutionEvent)
            assert cancelled.executionType == CANCELLED and cancelled.order.orderId == limit.order.orderId
            close_accepted, closed = console.run(f"ClosePosition {position_id} 1000", ProtoOAExecutionEvent, 2)
            assert close_accepted.executionType == ACCEPTED and close_accepted.order.closingOrder
            assert closed.executionType == FILLED and closed.deal.closePositionDetail.closedVolume == 100000
            # The opening deal is offset by the closing one.
            (offsets,) = console.run(f"DealOffsetList {deal_id}", ProtoOADealOffsetListRes)
            assert [(o.dealId, o.volume) for o in offsets.offsetBy] == [(closed.deal.dealId, 100000)]
            assert not any("Message Error:" in line for line in console.lines)
        finally:
            console.commands.put("")
            console.thread.join(30)
        assert not console.thread.is_alive()
        assert console.app.finished.is_set()
        assert not sim.connections[0].duplicate_client_msg_ids()
