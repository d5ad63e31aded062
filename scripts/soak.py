#!/usr/bin/env python3
"""Long soak: steady load and random faults against the bundled simulator, for minutes.

Runs one ``Client`` against an in-process ``Simulator`` (default limits: 50/s, historical 5/s, the
client's default limits too).  Several sender threads keep a steady mix of requests going
(version, symbol by id, trendbars), some cancelled at random; a fault thread injects a random fault
from the list every few seconds.  At the end it checks the same invariants as ``tests/test_faults.py``
and prints the figures (and writes them as JSON with ``--json``):

* connections killed (by kind of fault), connections made, disconnect reasons;
* futures sent and how each ended (answer, cancelled, ``ConnectionLostError``, ...), none pending;
* answers matching their requests (mismatches must be 0);
* requests written twice (must be 0); max requests in any 1 s window, general and historical;
* peak RSS (VmHWM of this process, simulator included) and its growth; threads left after close.

Usage::

    python scripts/soak.py --minutes 5 --json soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import CancelledError
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctrader_sync import Client, ReconnectPolicy
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAGetTrendbarsReq,
    ProtoOAGetTrendbarsRes,
    ProtoOASymbolByIdReq,
    ProtoOASymbolByIdRes,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)
from ctrader_sync.simulator import Simulator

FAULTS = ["close", "freeze", "garbage", "bad_payload", "huge_length", "client_disconnect_event",
          "delay", "drop", "reorder", "stop_reading"]
"""Faults injected at random; the lasting ones (delay, drop, freeze, stop_reading) end with the
connection (freeze and stop_reading are cured by the client's dead-peer detection or timeouts)."""

KILLING = {"close", "freeze", "garbage", "bad_payload", "huge_length", "client_disconnect_event"}


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument("--senders", type=int, default=8, help="sender threads (default 8)")
    parser.add_argument("--fault-every", type=float, default=3.0, help="mean seconds between faults (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--progress", type=float, default=15.0, help="seconds between progress lines")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    duration = args.minutes * 60.0
    rss_start = peak_rss_kib()
    started = time.monotonic()
    counts: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    mismatches: list[str] = []
    records: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    with Simulator(seed=args.seed) as sim:
        account = sim.account_ids[0]
        client = Client(sim.host, sim.port, ssl_context=sim.client_ssl_context(),
                        reconnect=ReconnectPolicy(initial=0.05, maximum=1.0), receive_timeout=2.0,
                        heartbeat_interval=0.5, response_timeout=5.0)
        client.setDisconnectedCallback(lambda c, reason: reasons.update([type(reason).__name__]))
        client.start()
        client.wait_connected(10)
        client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[account])
        sids = [s.symbol_id for s in sim.symbols]
        stop = threading.Event()

        def sender(seed: int) -> None:
            r = random.Random(seed)
            mine: list[Any] = []
            while not stop.is_set():
                sid = r.choice(sids)
                roll = r.random()
                try:
                    if roll < 0.05:
                        now_ms = int(time.time() * 1000)
                        kind, future = "bars", client.send(ProtoOAGetTrendbarsReq(
                            ctidTraderAccountId=account, symbolId=sid, period=1,
                            fromTimestamp=now_ms - 600_000, toTimestamp=now_ms))
                    elif roll < 0.35:
                        kind, future = "version", client.send(ProtoOAVersionReq())
                    else:
                        kind, future = "symbol", client.send(
                            ProtoOASymbolByIdReq(ctidTraderAccountId=account, symbolId=[sid]))
                except Exception as exc:
                    with lock:
                        counts[f"send raised {type(exc).__name__}"] += 1
                    stop.wait(0.1)
                    continue
                with lock:
                    records.append((kind, sid, future))
                mine.append(future)
                if r.random() < 0.1:
                    future.cancel()
                if len(mine) >= 6:
                    try:
                        mine.pop(0).exception(60)
                    except CancelledError:
                        pass
                    except TimeoutError:
                        with lock:
                            counts["sender waited 60 s"] += 1

        def injector() -> None:
            while not stop.wait(rng.expovariate(1.0 / args.fault_every)):
                kind = rng.choice(FAULTS)
                if not client.is_connected:
                    continue
                index = client.connection_count
                if kind == "delay":
                    sim.inject(kind, delay=rng.choice([0.1, 0.5, 2.0]), connection=index)
                elif kind == "drop":
                    sim.inject(kind, payload_type=rng.choice([2104, 2116]), connection=index)
                else:
                    sim.inject(kind, connection=index)
                faults[kind] += 1
                # lasting faults: end them after a while by killing the connection
                if (kind in ("delay", "drop", "stop_reading", "reorder")
                        and not stop.wait(rng.uniform(1.0, 4.0)) and client.connection_count == index):
                    sim.inject("close", connection=index)
                    faults["close (ending a lasting fault)"] += 1

        threads = [threading.Thread(target=sender, args=(args.seed * 100 + i,), name=f"soak-sender-{i}")
                   for i in range(args.senders)]
        threads.append(threading.Thread(target=injector, name="soak-faults"))
        for t in threads:
            t.start()
        next_progress = time.monotonic() + args.progress
        while time.monotonic() - started < duration:
            stop.wait(min(1.0, max(0.0, duration - (time.monotonic() - started))))
            if time.monotonic() >= next_progress:
                next_progress += args.progress
                with lock:
                    sent = len(records)
                done = sum(1 for _, _, f in records[:sent] if f.done())
                print(f"[{time.monotonic() - started:7.1f} s] sent {sent}, ended {done}, connections "
                      f"{client.connection_count}, faults {sum(faults.values())}, peak RSS "
                      f"{peak_rss_kib() / 1024:.1f} MiB, threads {threading.active_count()}", flush=True)
        stop.set()
        for t in threads:
            t.join(90)
        client.wait_connected(30)
        final_ok = isinstance(client.send(ProtoOAVersionReq()).result(30), ProtoOAVersionRes)
        futures = [f for _, _, f in records]
        _, not_done = wait_futures(futures, timeout=120)
        outcomes: Counter[str] = Counter()
        for kind, sid, future in records:
            if not future.done():
                outcomes["PENDING"] += 1
            elif future.cancelled():
                outcomes["cancelled"] += 1
            elif future.exception(0) is not None:
                outcomes[type(future.exception(0)).__name__] += 1
            else:
                res = future.result(0)
                outcomes["answered"] += 1
                ok = ((kind == "symbol" and isinstance(res, ProtoOASymbolByIdRes)
                       and [s.symbolId for s in res.symbol] == [sid])
                      or (kind == "bars" and isinstance(res, ProtoOAGetTrendbarsRes) and res.symbolId == sid)
                      or (kind == "version" and isinstance(res, ProtoOAVersionRes)))
                if not ok:
                    mismatches.append(f"{kind} {sid} -> {type(res).__name__}")
        t0 = time.monotonic()
        client.close()
        close_s = time.monotonic() - t0
        for t in client.threads():
            t.join(5)
        client_threads_left = [t.name for t in client.threads() if t.is_alive()]
        wire = Counter(r.client_msg_id for c in sim.connections for r in c.messages
                       if r.direction == "in" and r.client_msg_id is not None)
        twice = [cid for cid, n in wire.items() if n > 1]
        most = sim.max_requests_in_window()
        most_hist = sim.max_requests_in_window(historical=True)
        refused = sum(1 for c in sim.connections for r in c.outbound() if r.payload_type == 2142)
        connections = len(sim.connections)
    threads_after = sorted(t.name for t in threading.enumerate() if t.name.startswith("ctrader_sync"))
    figures = {
        "minutes": args.minutes,
        "senders": args.senders,
        "seconds_run": round(time.monotonic() - started, 1),
        "faults_injected": dict(faults),
        "connections": connections,
        "connections_killed": sum(n for k, n in faults.items() if k in KILLING or k.startswith("close")),
        "connections_lost": sum(n for k, n in reasons.items() if k != "ClientClosedError"),
        "disconnect_reasons": dict(reasons),
        "futures": len(records),
        "futures_by_outcome": dict(outcomes),
        "futures_pending": len(not_done),
        "answer_mismatches": len(mismatches),
        "written_twice": len(twice),
        "max_requests_per_1s": most,
        "max_historical_per_1s": most_hist,
        "server_rate_refusals": refused,
        "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        "peak_rss_growth_mib": round((peak_rss_kib() - rss_start) / 1024, 1),
        "close_ms": round(close_s * 1000, 1),
        "client_threads_left_after_close": client_threads_left,
        "ctrader_sync_threads_after_close": threads_after,
        "final_request_ok": final_ok,
        "other": dict(counts),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    failed = (not_done or mismatches or twice or most > 50 or most_hist > 5 or client_threads_left
              or threads_after or not final_ok)
    if failed:
        print("SOAK FAILED: an invariant was broken (see the figures above)", file=sys.stderr)
        return 1
    print("soak OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
