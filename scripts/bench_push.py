#!/usr/bin/env python3
"""Push-event delay: from the moment a server writes a ``ProtoOASpotEvent`` to the moment the
client's callback sees it, for the raw client and the SDK, idle and while requests are running.

A small TLS server (the simulator's TEST-ONLY certificate) runs in its own process: it answers
``ProtoOAVersionReq`` and, on its own clock, pushes spot events at ``--interval`` seconds (with
jitter, so pushes land at every phase of the client's request loop).  Each event carries the
server's ``time.monotonic_ns() // 1000`` in ``timestamp``; ``CLOCK_MONOTONIC`` is one clock for all
processes of a machine, so ``callback time - timestamp`` is the delay through the kernel and the
client.  The raw client's delay is the floor (socket + TLS + decode, no threads); the SDK's adds
its reader, matching and dispatcher hand-off, and, while a caller reads its own answers, the
reader thread's park after a caller's read.

Scenarios (each side, same server):

* ``idle``: nothing but pushes;
* ``busy``: a caller runs back-to-back round trips;
* ``paced``: a caller runs round trips with a ``--pause`` second sleep between them (the case
  where a push can arrive while nobody reads: the SDK's reader thread stays parked for a moment
  after a caller's read).  A sleep, not busy work: busy Python work holds the GIL, and then every
  thread of the process waits for it whatever the design.

Used by ``scripts/bench.py --only push``; runnable alone (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_VERSION_REQ = 2104
_SPOT_EVENT = 2131


def _now_us() -> int:
    return time.monotonic_ns() // 1000


# -- the pushing server (its own process) ----------------------------------------------------------


def serve(interval: float, ready: Callable[[int], None]) -> None:
    """Accept TLS connections on 127.0.0.1; answer version requests, push timestamped spots."""
    from ctrader_sync import TcpProtocol
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOAVersionRes
    from ctrader_sync.simulator import certs_dir

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs = certs_dir()
    context.load_cert_chain(str(certs / "server.pem"), str(certs / "server-key.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    ready(listener.getsockname()[1])

    def connection(raw: socket.socket) -> None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        codec = TcpProtocol()
        version = ProtoOAVersionRes(version="push-bench")
        rng = random.Random(1)
        try:
            conn = context.wrap_socket(raw, server_side=True)
            next_push = time.monotonic() + interval
            while True:
                wait = max(0.0, next_push - time.monotonic())
                if select.select([conn], [], [], wait)[0] or conn.pending():
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    out = [codec.encode(version, cid) for pt, cid, _ in codec.feed(data) if pt == _VERSION_REQ]
                    if out:
                        conn.sendall(b"".join(out))
                if time.monotonic() >= next_push:
                    conn.sendall(codec.encode(ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=1,
                                                               timestamp=_now_us())))
                    next_push = time.monotonic() + interval * rng.uniform(0.5, 1.5)
        except (OSError, ValueError):
            return
        finally:
            raw.close()

    while True:
        sock, _ = listener.accept()
        threading.Thread(target=connection, args=(sock,), daemon=True).start()


@contextlib.contextmanager
def push_server(interval: float) -> Iterator[tuple[str, int, str]]:
    """Run the pushing server in a child process; yield (host, port, ca_file)."""
    from ctrader_sync.simulator import certs_dir

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(interval)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        line = proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError("the push server did not start")
        yield "127.0.0.1", int(line), str(certs_dir() / "ca.pem")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the clients --------------------------------------------------------------------------------------


def raw_delays(host: str, port: int, ca_file: str, count: int, scenario: str, pause: float) -> list[float]:
    """Push delays (µs) seen by a blocking single-threaded TLS client."""
    from ctrader_sync import TcpProtocol
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionReq

    delays: list[float] = []
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname="localhost")
    codec = TcpProtocol()

    def handle(frames: list[Any], cid: str | None) -> bool:
        answered = False
        for pt, frame_cid, message in frames:
            if pt == _SPOT_EVENT:
                delays.append(_now_us() - message.timestamp)
            elif cid is not None and frame_cid == cid:
                answered = True
        return answered

    try:
        request = ProtoOAVersionReq()
        i = 0
        while len(delays) < count:
            if scenario == "idle":
                handle(codec.feed(tls.recv(1 << 20)), None)
                continue
            cid = str(i)
            i += 1
            tls.sendall(codec.encode(request, cid))
            while not handle(codec.feed(tls.recv(1 << 20)), cid):
                pass
            if pause:
                time.sleep(pause)
    finally:
        tls.close()
    return delays[:count]


def sdk_delays(host: str, port: int, ca_file: str, count: int, scenario: str, pause: float) -> list[float]:
    """Push delays (µs) seen by a ``Client.on(ProtoOASpotEvent, ...)`` callback."""
    from ctrader_sync import Client
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOAVersionReq

    delays: list[float] = []
    enough = threading.Event()

    def on_spot(message: Any) -> None:
        delays.append(_now_us() - message.timestamp)
        if len(delays) >= count:
            enough.set()

    context = ssl.create_default_context(cafile=ca_file)
    with Client(host, port, ssl_context=context, numberOfMessagesToSendPerSecond=None, reconnect=None,
                server_hostname="localhost") as client:
        client.on(ProtoOASpotEvent, on_spot)
        request = ProtoOAVersionReq()
        deadline = time.monotonic() + 120
        while not enough.is_set() and time.monotonic() < deadline:
            if scenario == "idle":
                enough.wait(0.5)
                continue
            client.send(request).result(30)
            if pause:
                time.sleep(pause)
    if len(delays) < count:
        raise TimeoutError(f"only {len(delays)} of {count} pushes arrived")
    return delays[:count]


def summary(delays: list[float]) -> dict[str, float]:
    """Percentiles of push delays, µs."""
    ordered = sorted(delays)

    def pct(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]

    return {"n": len(ordered), "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


SCENARIOS = ("idle", "busy", "paced")


def measure(count: int, interval: float, pause: float, sides: tuple[str, ...] = ("raw", "sdk"),
            scenarios: tuple[str, ...] = SCENARIOS,
            progress: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, dict[str, float]]]:
    """{scenario: {side: percentiles}} against one push server."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    with push_server(interval) as (host, port, ca_file):
        for scenario in scenarios:
            for side in sides:
                fn = raw_delays if side == "raw" else sdk_delays
                progress(f"push delay, {scenario} [{side}] ...")
                d = fn(host, port, ca_file, count, scenario, pause if scenario == "paced" else 0.0)
                out.setdefault(scenario, {})[side] = summary(d)
    return out


def table(result: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'push delay (µs)':<22}{'side':<6}" + "".join(f"{k:>9}" for k in ("p50", "p90", "p99", "max"))]
    for scenario, sides in result.items():
        for side, s in sides.items():
            lines.append(f"{scenario:<22}{side:<6}" + "".join(f"{s[k]:>9,.0f}" for k in ("p50", "p90", "p99", "max")))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="few pushes (smoke run)")
    parser.add_argument("--count", type=int, help="pushes per scenario and side (default 3000, quick 200)")
    parser.add_argument("--interval", type=float, default=0.002, help="mean seconds between pushes")
    parser.add_argument("--pause", type=float, default=0.0005, help="caller's work between requests (paced)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="only these scenarios (repeatable)")
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, lambda port: print(port, flush=True))
        return 0
    count = args.count or (200 if args.quick else 3000)
    result = measure(count, args.interval, args.pause, scenarios=tuple(args.scenario or SCENARIOS),
                     progress=lambda s: print(f"[push {time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps({"interval": args.interval, "pause": args.pause, "delays_us": result},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
