#!/usr/bin/env python3
"""Instructions per operation, SDK ``Client`` against the raw client, counted by valgrind's callgrind.

Wall-clock ratios move with the load of a shared machine; instruction counts do not (repeatable to
about 1 %).  Each side (the raw single-threaded ``ssl`` + ``TcpProtocol`` client of
``scripts/bench.py``, and the SDK) runs in its own process under ``valgrind --tool=callgrind``
against one benchmark-mode simulator running natively in a third process.  Every instruction of
the client process counts, on all of its threads (reader, writer, dispatcher, supervisor, GC,
TLS, protobuf).

Start-up is subtracted: each workload runs twice in the same process, at a small size ``n1`` and a
larger size ``n2``, and callgrind dumps its counters between phases (``--dump-before=os_getppid``:
the child calls ``os.getppid()`` as a marker).  The figure per operation is
``(I(n2) - I(n1)) / (n2 - n1)``, so warm-up, window fill and drain cancel out.

* ``rtt``: one sequential ``ProtoOAVersionReq`` round trip;
* ``pipelined``: one request with ``--window`` requests in flight;
* ``flood``: one pushed ``ProtoOASpotEvent`` decoded and handed to a counting callback (cycles of
  subscribe, ``--flood`` events, unsubscribe: ``n1`` = 1 cycle, ``n2`` = 3 cycles).

The SDK's figure is also split by thread: the caller's thread (repeatable to ~1 %) and the client's
own threads.  Under valgrind everything runs ~20x slower, so work that is driven by the clock (the
reader's 2 ms park while callers read, the supervisor's timers) weighs more per operation than on
a native run, and varies with the machine's load by a few percent.

Also counted per phase, and reported per 100,000 operations: garbage-collector runs by generation
(``gc.get_stats()``).  ``--profile N`` prints, per workload and side, the N C functions with the
most exclusive instructions per operation (``callgrind_annotate`` of the two phases, differenced):
Python functions appear as the interpreter's C functions they spend time in.

Progress goes to stderr, the table to stdout, the figures to ``--json``.  ``--quick`` (CI smoke)
uses small sizes; the figures are then rougher but the run takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (scripts/bench.py: simulator, raw client, SDK helpers)

SIDES = ("raw", "sdk")
WORKLOADS = ("rtt", "pipelined", "flood")
SIZES = {  # workload -> (n1, n2) operations; flood: cycles of --flood events
    "full": {"rtt": (300, 1500), "pipelined": (2000, 8000), "flood": (1, 3)},
    "quick": {"rtt": (100, 400), "pipelined": (1000, 3000), "flood": (1, 2)},
}
FLOOD = {"full": 5000, "quick": 2000}
WINDOW = 1000
TARGETS = {"rtt": 1.5, "pipelined": 1.5, "flood": 1.3}
"""SDK/raw instruction ratio targets (issue 17)."""


def progress(text: str) -> None:
    print(f"[instr {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the child: one side's workloads, phases separated by markers ----------------------------------


class Marks:
    """Phase markers: ``mark(label)`` ends the current callgrind part and labels it."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def mark(self, label: str, ops: int = 0) -> None:
        stats = gc.get_stats()
        self.parts.append({"label": label, "ops": ops, "gc": [s["collections"] for s in stats],
                           "time": time.perf_counter()})
        os.getppid()  # callgrind dumps its counters before this call (--dump-before=os_getppid)


def _server_from(data: dict[str, Any]) -> bench.Server:
    return bench.Server(**data)


def child_raw(server: bench.Server, sizes: dict[str, tuple[int, int]], flood: int, marks: Marks) -> None:
    from ctrader_sync.messages.OpenApiMessages_pb2 import (
        ProtoOASubscribeSpotsReq,
        ProtoOAUnsubscribeSpotsReq,
        ProtoOAVersionReq,
    )

    message = ProtoOAVersionReq()
    with bench.raw_client(server) as raw:
        account = raw.login()
        for i in range(100):
            raw.call(message, f"w{i}")
        marks.mark("setup")

        def rtt(n: int) -> None:
            for i in range(n):
                raw.call(message, str(i))

        def pipelined(total: int) -> None:
            encode, tls = raw.codec.encode, raw.tls
            sent = min(WINDOW, total)
            tls.sendall(b"".join([encode(message, str(i)) for i in range(sent)]))
            received = 0
            while received < total:
                frames = raw.recv_frames()
                received += len(frames)
                n = min(total - sent, WINDOW - (sent - received))
                if n > 0:
                    tls.sendall(b"".join([encode(message, str(i)) for i in range(sent, sent + n)]))
                    sent += n

        seen = 0
        target = 0

        def on_spot(_message: Any) -> None:
            nonlocal seen
            seen += 1
            if seen >= target:
                pass

        def flood_cycles(cycles: int) -> None:
            nonlocal target
            for _ in range(cycles):
                target = seen + flood
                raw.tls.sendall(raw.codec.encode(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account,
                                                                           symbolId=[1]), "s"))
                while seen < target:
                    for pt, _cid, msg in raw.recv_frames():
                        if pt == bench._SPOT_EVENT:
                            on_spot(msg)
                # Unsubscribe (answered, or refused by a simulator that keeps no subscription for a
                # flood): either way the next cycle can subscribe again.
                raw.tls.sendall(raw.codec.encode(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account,
                                                                             symbolId=[1]), "u"))
                while not any(cid == "u" for _pt, cid, _m in raw.recv_frames()):
                    pass

        _phases(marks, sizes, rtt, pipelined, flood_cycles, flood)


def child_sdk(server: bench.Server, sizes: dict[str, tuple[int, int]], flood: int, marks: Marks) -> None:
    from ctrader_sync.errors import ServerError
    from ctrader_sync.messages.OpenApiMessages_pb2 import (
        ProtoOASpotEvent,
        ProtoOASubscribeSpotsReq,
        ProtoOAUnsubscribeSpotsReq,
        ProtoOAVersionReq,
    )

    message = ProtoOAVersionReq()
    wait = 600.0  # everything is ~50x slower under valgrind
    with bench.sdk_client(server, max_events=10 * flood + 10_000, response_timeout=wait) as client:
        account = bench.sdk_login(client, server)
        send = client.send
        for _ in range(100):
            send(message).result(wait)
        marks.mark("setup")

        def rtt(n: int) -> None:
            for _ in range(n):
                send(message).result(wait)

        def pipelined(total: int) -> None:
            sent = min(WINDOW, total)
            inflight = deque(send(message) for _ in range(sent))
            done = 0
            while done < total:
                inflight.popleft().result(wait)
                done += 1
                if sent < total:
                    inflight.append(send(message))
                    sent += 1

        seen = 0
        target = 0
        finished = threading.Event()

        def on_spot(_message: Any) -> None:
            nonlocal seen
            seen += 1
            if seen >= target:
                finished.set()

        client.on(ProtoOASpotEvent, on_spot)

        def flood_cycles(cycles: int) -> None:
            nonlocal target
            for _ in range(cycles):
                finished.clear()
                target = seen + flood
                send(ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(wait)
                if not finished.wait(wait):
                    raise TimeoutError(f"only {seen} of {target} spot events arrived")
                with contextlib.suppress(ServerError):  # as on the raw side
                    send(ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=account, symbolId=[1])).result(wait)

        _phases(marks, sizes, rtt, pipelined, flood_cycles, flood)
        if client.dropped_events:
            raise RuntimeError(f"{client.dropped_events} events dropped")


def _phases(marks: Marks, sizes: dict[str, tuple[int, int]], rtt: Any, pipelined: Any, flood_cycles: Any,
            flood: int) -> None:
    """Run each workload as warm-up, n1, n2 (a marker after each), the same order on both sides."""
    for name, fn, per in (("rtt", rtt, 1), ("pipelined", pipelined, 1), ("flood", flood_cycles, flood)):
        n1, n2 = sizes[name]
        fn(n1)
        marks.mark(f"{name}:warmup")
        fn(n1)
        marks.mark(f"{name}:n1", n1 * per)
        fn(n2)
        marks.mark(f"{name}:n2", n2 * per)


def child_main(args: argparse.Namespace) -> int:
    server = _server_from(json.loads(args.server))
    sizes = SIZES[args.mode]
    marks = Marks()
    try:
        (child_raw if args.child == "raw" else child_sdk)(server, sizes, FLOOD[args.mode], marks)
    finally:
        Path(args.parts).write_text(json.dumps(marks.parts))
    return 0


# -- the parent: run both children under callgrind, read the parts ----------------------------------


def _totals(path: Path) -> int:
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(\S.*)$")


def _functions(path: Path) -> dict[str, int]:
    """Exclusive instructions per function of one callgrind part (``callgrind_annotate``)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(path)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result: dict[str, int] = {}
    for line in out.splitlines():
        m = _ANNOTATE_LINE.match(line)
        if m and ":" in m.group(2) and "PROGRAM TOTALS" not in line:
            name = m.group(2).split(" [")[0]
            name = name.split(":", 1)[1] if not name.startswith("???") else name
            name = re.sub(r"'\d+$", "", name)  # recursion levels of one function are one row
            result[name] = result.get(name, 0) + int(m.group(1).replace(",", ""))
    return result


def run_side(side: str, server: bench.Server, mode: str, workdir: Path, timeout: float,
             extra: list[str], repeat: int = 1) -> list[dict[str, Any]]:
    """Run one side under callgrind ``repeat`` times; return each run's parts (label, ops, gc
    counts, instructions, file)."""
    return [_run_side_once(f"{side}{'' if i == 0 else i + 1}", side, server, mode, workdir, timeout, extra)
            for i in range(repeat)]


def _run_side_once(name: str, side: str, server: bench.Server, mode: str, workdir: Path, timeout: float,
                   extra: list[str]) -> dict[str, Any]:
    out = workdir / f"{name}.cg"
    parts_file = workdir / f"{name}.parts.json"
    data = {k: getattr(server, k) for k in ("host", "port", "ca_file", "client_id", "client_secret",
                                            "access_token", "account_ids")}
    cmd = ["valgrind", "--tool=callgrind", "--dump-before=os_getppid", f"--callgrind-out-file={out}",
           *extra, sys.executable, str(Path(__file__).resolve()), "--child", side, "--mode", mode,
           "--server", json.dumps(data), "--parts", str(parts_file)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(bench.ROOT)}
    start = time.monotonic()
    progress(f"{name}: running under callgrind")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(bench.ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"{name} child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    parts = json.loads(parts_file.read_text())
    for i, part in enumerate(parts, 1):
        part["file"] = str(out) + f".{i}"
        part["instructions"] = _totals(Path(part["file"]))
    progress(f"{name}: done in {time.monotonic() - start:.0f} s")
    return {"parts": parts}


def per_op(parts: list[dict[str, Any]], workload: str) -> dict[str, Any]:
    by = {p["label"]: p for p in parts}
    a, b = by[f"{workload}:n1"], by[f"{workload}:n2"]
    ops = b["ops"] - a["ops"]
    # gc counts are cumulative at each marker: collections during a phase = this marker - previous
    index = {p["label"]: i for i, p in enumerate(parts)}

    def gc_during(label: str) -> list[int]:
        i = index[label]
        return [x - y for x, y in zip(parts[i]["gc"], parts[i - 1]["gc"], strict=True)]

    ga, gb = gc_during(f"{workload}:n1"), gc_during(f"{workload}:n2")
    return {
        "instructions_per_op": (b["instructions"] - a["instructions"]) / ops,
        "ops": [a["ops"], b["ops"]],
        "gc_per_100k_ops": [round((y - x) * 100_000 / ops, 1) for x, y in zip(ga, gb, strict=True)],
        "files": [a["file"], b["file"]],
    }


# callgrind dumps taken mid-run report the functions on a stack at the time of the dump with their
# inclusive cost; those rows are dropped from the profile, except two that give the split by thread.
_STACK_ROWS = re.compile(r"^(\?\?\?:0x|\?\?\?:\(below main\)|main$|\(below main\)|__libc_start|_PyRun_|run_mod$|"
                         r"Py_BytesMain|Py_RunMain|_PyEval_Vector|_PyObject_Call$|PyObject_Call$|method_vectorcall$|pythread_wrapper|clone$|"
                         r"thread_run$)")
_THREAD_ROWS = {"PyEval_EvalCode": "main thread", "start_thread": "other threads"}


def profile(files: list[str], ops: int, top: int) -> list[tuple[str, float]]:
    """The ``top`` functions by exclusive instructions per operation, after the thread split."""
    fa, fb = _functions(Path(files[0])), _functions(Path(files[1]))
    diff = {name: (fb.get(name, 0) - fa.get(name, 0)) / ops for name in set(fa) | set(fb)}
    threads = [(f"[{label}]", diff.pop(name, 0.0)) for name, label in _THREAD_ROWS.items()]
    rows = sorted(((n, v) for n, v in diff.items() if not _STACK_ROWS.match(n)), key=lambda kv: -kv[1])
    return threads + rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke, about a minute)")
    parser.add_argument("--json", type=Path, default=Path("bench-instructions.json"), help="where to write figures")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N functions per op")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this directory")
    parser.add_argument("--side", choices=("both", *SIDES), default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the median run is reported")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per side")
    parser.add_argument("--callgrind-arg", action="append", default=[], metavar="ARG",
                        help="an extra valgrind option, e.g. --callgrind-arg=--separate-threads=yes")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=tuple(SIZES), default="full", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--parts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if shutil.which("valgrind") is None:
        progress("SKIPPED: valgrind is not installed, nothing measured (install it to count instructions)")
        return 0
    mode = "quick" if args.quick else "full"
    sides = SIDES if args.side == "both" else (args.side,)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-instr-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        with bench.simulator(FLOOD[mode]) as server, ThreadPoolExecutor(len(sides)) as pool:
            futures = {side: pool.submit(run_side, side, server, mode, workdir, args.timeout,
                                             args.callgrind_arg, args.repeat) for side in sides}
            for side, future in futures.items():
                results[side] = future.result()
    finally:
        bench._kill_children()
    rows: dict[str, Any] = {}
    for w in WORKLOADS:
        row: dict[str, Any] = {}
        for s in sides:
            runs = [per_op(run["parts"], w) for run in results[s]]
            for r in runs:  # the split by thread: the caller's thread, and the client's own threads
                split = dict(profile(r["files"], r["ops"][1] - r["ops"][0], 0))
                r["main_thread_per_op"] = split["[main thread]"]
                r["other_threads_per_op"] = split["[other threads]"]
            runs.sort(key=lambda r: r["instructions_per_op"])
            row[s] = dict(runs[(len(runs) - 1) // 2])  # the median run (the lower middle one for even counts)
            row[s]["runs"] = [r["instructions_per_op"] for r in runs]
        if len(sides) == 2:
            row["ratio"] = row["sdk"]["instructions_per_op"] / row["raw"]["instructions_per_op"]
            row["target"] = TARGETS[w]
            row["pass"] = row["ratio"] <= TARGETS[w]
        rows[w] = row
    print(table(rows, sides))
    if args.profile:
        for w in WORKLOADS:
            for s in sides:
                r = rows[w][s]
                print(f"\n{w} [{s}]: top functions, exclusive instructions per operation")
                for name, value in profile(r["files"], r["ops"][1] - r["ops"][0], args.profile):
                    print(f"  {value:10,.0f}  {name}")
    meta = {"mode": mode, "sizes": SIZES[mode], "flood_events_per_cycle": FLOOD[mode], "window": WINDOW,
            "python": sys.version.split()[0], "commit": bench._git_commit(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.json.write_text(json.dumps({"meta": meta, "instructions": rows}, indent=2) + "\n")
    progress(f"figures written to {args.json}")
    if not args.keep:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return 0


def table(rows: dict[str, Any], sides: tuple[str, ...]) -> str:
    lines = [f"{'instructions per op':<22}" + "".join(f"{s:>12}" for s in sides)
             + ("   sdk/raw  target  pass" if len(sides) == 2 else "")
             + "   gen0/gen1/gen2 per 100k ops (" + ", ".join(sides) + ")"
             + "   sdk: caller's thread + other threads"]
    for w, row in rows.items():
        line = f"{w:<22}" + "".join(f"{row[s]['instructions_per_op']:>12,.0f}" for s in sides)
        if len(sides) == 2:
            line += f"  {row['ratio']:7.2f}x  {row['target']:5.1f}x  {'PASS' if row['pass'] else 'FAIL'}"
        line += "   " + ", ".join("/".join(f"{g:g}" for g in row[s]["gc_per_100k_ops"]) for s in sides)
        if "sdk" in row:
            line += f"   {row['sdk']['main_thread_per_op']:,.0f} + {row['sdk']['other_threads_per_op']:,.0f}"
            if len(row["sdk"]["runs"]) > 1:
                line += "   runs: " + ", ".join(f"{s}: {min(row[s]['runs']):,.0f}-{max(row[s]['runs']):,.0f}"
                                         for s in sides)
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
