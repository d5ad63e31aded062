"""A tiny TLS server for the reliability tests that need a server misbehaving in ways the simulator
does not offer (a TLS close_notify with TCP left open, answers of the wrong type, a connection
that dies on command)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from ctrader_sync import TcpProtocol
from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionRes
from ctrader_sync.simulator._server import certs_dir

VERSION_REQ = 2104

Handler = Callable[["TinyConn", int, "str | None", Any], None]


def answer_versions(conn: TinyConn, pt: int, cid: str | None, message: Any) -> None:
    """The default handler: answer ``ProtoOAVersionReq``, ignore everything else."""
    if pt == VERSION_REQ:
        conn.send(ProtoOAVersionRes(version="91"), cid)


class TinyConn:
    """One accepted, handshaken connection (used only by its own thread, and by handlers)."""

    def __init__(self, server: TinyServer, sock: ssl.SSLSocket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.codec = TcpProtocol()
        self.received: list[tuple[int, str | None]] = []
        self.held_open = False

    def send(self, message: Any, cid: str | None = None) -> None:
        """Send one message (``cid`` as its ``clientMsgId``)."""
        self.sock.sendall(self.codec.encode(message, cid))

    def close_notify(self) -> None:
        """Send a TLS close_notify and keep the TCP connection open (as a broken proxy might)."""
        self.held_open = True
        self.sock.settimeout(0.5)
        try:
            self.sock.unwrap()  # sends close_notify, then waits (in vain) for the client's
        except (OSError, ValueError):
            pass


class TinyServer:
    """Accepts TLS connections on 127.0.0.1 with the simulator's test certificate (host name
    ``localhost``); each connection's frames go to ``handler(conn, payload_type, cid, message)``.
    With ``refuse_after=n``, connections after the n-th are closed at once (the client's connect
    attempt fails)."""

    def __init__(self, handler: Handler = answer_versions, refuse_after: int | None = None) -> None:
        self.handler = handler
        self.refuse_after = refuse_after
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs = certs_dir()
        self.context.load_cert_chain(str(certs / "server.pem"), str(certs / "server-key.pem"))
        self.ca_file = str(certs / "ca.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.host = "localhost"
        self.conns: list[TinyConn] = []
        self.accepted = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._run, name="tiny-server", daemon=True)
        self._accept.start()

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def wait_accepted(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until ``n`` TCP connections were accepted."""
        with self.cond:
            return self.cond.wait_for(lambda: self.accepted >= n, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with self.cond:
                self.accepted += 1
                index = self.accepted
                self.cond.notify_all()
            if self.refuse_after is not None and index > self.refuse_after:
                raw.close()
                continue
            thread = threading.Thread(target=self._serve, args=(raw, index), name="tiny-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket, index: int) -> None:
        raw.settimeout(5)
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        conn = TinyConn(self, sock, index)
        with self.cond:
            self.conns.append(conn)
            self.cond.notify_all()
        sock.settimeout(0.05)
        while not self._stop.is_set() and not conn.held_open:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                break
            if not data:
                break
            for pt, cid, message in conn.codec.feed(data):
                with self.cond:
                    conn.received.append((pt, cid))
                    self.cond.notify_all()
                try:
                    self.handler(conn, pt, cid, message)
                except (OSError, ssl.SSLError):
                    break
                if conn.held_open:
                    break
        if conn.held_open:
            self._stop.wait()
        try:
            sock.close()
        except OSError:
            pass

    def kill(self) -> None:
        """Close every open connection (RST-free close, no close_notify)."""
        for conn in list(self.conns):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting, close every connection and join every thread."""
        self._stop.set()
        self._accept.join(5)
        self.kill()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def __enter__(self) -> TinyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
