"""A plain blocking TLS client for simulator tests (never the SDK client), and a harness fixture.

``Wire`` frames with ``TcpProtocol`` and keeps frames it was not asked for aside; ``make`` starts
simulators and clients for one test and checks that no simulator thread survives.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from ctrader_sync._codec import Frame, TcpProtocol
from ctrader_sync.messages import OpenApiMessages_pb2 as M
from ctrader_sync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT, ERROR_RES, OA_ERROR_RES = 51, 50, 2142
SPOT_EVENT, EXECUTION_EVENT, ORDER_ERROR_EVENT = 2131, 2126, 2132

FAST = {"spot_interval": 0.05, "heartbeat_interval": 0.0, "idle_timeout": 0.0}


def sim_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ctrader_sync-sim")]


class Wire:
    """A blocking TLS client that speaks the framing and keeps unclaimed frames aside."""

    def __init__(self, sim: Simulator, timeout: float = 3.0) -> None:
        raw = socket.create_connection((sim.host, sim.port), timeout=timeout)
        self.sock = sim.client_ssl_context().wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(timeout)
        self.codec = TcpProtocol()
        self.stash: deque[Frame] = deque()
        self.sim = sim
        self.n = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, message: Message, cid: str | None = None) -> str | None:
        self.sock.sendall(self.codec.encode(message, cid))
        return cid

    def _read(self, timeout: float) -> list[Frame]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        return self.codec.feed(data)

    def next(self, pred: Callable[[Frame], bool] = lambda f: True, timeout: float = 3.0) -> Frame:
        """Return (and remove) the first frame matching ``pred``, reading as needed."""
        for f in list(self.stash):
            if pred(f):
                self.stash.remove(f)
                return f
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching frame in time")
            frames = self._read(remaining)
            for i, f in enumerate(frames):
                if pred(f):
                    self.stash.extend(frames[i + 1:])
                    return f
                self.stash.append(f)

    def answer(self, cid: str, timeout: float = 3.0) -> Frame:
        return self.next(lambda f: f.clientMsgId == cid, timeout)

    def call(self, message: Message, timeout: float = 3.0) -> Any:
        """Send with a fresh clientMsgId and return the first answer's frame."""
        self.n += 1
        cid = f"c{self.n}"
        self.send(message, cid)
        return self.answer(cid, timeout)

    def eof(self, timeout: float = 3.0) -> bool:
        """Read until the server closes; True if it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._read(max(0.01, deadline - time.monotonic()))
        except (EOFError, ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        return False

    def login(self, accounts: int = 1) -> list[int]:
        sim = self.sim
        assert self.call(M.ProtoOAApplicationAuthReq(clientId=sim.client_id,
                                                     clientSecret=sim.client_secret)).payloadType == 2101
        ids = sim.account_ids[:accounts]
        for a in ids:
            f = self.call(M.ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=sim.access_token))
            assert f.payloadType == 2103, f
        return ids


class Harness:
    """Starts simulators and clients for one test, and closes them all afterwards."""

    def __init__(self) -> None:
        self.sims: list[Simulator] = []
        self.wires: list[Wire] = []

    def __call__(self, **options: Any) -> tuple[Simulator, Wire]:
        sim = Simulator(**{**FAST, **options})
        self.sims.append(sim)
        return sim, self.wire(sim)

    def wire(self, sim: Simulator) -> Wire:
        wire = Wire(sim)
        self.wires.append(wire)
        return wire

    def close(self) -> None:
        for w in self.wires:
            w.close()
        for s in self.sims:
            start = time.monotonic()
            s.close()
            assert time.monotonic() - start < 2.0, "Simulator.close() took too long"


def harness() -> Iterator[Harness]:
    """The body of each test module's ``make`` fixture: start simulators and clients, close them all
    and check no simulator thread survives."""
    h = Harness()
    yield h
    h.close()
    assert sim_threads() == [], f"simulator threads left after close: {sim_threads()}"


def oa_error(frame: Frame) -> str:
    assert frame.payloadType in (OA_ERROR_RES, ERROR_RES, ORDER_ERROR_EVENT), f"expected an error, got {frame}"
    return str(frame.message.errorCode)
