"""The demo end to end: ``python -m ctrader_sync.demo`` as a user runs it, output checked line by line.

Runs against the simulator the demo bundles, and against an in-process :class:`Simulator` through
``--host`` for the credential paths (wrong secret, wrong token, read-only without ``--trade``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
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


# -- rough edges a newcomer met ------------------------------------------------------------------


def test_a_short_credential_masks_only_whole_words() -> None:
    from ctrader_sync._demo_setup import MIN_SECRET_LENGTH, Output

    out = Output(1, False, sys.stdout, sys.stderr)
    out.hide(["y", "n", "long-secret-value-1234"])
    assert MIN_SECRET_LENGTH >= 8
    assert out.scrub("custom server, read-only, 5 symbols") == "custom server, read-only, 5 symbols"
    assert out.scrub("token y was refused") == "token *** was refused"  # standalone: still hidden
    assert out.scrub("x=long-secret-value-1234;") == "x=***;"  # long ones: hidden anywhere
    assert out.scrub("prefixlong-secret-value-1234suffix") == "prefix***suffix"


def test_short_env_credentials_do_not_garble_the_tour() -> None:
    result = _run("--quiet", env=_env(CTRADER_CLIENT_SECRET="e", CTRADER_ACCESS_TOKEN="o"))
    assert result.returncode == 0, result.stderr
    _check_steps(result.stdout, FULL_STEPS)
    assert "***" not in result.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--port", "5036"], ["--port only apply with --host", "bundled simulator picks a free port"]),
    (["--demo", "--ca-file", "x.pem"], ["--ca-file only apply with --host", "--demo uses port 5035"]),
])
def test_options_that_would_be_ignored_are_errors(args: list[str], words: list[str]) -> None:
    line = _one_line_error(_run(*args))
    for word in words:
        assert word in line, line


def test_trade_in_simulator_mode_is_noted_not_ignored() -> None:
    result = _run("--trade", "--quiet")
    assert result.returncode == 0, result.stderr
    _check_steps(result.stdout, FULL_STEPS)
    assert result.stderr.splitlines() == [
        "ctrader-sync-demo: note: --trade changes nothing here: the simulator tour always places and closes "
        "its order (--trade matters only with --demo, --live or --host)"]


def test_tls_failure_against_a_local_server_suggests_ca_file() -> None:
    with Simulator(seed=6) as sim:
        env = _env(CTRADER_CLIENT_ID=sim.client_id, CTRADER_CLIENT_SECRET=sim.client_secret,
                   CTRADER_ACCESS_TOKEN=sim.access_token)
        line = _one_line_error(_run("--host", "127.0.0.1", "--port", str(sim.port), env=env))
    assert "certificate" in line.lower() and "--ca-file" in line and "ca_file" in line, line


def test_demo_reads_a_simulator_process_from_its_json_file(tmp_path: Path) -> None:
    info_file, env_file = tmp_path / "sim.json", tmp_path / "sim.env"
    proc = subprocess.Popen([sys.executable, "-m", "ctrader_sync.simulator", "--port", "0", "--json-file",
                             str(info_file), "--env-file", str(env_file)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once both files are in place
        info = json.loads(line)
        assert json.loads(info_file.read_text()) == info
        assert info_file.stat().st_mode & 0o777 == 0o600 and env_file.stat().st_mode & 0o777 == 0o600
        sourced = subprocess.run(["bash", "-c", f"set -a; . {env_file}; set +a; env"], capture_output=True,
                                 text=True, timeout=TIMEOUT, check=True).stdout.splitlines()
        want = {"CTRADER_HOST": info["host"], "CTRADER_PORT": str(info["port"]), "CTRADER_CA_FILE": info["ca_file"],
                "CTRADER_CLIENT_ID": info["client_id"], "CTRADER_CLIENT_SECRET": info["client_secret"],
                "CTRADER_ACCESS_TOKEN": info["access_token"], "CTRADER_ACCOUNT_ID": str(info["account_ids"][0])}
        assert {k: v for k, v in (e.split("=", 1) for e in sourced if "=" in e) if k in want} == want
        result = _run("--simulator-json", str(info_file))
        assert result.returncode == 0, result.stderr
        _check_steps(result.stdout, FULL_STEPS)
        assert "simulator process" in result.stdout
        assert info["client_secret"] not in result.stdout and info["access_token"] not in result.stdout
        # the same through the variables of --env-file, as a shell user would do it
        env = _env(**{k: v for k, v in want.items() if k.startswith("CTRADER_") and k not in (
            "CTRADER_HOST", "CTRADER_PORT", "CTRADER_CA_FILE")})
        result = _run("--host", want["CTRADER_HOST"], "--port", want["CTRADER_PORT"], "--ca-file",
                      want["CTRADER_CA_FILE"], "--trade", "--quiet", env=env)
        assert result.returncode == 0, result.stderr
        _check_steps(result.stdout, FULL_STEPS)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not info_file.exists() and not env_file.exists(), "stale credentials left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulator_json_that_is_missing_or_wrong_exits_2(tmp_path: Path) -> None:
    line = _one_line_error(_run("--simulator-json", str(tmp_path / "absent.json")))
    assert "python -m ctrader_sync.simulator --port 0 --json-file" in line
    (tmp_path / "bad.json").write_text('{"host": "127.0.0.1"}\n')
    line = _one_line_error(_run("--simulator-json", str(tmp_path / "bad.json")))
    assert "is not the simulator's JSON line" in line
