"""The reconnecting spot watcher: its connected-callback chain re-authorizes on the new connection."""

from __future__ import annotations

import sys
from pathlib import Path

from clienttools import make_client, wait_until

from ctrader_sync import ConnectionLostError
from ctrader_sync.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconnecting_bot import SpotWatcher

APP_AUTH, ACCOUNT_AUTH, SUBSCRIBE = 2100, 2102, 2127


def test_spot_watcher_reauthorizes_itself_after_a_reconnect() -> None:
    with Simulator(spot_interval=0.02) as sim:
        bot = SpotWatcher(make_client(sim), sim.client_id, sim.client_secret, sim.access_token, sim.account_ids[0])
        bot.start()
        try:
            assert bot.wait(lambda b: b.spots[1] >= 3, 15), bot.spots
            wait_until(lambda: len(bot.polls) >= 2, 15, "the polling task's answers")
            sim.inject("close")
            assert bot.wait(lambda b: b.connection == 2 and b.spots[2] >= 3, 15), (bot.connection, bot.spots)
            polls_before = len(bot.polls)
            wait_until(lambda: len(bot.polls) >= polls_before + 2, 15, "polls on the new connection")
        finally:
            bot.stop()
        assert len(bot.disconnects) >= 1 and isinstance(bot.disconnects[0], ConnectionLostError)
        assert set(bot.polls) == {0}  # no positions open: each poll parsed a real reconcile answer
        assert not bot.poll_errors, bot.poll_errors
        # The bot's own chain ran again on the second connection, in order.
        second = [r.payload_type for r in sim.connections[1].inbound() if r.payload_type in
                  (APP_AUTH, ACCOUNT_AUTH, SUBSCRIBE)]
        assert second == [APP_AUTH, ACCOUNT_AUTH, SUBSCRIBE]
        assert not sim.connections[1].duplicate_client_msg_ids()
