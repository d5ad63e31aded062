"""``python -m ctrader_sync.history``: download bars or ticks of a symbol to CSV.

::

    python -m ctrader_sync.history EURUSD H1 --from 2024-01-01 --to 2025-01-01 -o eurusd-h1.csv
    python -m ctrader_sync.history EURUSD --ticks both --from 2024-03-04T10:00 --to 2024-03-04T11:00

Credentials come from the same environment variables as ``python -m ctrader_sync.demo``
(``CTRADER_CLIENT_ID``, ``CTRADER_CLIENT_SECRET``, ``CTRADER_ACCESS_TOKEN``, optionally
``CTRADER_ACCOUNT_ID``); they are used with the demo server (``--live`` for the live one, ``--host``
for another). With none of them set, it runs against the bundled simulator and says so on stderr.

The CSV goes to stdout or ``-o FILE``; progress and a summary go to stderr. Exit status: 0 done,
1 a request failed, 2 bad arguments, credentials or server, 130 interrupted. Errors are one line.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

from .demo import ENV_ACCESS_TOKEN, ENV_ACCOUNT_ID, ENV_CLIENT_ID, ENV_CLIENT_SECRET
from .endpoints import EndPoints
from .errors import AuthenticationError, ConnectError, CTraderError, UnknownSymbolError

__all__ = ["HistoryError", "main"]

PROG = "python -m ctrader_sync.history"
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130
_TIMEOUT = 30.0


class HistoryError(Exception):
    """A one-line failure and the exit status to return."""

    def __init__(self, message: str, status: int = _EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HistoryError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Download the bars or ticks of a symbol over any range to CSV.",
                epilog=f"Credentials come from the environment: {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET}, "
                       f"{ENV_ACCESS_TOKEN} and optionally {ENV_ACCOUNT_ID}; without them the bundled "
                       "simulator is used.")
    p.add_argument("symbol", help="symbol name, any case (e.g. EURUSD)")
    p.add_argument("period", nargs="?", help="bar period: M1 M2 M3 M4 M5 M10 M15 M30 H1 H4 H12 D1 W1 MN1 "
                                             "(leave out with --ticks)")
    p.add_argument("--from", dest="start", required=True, metavar="DATE",
                   help="start, ISO 8601 in UTC unless it has an offset (2024-01-01 or 2024-01-01T10:00)")
    p.add_argument("--to", dest="end", metavar="DATE", help="end, excluded (default: now)")
    p.add_argument("-o", "--output", metavar="FILE.csv", help="write the CSV here (default: stdout)")
    p.add_argument("--ticks", choices=("bid", "ask", "both"), help="download ticks of this side instead of bars")
    server = p.add_mutually_exclusive_group()
    server.add_argument("--live", action="store_true",
                        help=f"with credentials: the live server ({EndPoints.PROTOBUF_LIVE_HOST}) instead of demo")
    server.add_argument("--host", help="with credentials: another server")
    p.add_argument("--port", type=int, default=EndPoints.PROTOBUF_PORT, help="port for --host")
    p.add_argument("--ca-file", help="CA certificate to trust for --host")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _check(args: argparse.Namespace) -> None:
    from .toolkit._history import period_value, to_ms

    if args.ticks and args.period:
        raise HistoryError(f"give a PERIOD or --ticks, not both (got {args.period!r} and --ticks {args.ticks})")
    if not args.ticks and not args.period:
        raise HistoryError("a PERIOD (e.g. H1) or --ticks bid|ask|both is required")
    try:
        if args.period:
            period_value(args.period)
        start = to_ms(args.start, "--from")
        if args.end is not None and to_ms(args.end, "--to") <= start:
            raise HistoryError("--from must be before --to")
    except ValueError as exc:
        raise HistoryError(str(exc)) from None
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder) or os.path.isdir(args.output):
            raise HistoryError(f"cannot write {args.output}: no such folder" if not os.path.isdir(folder)
                               else f"cannot write {args.output}: it is a folder")


def _credentials(env: Mapping[str, str]) -> tuple[str, str, str, int | None] | None:
    names = (ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_ACCESS_TOKEN)
    values = [env.get(n, "").strip() for n in names]
    account_text = env.get(ENV_ACCOUNT_ID, "").strip()
    if not any(values) and not account_text:
        return None
    missing = [n for n, v in zip(names, values, strict=True) if not v]
    if missing:
        raise HistoryError(f"incomplete credentials in the environment; missing: {', '.join(missing)} "
                           "(set none of them to use the bundled simulator)")
    try:
        account = int(account_text) if account_text else None
    except ValueError:
        raise HistoryError(f"{ENV_ACCOUNT_ID} must be a number (a ctidTraderAccountId)") from None
    return values[0], values[1], values[2], account


@contextmanager
def _session(args: argparse.Namespace, env: Mapping[str, str], err: TextIO) -> Iterator[Any]:
    """A logged-in account: from the credentials, or on the bundled simulator."""
    from ._client import Client
    from ._reconnect import ReconnectPolicy

    credentials = _credentials(env)
    policy = ReconnectPolicy(initial=0.5, maximum=2.0, max_attempts=3)
    if credentials is None:
        from .simulator import Simulator

        err.write("no credentials in the environment: using the bundled simulator (simulated prices)\n")
        with (Simulator(seed=1, spot_interval=0) as sim,
              Client(sim.host, sim.port, ssl_context=sim.client_ssl_context(), reconnect=policy) as client):
            _connect(client, f"{sim.host}:{sim.port}")
            client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]],
                         timeout=_TIMEOUT)
            yield client.account()
        return
    client_id, secret, token, account_id = credentials
    context: ssl.SSLContext | None = None
    if args.host:
        host, port = str(args.host), int(args.port)
        if args.ca_file:
            try:
                context = ssl.create_default_context(cafile=args.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise HistoryError(f"cannot load --ca-file {args.ca_file}: {exc}") from None
    else:
        host = EndPoints.PROTOBUF_LIVE_HOST if args.live else EndPoints.PROTOBUF_DEMO_HOST
        port = EndPoints.PROTOBUF_PORT
    with Client(host, port, ssl_context=context, reconnect=policy) as client:
        _connect(client, f"{host}:{port}")
        try:
            accounts = client.login(client_id, secret, token, accounts=None if account_id is None else [account_id],
                                    timeout=_TIMEOUT)
        except AuthenticationError as exc:
            raise HistoryError(f"the server refused the credentials ({exc.error_code})") from None
        except CTraderError as exc:
            raise HistoryError(f"login failed: {exc}") from None
        if account_id is None:
            if len(accounts) != 1:
                ids = ", ".join(str(a.ctidTraderAccountId) for a in accounts) or "none"
                raise HistoryError(f"the token grants {len(accounts)} accounts ({ids}): set {ENV_ACCOUNT_ID}")
            account_id = int(accounts[0].ctidTraderAccountId)
        yield client.account(account_id)


def _connect(client: Any, where: str) -> None:
    try:
        client.wait_connected(20.0)
    except ConnectError as exc:
        raise HistoryError(f"cannot connect to {where}: {exc.__cause__ or exc}") from None


_EMPTY_NOTE = ("nothing in this range: FX markets are closed from Friday 22:00 to Sunday 22:00 UTC "
               "(and on holidays); give a --from further back\n")


def _download(account: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    try:
        symbol = account.symbols[args.symbol]
    except UnknownSymbolError as exc:
        raise HistoryError(str(exc)) from None
    progress = False if args.no_progress else None
    if args.ticks:
        rows = account.ticks(symbol, args.start, args.end, side=args.ticks, progress=progress)
        what = f"{symbol.name} ticks ({args.ticks}): {len(rows)} rows"
    else:
        rows = account.trendbars(symbol, args.period, args.start, args.end, progress=progress)
        what = f"{symbol.name} {rows.period}: {len(rows)} bars"
        if rows.bad:
            what += f" ({len(rows.bad)} bad bars left out)"
    if args.output:
        try:
            rows.to_csv(args.output)
        except OSError as exc:
            raise HistoryError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        rows.to_csv(out)
        out.flush()
    where = f" -> {args.output}" if args.output else ""
    err.write(f"{what}, {rows.requests} requests, {rows.seconds:.1f} s{where}\n")
    if not len(rows):
        err.write(_EMPTY_NOTE)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command; return the exit status."""
    err = sys.stderr
    try:
        args = _parser().parse_args(argv)
        _check(args)
        with _session(args, os.environ if env is None else env, err) as account:
            _download(account, args, sys.stdout, err)
    except HistoryError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return exc.status
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        return _EXIT_FAILED
    except CTraderError as exc:
        err.write(f"{PROG}: error: {type(exc).__name__}: {exc}\n")
        return _EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
