#!/usr/bin/env python3
"""Measure what the simulator sustains in benchmark mode, with a plain ``ssl`` + ``socket`` client.

Two figures, each the best of ``--repeat`` runs:

* pipelined ``ProtoOAVersionReq`` round trips per second (the client keeps ``--window`` requests
  in flight, written in large batches, and only counts length prefixes on the way back);
* pushed ``ProtoOASpotEvent`` per second (the flood a spot subscription triggers in benchmark mode).

The client is kept as thin as possible so the number measures the simulator, not the client.
By default the simulator runs in its own process (``python -m ctrader_sync.simulator
--benchmark``) so client and server do not share one GIL; ``--in-process`` runs it in this
process instead (what a test suite does), where both halves share the GIL.
Prints a JSON object and writes it to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctrader_sync._codec import TcpProtocol
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOASubscribeSpotsReq,
    ProtoOAVersionReq,
)
from ctrader_sync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Target:
    """Where the simulator listens and the credentials it accepts."""

    host: str
    port: int
    ca_file: str
    client_id: str
    client_secret: str
    access_token: str
    account_ids: list[int]


@contextmanager
def simulator(in_process: bool, flood_count: int) -> Iterator[Target]:
    """Run a benchmark-mode simulator (in a subprocess unless ``in_process``) for the block."""
    if in_process:
        with Simulator(benchmark=True, flood_count=flood_count, heartbeat_interval=0, idle_timeout=0,
                       spot_interval=0) as sim:
            yield Target(sim.host, sim.port, sim.ca_file, sim.client_id, sim.client_secret,
                         sim.access_token, sim.account_ids)
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctrader_sync.simulator", "--port", "0", "--benchmark",
         "--flood-count", str(flood_count), "--heartbeat-interval", "0", "--idle-timeout", "0",
         "--spot-interval", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield Target(info["host"], info["port"], info["ca_file"], info["client_id"], info["client_secret"],
                     info["access_token"], info["account_ids"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connect(sim: Target) -> ssl.SSLSocket:
    raw = socket.create_connection((sim.host, sim.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _count_frames(buf: bytearray) -> int:
    """Drop every complete frame from the front of ``buf``; return how many there were."""
    pos = 0
    n = 0
    total = len(buf)
    while total - pos >= 4:
        end = pos + 4 + int.from_bytes(buf[pos:pos + 4], "big")
        if end > total:
            break
        pos = end
        n += 1
    del buf[:pos]
    return n


def bench_requests(sim: Target, total: int, batch: int) -> float:
    """Pipelined round trips per second (two batches in flight)."""
    codec = TcpProtocol()
    chunk = b"".join(codec.encode(ProtoOAVersionReq(), str(i)) for i in range(batch))
    with _connect(sim) as tls:
        buf = bytearray()
        received = 0
        sent = 0
        start = time.perf_counter()
        for _ in range(2):
            tls.sendall(chunk)
            sent += batch
        while received < total:
            data = tls.recv(1 << 20)
            if not data:
                raise RuntimeError("simulator closed the connection")
            buf += data
            got = _count_frames(buf)
            before = received
            received += got
            # one new batch for every batch completed, keeping two in flight
            while sent < total and (received // batch) > (before // batch) and sent - received < 2 * batch:
                tls.sendall(chunk)
                sent += batch
                before += batch
        return received / (time.perf_counter() - start)


def bench_flood(sim: Target, count: int) -> float:
    """Spot events pushed per second after one subscription."""
    codec = TcpProtocol()
    with _connect(sim) as tls:
        def call(message: object, cid: str) -> None:
            tls.sendall(codec.encode(message, cid))  # type: ignore[arg-type]
            while not any(f.clientMsgId == cid for f in codec.feed(tls.recv(65536))):
                pass

        call(ProtoOAApplicationAuthReq(clientId=sim.client_id, clientSecret=sim.client_secret), "a")
        account = sim.account_ids[0]
        call(ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=sim.access_token), "b")
        tls.sendall(codec.encode(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]), "s"))
        buf = bytearray()
        received = 0
        start = time.perf_counter()
        while received < count + 1:  # + the subscription's answer
            data = tls.recv(1 << 20)
            if not data:
                raise RuntimeError("simulator closed the connection")
            buf += data
            received += _count_frames(buf)
        return count / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print (and optionally save) the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000, help="round trips per run")
    parser.add_argument("--batch", type=int, default=2000, help="requests per write")
    parser.add_argument("--events", type=int, default=1_000_000, help="flood events per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--in-process", action="store_true",
                        help="run the simulator in this process (sharing the GIL with the client)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.events, args.repeat = 20_000, 50_000, 1
    with simulator(args.in_process, args.events) as sim:
        rps = max(bench_requests(sim, args.requests, args.batch) for _ in range(args.repeat))
        eps = max(bench_flood(sim, args.events) for _ in range(args.repeat))
    result = {
        "pipelined_requests_per_s": round(rps),
        "flood_events_per_s": round(eps),
        "requests": args.requests,
        "batch": args.batch,
        "events": args.events,
        "repeat": args.repeat,
        "simulator": "in-process" if args.in_process else "subprocess",
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
