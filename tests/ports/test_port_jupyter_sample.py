"""The Jupyter sample port: the deferred chain and the straight-line version give the same daily bars."""

from __future__ import annotations

import datetime
import itertools
import sys
from pathlib import Path

from clienttools import connected, make_client

from ctrader_sync.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jupyter_sample import daily_bars, daily_bars_chained, labels


def _credentials(sim: Simulator) -> dict[str, object]:
    return {"ClientId": sim.client_id, "Secret": sim.client_secret, "AccessToken": sim.access_token,
            "AccountId": sim.account_ids[0], "HostType": "demo"}


def test_jupyter_sample_port_gets_daily_bars_twice_in_one_process() -> None:
    with Simulator() as sim:
        chained = daily_bars_chained(make_client(sim), _credentials(sim))
        # The notebook could not re-run its reactor cell; here a second run simply works.
        again = daily_bars_chained(make_client(sim), _credentials(sim))
        with connected(sim) as client:
            straight = daily_bars(client, _credentials(sim))
    assert chained and [bar[1:] for bar in chained] == [bar[1:] for bar in again] == [bar[1:] for bar in straight]
    assert 7 <= len(chained) <= 351  # at most 50 weeks of daily bars
    times = [bar[0] for bar in chained]
    assert times == sorted(times) and len(set(times)) == len(times)
    # One bar per trading day, all opening at the same time of day (the simulator's day starts at
    # 22:00 UTC, as FX brokers' do), a whole number of days apart (weekends are skipped).
    assert all(t.tzinfo is datetime.timezone.utc and (t.hour, t.minute) == (times[0].hour, times[0].minute)
               for t in times)
    assert all((b - a) % datetime.timedelta(days=1) == datetime.timedelta(0) for a, b in itertools.pairwise(times))
    for _, open_, high, low, close, volume in chained:
        assert isinstance(open_, float) and low <= min(open_, close) <= max(open_, close) <= high
        assert volume >= 0
    ups = labels(chained)
    assert len(ups) == len(chained) - 1 and set(ups) <= {0, 1}
    assert ups == [int(bar[4] > bar[1]) for bar in chained[1:]]


def test_jupyter_sample_port_reports_a_wrong_symbol() -> None:
    import pytest

    with Simulator() as sim, pytest.raises(LookupError, match="NOSUCH"):
        daily_bars_chained(make_client(sim), _credentials(sim), symbol_name="NOSUCH")
