#!/usr/bin/env python3
"""Scale figures for the SDK ``Client`` against one benchmark-mode simulator (another process).

* ``clients``: ``--clients`` clients in this process, each subscribed to a flood of ``--flood`` spot
  events at once: aggregate events/s delivered to callbacks (and the slowest client's rate);
* ``threads``: ``--threads`` caller threads sharing one client, each running ``--calls``
  sequential round trips: aggregate answers/s and the round-trip p50/p99;
* ``idle``: CPU of this process (share of one core) while 1 and then 10 logged-in clients idle
  for ``--idle`` seconds (default heartbeats);
* ``first``: time from ``Client(...)`` to the first answer (connect, TLS handshake, one
  ``ProtoOAVersionReq`` sent before the connection is up), median of ``--first`` runs, beside a raw
  blocking ``ssl`` client doing the same.

Progress goes to stderr, the table to stdout, the figures to ``--json``.  ``--quick`` uses small
counts (a smoke run); nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench  # noqa: E402

WAIT = 60.0


def progress(text: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def many_clients(server: bench.Server, n: int, flood: int) -> dict[str, float]:
    """``n`` clients, each flooded with ``flood`` events at the same time."""
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOASubscribeSpotsReq

    clients = []
    counts = [0] * n
    done = [threading.Event() for _ in range(n)]
    finish = [0.0] * n
    try:
        for _ in range(n):
            client = bench.make_client(server, max_events=flood + 10_000)
            clients.append(client)
            client.start()
        accounts = []
        for i, client in enumerate(clients):
            client.wait_connected(WAIT)
            accounts.append(bench.sdk_login(client, server))

            def on_spot(_message: Any, i: int = i) -> None:
                counts[i] += 1
                if counts[i] >= flood:
                    finish[i] = time.perf_counter()
                    done[i].set()

            client.on(ProtoOASpotEvent, on_spot)
        start = time.perf_counter()
        for client, account in zip(clients, accounts, strict=True):
            client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]))
        deadline = time.monotonic() + max(WAIT, n * flood / 20_000)
        for i, event in enumerate(done):
            while not event.wait(0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client {i} got {counts[i]} of {flood} events")
                if clients[i].dropped_events:
                    raise RuntimeError(f"client {i} dropped {clients[i].dropped_events} events")
        elapsed = max(finish) - start
        slowest = min(flood / (f - start) for f in finish)
        return {"clients": n, "events_per_client": flood, "aggregate_events_per_s": n * flood / elapsed,
                "slowest_client_events_per_s": slowest, "seconds": elapsed,
                "threads": threading.active_count()}
    finally:
        for client in clients:
            client.close()


def many_threads(server: bench.Server, n: int, calls: int) -> dict[str, float]:
    """``n`` threads sharing one client, ``calls`` round trips each."""
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionReq

    message = ProtoOAVersionReq()
    samples: list[list[float]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    gate = threading.Barrier(n + 1, timeout=WAIT)
    with bench.sdk_client(server) as client:
        for _ in range(100):
            client.send(message).result(WAIT)

        def caller(i: int) -> None:
            out = samples[i]
            clock = time.perf_counter_ns
            try:
                gate.wait()
                for _ in range(calls):
                    t = clock()
                    client.send(message).result(WAIT)
                    out.append((clock() - t) / 1000.0)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(i,), name=f"bench-caller-{i}") for i in range(n)]
        for t in threads:
            t.start()
        gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join(WAIT * 5)
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} caller threads failed: {errors[0]!r}")
    flat = [x for s in samples for x in s]
    return {"threads": n, "calls_per_thread": calls, "answers_per_s": len(flat) / elapsed,
            "rtt_p50_us": bench.percentile(flat, 50), "rtt_p99_us": bench.percentile(flat, 99),
            "seconds": elapsed}


def idle_cpu(server: bench.Server, n: int, seconds: float) -> dict[str, float]:
    """CPU share of one core used by this process while ``n`` logged-in clients idle."""
    clients = []
    try:
        for _ in range(n):
            client = bench.make_client(server, heartbeat_interval=10.0)
            clients.append(client)
            client.start()
        for client in clients:
            client.wait_connected(WAIT)
            bench.sdk_login(client, server)
        cpu = time.process_time()
        threading.Event().wait(seconds)
        used = time.process_time() - cpu
    finally:
        for client in clients:
            client.close()
    return {"clients": n, "seconds": seconds, "cpu_seconds": used, "cpu_percent": 100.0 * used / seconds}


def first_answer(server: bench.Server, runs: int) -> dict[str, float]:
    """Seconds from ``Client(...)`` to the first answer, and the raw client's connect + answer."""
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionReq

    sdk, raw = [], []
    for _ in range(runs):
        start = time.perf_counter()
        client = bench.make_client(server)
        try:
            client.start()
            client.send(ProtoOAVersionReq()).result(WAIT)
            sdk.append(time.perf_counter() - start)
        finally:
            client.close()
        start = time.perf_counter()
        with bench.raw_client(server) as r:
            r.call(ProtoOAVersionReq(), "1")
            raw.append(time.perf_counter() - start)
    return {"runs": runs, "sdk_ms": 1000 * statistics.median(sdk), "raw_ms": 1000 * statistics.median(raw)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--json", type=Path, default=Path("bench-scale.json"), help="where to write figures")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--flood", type=int, help="events per client (default 50,000; quick 2,000)")
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--calls", type=int, help="round trips per thread (default 400; quick 40)")
    parser.add_argument("--idle", type=float, help="seconds of idling (default 10; quick 1)")
    parser.add_argument("--first", type=int, help="runs of time-to-first-answer (default 7; quick 3)")
    args = parser.parse_args(argv)
    flood = args.flood or (2_000 if args.quick else 50_000)
    calls = args.calls or (40 if args.quick else 400)
    idle = args.idle or (1.0 if args.quick else 10.0)
    first = args.first or (3 if args.quick else 7)
    results: dict[str, Any] = {}
    errors: list[str] = []

    def step(name: str, fn: Any) -> None:
        progress(f"{name} ...")
        try:
            results[name] = fn()
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            progress(f"{name} FAILED: {type(exc).__name__}: {exc}")
            return
        progress(f"{name}: {results[name]}")

    try:
        with bench.simulator(flood) as server:
            step("first", lambda: first_answer(server, first))
            step("idle_1", lambda: idle_cpu(server, 1, idle))
            step("idle_10", lambda: idle_cpu(server, 10, idle))
            step("threads", lambda: many_threads(server, args.threads, calls))
            step("clients", lambda: many_clients(server, args.clients, flood))
    finally:
        bench._kill_children()
    rows = []
    if "clients" in results:
        c = results["clients"]
        rows.append((f"{c['clients']} clients, flooded at once", f"{c['aggregate_events_per_s']:,.0f} events/s",
                     f"slowest client {c['slowest_client_events_per_s']:,.0f}/s, {c['threads']} threads"))
    if "threads" in results:
        t = results["threads"]
        rows.append((f"{t['threads']} caller threads, one client", f"{t['answers_per_s']:,.0f} answers/s",
                     f"round trip p50 {t['rtt_p50_us']:,.0f} µs, p99 {t['rtt_p99_us']:,.0f} µs"))
    for key in ("idle_1", "idle_10"):
        if key in results:
            i = results[key]
            rows.append((f"idle CPU, {i['clients']} client(s)", f"{i['cpu_percent']:.3f}% of a core",
                         f"{i['cpu_seconds'] * 1000:.1f} ms CPU in {i['seconds']:g} s"))
    if "first" in results:
        f = results["first"]
        rows.append(("time to first answer", f"{f['sdk_ms']:.1f} ms", f"raw connect + answer {f['raw_ms']:.1f} ms"))
    width = max((len(r[0]) for r in rows), default=10)
    print("\n".join(f"{a:<{width}}  {b:>22}  {c}" for a, b, c in rows))
    args.json.write_text(json.dumps({"mode": "quick" if args.quick else "full", "results": results,
                                     "errors": errors, "commit": bench._git_commit()}, indent=2) + "\n")
    progress(f"figures written to {args.json}")
    if errors:
        progress("errors:\n  " + "\n  ".join(errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
