#!/usr/bin/env python3
"""Benchmark the SDK ``Client`` against a raw ``ssl`` + ``TcpProtocol`` client on one simulator.

The simulator runs in a separate process in benchmark mode (no limits, no recording, a fast path
for ``ProtoOAVersionReq`` and a flood of spot events per subscription).  For each metric the raw
baseline (one blocking ``ssl`` socket, the project's codec, one thread, no futures) and the SDK are
measured in the same run, against the same server, so their ratio is meaningful on a noisy machine:

* (a) ``rtt``: sequential ``ProtoOAVersionReq`` round trips after warm-up (median, p90, p99, µs);
* (b) ``pipelined``: responses/s with ``--window`` requests in flight;
* (c) ``flood``: pushed ``ProtoOASpotEvent`` decoded and handed to a user callback, per second;
* (d) ``memory``: bytes per pending request with ``--pending`` requests waiting;
* (e) ``idle``: CPU time of this process while one connected client idles for ``--idle`` seconds;
* (f) ``import``: ``import ctrader_sync`` in a fresh interpreter (median);
* (g) ``push``: delay from a server's write of a spot event to the callback, idle, during
  back-to-back round trips and during paced round trips (``scripts/bench_push.py``).

``--rounds N`` runs (a)-(c) N times, raw and SDK back to back in each round, and reports the
medians (the ratio is the median of the per-round ratios).  For (a)-(c) the garbage collector's
runs per 100,000 operations (per generation) are saved in the JSON.  Instruction counts, which do
not move with machine load, are measured by ``scripts/bench_instructions.py``.

Progress goes to stderr, the table to stdout, every figure to ``--json``.  ``--quick`` uses small
counts (a CI smoke test, under a minute); it asserts nothing about speed: the exit status is 0
unless a measurement crashed.  A watchdog ends the run (and the simulator) after ``--deadline`` s.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ctrader_sync import Client, TcpProtocol  # noqa: E402
from ctrader_sync.messages.OpenApiMessages_pb2 import (  # noqa: E402
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOASpotEvent,
    ProtoOASubscribeSpotsReq,
    ProtoOAVersionReq,
)

WAIT = 30.0
"""Upper bound, in seconds, of any single blocking wait (socket read, future, event)."""

_SPOT_EVENT = 2131


def progress(text: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the simulator process ------------------------------------------------------------------------


@dataclass
class Server:
    """Where the simulator listens and the credentials it accepts."""

    host: str
    port: int
    ca_file: str
    client_id: str
    client_secret: str
    access_token: str
    account_ids: list[int]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


_children: list[subprocess.Popen[bytes]] = []


def _kill_children() -> None:
    """Terminate (then kill) every simulator process still running. Idempotent."""
    while _children:
        proc = _children.pop()
        if proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when this process dies (best effort)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@contextlib.contextmanager
def simulator(flood_count: int, timeout: float = 30.0) -> Iterator[Server]:
    """Run ``python -m ctrader_sync.simulator --benchmark`` for the block; always terminated."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctrader_sync.simulator", "--port", "0", "--benchmark",
             "--flood-count", str(flood_count), "--heartbeat-interval", "0", "--idle-timeout", "0",
             "--spot-interval", "0", "--no-record"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        _children.append(proc)
        try:
            info = json.loads(_read_line(proc, timeout))
            yield Server(info["host"], int(info["port"]), info["ca_file"], info["client_id"],
                         info["client_secret"], info["access_token"], [int(a) for a in info["account_ids"]])
        except BaseException:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace")
                progress(f"simulator exited with status {proc.returncode}: {tail}")
            raise
        finally:
            _kill_children()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The simulator's first stdout line, or ``RuntimeError`` after ``timeout`` s / on exit."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the simulator printed no address within {timeout:g} s")
            if sel.select(min(remaining, 0.5)):
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"the simulator exited before printing its address ({proc.poll()})")
                buf += chunk
    return buf.split(b"\n", 1)[0]


# -- raw baseline: one blocking ssl socket, the codec, one thread ---------------------------------


class RawClient:
    """The physical limit of one Python process: blocking TLS socket + ``TcpProtocol``, no threads."""

    def __init__(self, server: Server) -> None:
        sock = socket.create_connection((server.host, server.port), timeout=WAIT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = server.ssl_context().wrap_socket(sock, server_hostname="localhost")
        self.tls.settimeout(WAIT)
        self.codec = TcpProtocol()
        self.server = server

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.tls.close()

    def recv_frames(self) -> list[Any]:
        data = self.tls.recv(1 << 20)
        if not data:
            raise RuntimeError("the simulator closed the connection")
        return self.codec.feed(data)

    def call(self, message: Any, cid: str) -> Any:
        """Write one request and read until its answer; return the answer message."""
        self.tls.sendall(self.codec.encode(message, cid))
        while True:
            for pt, frame_cid, answer in self.recv_frames():
                if frame_cid == cid:
                    if pt in (50, 2142):
                        raise RuntimeError(f"error answer to {cid}: {answer}")
                    return answer

    def login(self) -> int:
        s = self.server
        self.call(ProtoOAApplicationAuthReq(clientId=s.client_id, clientSecret=s.client_secret), "app")
        account = s.account_ids[0]
        self.call(ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=s.access_token), "acc")
        return account


@contextlib.contextmanager
def raw_client(server: Server) -> Iterator[RawClient]:
    client = RawClient(server)
    try:
        yield client
    finally:
        client.close()


def raw_rtt(server: Server, warmup: int, samples: int) -> list[float]:
    """Sequential round trips, µs each (after ``warmup`` unmeasured ones)."""
    message = ProtoOAVersionReq()
    out: list[float] = []
    clock = time.perf_counter_ns
    with raw_client(server) as raw:
        for i in range(warmup + samples):
            start = clock()
            raw.call(message, str(i))
            if i >= warmup:
                out.append((clock() - start) / 1000.0)
    return out


def raw_pipelined(server: Server, total: int, window: int) -> float:
    """Responses/s with ``window`` requests in flight; every request encoded, every answer decoded."""
    message = ProtoOAVersionReq()
    with raw_client(server) as raw:
        encode = raw.codec.encode
        tls = raw.tls
        for i in range(min(window, 100)):  # warm-up
            raw.call(message, f"w{i}")
        start = time.perf_counter()
        sent = min(window, total)
        tls.sendall(b"".join([encode(message, str(i)) for i in range(sent)]))
        received = 0
        while received < total:
            frames = raw.recv_frames()
            for _pt, cid, _answer in frames:
                if cid is None:
                    raise RuntimeError("an answer without clientMsgId")
            received += len(frames)
            n = min(total - sent, window - (sent - received))
            if n > 0:
                tls.sendall(b"".join([encode(message, str(i)) for i in range(sent, sent + n)]))
                sent += n
        return total / (time.perf_counter() - start)


def raw_flood(server: Server, count: int) -> float:
    """Spot events/s, each decoded and handed to a counting callback, from the subscription on."""
    seen = 0

    def on_spot(message: Any) -> None:
        nonlocal seen
        seen += 1

    with raw_client(server) as raw:
        account = raw.login()
        start = time.perf_counter()
        raw.tls.sendall(raw.codec.encode(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]), "s"))
        while seen < count:
            for pt, _cid, message in raw.recv_frames():
                if pt == _SPOT_EVENT:
                    on_spot(message)
        return count / (time.perf_counter() - start)


def raw_memory(n: int) -> dict[str, float]:
    """Bytes per request for ``n`` encoded frames kept in a list (what a raw pipeliner holds)."""
    codec = TcpProtocol()
    message = ProtoOAVersionReq()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        frames = [codec.encode(message, f"raw-{i}") for i in range(n)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del frames
    return {"bytes_per_request": (after - before) / n}


def raw_idle(server: Server, seconds: float) -> float:
    """CPU seconds this process uses while a connected raw socket idles."""
    with raw_client(server):
        cpu = time.process_time()
        threading.Event().wait(seconds)
        return time.process_time() - cpu


# -- the SDK Client -------------------------------------------------------------------------------


def make_client(server: Server, **options: Any) -> Client:
    options.setdefault("numberOfMessagesToSendPerSecond", None)
    options.setdefault("reconnect", None)
    return Client(server.host, server.port, ssl_context=server.ssl_context(), **options)


@contextlib.contextmanager
def sdk_client(server: Server, **options: Any) -> Iterator[Client]:
    """A started, connected client; closed on exit (a leftover thread is reported)."""
    client = make_client(server, **options)
    try:
        client.start()
        client.wait_connected(WAIT)
        yield client
    finally:
        client.close()
        alive = [t.name for t in client.threads() if t.is_alive()]
        if alive:
            progress(f"warning: client threads still alive after close(): {alive}")


def sdk_login(client: Client, server: Server) -> int:
    client.send(ProtoOAApplicationAuthReq(clientId=server.client_id, clientSecret=server.client_secret)).result(WAIT)
    account = server.account_ids[0]
    client.send(ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=server.access_token)).result(WAIT)
    return account


def sdk_rtt(server: Server, warmup: int, samples: int) -> list[float]:
    """Sequential ``send(...).result()`` round trips, µs each."""
    message = ProtoOAVersionReq()
    out: list[float] = []
    clock = time.perf_counter_ns
    with sdk_client(server) as client:
        send = client.send
        for i in range(warmup + samples):
            start = clock()
            send(message).result(WAIT)
            if i >= warmup:
                out.append((clock() - start) / 1000.0)
    return out


def sdk_pipelined(server: Server, total: int, window: int) -> float:
    """Responses/s with ``window`` futures in flight; the oldest is awaited, then one more is sent."""
    message = ProtoOAVersionReq()
    with sdk_client(server) as client:
        send = client.send
        for _ in range(min(window, 100)):  # warm-up
            send(message).result(WAIT)
        start = time.perf_counter()
        sent = min(window, total)
        inflight = deque(send(message) for _ in range(sent))
        done = 0
        while done < total:
            inflight.popleft().result(WAIT)
            done += 1
            if sent < total:
                inflight.append(send(message))
                sent += 1
        return total / (time.perf_counter() - start)


def sdk_flood(server: Server, count: int) -> tuple[float, int]:
    """Spot events/s delivered to ``client.on(ProtoOASpotEvent, cb)``; also the dropped count."""
    seen = 0
    finished = threading.Event()

    def on_spot(message: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            finished.set()

    # max_events above the flood: measure the rate, not the drop policy (drops are reported).
    with sdk_client(server, max_events=count + 10_000) as client:
        account = sdk_login(client, server)
        client.on(ProtoOASpotEvent, on_spot)
        start = time.perf_counter()
        client.send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1]))
        deadline = time.monotonic() + max(WAIT, count / 5_000)
        while not finished.wait(0.5):
            if client.dropped_events and seen + client.dropped_events >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {count} spot events arrived")
        elapsed = time.perf_counter() - start
        return seen / elapsed, client.dropped_events


def sdk_memory(server: Server, n: int) -> dict[str, float]:
    """Bytes per pending request: ``n`` ``send()`` calls on a client that is not started (so nothing
    is written and every request stays pending), futures kept by the caller.  Measured twice:
    tracemalloc (Python allocations) and the RSS growth (a second batch, tracemalloc off)."""
    message = ProtoOAVersionReq()
    client = make_client(server, max_pending=max(1_000_000, 2 * n))
    try:
        for _ in range(100):  # warm up lazy caches
            client.send(message).cancel()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            futures = [client.send(message) for _ in range(n)]
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        if client.pending_count < n:
            raise RuntimeError(f"only {client.pending_count} of {n} requests pending")
        traced = (after - before) / n
        rss0 = _rss()
        more = [client.send(message) for _ in range(n)]
        gc.collect()
        rss = (_rss() - rss0) / n
        del futures, more
    finally:
        client.close()
    return {"bytes_per_request": traced, "rss_bytes_per_request": rss}


def sdk_idle(server: Server, seconds: float) -> float:
    """CPU seconds this process uses while a connected client (default heartbeats) idles."""
    with sdk_client(server, heartbeat_interval=10.0) as client:
        sdk_login(client, server)
        cpu = time.process_time()
        threading.Event().wait(seconds)
        return time.process_time() - cpu


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def import_time(statement: str, runs: int) -> float:
    """Median seconds of ``statement`` in a fresh interpreter (site and startup excluded)."""
    code = ("import time; t = time.perf_counter(); " + statement +
            "; print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONDONTWRITEBYTECODE": "0"}
    times = []
    for _ in range(runs + 1):  # the first run may compile bytecode: dropped
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=str(ROOT), timeout=60, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times[1:])


# -- the run --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


@dataclass
class Metric:
    """One row: raw and SDK figures, the ratio SDK/raw, and the target it is judged by."""

    name: str
    unit: str
    target: str
    raw: float | None = None
    sdk: float | None = None
    check: Callable[[Metric], bool | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ratio_override: float | None = None
    """With several rounds: the median of the per-round ratios (not the ratio of the medians)."""

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.raw is None or self.sdk is None or self.raw <= 0:
            return None
        return self.sdk / self.raw

    @property
    def passed(self) -> bool | None:
        if self.check is None or self.sdk is None:
            return None
        return self.check(self)

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "raw": self.raw, "sdk": self.sdk, "ratio": self.ratio,
                "target": self.target, "pass": self.passed, **self.extra}


def _ratio_at_most(limit: float) -> Callable[[Metric], bool | None]:
    return lambda m: None if m.ratio is None else m.ratio <= limit


def _ratio_at_least(limit: float) -> Callable[[Metric], bool | None]:
    return lambda m: None if m.ratio is None else m.ratio >= limit


def _sdk_below(limit: float) -> Callable[[Metric], bool | None]:
    return lambda m: None if m.sdk is None else m.sdk < limit


@dataclass
class Settings:
    rtt_warmup: int
    rtt_samples: int
    pipelined: int
    window: int
    flood: int
    pending: int
    idle: float
    import_runs: int
    push_count: int
    rounds: int = 1


FULL = Settings(rtt_warmup=1000, rtt_samples=5000, pipelined=200_000, window=1000, flood=500_000,
                pending=100_000, idle=10.0, import_runs=7, push_count=3000)
QUICK = Settings(rtt_warmup=100, rtt_samples=500, pipelined=10_000, window=1000, flood=20_000,
                 pending=10_000, idle=1.0, import_runs=3, push_count=200)

METRICS = ("rtt", "pipelined", "flood", "memory", "idle", "import", "push")


class Run:
    """Collects figures, errors and progress for one benchmark run."""

    def __init__(self, sides: tuple[str, ...]) -> None:
        self.sides = sides
        self.errors: list[str] = []
        self.rows: dict[str, Metric] = {
            "rtt_median": Metric("round trip median", "µs", "<= 1.2x raw", check=_ratio_at_most(1.2)),
            "rtt_p90": Metric("round trip p90", "µs", "-"),
            "rtt_p99": Metric("round trip p99", "µs", "<= 1.5x raw", check=_ratio_at_most(1.5)),
            "pipelined": Metric("pipelined responses", "1/s", ">= 60% of raw", check=_ratio_at_least(0.6)),
            "flood": Metric("flood events", "1/s", ">= 65% of raw", check=_ratio_at_least(0.65)),
            "memory": Metric("memory per pending request", "B", "< 1024 B", check=_sdk_below(1024)),
            "idle": Metric("idle CPU (share of one core)", "%", "< 0.5%", check=_sdk_below(0.5)),
            "import": Metric("import ctrader_sync", "ms", "< 60 ms", check=_sdk_below(60.0)),
            "import_client": Metric("import + Client (lazy)", "ms", "-"),
            **{f"push_{scenario}_{q}": Metric(f"push delay, {scenario}, {q}", "µs", "-")
               for scenario in ("idle", "busy", "paced") for q in ("p50", "p99")},
        }

    def measure(self, label: str, side: str, fn: Callable[[], Any], gc_ops: int = 0, gc_key: str = "") -> Any:
        """Run one measurement; an exception is recorded (and reported), not raised.

        With ``gc_ops``, the collector's runs during it (per generation, per 100,000 operations) are
        added to row ``gc_key`` (the last round's figure)."""
        if side not in self.sides:
            return None
        progress(f"{label} [{side}] ...")
        start = time.perf_counter()
        before = [s["collections"] for s in gc.get_stats()]
        try:
            result = fn()
        except Exception as exc:
            self.errors.append(f"{label} [{side}]: {type(exc).__name__}: {exc}")
            progress(f"{label} [{side}] FAILED: {type(exc).__name__}: {exc}")
            return None
        if gc_ops:
            runs = [s["collections"] - b for s, b in zip(gc.get_stats(), before, strict=True)]
            self.rows[gc_key].extra[f"{side}_gc_per_100k"] = [round(n * 100_000 / gc_ops, 1) for n in runs]
        progress(f"{label} [{side}] done in {time.perf_counter() - start:.1f} s: {_short(result)}")
        return result


def _short(result: Any) -> str:
    if isinstance(result, list) and result and isinstance(result[0], float):
        return f"median {statistics.median(result):.1f} µs over {len(result)} samples"
    if isinstance(result, float):
        return f"{result:,.4g}" if abs(result) < 10 else f"{result:,.1f}"
    return str(result)


def run(args: argparse.Namespace, cfg: Settings) -> Run:
    sides = ("raw", "sdk") if args.side == "both" else (args.side,)
    r = Run(sides)
    only = set(args.only.split(",")) if args.only else set(METRICS)
    rows = r.rows

    if "import" in only:
        t = r.measure("(f) import ctrader_sync", "sdk", lambda: import_time("import ctrader_sync", cfg.import_runs))
        rows["import"].sdk = None if t is None else t * 1000
        t = r.measure("(f) import + Client", "sdk",
                      lambda: import_time("import ctrader_sync; ctrader_sync.Client", cfg.import_runs))
        rows["import_client"].sdk = None if t is None else t * 1000

    progress(f"starting the simulator (benchmark mode, flood of {cfg.flood:,} events)")
    with simulator(cfg.flood) as server:
        progress(f"simulator on {server.host}:{server.port}")
        if "memory" in only:  # first, on a fresh heap
            m = r.measure(f"(d) memory, {cfg.pending:,} pending", "raw", lambda: raw_memory(cfg.pending))
            if m:
                rows["memory"].raw = m["bytes_per_request"]
            m = r.measure(f"(d) memory, {cfg.pending:,} pending", "sdk", lambda: sdk_memory(server, cfg.pending))
            if m:
                rows["memory"].sdk = m["bytes_per_request"]
                rows["memory"].extra["sdk_rss_bytes_per_request"] = m["rss_bytes_per_request"]
            rows["memory"].extra["pending"] = cfg.pending
        rounds = max(1, cfg.rounds)
        per_round: dict[str, dict[str, list[float]]] = {}

        def keep(key: str, side: str, value: float | None) -> None:
            if value is not None:
                per_round.setdefault(key, {}).setdefault(side, []).append(value)

        for n in range(rounds):
            tag = f" (round {n + 1}/{rounds})" if rounds > 1 else ""
            if "rtt" in only:
                for side, fn in (("raw", raw_rtt), ("sdk", sdk_rtt)):
                    samples = r.measure(f"(a) round trips{tag}", side,
                                        lambda fn=fn: fn(server, cfg.rtt_warmup, cfg.rtt_samples),  # type: ignore[misc]
                                        gc_ops=cfg.rtt_warmup + cfg.rtt_samples, gc_key="rtt_median")
                    if samples:
                        keep("rtt_median", side, statistics.median(samples))
                        keep("rtt_p90", side, percentile(samples, 90))
                        keep("rtt_p99", side, percentile(samples, 99))
            if "pipelined" in only:
                for side, pfn in (("raw", raw_pipelined), ("sdk", sdk_pipelined)):
                    keep("pipelined", side, r.measure(
                        f"(b) pipelined, window {cfg.window}{tag}", side,
                        lambda pfn=pfn: pfn(server, cfg.pipelined, cfg.window),  # type: ignore[misc]
                        gc_ops=cfg.pipelined, gc_key="pipelined"))
            if "flood" in only:
                keep("flood", "raw", r.measure(f"(c) flood{tag}", "raw", lambda: raw_flood(server, cfg.flood),
                                                gc_ops=cfg.flood, gc_key="flood"))
                res = r.measure(f"(c) flood{tag}", "sdk", lambda: sdk_flood(server, cfg.flood),
                                gc_ops=cfg.flood, gc_key="flood")
                if res:
                    keep("flood", "sdk", res[0])
                    rows["flood"].extra["sdk_dropped"] = rows["flood"].extra.get("sdk_dropped", 0) + res[1]
        for key, values in per_round.items():
            row = rows[key]
            for side, vals in values.items():
                setattr(row, side, statistics.median(vals))
            if rounds > 1:
                row.extra["rounds"] = values
                if len(values.get("raw", ())) == len(values.get("sdk", ())) > 0:
                    # the median of per-round ratios: raw and sdk of one round ran back to back
                    row.ratio_override = statistics.median(
                        b / a for a, b in zip(values["raw"], values["sdk"], strict=True) if a > 0)
        rows["rtt_median"].extra.update(warmup=cfg.rtt_warmup, samples=cfg.rtt_samples)
        rows["pipelined"].extra.update(requests=cfg.pipelined, window=cfg.window)
        rows["flood"].extra["events"] = cfg.flood
        if "idle" in only:
            for side, ifn in (("raw", raw_idle), ("sdk", sdk_idle)):
                cpu = r.measure(f"(e) idle {cfg.idle:g} s", side, lambda ifn=ifn: ifn(server, cfg.idle))  # type: ignore[misc]
                if cpu is not None:
                    setattr(rows["idle"], side, 100.0 * cpu / cfg.idle)
                    rows["idle"].extra[f"{side}_cpu_seconds"] = cpu
            rows["idle"].extra["seconds"] = cfg.idle
    progress("simulator stopped")
    if "push" in only:
        import bench_push

        try:
            result = bench_push.measure(cfg.push_count, 0.002, 0.0005, sides=sides, progress=progress)
        except Exception as exc:
            r.errors.append(f"push delay: {type(exc).__name__}: {exc}")
            progress(f"push delay FAILED: {type(exc).__name__}: {exc}")
        else:
            for scenario, by_side in result.items():
                for q in ("p50", "p99"):
                    row = rows[f"push_{scenario}_{q}"]
                    for side, stats in by_side.items():
                        setattr(row, side, stats[q])
                    row.extra.update(count=cfg.push_count, distribution=by_side)
    return r


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "1/s":
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.3f}%"
    if unit == "B":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def table(r: Run, judged: bool = True) -> str:
    """The figures as a text table; ``judged=False`` (``--quick``) leaves the pass column out."""
    header = ("metric", "unit", "raw", "sdk", "sdk/raw", "target", "pass") if judged else (
        "metric", "unit", "raw", "sdk", "sdk/raw", "target (not judged in --quick)")
    lines = [header]
    for m in r.rows.values():
        passed = m.passed
        row = (m.name, m.unit, _fmt(m.raw, m.unit), _fmt(m.sdk, m.unit),
               "-" if m.ratio is None else f"{m.ratio:.2f}x", m.target)
        lines.append((*row, "-" if passed is None else ("PASS" if passed else "FAIL")) if judged else row)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for i, row in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if j in (0, 1, 5) else cell.rjust(w)
                             for j, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def meta(args: argparse.Namespace, cfg: Settings) -> dict[str, Any]:
    import google.protobuf

    try:
        from google.protobuf.internal import api_implementation

        backend = api_implementation.Type()
    except Exception:
        backend = "?"
    return {
        "mode": "quick" if args.quick else "full",
        "settings": cfg.__dict__,
        "python": platform.python_version(),
        "protobuf": f"{google.protobuf.__version__} ({backend})",
        "openssl": ssl.OPENSSL_VERSION,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The measured commit (with ``+dirty`` when ``ctrader_sync/`` has local changes), if known."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ctrader_sync"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _watchdog(seconds: float) -> None:
    def fire() -> None:
        progress(f"watchdog: the run exceeded {seconds:g} s; stopping the simulator and exiting")
        _kill_children()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI (< 60 s, asserts nothing)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="where to write figures")
    parser.add_argument("--side", choices=("both", "raw", "sdk"), default="both", help="measure one side only")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(METRICS)}")
    parser.add_argument("--window", type=int, help="requests in flight for (b)")
    parser.add_argument("--requests", type=int, help="requests for (b)")
    parser.add_argument("--flood", type=int, help="spot events for (c)")
    parser.add_argument("--samples", type=int, help="measured round trips for (a)")
    parser.add_argument("--pending", type=int, help="pending requests for (d)")
    parser.add_argument("--idle", type=float, help="seconds of idling for (e)")
    parser.add_argument("--rounds", type=int, help="interleaved raw/sdk rounds of (a)-(c); medians reported")
    parser.add_argument("--pushes", type=int, help="pushes per scenario and side for (g)")
    parser.add_argument("--deadline", type=float, help="watchdog: exit after this many seconds (default 120/900)")
    args = parser.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= set(METRICS):
        parser.error(f"--only takes names from {','.join(METRICS)}")
    cfg = Settings(**(QUICK if args.quick else FULL).__dict__)
    for name, attr in (("window", "window"), ("requests", "pipelined"), ("flood", "flood"),
                       ("samples", "rtt_samples"), ("pending", "pending"), ("idle", "idle"),
                       ("rounds", "rounds"), ("pushes", "push_count")):
        if getattr(args, name) is not None:
            setattr(cfg, attr, getattr(args, name))
    _watchdog(args.deadline or (120.0 if args.quick else 900.0))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        r = run(args, cfg)
    finally:
        _kill_children()
    print(table(r, judged=not args.quick))
    # Quick mode asserts nothing about speed: its figures carry no verdict.
    metrics = {k: {**m.to_json(), **({} if not args.quick else {"pass": None})} for k, m in r.rows.items()}
    result = {"meta": meta(args, cfg), "metrics": metrics,
              "errors": r.errors}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    progress(f"figures written to {args.json}")
    if r.errors:
        progress("errors:\n  " + "\n  ".join(r.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
