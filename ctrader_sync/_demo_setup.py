"""The demo's command line: options, where to connect, and output that never shows a credential.

Kept apart from the tour itself (:mod:`ctrader_sync.demo`): parsing and checking options, building
the connection target from the environment or from a running simulator's JSON file, and printing.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .endpoints import EndPoints

__all__ = ["ENV_ACCESS_TOKEN", "ENV_ACCOUNT_ID", "ENV_CLIENT_ID", "ENV_CLIENT_SECRET", "DemoError", "Output",
           "Target", "check_options", "parser", "target_from_env", "target_from_simulator_json"]

PROG = "ctrader-sync-demo"

ENV_CLIENT_ID = "CTRADER_CLIENT_ID"
"""Environment variable holding the application's client id."""
ENV_CLIENT_SECRET = "CTRADER_CLIENT_SECRET"
"""Environment variable holding the application's client secret."""
ENV_ACCESS_TOKEN = "CTRADER_ACCESS_TOKEN"
"""Environment variable holding the OAuth access token."""
ENV_ACCOUNT_ID = "CTRADER_ACCOUNT_ID"
"""Optional environment variable: the ``ctidTraderAccountId`` to use (default: the first suitable)."""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

MIN_SECRET_LENGTH = 8
"""Hidden values this long or longer are masked wherever they appear; shorter ones only as whole words
(a one-letter "secret" must not turn "read-only" into "read-onl***")."""


class DemoError(Exception):
    """A failed step: a one-line explanation and the exit status to return."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Target:
    """Where the demo connects and with what (credentials are kept out of ``repr``)."""

    mode: str
    """``simulator``, ``demo``, ``live`` or ``custom``."""
    host: str
    port: int
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    account_id: int | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    trade: bool = False

    def secrets(self) -> list[str]:
        """The values that must never be printed."""
        return [s for s in (self.client_secret, self.access_token) if s]


class Output:
    """Prints the progress lines and details, hiding any credential that could slip into a text."""

    def __init__(self, total: int, quiet: bool, out: TextIO, err: TextIO) -> None:
        self.total = total
        self.quiet = quiet
        self.number = 0
        self._out = out
        self._err = err
        self._secrets: list[str] = []
        self._short: re.Pattern[str] | None = None

    def hide(self, values: Iterable[str]) -> None:
        """Never print these strings: replace them with ``***`` (short ones only as whole words)."""
        self._secrets.extend(v for v in values if v)
        self._secrets.sort(key=len, reverse=True)  # a secret inside another is masked with it
        short = [re.escape(s) for s in self._secrets if len(s) < MIN_SECRET_LENGTH]
        self._short = re.compile(r"(?<![\w-])(?:" + "|".join(short) + r")(?![\w-])") if short else None

    def scrub(self, text: str) -> str:
        """``text`` with every hidden value replaced."""
        for secret in self._secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                text = text.replace(secret, "***")
        return self._short.sub("***", text) if self._short is not None else text

    def step(self, text: str) -> None:
        """Print the next progress line: ``[n/total] text``."""
        self.number += 1
        print(self.scrub(f"[{self.number}/{self.total}] {text}"), file=self._out, flush=True)

    def detail(self, text: str) -> None:
        """Print an indented detail line (suppressed by ``--quiet``)."""
        if not self.quiet:
            print(self.scrub(f"      {text}"), file=self._out, flush=True)

    def error(self, text: str) -> None:
        """Print a one-line error to stderr."""
        line = " ".join(self.scrub(text).split())
        print(f"{PROG}: {line}", file=self._err, flush=True)

    def note(self, text: str) -> None:
        """Print a one-line warning to stderr (the run goes on)."""
        print(f"{PROG}: note: {' '.join(self.scrub(text).split())}", file=self._err, flush=True)


def parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A tour of ctrader_sync: connect, login, symbols, live prices, H1 bars, a market order, "
                    "reconcile, close. Without --demo/--live/--host/--simulator-json it runs against the bundled "
                    "simulator.",
        epilog=f"Credentials for --demo/--live/--host come from the environment: {ENV_CLIENT_ID}, "
               f"{ENV_CLIENT_SECRET}, {ENV_ACCESS_TOKEN} and optionally {ENV_ACCOUNT_ID}. For a simulator in "
               "another process: python -m ctrader_sync.simulator --port 0 --json-file sim.json, then "
               f"{PROG} --simulator-json sim.json.")
    server = p.add_mutually_exclusive_group()
    server.add_argument("--demo", action="store_const", const="demo", dest="mode",
                        help=f"use the real demo server ({EndPoints.PROTOBUF_DEMO_HOST})")
    server.add_argument("--live", action="store_const", const="live", dest="mode",
                        help=f"use the real live server ({EndPoints.PROTOBUF_LIVE_HOST})")
    server.add_argument("--host", help="another server (credentials from the environment)")
    server.add_argument("--simulator-json", metavar="FILE",
                        help="a running `python -m ctrader_sync.simulator`: the JSON it printed or wrote with "
                             "--json-file (address, CA file, TEST-ONLY credentials)")
    p.add_argument("--port", type=int, help=f"port for --host (default {EndPoints.PROTOBUF_PORT})")
    p.add_argument("--ca-file", help="CA certificate to trust for --host (default: certifi's bundle)")
    p.add_argument("--symbol", default="EURUSD", help="symbol to show and trade (default EURUSD)")
    p.add_argument("--trade", action="store_true",
                   help="with --demo/--live/--host: also place a minimal market order and close it "
                        "(with --live that is a real order with real money); simulators always trade")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the progress lines")
    return p


def check_options(args: argparse.Namespace, out: Output) -> None:
    """Refuse options that would be ignored silently; note those that change nothing."""
    if args.host is None:
        where = (f"--{args.mode}" if args.mode else "--simulator-json" if args.simulator_json
                 else "the bundled simulator")
        ignored = [o for o, v in (("--port", args.port), ("--ca-file", args.ca_file)) if v is not None]
        if ignored:
            why = ("picks a free port and trusts its own certificate" if where == "the bundled simulator" else
                   "reads the port and CA file from that file" if args.simulator_json else
                   f"uses port {EndPoints.PROTOBUF_PORT} and certifi's CA bundle")
            raise DemoError(f"{' and '.join(ignored)} only apply with --host; {where} {why}", EXIT_USAGE)
    if args.trade and args.mode is None and args.host is None:
        out.note("--trade changes nothing here: the simulator tour always places and closes its order "
                 "(--trade matters only with --demo, --live or --host)")


def _ssl_context(ca_file: str, option: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise DemoError(f"cannot load {option} {ca_file}: {exc}", EXIT_USAGE)


def target_from_env(args: argparse.Namespace, env: Mapping[str, str]) -> Target:
    """Build the connection target for ``--demo``/``--live``/``--host`` from the environment."""
    names = (ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_ACCESS_TOKEN)
    missing = [n for n in names if not env.get(n, "").strip()]
    where = f"--{args.mode}" if args.mode else "--host"
    if missing:
        raise DemoError(f"{where} needs credentials in the environment; missing: {', '.join(missing)} "
                        f"(run without {where} to use the bundled simulator)", EXIT_USAGE)
    account_id: int | None = None
    raw_account = env.get(ENV_ACCOUNT_ID, "").strip()
    if raw_account:
        try:
            account_id = int(raw_account)
        except ValueError:
            raise DemoError(f"{ENV_ACCOUNT_ID} must be a number (a ctidTraderAccountId)", EXIT_USAGE)
    context: ssl.SSLContext | None = None
    if args.mode is None:
        host, mode = str(args.host), "custom"
        if args.ca_file:
            context = _ssl_context(args.ca_file, "--ca-file")
    else:
        host = EndPoints.PROTOBUF_DEMO_HOST if args.mode == "demo" else EndPoints.PROTOBUF_LIVE_HOST
        mode = str(args.mode)
    port = EndPoints.PROTOBUF_PORT if mode != "custom" or args.port is None else int(args.port)
    return Target(mode=mode, host=host, port=port,
                  client_id=env[ENV_CLIENT_ID].strip(), client_secret=env[ENV_CLIENT_SECRET].strip(),
                  access_token=env[ENV_ACCESS_TOKEN].strip(), account_id=account_id, ssl_context=context,
                  trade=bool(args.trade))


def target_from_simulator_json(path: str) -> Target:
    """The target for ``--simulator-json FILE``: what ``python -m ctrader_sync.simulator`` printed or wrote."""
    hint = "start one with: python -m ctrader_sync.simulator --port 0 --json-file FILE"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DemoError(f"cannot read --simulator-json {path}: {exc.strerror or exc} ({hint})", EXIT_USAGE)
    lines = [line for line in text.splitlines() if line.strip().startswith("{")]
    try:
        info: dict[str, Any] = json.loads(lines[0]) if lines else {}
        target = Target(mode="simulator", host=str(info["host"]), port=int(info["port"]),
                        client_id=str(info["client_id"]), client_secret=str(info["client_secret"]),
                        access_token=str(info["access_token"]),
                        account_id=int(info["account_ids"][0]) if info.get("account_ids") else None, trade=True)
        ca_file = str(info["ca_file"])
    except (ValueError, KeyError, TypeError, IndexError):
        raise DemoError(f"--simulator-json {path} is not the simulator's JSON line ({hint})", EXIT_USAGE)
    target.ssl_context = _ssl_context(ca_file, "the simulator's CA file")
    return target
