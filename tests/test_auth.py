"""``Auth`` against a local HTTPS token endpoint (http.server + ssl on 127.0.0.1, a thread per server)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from ctrader_sync.auth import Auth, default_ssl_context
from ctrader_sync.endpoints import EndPoints
from ctrader_sync.errors import AuthError

CERTS = Path(__file__).resolve().parent.parent / "ctrader_sync" / "simulator" / "certs"
CA = CERTS / "ca.pem"
SERVER_CERT = CERTS / "server.pem"
SERVER_KEY = CERTS / "server.key"

CLIENT_ID = "1234_client-id"
SECRET = "S3cr3t-client-secret-value"
CODE = "auth-code-0123456789"
REFRESH = "refresh-token-abcdef"
ACCESS = "access-token-xyz"
REDIRECT = "https://example.com/callback?x=1"

TOKEN_JSON = {"accessToken": ACCESS, "refreshToken": "new-" + REFRESH, "expiresIn": 2628000,
              "tokenType": "bearer", "errorCode": None, "description": None}


@dataclass(frozen=True)
class Seen:
    """One request as the test server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """The body as a form, one value per field."""
        parsed = urllib.parse.parse_qs(self.body.decode("ascii"), strict_parsing=True)
        assert all(len(v) == 1 for v in parsed.values()), f"repeated form fields: {parsed}"
        return {k: v[0] for k, v in parsed.items()}


@dataclass
class Reply:
    """What the test server answers: a status, a body and headers; ``hang`` waits without answering."""

    status: int = 200
    body: bytes = json.dumps(TOKEN_JSON).encode()
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    hang: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _TokenServer
    timeout = 5.0  # a stuck connection cannot block the server thread for long

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        reply = self.server.reply
        if reply.hang:
            self.server.release.wait(10.0)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TokenServer(HTTPServer):
    def __init__(self, context: ssl.SSLContext, reply: Reply) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.reply = reply
        self.seen: list[Seen] = []
        self.errors: list[BaseException] = []
        self.release = threading.Event()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # the handshake runs in the handler, so a refused handshake lands in handle_error
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(sys.exc_info()[1] or RuntimeError("unknown"))

    @property
    def token_uri(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/apps/token"


StartServer = Callable[..., _TokenServer]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy configured in the environment must not capture requests to 127.0.0.1."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start HTTPS token servers on demand; stop them and join their threads at the end."""
    started: list[tuple[_TokenServer, threading.Thread]] = []

    def start(reply: Reply | None = None, cert: Path = SERVER_CERT, key: Path = SERVER_KEY) -> _TokenServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = _TokenServer(context, reply or Reply())
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="test-token-server", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5.0)
        assert not thread.is_alive(), "test token server thread did not stop"


def _trusting_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CA))


def _auth(token_uri: str, *, timeout: float = 5.0, context: ssl.SSLContext | None = None,
          trust_test_ca: bool = True) -> Auth:
    if context is None and trust_test_ca:
        context = _trusting_context()
    return Auth(CLIENT_ID, SECRET, REDIRECT, token_uri=token_uri, timeout=timeout, ssl_context=context)


def _texts(exc: BaseException) -> str:
    """str and repr of an exception and of everything chained to it."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in (SECRET, *secrets):
        assert secret not in text, f"secret {secret!r} leaked into: {text!r}"


# ------------------------------------------------------------------------------------ auth URI


def test_get_auth_uri_has_client_id_redirect_and_scope_but_no_secret() -> None:
    auth = Auth(CLIENT_ID, SECRET, REDIRECT)
    uri = auth.getAuthUri()
    parts = urllib.parse.urlsplit(uri)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == EndPoints.AUTH_URI
    assert urllib.parse.parse_qs(parts.query) == {
        "client_id": [CLIENT_ID], "redirect_uri": [REDIRECT], "scope": ["trading"]
    }
    # the redirect URI's own "?x=1" is encoded, not mixed into the query
    assert "redirect_uri=https%3A%2F%2Fexample.com%2Fcallback%3Fx%3D1" in uri
    assert SECRET not in uri
    assert auth.get_auth_uri("accounts") == auth.getAuthUri(scope="accounts")
    assert "scope=accounts" in auth.get_auth_uri(scope="accounts")


def test_get_auth_uri_with_base_uri_keeps_its_query() -> None:
    auth = Auth(CLIENT_ID, SECRET, REDIRECT)
    uri = auth.getAuthUri(baseUri=EndPoints.AUTH_PAGE_URI + "?lang=en")
    parts = urllib.parse.urlsplit(uri)
    assert uri.startswith(EndPoints.AUTH_PAGE_URI + "?lang=en&")
    assert urllib.parse.parse_qs(parts.query)["client_id"] == [CLIENT_ID]
    assert auth.get_auth_uri(base_uri="https://id.example/auth").startswith("https://id.example/auth?client_id=")


# ------------------------------------------------------------------------------------ success


def test_get_token_posts_the_code_in_a_form_body(start_server: StartServer) -> None:
    server = start_server()
    token = _auth(server.token_uri).getToken(CODE)
    assert token == TOKEN_JSON
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/apps/token"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen.form() == {"grant_type": "authorization_code", "code": CODE, "redirect_uri": REDIRECT,
                           "client_id": CLIENT_ID, "client_secret": SECRET}
    _assert_no_secrets(seen.path, CODE)
    assert server.errors == []


def test_refresh_token_posts_the_refresh_token_in_a_form_body(start_server: StartServer) -> None:
    server = start_server()
    token = _auth(server.token_uri).refreshToken(REFRESH)
    assert token["accessToken"] == ACCESS and token["refreshToken"] == "new-" + REFRESH
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.form() == {"grant_type": "refresh_token", "refresh_token": REFRESH,
                           "client_id": CLIENT_ID, "client_secret": SECRET}
    _assert_no_secrets(seen.path, REFRESH)


def test_snake_case_twins_send_the_same_requests(start_server: StartServer) -> None:
    server = start_server()
    auth = _auth(server.token_uri)
    assert auth.get_token(CODE) == auth.getToken(CODE)
    assert auth.refresh_token(REFRESH) == auth.refreshToken(REFRESH)
    forms = [s.form() for s in server.seen]
    assert forms[0] == forms[1] and forms[2] == forms[3]


def test_success_without_error_fields(start_server: StartServer) -> None:
    body = {"accessToken": ACCESS, "refreshToken": REFRESH, "expiresIn": 1, "tokenType": "bearer"}
    server = start_server(Reply(body=json.dumps(body).encode()))
    assert _auth(server.token_uri).get_token(CODE) == body


# ------------------------------------------------------------------------------------- errors


def test_error_json_raises_auth_error_with_code_and_description(start_server: StartServer) -> None:
    body = {"errorCode": "ACCESS_DENIED", "description": "Code expired", "accessToken": None}
    server = start_server(Reply(status=200, body=json.dumps(body).encode()))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri).get_token(CODE)
    assert (info.value.error_code, info.value.description, info.value.status) == (
        "ACCESS_DENIED", "Code expired", 200)
    assert str(info.value) == "ACCESS_DENIED: Code expired"


def test_http_400_with_error_json(start_server: StartServer) -> None:
    body = {"errorCode": "INVALID_REQUEST", "description": "refresh token unknown"}
    server = start_server(Reply(status=400, body=json.dumps(body).encode()))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri).refresh_token(REFRESH)
    assert (info.value.error_code, info.value.description, info.value.status) == (
        "INVALID_REQUEST", "refresh token unknown", 400)


def test_http_500_with_html_body(start_server: StartServer) -> None:
    server = start_server(Reply(status=500, body=b"<html>oops</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri).get_token(CODE)
    assert info.value.error_code == "HTTP_500"
    assert info.value.status == 500
    assert info.value.description == "Internal Server Error"


@pytest.mark.parametrize("body", [b"<html>not json</html>", b"[1, 2]", b"\xff\xfe", b""])
def test_non_json_success_body_raises(start_server: StartServer, body: bytes) -> None:
    server = start_server(Reply(body=body))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri).get_token(CODE)
    assert info.value.error_code == "INVALID_RESPONSE"
    assert info.value.status == 200


def test_redirect_is_not_followed(start_server: StartServer) -> None:
    target = start_server()
    redirecting = start_server(Reply(status=307, body=b"", headers={"Location": target.token_uri}))
    with pytest.raises(AuthError) as info:
        _auth(redirecting.token_uri).get_token(CODE)
    assert (info.value.error_code, info.value.status) == ("HTTP_307", 307)
    assert target.seen == [], "the secret was forwarded to the redirect target"


def test_server_echoing_the_secret_is_redacted(start_server: StartServer) -> None:
    body = {"errorCode": "BAD_" + SECRET, "description": f"bad secret {SECRET} for code {CODE}"}
    server = start_server(Reply(status=401, body=json.dumps(body).encode()))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri).get_token(CODE)
    _assert_no_secrets(_texts(info.value), CODE)
    assert info.value.description == "bad secret *** for code ***"


# ----------------------------------------------------------------------------- network, TLS


def test_timeout_when_the_server_never_starts_tls() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # listens, never accepts
        port = listener.getsockname()[1]
        auth = _auth(f"https://127.0.0.1:{port}/apps/token", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(AuthError) as info:
            auth.get_token(CODE)
        elapsed = time.monotonic() - started
    assert info.value.error_code == "TIMEOUT"
    assert info.value.status is None
    assert "within 0.5 s" in str(info.value)
    assert 0.4 <= elapsed < 2.0, f"expected to give up after about 0.5 s, took {elapsed:.2f} s"
    _assert_no_secrets(_texts(info.value), CODE)


def test_timeout_when_the_server_never_answers_the_request(start_server: StartServer) -> None:
    server = start_server(Reply(hang=True))
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri, timeout=0.5).refresh_token(REFRESH)
    elapsed = time.monotonic() - started
    assert info.value.error_code == "TIMEOUT"
    assert 0.4 <= elapsed < 2.0, f"expected to give up after about 0.5 s, took {elapsed:.2f} s"
    assert len(server.seen) == 1  # the request did arrive; only the answer was missing
    _assert_no_secrets(_texts(info.value), REFRESH)


def test_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # the port is closed now
    with pytest.raises(AuthError) as info:
        _auth(f"https://127.0.0.1:{port}/apps/token", timeout=2.0).get_token(CODE)
    assert info.value.error_code == "NETWORK_ERROR"
    assert "127.0.0.1" in str(info.value)


def test_untrusted_certificate_is_refused_by_default(start_server: StartServer) -> None:
    server = start_server()  # its CA is a test CA, not in the certifi bundle
    auth = _auth(server.token_uri, trust_test_ca=False)
    with pytest.raises(AuthError) as info:
        auth.get_token(CODE)
    assert info.value.error_code == "TLS_ERROR"
    assert "certificate" in str(info.value)
    assert server.seen == [], "a request went out over an unverified connection"
    _assert_no_secrets(_texts(info.value), CODE)


def _openssl_self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    cert, key = tmp / "other.pem", tmp / "other.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def test_host_name_mismatch_is_refused(start_server: StartServer, tmp_path: Path) -> None:
    # a certificate the client trusts, but issued for another name than 127.0.0.1
    cert, key = _openssl_self_signed(tmp_path, "other.example")
    server = start_server(cert=cert, key=key)
    context = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(AuthError) as info:
        _auth(server.token_uri, context=context).get_token(CODE)
    assert info.value.error_code == "TLS_ERROR"
    assert server.seen == []


def test_default_ssl_context_verifies_with_certifi() -> None:
    context = default_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] > 10  # the certifi bundle is loaded


# -------------------------------------------------------------------- secrets: logs, repr, args


def test_secrets_never_reach_the_logs(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok = start_server()
    failing = start_server(Reply(status=400, body=b'{"errorCode": "X", "description": "Y"}'))
    _auth(ok.token_uri).get_token(CODE)
    _auth(ok.token_uri).refresh_token(REFRESH)
    with pytest.raises(AuthError):
        _auth(failing.token_uri).get_token(CODE)
    with pytest.raises(AuthError):
        _auth(ok.token_uri, trust_test_ca=False).refresh_token(REFRESH)
    assert any(r.name == "ctrader_sync.auth" for r in caplog.records), "expected debug records"
    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    _assert_no_secrets(logged, CODE, REFRESH, ACCESS)


def test_repr_masks_the_secret() -> None:
    auth = Auth(CLIENT_ID, SECRET, REDIRECT)
    for text in (repr(auth), str(auth), f"{auth}"):
        assert SECRET not in text
        assert "appClientSecret='***'" in text
        assert CLIENT_ID in text
    assert auth.appClientId == CLIENT_ID and auth.redirectUri == REDIRECT


def test_constructor_rejects_plain_http_and_bad_timeouts() -> None:
    with pytest.raises(ValueError, match="https"):
        Auth(CLIENT_ID, SECRET, REDIRECT, token_uri="http://openapi.ctrader.com/apps/token")
    with pytest.raises(ValueError, match="query"):
        Auth(CLIENT_ID, SECRET, REDIRECT, token_uri="https://host/apps/token?client_secret=x")
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            Auth(CLIENT_ID, SECRET, REDIRECT, timeout=bad)
