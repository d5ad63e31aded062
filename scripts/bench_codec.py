#!/usr/bin/env python3
"""Decode rate of the sans-I/O codec: framed ``ProtoOASpotEvent`` s per second, no sockets.

Builds N realistic spot-event frames (bid, ask, timestamp, one live trendbar on every 10th),
then feeds them to ``TcpProtocol.feed`` in chunks of several sizes (1 KiB .. 1 MiB, as a TLS read
would return them) and reports the best of ``--repeat`` runs for each size.  Also the encode rate.
Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ctrader_sync import TcpProtocol  # noqa: E402
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent  # noqa: E402


def spot_frames(n: int) -> bytes:
    """``n`` framed spot events, as the server sends them (no clientMsgId)."""
    codec = TcpProtocol()
    out = bytearray()
    for i in range(n):
        event = ProtoOASpotEvent(ctidTraderAccountId=40000001, symbolId=1 + i % 5, bid=108_500 + i % 97,
                                 ask=108_510 + i % 89, timestamp=1_764_000_000_000 + i)
        if i % 10 == 0:
            event.trendbar.add(volume=1000 + i, period=1, low=108_400, deltaOpen=50, deltaClose=60,
                               deltaHigh=90, utcTimestampInMinutes=29_400_000 + i // 60)
        out += codec.encode(event)
    return bytes(out)


def decode_rate(data: bytes, chunk: int, repeat: int) -> float:
    """Frames decoded per second (best of ``repeat``) when ``data`` arrives in ``chunk``-byte reads."""
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        codec = TcpProtocol()
        start = time.perf_counter()
        frames = 0
        for i in range(0, len(data), chunk):
            frames += len(codec.feed(data[i:i + chunk]))
        best = min(best, time.perf_counter() - start)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="frames to decode per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per chunk size (best is kept)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    print(f"building {args.events:,} spot-event frames ...", file=sys.stderr)
    data = spot_frames(args.events)
    results: dict[str, object] = {
        "python": platform.python_version(),
        "protobuf": __import__("google.protobuf").protobuf.__version__,
        "events": args.events,
        "bytes_per_frame": len(data) / args.events,
        "decode_events_per_s": {},
    }
    rates: dict[str, float] = {}
    for chunk in (1024, 16 * 1024, 256 * 1024, 1024 * 1024):
        print(f"decoding in {chunk // 1024} KiB chunks ...", file=sys.stderr)
        rates[str(chunk)] = decode_rate(data, chunk, args.repeat)
    results["decode_events_per_s"] = rates

    codec = TcpProtocol()
    event = ProtoOASpotEvent(ctidTraderAccountId=40000001, symbolId=1, bid=108_500, ask=108_510,
                             timestamp=1_764_000_000_000)
    n = min(args.events, 100_000)
    start = time.perf_counter()
    for i in range(n):
        codec.encode(event, str(i))
    results["encode_per_s"] = n / (time.perf_counter() - start)

    print(f"{'chunk':>10}  {'spot events decoded/s':>22}")
    for chunk, rate in rates.items():
        print(f"{int(chunk) // 1024:>7} KiB  {rate:>22,.0f}")
    print(f"frame size {results['bytes_per_frame']:.1f} B; encode {results['encode_per_s']:,.0f} frames/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
