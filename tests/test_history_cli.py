"""``python -m ctrader_sync.history`` end to end in a subprocess: CSV out, the bundled simulator
without credentials, credentials from the environment, one-line errors with exit status 2."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ctrader_sync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRADER_")}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ctrader_sync.history", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env if env is not None else _env(), cwd=ROOT)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("no credentials")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_bars_to_stdout_from_the_bundled_simulator() -> None:
    result = _run("eurusd", "H1", "--from", "2024-01-01", "--to", "2024-01-03")
    assert result.returncode == 0, result.stderr
    assert "bundled simulator" in result.stderr.splitlines()[0]
    assert "EURUSD H1: 48 bars" in result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 48
    assert rows[0]["time"] == "2024-01-01T00:00:00+00:00" and rows[-1]["time"] == "2024-01-02T23:00:00+00:00"
    for row in rows:
        o, h, low, c = (float(row[k]) for k in ("open", "high", "low", "close"))
        assert h >= max(o, c) >= min(o, c) >= low
        assert int(row["volume"]) > 0


def test_bars_to_a_file_and_ticks(tmp_path: Path) -> None:
    out = tmp_path / "eurusd.csv"
    result = _run("EURUSD", "M15", "--from", "2024-02-01", "--to", "2024-02-02", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and str(out) in result.stderr
    assert len(out.read_text().splitlines()) == 1 + 96
    result = _run("GBPUSD", "--ticks", "both", "--from", "2024-02-01T10:00", "--to", "2024-02-01T10:01")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "time,bid,ask" and len(lines) == 61
    assert lines[1].startswith("2024-02-01T10:00:00.000+00:00,")


@pytest.mark.parametrize(("args", "words"), [
    (["EURUSD", "H2", "--from", "2024-01-01"], ["unknown trendbar period", "H4"]),
    (["EURUSD", "H1"], ["--from"]),
    (["EURUSD", "H1", "--from", "someday"], ["--from", "someday"]),
    (["EURUSD", "H1", "--from", "2024-02-01", "--to", "2024-01-01"], ["before"]),
    (["EURUSD", "--from", "2024-01-01"], ["PERIOD", "--ticks"]),
    (["EURUSD", "H1", "--ticks", "bid", "--from", "2024-01-01"], ["not both"]),
    (["EURUSX", "H1", "--from", "2024-01-01", "--to", "2024-01-02"], ["unknown symbol", "EURUSD"]),
    (["EURUSD", "H1", "--from", "2024-01-01", "-o", "/nonexistent-folder/x.csv"], ["cannot write", "no such folder"]),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], words: list[str]) -> None:
    line = _one_line_error(_run(*args))
    for word in words:
        assert word in line, line


def _host_args(sim: Simulator) -> list[str]:
    return ["--host", "localhost", "--port", str(sim.port), "--ca-file", sim.ca_file]


def test_credentials_from_the_environment() -> None:
    with Simulator(seed=2, spot_interval=0) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id, CTRADER_CLIENT_SECRET=sim.client_secret,
                   CTRADER_ACCESS_TOKEN=sim.access_token, CTRADER_ACCOUNT_ID=str(sim.account_ids[0]))
        # Two whole weekdays (Tuesday 00:00 to Thursday 00:00 UTC): 48 H1 bars whatever day the
        # test runs on (history has no weekend bars).
        start = datetime(2024, 3, 5)
        end = start + timedelta(days=2)
        result = _run("USDJPY", "H1", "--from", start.isoformat(), "--to", end.isoformat(), *_host_args(sim),
                      env=env)
        assert result.returncode == 0, result.stderr
        assert "simulator" not in result.stderr
        assert len(result.stdout.splitlines()) == 1 + 48
        assert len(sim.connections) == 1  # it used the server given, not a bundled one
        everything = result.stdout + result.stderr
        assert sim.client_secret not in everything and sim.access_token not in everything
        # two accounts and no CTRADER_ACCOUNT_ID: say which to choose
        env.pop("CTRADER_ACCOUNT_ID")
        line = _one_line_error(_run("USDJPY", "H1", "--from", start.isoformat(), *_host_args(sim), env=env))
        assert "CTRADER_ACCOUNT_ID" in line and str(sim.account_ids[1]) in line


@pytest.mark.parametrize("wrong", ["secret", "token", "missing"])
def test_bad_credentials_exit_2_and_never_show_the_secret(wrong: str) -> None:
    secret = "s3cr3t-that-must-not-leak-91ab"
    with Simulator(seed=3, spot_interval=0) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id,
                   CTRADER_CLIENT_SECRET=secret if wrong == "secret" else sim.client_secret,
                   CTRADER_ACCESS_TOKEN=secret if wrong == "token" else sim.access_token)
        if wrong == "missing":
            env.pop("CTRADER_CLIENT_ID")
        result = _run("EURUSD", "H1", "--from", "2024-01-01", *_host_args(sim), env=env)
    line = _one_line_error(result)
    assert {"secret": "CH_CLIENT_AUTH_FAILURE", "token": "CH_ACCESS_TOKEN_INVALID",
            "missing": "CTRADER_CLIENT_ID"}[wrong] in line
    everything = result.stdout + result.stderr
    assert secret not in everything and sim.client_secret not in everything and sim.access_token not in everything


def test_a_range_inside_a_weekend_says_why_it_is_empty() -> None:
    result = _run("EURUSD", "H1", "--from", "2024-03-09T00:00", "--to", "2024-03-10T12:00")  # Saturday, Sunday
    assert result.returncode == 0, result.stderr
    assert list(csv.DictReader(io.StringIO(result.stdout))) == []
    assert "EURUSD H1: 0 bars" in result.stderr
    assert "Friday 22:00 to Sunday 22:00 UTC" in result.stderr and "--from" in result.stderr
    busy = _run("EURUSD", "H1", "--from", "2024-03-08T12:00", "--to", "2024-03-10T12:00")  # from Friday noon
    assert busy.returncode == 0 and "EURUSD H1: 10 bars" in busy.stderr, busy.stderr
    assert "closed" not in busy.stderr
