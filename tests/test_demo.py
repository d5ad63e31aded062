"""The demo end to end: ``python -m ctrader_sync.demo`` as a user runs it, output checked line by line.

Runs against the simulator the demo bundles, and against an in-process :class:`Simulator` through
``--host`` for the credential paths (wrong secret, wrong token, read-only without ``--trade``).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ctrader_sync import demo
from ctrader_sync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60
NEW_ORDER_REQ = 2106
CLOSE_POSITION_REQ = 2111

FULL_STEPS = ["connecting to", "login", "account list", "symbols", "live spot prices", "H1 bars",
              "market order", "reconcile", "closing position", "closing the client"]


def _env(**extra: str) -> dict[str, str]:
    """The current environment without any CTRADER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRADER_")}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts" / "demo.py")] if script else [sys.executable, "-m",
                                                                                   "ctrader_sync.demo"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=env if env is not None else _env(), cwd=ROOT)


def _progress(stdout: str) -> list[tuple[int, int, str]]:
    return [(int(m[1]), int(m[2]), m[3]) for m in re.finditer(r"^\[(\d+)/(\d+)\] (.*)$", stdout, re.M)]


def _check_steps(stdout: str, expected: list[str]) -> None:
    steps = _progress(stdout)
    assert [(n, total) for n, total, _ in steps] == [(i + 1, len(expected)) for i in range(len(expected))], stdout
    for (_, _, text), word in zip(steps, expected, strict=True):
        assert word in text, (word, text)


@pytest.mark.parametrize(("symbol", "digits"), [("EURUSD", 5), ("XAUUSD", 2)])
def test_demo_walks_through_a_session_with_the_bundled_simulator(symbol: str, digits: int) -> None:
    args = () if symbol == "EURUSD" else ("--symbol", symbol.lower())
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    _check_steps(out, FULL_STEPS)
    assert "127.0.0.1:" in _progress(out)[0][2]

    # five spot prices, bid and ask, each with exactly the symbol's digits
    price = rf"\d+\.\d{{{digits}}}"
    spots = re.findall(rf"^ +\d\d:\d\d:\d\d\.\d{{3}}  {symbol}  bid ({price})  ask ({price})$", out, re.M)
    assert len(spots) == 5, out
    assert all(float(ask) > float(bid) for bid, ask in spots)

    # the H1 table: a header and ten rows of four prices and a tick volume, one hour apart
    assert re.search(r"^ +time \(UTC\) +open +high +low +close +ticks$", out, re.M), out
    rows = re.findall(rf"^ +\d{{4}}-\d\d-\d\d (\d\d):00((?: +{price}){{4}}) +\d+$", out, re.M)
    assert len(rows) == 10, out
    hours = [int(h) for h, _ in rows]
    assert all((b - a) % 24 == 1 for a, b in itertools.pairwise(hours)), hours
    for _, prices in rows:
        o, h, low, c = map(float, prices.split())
        assert low <= min(o, c) and h >= max(o, c)

    # the order, its execution, the reconcile that lists it, and its closing
    execution = re.search(rf"^ +execution: order \d+ FILLED at ({price}), position (\d+)$", out, re.M)
    assert execution, out
    position = execution[2]
    assert re.search(rf"^ +position {position}: BUY [\d.]+ units {symbol} at {price}  <- the demo's$", out, re.M)
    assert re.search(rf"^ +position {position} closed at {price}, gross profit -?\d+\.\d\d$", out, re.M), out
    assert "client threads still running: none" in out
    assert out.rstrip().endswith("done.")


def test_quiet_prints_only_the_progress_lines() -> None:
    result = _run("--quiet", script=True)  # through scripts/demo.py, the thin wrapper
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 10 and all(re.match(r"\[\d+/10\] ", line) for line in lines), lines
    _check_steps(result.stdout, FULL_STEPS)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ctrader-sync-demo: ")
    return lines[0]


@pytest.mark.parametrize("flag", ["--demo", "--live"])
def test_real_server_without_credentials_exits_2_with_one_line(flag: str) -> None:
    result = _run(flag, env=_env(CTRADER_ACCESS_TOKEN="only-the-token"))
    line = _one_line_error(result)
    assert "CTRADER_CLIENT_ID" in line and "CTRADER_CLIENT_SECRET" in line
    assert "CTRADER_ACCESS_TOKEN" not in line.split("missing:")[1]
    assert result.stdout == ""  # nothing was attempted


def test_main_returns_2_without_credentials(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name in (demo.ENV_CLIENT_ID, demo.ENV_CLIENT_SECRET, demo.ENV_ACCESS_TOKEN, demo.ENV_ACCOUNT_ID):
        monkeypatch.delenv(name, raising=False)
    assert demo.main(["--demo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1


def _host_args(sim: Simulator) -> list[str]:
    return ["--host", "localhost", "--port", str(sim.port), "--ca-file", sim.ca_file]


def _payload_types_in(sim: Simulator) -> set[int]:
    return {r.payload_type for c in sim.connections for r in list(c.messages) if r.direction == "in"}


@pytest.mark.parametrize("wrong", ["secret", "token"])
def test_wrong_credentials_exit_2_and_never_show_the_secret(wrong: str) -> None:
    secret = "s3cr3t-that-must-not-leak-7f1c"
    with Simulator(seed=3) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id,
                   CTRADER_CLIENT_SECRET=secret if wrong == "secret" else sim.client_secret,
                   CTRADER_ACCESS_TOKEN=secret if wrong == "token" else sim.access_token)
        result = _run(*_host_args(sim), env=env)
    line = _one_line_error(result)
    assert ("CH_CLIENT_AUTH_FAILURE" if wrong == "secret" else "CH_ACCESS_TOKEN_INVALID") in line
    everything = result.stdout + result.stderr
    assert secret not in everything
    assert sim.client_secret not in everything and sim.access_token not in everything


def test_credentials_from_env_run_read_only_unless_trade() -> None:
    with Simulator(seed=4) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id, CTRADER_CLIENT_SECRET=sim.client_secret,
                   CTRADER_ACCESS_TOKEN=sim.access_token, CTRADER_ACCOUNT_ID=str(sim.account_ids[0]))
        result = _run(*_host_args(sim), "--symbol", "USDJPY", env=env)
        types = _payload_types_in(sim)
    assert result.returncode == 0, result.stderr
    _check_steps(result.stdout, ["connecting to", "login", "account list", "symbols", "live spot prices",
                                 "H1 bars", "reconcile", "closing the client"])
    assert "read-only" in result.stdout
    assert f"using account {sim.account_ids[0]}" in result.stdout
    assert len(re.findall(r"bid \d+\.\d{3}  ask \d+\.\d{3}$", result.stdout, re.M)) == 5  # USDJPY: 3 digits
    assert NEW_ORDER_REQ not in types and CLOSE_POSITION_REQ not in types
    everything = result.stdout + result.stderr
    assert sim.client_secret not in everything and sim.access_token not in everything


def test_unknown_account_and_unreachable_server_exit_2() -> None:
    with Simulator(seed=5) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id, CTRADER_CLIENT_SECRET=sim.client_secret,
                   CTRADER_ACCESS_TOKEN=sim.access_token, CTRADER_ACCOUNT_ID="123")
        line = _one_line_error(_run(*_host_args(sim), env=env))
        assert "CTRADER_ACCOUNT_ID=123" in line
        port = sim.port
    # the simulator is closed now: nothing listens on its port any more
    line = _one_line_error(_run("--host", "127.0.0.1", "--port", str(port), env=env))
    assert f"cannot connect to 127.0.0.1:{port}" in line


def test_unknown_symbol_fails_with_one_line() -> None:
    result = _run("--symbol", "NOSUCH")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "ctrader-sync-demo: symbol 'NOSUCH' not found among 5 symbols (e.g. EURGBP, EURUSD, GBPUSD, USDJPY, XAUUSD)"]
