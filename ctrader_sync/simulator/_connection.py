"""One accepted connection: a single I/O thread owning the TLS socket, limits, timers and faults.

OpenSSL forbids using one ``SSL`` object from two threads at once, so everything that touches the
socket runs on this connection's own thread (non-blocking socket + ``selectors``).  Other threads
talk to it only through :meth:`Connection.post`, a thread-safe queue of callables run by the
I/O thread.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from .._codec import TcpProtocol
from ..messages.OpenApiCommonMessages_pb2 import ProtoErrorRes, ProtoHeartbeatEvent, ProtoMessage
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOAClientDisconnectEvent,
    ProtoOAErrorRes,
)
from ..protobuf import REGISTRY, TYPE_OF
from ._recording import HEARTBEAT, HISTORICAL_PAYLOAD_TYPES, ConnectionRecord, Record

if TYPE_CHECKING:
    from ._behaviour import Session
    from ._server import Simulator

__all__ = ["FAULT_KINDS", "Connection", "Fault"]

log = logging.getLogger("ctrader_sync.simulator")

FAULT_KINDS = frozenset({
    "close", "freeze", "stop_reading", "delay", "drop", "reorder", "garbage", "huge_length",
    "bad_payload", "client_disconnect_event", "token_invalidated", "account_disconnect",
})
"""Every fault :meth:`Simulator.inject` accepts."""

_IO_FAULTS = frozenset({"close", "freeze", "stop_reading", "client_disconnect_event"})
"""Faults after which the message that triggered them is not handled."""

_POLL = 0.05  # the longest the I/O thread sleeps before looking at posted commands and the stop flag
_READ_SIZE = 256 * 1024
_WRITE_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0
_CLOSING_TIMEOUT = 2.0
_VERSION_REQ_PREFIX = b"\x08" + bytes((2104 & 0x7F | 0x80, 2104 >> 7))

HANDSHAKE, OPEN, CLOSING, CLOSED = "handshake", "open", "closing", "closed"

OutItem = tuple[bytes, int, "str | None"]
"""A ready frame with its payload type and clientMsgId (for the recording)."""


@dataclass
class Fault:
    """A fault waiting to trigger on one connection (see :meth:`Simulator.inject`)."""

    kind: str
    after: int = 0
    payload_type: int | None = None
    delay: float = 0.0


def frame(message: Message, client_msg_id: str | None = None) -> OutItem:
    """Encode ``message`` into a length-prefixed frame, with its payload type and clientMsgId."""
    body = TcpProtocol.encode_body(message, client_msg_id)
    return len(body).to_bytes(4, "big") + body, TYPE_OF[type(message)], client_msg_id


def _scan_client_msg_id(body: bytes) -> bytes | None:
    """Return the raw ``clientMsgId`` field (tag included) of a ``ProtoMessage`` body, or None.

    A minimal wire-format walk for the benchmark fast path: no protobuf parsing.
    """
    pos = 0
    n = len(body)
    while pos < n:
        start = pos
        tag = body[pos]
        pos += 1
        wire = tag & 7
        value = 0
        shift = 0
        while True:  # varint: a value (wire 0) or a length (wire 2)
            b = body[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if wire == 2:
            pos += value
            if tag == 0x1A:
                return body[start:pos]
        elif wire != 0:
            return None
    return None


class Connection:
    """The server side of one client connection (internal; tests see its :class:`ConnectionRecord`)."""

    def __init__(self, sim: Simulator, raw: socket.socket, record: ConnectionRecord,
                 faults: list[Fault]) -> None:
        from ._behaviour import Session

        self.sim = sim
        self.record = record
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw = raw
        self.sock: ssl.SSLSocket = sim._server_context.wrap_socket(
            raw, server_side=True, do_handshake_on_connect=False)
        self.state = HANDSHAKE
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self._pinned_write = 0  # the length an SSL write must be retried with after WANT_WRITE
        self._want_write_for_read = False
        self.commands: deque[tuple[Callable[[], None], threading.Event | None]] = deque()
        # a socket pair that wakes the I/O thread when a command is posted
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # faults
        self.armed: list[Fault] = list(faults)
        self.frozen = False
        self.reading = True
        self.delay = 0.0
        self.drop_all = False
        self.drop_types: set[int] = set()
        self.reorder = 0  # 0 off, 1 waiting for the first request, 2 holding the first answer
        self.held: list[OutItem] = []
        self.delayed: deque[tuple[float, list[OutItem]]] = deque()
        # limits and timers
        o = sim.options
        self.benchmark = o.benchmark
        self.recording = record.recording
        self.request_limit = 0 if o.benchmark else o.request_limit
        self.historical_limit = 0 if o.benchmark else o.historical_limit
        self.req_times: deque[float] = deque()
        self.hist_times: deque[float] = deque()
        now = time.monotonic()
        self.last_in = now
        self.next_heartbeat = now + o.heartbeat_interval if o.heartbeat_interval > 0 else float("inf")
        self.closing_deadline = float("inf")
        self.flood_remaining = 0
        self.session: Session = Session(self)
        self._responses: list[OutItem] | None = None
        self.thread = threading.Thread(target=self._run, name=f"ctrader_sync-sim-conn-{record.index}",
                                       daemon=True)

    # -- cross-thread API --------------------------------------------------------------------

    def post(self, command: Callable[[], None], done: threading.Event | None = None) -> None:
        """Run ``command`` on this connection's I/O thread, then set ``done`` (if given).

        ``done`` is also set when the connection ends before the command ran (it is then dropped).
        """
        self.commands.append((command, done))
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the thread is already awake) or closed (the thread is gone)
            pass

    def call(self, command: Callable[[], None], timeout: float = 5.0) -> bool:
        """Run ``command`` on the I/O thread and wait until it ran (or the connection ended).

        Returns False only if the I/O thread did not get to it within ``timeout`` seconds.
        """
        done = threading.Event()
        self.post(command, done)
        if not self.thread.is_alive() and self.thread.ident is not None:
            self._drain_commands(run=False)
        return done.wait(timeout)

    def _drain_commands(self, run: bool) -> None:
        while self.commands:
            try:
                command, done = self.commands.popleft()
            except IndexError:  # pragma: no cover - drained by another thread
                return
            try:
                if run:
                    command()
            finally:
                if done is not None:
                    done.set()

    def add_fault(self, fault: Fault) -> None:
        """Arm ``fault`` (I/O thread only): now when ``after`` is 0, else after that many messages."""
        if fault.after <= 0:
            self._activate(fault)
        else:
            self.armed.append(fault)

    def clear_faults(self) -> None:
        """Disarm every fault and undo the lasting ones (I/O thread only)."""
        self.armed.clear()
        self.frozen = False
        if self.state == OPEN:
            self.reading = True
        self.delay = 0.0
        self.drop_all = False
        self.drop_types.clear()
        self.reorder = 0
        held, self.held = self.held, []
        delayed = [item for _, items in self.delayed for item in items]
        self.delayed.clear()
        self.write_items(delayed + held)
        self.last_in = time.monotonic()

    # -- output ------------------------------------------------------------------------------

    def respond(self, message: Message, client_msg_id: str | None) -> None:
        """Queue ``message`` as (part of) the answer to the request being handled."""
        item = frame(message, client_msg_id)
        if self._responses is not None:
            self._responses.append(item)
        else:
            self.write_items([item])

    def push(self, message: Message) -> None:
        """Send a push event now (no clientMsgId; not delayed or reordered)."""
        self.write_items([frame(message)])

    def write_items(self, items: list[OutItem]) -> None:
        """Append ready frames to the send buffer, recording them."""
        if self.state in (CLOSED,) or self.frozen:
            return
        out = self.outbuf
        if self.recording:
            now = time.monotonic()
            append = self.record.messages.append
            for data, pt, cid in items:
                out += data
                append(Record(now, "out", pt, cid))
        else:
            for data, _, _ in items:
                out += data

    def write_raw(self, data: bytes, payload_type: int = -1) -> None:
        """Append raw bytes (a deliberately broken frame) to the send buffer."""
        if self.recording:
            self.record.messages.append(Record(time.monotonic(), "out", payload_type, None))
        self.outbuf += data

    def _emit(self, items: list[OutItem]) -> None:
        if not items:
            return
        if self.reorder == 1:
            self.held = items
            self.reorder = 2
            return
        if self.reorder == 2:
            items = items + self.held
            self.held = []
            self.reorder = 0
        if self.delay > 0 or self.delayed:
            self.delayed.append((time.monotonic() + self.delay, items))
            return
        self.write_items(items)

    # -- faults ------------------------------------------------------------------------------

    def _activate(self, fault: Fault) -> None:
        kind = fault.kind
        log.debug("connection %d: fault %s", self.record.index, kind)
        if kind == "close":
            self.close_now()
        elif kind == "freeze":
            self.frozen = True
        elif kind == "stop_reading":
            self.reading = False
        elif kind == "delay":
            self.delay = fault.delay
        elif kind == "drop":
            if fault.payload_type is None:
                self.drop_all = True
            else:
                self.drop_types.add(fault.payload_type)
        elif kind == "reorder":
            self.reorder = 1
        elif kind == "garbage":
            self.write_raw(b"\x00\x00\x00\x04\xff\xff\xff\xff")
        elif kind == "huge_length":
            self.write_raw(b"\x80\x00\x00\x00\x08\x33")
        elif kind == "bad_payload":
            body = ProtoMessage(payloadType=2105, payload=b"\xff\xff\xff").SerializeToString()
            self.write_raw(len(body).to_bytes(4, "big") + body, 2105)
        elif kind == "client_disconnect_event":
            self.push(ProtoOAClientDisconnectEvent(reason="simulated server disconnect"))
            self.start_closing()
        elif kind == "token_invalidated":
            accounts = sorted(self.session.authorized) or list(self.sim.account_ids)
            self.push(ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=accounts,
                                                           reason="simulated token invalidation"))
            for account_id in accounts:
                self.session.logout(account_id)
        elif kind == "account_disconnect":
            accounts = sorted(self.session.authorized) or list(self.sim.account_ids[:1])
            self.push(ProtoOAAccountDisconnectEvent(ctidTraderAccountId=accounts[0]))
            self.session.logout(accounts[0])
        else:  # pragma: no cover - inject() validates kinds
            raise ValueError(kind)

    def _count_message(self) -> bool:
        """Count one inbound message against armed faults; return False if it must not be handled."""
        if not self.armed:
            return True
        handle = True
        still: list[Fault] = []
        fired: list[Fault] = []
        for fault in self.armed:
            fault.after -= 1
            (fired if fault.after <= 0 else still).append(fault)
        self.armed = still
        for fault in fired:
            self._activate(fault)
            if fault.kind in _IO_FAULTS:
                handle = False
        return handle and self.state == OPEN and not self.frozen

    # -- closing -----------------------------------------------------------------------------

    def start_closing(self) -> None:
        """Stop handling input, flush what is queued, then close (bounded by a timeout)."""
        if self.state in (OPEN, HANDSHAKE):
            self.state = CLOSING
            self.closing_deadline = time.monotonic() + _CLOSING_TIMEOUT

    def close_now(self) -> None:
        """Close the socket at once, without a TLS close_notify."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - close of a broken socket
            pass

    # -- input -------------------------------------------------------------------------------

    def _on_bytes_benchmark(self, data: bytes) -> None:
        """The benchmark fast path: answer ``ProtoOAVersionReq`` frames from prebuilt bytes.

        A version request as ``TcpProtocol`` writes it is ``08 b8 10 12 00 1a <n> <clientMsgId>``;
        its answer is the prebuilt ``ProtoOAVersionRes`` body plus the request's raw clientMsgId
        field.  Any other frame goes through the full path, in order.
        """
        if self.inbuf:
            self.inbuf += data
            data = bytes(self.inbuf)
            self.inbuf.clear()
        head = self.sim._version_res_body
        grow = len(head) - 5
        prefix = _VERSION_REQ_PREFIX + b"\x12\x00\x1a"
        limit = self.sim.options.max_frame_size
        out: list[bytes] = []
        append = out.append
        total = len(data)
        pos = 0
        while total - pos >= 4:
            length = int.from_bytes(data[pos:pos + 4], "big")
            end = pos + 4 + length
            if end > total or (limit and length > limit):
                break
            if length >= 7 and data.startswith(prefix, pos + 4) and length == 7 + data[pos + 10]:
                append((length + grow).to_bytes(4, "big"))
                append(head)
                append(data[pos + 9:end])
                pos = end
                continue
            break
        if out:
            self.outbuf += b"".join(out)
        if pos < total:
            self._on_bytes(data[pos:])

    def _on_bytes(self, data: bytes) -> None:
        buf = self.inbuf
        buf += data
        total = len(buf)
        pos = 0
        limit = self.sim.options.max_frame_size
        while total - pos >= 4 and self.state == OPEN and self.reading and not self.frozen:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if limit and length > limit:
                self.write_items([frame(ProtoErrorRes(
                    errorCode="FRAME_TOO_LONG",
                    description=f"frame of {length} bytes is over the limit of {limit}"))])
                self.start_closing()
                buf.clear()
                return
            end = pos + 4 + length
            if end > total:
                break
            body = bytes(buf[pos + 4:end])
            pos = end
            self._on_frame(body)
        del buf[:pos]

    def _on_frame(self, body: bytes) -> None:
        if self.benchmark and body.startswith(_VERSION_REQ_PREFIX):
            raw_cid = _scan_client_msg_id(body)
            head = self.sim._version_res_body
            if raw_cid is None:
                self.outbuf += len(head).to_bytes(4, "big") + head
            else:
                self.outbuf += (len(head) + len(raw_cid)).to_bytes(4, "big") + head + raw_cid
            return
        now = time.monotonic()
        self.last_in = now
        try:
            envelope = ProtoMessage.FromString(body)
        except DecodeError:
            self.respond(ProtoErrorRes(errorCode="INVALID_REQUEST",
                                       description="frame body is not a ProtoMessage"), None)
            return
        pt = envelope.payloadType
        cid = envelope.clientMsgId if envelope.HasField("clientMsgId") else None
        if self.recording:
            self.record.messages.append(Record(now, "in", pt, cid))
        self.record.inbound_count += 1
        if not self._count_message() or pt == HEARTBEAT:
            return
        if self.drop_all or pt in self.drop_types:
            return
        self._responses = []
        try:
            if self._over_limit(pt, now):
                self.respond(ProtoOAErrorRes(errorCode="REQUEST_FREQUENCY_EXCEEDED",
                                             description="too many requests per second", retryAfter=1),
                             cid)
            else:
                self._dispatch(pt, envelope.payload, cid)
        finally:
            items, self._responses = self._responses, None
        self._emit(items)

    def _dispatch(self, pt: int, payload: bytes, cid: str | None) -> None:
        handler = self.session.handler(pt)
        cls = REGISTRY.get(pt)
        if handler is None or cls is None:
            self.respond(ProtoErrorRes(errorCode="UNSUPPORTED_MESSAGE",
                                       description=f"payload type {pt} is not supported"), cid)
            return
        try:
            message: Any = cls.FromString(payload)
        except DecodeError as exc:
            self.respond(ProtoErrorRes(errorCode="INVALID_REQUEST",
                                       description=f"{cls.__name__} does not parse: {exc}"), cid)
            return
        handler(message, cid)

    def _over_limit(self, pt: int, now: float) -> bool:
        historical = pt in HISTORICAL_PAYLOAD_TYPES
        if self.request_limit > 0:
            q = self.req_times
            while q and now - q[0] >= 1.0:
                q.popleft()
            if len(q) >= self.request_limit:
                return True
        if historical and self.historical_limit > 0:
            h = self.hist_times
            while h and now - h[0] >= 1.0:
                h.popleft()
            if len(h) >= self.historical_limit:
                return True
            h.append(now)
        if self.request_limit > 0:
            self.req_times.append(now)
        return False

    # -- the I/O thread ----------------------------------------------------------------------

    def _read(self) -> None:
        sock = self.sock
        while self.state in (OPEN, CLOSING) and self.reading and not self.frozen:
            try:
                data = sock.recv(_READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self._want_write_for_read = True
                return
            except (ssl.SSLError, OSError):
                self.close_now()
                return
            if not data:
                self.close_now()
                return
            if self.state == OPEN:
                if self.benchmark:
                    self._on_bytes_benchmark(data)
                else:
                    self._on_bytes(data)

    def _flush(self) -> None:
        out = self.outbuf
        sock = self.sock
        while self.state in (OPEN, CLOSING) and not self.frozen:
            if self.flood_remaining and len(out) < _WRITE_CHUNK:
                self.sim._fill_flood(self)
            if not out:
                return
            n = self._pinned_write or min(len(out), _WRITE_CHUNK)
            try:
                sent = sock.send(memoryview(out)[:n])
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._pinned_write = n
                return
            except ssl.SSLWantReadError:
                self._pinned_write = n
                return
            except (ssl.SSLError, OSError):
                self.close_now()
                return
            self._pinned_write = 0
            del out[:sent]

    def _timers(self, now: float) -> float:
        """Run due timers; return when the next one is due."""
        o = self.sim.options
        if now >= self.next_heartbeat:
            self.push(ProtoHeartbeatEvent())
            self.next_heartbeat = now + o.heartbeat_interval
        nxt = self.next_heartbeat
        if o.idle_timeout > 0 and self.reading and self.state == OPEN:
            idle_at = self.last_in + o.idle_timeout
            if now >= idle_at:
                log.debug("connection %d: idle for %.1f s, closing", self.record.index, o.idle_timeout)
                self.close_now()
                return now
            nxt = min(nxt, idle_at)
        while self.delayed and self.delayed[0][0] <= now:
            self.write_items(self.delayed.popleft()[1])
        if self.delayed:
            nxt = min(nxt, self.delayed[0][0])
        spot_at = self.session.spot_timer(now)
        nxt = min(nxt, spot_at)
        if self.state == CLOSING:
            if not self.outbuf or now >= self.closing_deadline:
                self.close_now()
                return now
            nxt = min(nxt, self.closing_deadline)
        return nxt

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        stop = self.sim._stop
        registered = 0
        sel.register(self._wake_r, selectors.EVENT_READ)
        handshake_deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        try:
            while not stop.is_set() and self.state != CLOSED:
                if self.commands:
                    self._drain_commands(run=True)
                if self.state == CLOSED:
                    break
                now = time.monotonic()
                want = 0
                timeout = _POLL
                if self.frozen:
                    want = 0
                elif self.state == HANDSHAKE:
                    if now > handshake_deadline:
                        self.close_now()
                        break
                    try:
                        self.sock.do_handshake()
                    except ssl.SSLWantReadError:
                        want = selectors.EVENT_READ
                    except ssl.SSLWantWriteError:
                        want = selectors.EVENT_WRITE
                    except (ssl.SSLError, OSError) as exc:
                        log.debug("connection %d: handshake failed: %s", self.record.index, exc)
                        self.close_now()
                        break
                    else:
                        self.state = OPEN
                        self.last_in = time.monotonic()
                        continue
                else:
                    if self.state == OPEN and self.reading:
                        self._read()
                    self._flush()
                    nxt = self._timers(time.monotonic())
                    self._flush()
                    if self.state == CLOSED:
                        break
                    timeout = max(0.0, min(_POLL, nxt - time.monotonic()))
                    if self.reading or self.state == CLOSING:
                        want |= selectors.EVENT_READ
                    if self.outbuf or self._want_write_for_read or self.flood_remaining:
                        want |= selectors.EVENT_WRITE
                    self._want_write_for_read = False
                if want != registered:
                    if registered and want:
                        sel.modify(self.sock, want)
                    elif want:
                        sel.register(self.sock, want)
                    else:
                        sel.unregister(self.sock)
                    registered = want
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
        except Exception:  # pragma: no cover - a simulator bug: log it, close the connection
            log.exception("connection %d: I/O thread failed", self.record.index)
        finally:
            sel.close()
            self.close_now()
            self.session.on_closed()
            self._drain_commands(run=False)
            self._wake_r.close()
            self._wake_w.close()
            self._drain_commands(run=False)
            self.record.closed.set()
