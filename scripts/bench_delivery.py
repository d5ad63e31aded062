"""Cost of callback delivery per event on the dispatcher side (no sockets), in one run.

Measures ``EventBus._deliver`` (the client's ``_bus``) on 1,000-spot batches for: one ``on()``
handler (extracted messages, the common case), the old-style message-received callback (which gets
rebuilt ``ProtoMessage`` envelopes), and one ``on(..., envelope=True)`` handler.  The ratio to the
first line is the price of envelopes; the first line is what every client pays.

    python scripts/bench_delivery.py
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ctrader_sync import Client
from ctrader_sync._codec import TcpProtocol
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOASpotEvent

ROUNDS, REPEAT, BATCH = 7, 20, 1000


def _frames() -> list[Any]:
    codec = TcpProtocol()
    data = b"".join(codec.encode(ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=1, bid=110000 + i, ask=110002 + i,
                                                  timestamp=1_700_000_000_000 + i)) for i in range(BATCH))
    return TcpProtocol().feed(data)


def measure(mode: str, frames: list[Any]) -> float:
    """Best-of-rounds nanoseconds per event for one way of registering callbacks."""
    client = Client("127.0.0.1", 1)
    count = [0]

    def on_event(message: Any) -> None:
        count[0] += 1

    def on_message(c: Client, message: Any) -> None:
        count[0] += 1

    if mode == "on()":
        client.on(ProtoOASpotEvent, on_event)
    elif mode == "message-received callback":
        client.setMessageReceivedCallback(on_message)
    else:
        client.on(ProtoOASpotEvent, on_event, envelope=True)
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(REPEAT):
            client._bus._deliver(frames)
        rounds.append((time.perf_counter() - start) / (REPEAT * len(frames)) * 1e9)
    client.close()
    assert count[0] == ROUNDS * REPEAT * len(frames)
    return min(rounds)  # the least disturbed round (the machine may be shared)


def main() -> int:
    """Print ns/event per mode and the ratio to a plain ``on()`` handler."""
    frames = _frames()
    base = measure("on()", frames)
    print(f"{'on()':28s} {base:7.0f} ns/event")
    for mode in ("message-received callback", "on(..., envelope=True)"):
        value = measure(mode, frames)
        print(f"{mode:28s} {value:7.0f} ns/event ({value / base:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
