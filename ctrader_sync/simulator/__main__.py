"""``python -m ctrader_sync.simulator``: run the simulator until interrupted.

Prints one JSON line with everything a client needs (host, port, CA file, credentials, account
ids), then serves until SIGINT or SIGTERM, and exits 0.  ``--json-file FILE`` writes that line to
a file the demo reads (``ctrader-sync-demo --simulator-json FILE``); ``--env-file FILE`` writes the
demo's environment variables (``CTRADER_CLIENT_ID``, ...) plus ``CTRADER_HOST``, ``CTRADER_PORT``
and ``CTRADER_CA_FILE`` in ``KEY=value`` form (shell and dotenv).  Both files are written before the
JSON line is printed, readable by the owner only, and removed when the simulator stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ._server import Simulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ctrader_sync.simulator",
                                description="A local cTrader Open API server over TLS (TEST-ONLY certificates).")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5035, help="port to listen on (default 5035; 0: any free port)")
    p.add_argument("--seed", type=int, default=1, help="seed of the prices (default 1)")
    p.add_argument("--spot-interval", type=float, default=0.1, help="seconds between spot events (0: none)")
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds between heartbeats (0: none)")
    p.add_argument("--idle-timeout", type=float, default=30.0, help="disconnect after this silence (0: never)")
    p.add_argument("--request-limit", type=int, default=50, help="requests per second per connection (0: off)")
    p.add_argument("--historical-limit", type=int, default=5,
                   help="historical requests per second per connection (0: off)")
    p.add_argument("--benchmark", action="store_true", help="benchmark mode: no limits, no recording, fast paths")
    p.add_argument("--flood-count", type=int, default=100_000,
                   help="spot events sent per subscription in benchmark mode")
    p.add_argument("--market-hours", choices=("always", "fx"), default="always",
                   help="always open (default) or FX hours: Sunday 22:00 to Friday 22:00 UTC")
    p.add_argument("--account-currency", default="USD", help="deposit currency of every account (default USD)")
    p.add_argument("--no-record", action="store_true", help="do not record messages")
    p.add_argument("--json-file", metavar="FILE",
                   help="also write the JSON line to FILE (for ctrader-sync-demo --simulator-json FILE)")
    p.add_argument("--env-file", metavar="FILE",
                   help="write CTRADER_* variables to FILE (KEY=value; `set -a; . FILE` in a shell)")
    return p


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half of it), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def env_lines(info: dict[str, Any]) -> str:
    """The ``--env-file`` text: the demo's variables for this simulator, shell-quoted."""
    values = {
        "CTRADER_HOST": info["host"], "CTRADER_PORT": info["port"], "CTRADER_CA_FILE": info["ca_file"],
        "CTRADER_CLIENT_ID": info["client_id"], "CTRADER_CLIENT_SECRET": info["client_secret"],
        "CTRADER_ACCESS_TOKEN": info["access_token"], "CTRADER_ACCOUNT_ID": info["account_ids"][0],
    }
    head = (f"# python -m ctrader_sync.simulator on {info['host']}:{info['port']}: TEST-ONLY credentials,\n"
            "# valid while it runs. Use: set -a; . THIS_FILE; set +a; ctrader-sync-demo --host \"$CTRADER_HOST\" "
            "--port \"$CTRADER_PORT\" --ca-file \"$CTRADER_CA_FILE\" --trade\n")
    return head + "".join(f"{k}={shlex.quote(str(v))}\n" for k, v in values.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator from the command line; return the exit status."""
    args = _parser().parse_args(argv)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    written: list[Path] = []
    try:
        with Simulator(seed=args.seed, spot_interval=args.spot_interval,
                       heartbeat_interval=args.heartbeat_interval, idle_timeout=args.idle_timeout,
                       request_limit=args.request_limit, historical_limit=args.historical_limit,
                       benchmark=args.benchmark, flood_count=args.flood_count, record=not args.no_record,
                       market_hours=args.market_hours, account_currency=args.account_currency,
                       host=args.host, port=args.port) as sim:
            info = {
                "host": sim.host, "port": sim.port, "ca_file": sim.ca_file, "client_id": sim.client_id,
                "client_secret": sim.client_secret, "access_token": sim.access_token,
                "refresh_token": sim.refresh_token, "account_ids": sim.account_ids,
            }
            line = json.dumps(info)
            if args.json_file:
                written.append(Path(args.json_file))
                _write_private(written[-1], line + "\n")
            if args.env_file:
                written.append(Path(args.env_file))
                _write_private(written[-1], env_lines(info))
            print(line, flush=True)
            while not done.wait(0.5):
                pass
    finally:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
