"""One accepted connection: a single I/O thread owning the TLS socket, framing, limits and timers.

OpenSSL forbids using one ``SSL`` object from two threads at once, so everything that touches the
socket runs on this connection's own thread (non-blocking socket + ``selectors``).  Other threads
talk to it only through :meth:`Connection.post` / :meth:`Connection.call`: a queue of callables
the I/O thread runs, woken at once through a socket pair.  What a request means is not decided
here: each decoded request goes to the :class:`ConnectionHooks` given by :meth:`attach`.
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
from typing import Protocol

from google.protobuf.message import DecodeError, Message

from ..messages.OpenApiCommonMessages_pb2 import ProtoErrorRes, ProtoHeartbeatEvent, ProtoMessage
from ..messages.OpenApiMessages_pb2 import ProtoOAErrorRes
from ._arrival import ArrivalClock
from ._bench import BenchAnswers
from ._faults import Fault, FaultState
from ._framing import OutItem, frame
from ._limits import RequestLimiter
from ._options import SimulatorOptions
from ._recording import HEARTBEAT, ConnectionRecord, Record

__all__ = ["Connection", "ConnectionHooks"]

log = logging.getLogger("ctrader_sync.simulator")

_POLL = 0.05  # the longest the I/O thread sleeps before looking at the stop flag
_READ_SIZE = 256 * 1024
_WRITE_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0
_CLOSING_TIMEOUT = 2.0
_PULL_EVERY = 0.002  # while handling frames, take what else arrived from the kernel this often

HANDSHAKE, OPEN, CLOSING, CLOSED = "handshake", "open", "closing", "closed"


class ConnectionHooks(Protocol):
    """What the connection asks of the protocol session above it."""

    def dispatch(self, payload_type: int, payload: bytes, client_msg_id: str | None) -> None:
        """Handle one request (answers go through :meth:`Connection.respond`)."""

    def accounts(self) -> list[int]:
        """The accounts authorized on this connection, sorted."""

    def logout(self, account_id: int) -> None:
        """Log ``account_id`` out on this connection."""

    def on_closed(self) -> None:
        """The connection is gone (called on the I/O thread, once)."""


class Connection:
    """The server side of one client connection (internal; tests see its :class:`ConnectionRecord`)."""

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, options: SimulatorOptions,
                 record: ConnectionRecord, stop: threading.Event, bench: BenchAnswers | None,
                 all_accounts: list[int]) -> None:
        self.options = options
        self.record = record
        self._stop = stop
        self.bench = bench
        self._all_accounts = all_accounts
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Requests count (limits, recording) when they arrived: see _arrival (not in benchmark mode).
        self.arrivals = ArrivalClock(raw, enabled=bench is None)
        self._received: deque[tuple[float, bytes]] = deque()  # read, not yet handled: (arrival, data)
        self._pulled_at = 0.0
        self._eof = False  # the peer closed (or the socket failed): close once what was read is handled
        self.sock: ssl.SSLSocket = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        self.state = HANDSHAKE
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self._pinned_write = 0  # the length an SSL write must be retried with after WANT_WRITE
        self._want_write_for_read = False
        self.commands: deque[tuple[Callable[[], None], threading.Event | None]] = deque()
        self._ended = False  # set by the I/O thread as it ends; then post() drains by itself
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.faults = FaultState(self, record.index)
        self.recording = record.recording
        self.limiter = RequestLimiter(0 if bench else options.request_limit, 0 if bench else options.historical_limit)
        now = time.monotonic()
        self.last_in = now
        hb = options.heartbeat_interval
        self.next_heartbeat = now + hb if hb > 0 else float("inf")
        self.closing_deadline = float("inf")
        self.flood_remaining = 0
        self.hooks: ConnectionHooks | None = None
        self._responses: list[OutItem] | None = None
        self.thread = threading.Thread(target=self._run, name=f"ctrader_sync-sim-conn-{record.index}", daemon=True)

    def attach(self, hooks: ConnectionHooks) -> None:
        """Hand the connection its protocol session (before the thread starts)."""
        self.hooks = hooks

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
        if self._ended:  # the I/O thread is past its last drain: release the waiter here
            self._drain_commands(run=False)

    def call(self, command: Callable[[], None], timeout: float = 5.0) -> bool:
        """Run ``command`` on the I/O thread and wait until it ran (or the connection ended).

        Returns False only if the I/O thread did not get to it within ``timeout`` seconds.
        """
        done = threading.Event()
        self.post(command, done)
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
        """Arm ``fault`` (I/O thread only, or before the thread starts)."""
        self.faults.add(fault)

    def clear_faults(self) -> None:
        """Disarm every fault and undo the lasting ones (I/O thread only)."""
        held = self.faults.clear()
        if self.state != OPEN:
            self.faults.reading = self.state != CLOSED
        self.write_items(held)
        self.last_in = time.monotonic()

    # -- FaultTarget -------------------------------------------------------------------------

    def session_accounts(self) -> list[int]:
        """The accounts authorized on this connection, sorted."""
        return self.hooks.accounts() if self.hooks else []

    def session_logout(self, account_id: int) -> None:
        """Log ``account_id`` out on this connection."""
        if self.hooks:
            self.hooks.logout(account_id)

    def default_accounts(self) -> list[int]:
        """Every simulated account id."""
        return list(self._all_accounts)

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
        if self.state == CLOSED or self.faults.frozen:
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

    def _on_bytes(self, data: bytes, arrived: float) -> None:
        if self.bench is not None:
            if self.inbuf:
                self.inbuf += data
                data = bytes(self.inbuf)
                self.inbuf.clear()
            answers, used = self.bench.answer_versions(data, self.options.max_frame_size)
            if answers:
                self.outbuf += answers
            data = data[used:]
            if not data:
                return
        buf = self.inbuf
        buf += data
        total = len(buf)
        pos = 0
        limit = self.options.max_frame_size
        faults = self.faults
        while total - pos >= 4 and self.state == OPEN and faults.reading and not faults.frozen:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if limit and length > limit:
                self.write_items([frame(ProtoErrorRes(
                    errorCode="FRAME_TOO_LONG", description=f"frame of {length} bytes is over the limit of {limit}"))])
                self.start_closing()
                buf.clear()
                return
            end = pos + 4 + length
            if end > total:
                break
            body = bytes(buf[pos + 4:end])
            pos = end
            self.keep_reading()
            self._on_frame(body, arrived)
        del buf[:pos]

    def _on_frame(self, body: bytes, now: float) -> None:
        """Handle one frame that arrived at ``now`` (monotonic s: limits and recording use it)."""
        if self.bench is not None:
            answer = self.bench.answer_version(body)
            if answer is not None:
                self.outbuf += answer
                return
        self.last_in = now
        try:
            envelope = ProtoMessage.FromString(body)
        except DecodeError:
            self.respond(ProtoErrorRes(errorCode="INVALID_REQUEST", description="frame body is not a ProtoMessage"),
                         None)
            return
        pt = envelope.payloadType
        cid = envelope.clientMsgId if envelope.HasField("clientMsgId") else None
        if self.recording:
            self.record.messages.append(Record(now, "in", pt, cid))
        self.record.inbound_count += 1
        if not self.faults.count_message() or self.state != OPEN or pt == HEARTBEAT or self.faults.drops(pt):
            return
        self._responses = []
        try:
            if self.limiter.over(pt, now):
                self.respond(ProtoOAErrorRes(errorCode="REQUEST_FREQUENCY_EXCEEDED",
                                             description="too many requests per second", retryAfter=1), cid)
            elif self.hooks is not None:
                self.hooks.dispatch(pt, envelope.payload, cid)
        finally:
            items, self._responses = self._responses, None
        self.faults.emit(items)

    # -- the I/O thread ----------------------------------------------------------------------

    def _pull(self) -> None:
        """Move what the socket holds into ``_received``, each part with its arrival time."""
        sock = self.sock
        faults = self.faults
        self._pulled_at = time.monotonic()
        while not self._eof and self.state in (OPEN, CLOSING) and faults.reading and not faults.frozen:
            arrived = self.arrivals.next(sock)
            try:
                data = sock.recv(_READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self._want_write_for_read = True
                return
            except (ssl.SSLError, OSError):
                self._eof = True
                return
            if not data:
                self._eof = True
                return
            if self.state == OPEN:
                self._received.append((arrived, data))

    def keep_reading(self) -> None:
        """Take in what arrived, if the last read was ``_PULL_EVERY`` ago (between frames, and from
        long handlers): left in the kernel, it would merge with later data and take its time."""
        if self.arrivals.enabled and time.monotonic() - self._pulled_at >= _PULL_EVERY:
            self._pull()

    def _read(self) -> None:
        self._pull()
        received = self._received
        faults = self.faults
        while received and self.state == OPEN and faults.reading and not faults.frozen:
            arrived, data = received.popleft()
            self._on_bytes(data, arrived)
        if self._eof:
            self.close_now()

    def _flush(self) -> None:
        out = self.outbuf
        sock = self.sock
        while self.state in (OPEN, CLOSING) and not self.faults.frozen:
            if self.flood_remaining and len(out) < _WRITE_CHUNK and self.bench is not None:
                data, n = self.bench.flood(self.flood_remaining)
                out += data
                self.flood_remaining -= n
            if not out:
                return
            n = self._pinned_write or min(len(out), _WRITE_CHUNK)
            try:
                sent = sock.send(memoryview(out)[:n])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                self._pinned_write = n
                return
            except (ssl.SSLError, OSError):
                self.close_now()
                return
            self._pinned_write = 0
            del out[:sent]

    def _timers(self, now: float) -> float:
        """Run due timers; return when the next one is due."""
        o = self.options
        if now >= self.next_heartbeat:
            self.push(ProtoHeartbeatEvent())
            self.next_heartbeat = now + o.heartbeat_interval
        nxt = self.next_heartbeat
        if o.idle_timeout > 0 and self.faults.reading and self.state == OPEN:
            idle_at = self.last_in + o.idle_timeout
            if now >= idle_at:
                log.debug("connection %d: idle for %.1f s, closing", self.record.index, o.idle_timeout)
                self.close_now()
                return now
            nxt = min(nxt, idle_at)
        nxt = min(nxt, self.faults.due(now))
        if self.state == CLOSING:
            if not self.outbuf or now >= self.closing_deadline:
                self.close_now()
                return now
            nxt = min(nxt, self.closing_deadline)
        return nxt

    def _handshake(self, sel_want: list[int]) -> bool:
        """Advance the TLS handshake; False if the connection failed."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            sel_want[0] = selectors.EVENT_READ
        except ssl.SSLWantWriteError:
            sel_want[0] = selectors.EVENT_WRITE
        except (ssl.SSLError, OSError) as exc:
            log.debug("connection %d: handshake failed: %s", self.record.index, exc)
            self.close_now()
            return False
        else:
            self.state = OPEN
            self.last_in = time.monotonic()
        return True

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        registered = 0
        handshake_deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        try:
            while not self._stop.is_set() and self.state != CLOSED:
                if self.commands:
                    self._drain_commands(run=True)
                if self.state == CLOSED:
                    break
                want = [0]
                timeout = _POLL
                if self.faults.frozen:
                    pass
                elif self.state == HANDSHAKE:
                    if time.monotonic() > handshake_deadline or not self._handshake(want):
                        self.close_now()
                        break
                    if self.state == OPEN:
                        continue
                else:
                    if self.state == OPEN and self.faults.reading:
                        self._read()
                    self._flush()
                    nxt = self._timers(time.monotonic())
                    self._flush()
                    if self.state == CLOSED:
                        break
                    timeout = max(0.0, min(_POLL, nxt - time.monotonic()))
                    if self.faults.reading or self.state == CLOSING:
                        want[0] |= selectors.EVENT_READ
                    if self.outbuf or self._want_write_for_read or self.flood_remaining:
                        want[0] |= selectors.EVENT_WRITE
                    self._want_write_for_read = False
                if want[0] != registered:
                    if registered and want[0]:
                        sel.modify(self.sock, want[0])
                    elif want[0]:
                        sel.register(self.sock, want[0])
                    else:
                        sel.unregister(self.sock)
                    registered = want[0]
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._wake_r:
                        self._drain_wakeups()
        except Exception:  # pragma: no cover - a simulator bug: log it, close the connection
            log.exception("connection %d: I/O thread failed", self.record.index)
        finally:
            sel.close()
            self.close_now()
            if self.hooks is not None:
                self.hooks.on_closed()
            self._ended = True
            self._drain_commands(run=False)
            self._wake_r.close()
            self._wake_w.close()
            self.record.closed.set()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
