"""The callback-style bot: its state machine on payloadType reaches the fill, on real answers."""

from __future__ import annotations

import sys
from pathlib import Path

from clienttools import connected, make_client

from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOATraderReq
from ctrader_sync.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from callback_bot import ORDER_ACCEPTED, ORDER_FILLED, CallbackBot


def test_callback_bot_runs_its_state_machine_to_the_fill() -> None:
    with Simulator(spot_interval=0.02, heartbeat_interval=0.1) as sim:
        account = sim.account_ids[0]
        with connected(sim) as other:  # the balance, asked independently before the bot trades
            other.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[account])
            trader = other.request(ProtoOATraderReq(ctidTraderAccountId=account), 10).trader
            expected = trader.balance / 10 ** trader.moneyDigits
        bot = CallbackBot(make_client(sim), sim.client_id, sim.client_secret, sim.access_token, account,
                          heartbeats_before_trade=1)
        assert bot.run(timeout=30), (bot.state, bot.errors)
        # Every step ran, in order: the payloadType comparisons matched (they never did when get_type
        # returned a class, and the bot sat in ACCOUNT_AUTH... without a word).
        assert bot.states == ["APP_AUTH", "ACCOUNT_AUTH", "TRADER", "WATCHING", "ORDERING", "FILLED"]
        connection = sim.connections[1]
        # Its balance, parsed with ParseFromString(message.payload), is the simulator's.
        assert bot.balance == expected and f"balance {trader.balance}" in bot.status_lines
        assert len(bot.spots) >= 5 and all(1.0 < price < 1.3 for price in bot.spots)
        # The fill was matched to the order request through the envelope's clientMsgId.
        assert bot.order_msg_id is not None
        assert bot.executions[bot.order_msg_id] == [ORDER_ACCEPTED, ORDER_FILLED]
        assert bot.fill_price is not None and abs(bot.fill_price - bot.spots[-1]) < 0.01
        orders = [r for r in connection.inbound() if r.payload_type == 2106]
        assert [r.client_msg_id for r in orders] == [bot.order_msg_id]  # one order, sent once
        # Heartbeats reached the callback and were filtered; the status task ran.
        assert bot.heartbeats >= 1
        assert any("WATCHING" in line or "ORDERING" in line for line in bot.status_lines)
