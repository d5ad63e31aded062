"""OAuth 2 for the cTrader Open API: the authorization page address and the token endpoint (``Auth``).

Only the standard library and ``certifi`` are used. Compared with the old SDK's ``Auth``:

* the token endpoint is called with ``POST`` and a form body, so the client secret, the
  authorization code and the refresh token never appear in a URL (URLs end up in proxy and server
  logs);
* the server's certificate is verified against the ``certifi`` bundle with a host name check, and
  TLS older than 1.2 is refused;
* every call has a timeout;
* an error answer (``errorCode`` in the JSON, an HTTP error status, a body that is not JSON, a
  network failure) raises :class:`~ctrader_sync.errors.AuthError` instead of being returned as if it
  were a token;
* the client secret and the tokens are never logged, never shown by ``repr()`` and never put in an
  exception's text.

Typical use::

    auth = Auth(client_id, client_secret, "https://example.com/callback")
    print("Open", auth.get_auth_uri(scope="trading"))
    token = auth.get_token(code_from_redirect)       # {"accessToken": ..., "refreshToken": ..., ...}
    token = auth.refresh_token(token["refreshToken"])
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from ._tls import default_ssl_context
from .endpoints import EndPoints
from .errors import AuthError

__all__ = ["MAX_RESPONSE_BYTES", "Auth", "default_ssl_context"]

_log = logging.getLogger("ctrader_sync.auth")

MAX_RESPONSE_BYTES = 1 << 20
"""Largest token-endpoint answer read (1 MiB); a token response is a few hundred bytes."""

_REDACTED = "***"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a redirected POST would either lose its body or carry the secret elsewhere.

    Returning ``None`` makes urllib raise ``HTTPError`` with the 3xx status, which becomes an
    :class:`AuthError`.
    """

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        return None


class Auth:
    """OAuth 2 helper for an Open API application: build the authorization link, exchange codes.

    The method names of the old SDK (``getAuthUri``, ``getToken``, ``refreshToken``) work unchanged;
    each has a snake_case twin (``get_auth_uri``, ``get_token``, ``refresh_token``). Instances hold
    no mutable state and can be shared between threads.

    Args:
        appClientId: the application's client id.
        appClientSecret: the application's client secret; kept private (masked in ``repr``).
        redirectUri: the redirect URI registered for the application.
        token_uri: the token endpoint; must be ``https``.
        auth_uri: the authorization page used by :meth:`getAuthUri` when no ``baseUri`` is given.
        timeout: seconds to wait for the connection and for each read from the token endpoint.
        ssl_context: TLS settings for the token endpoint, used as given; the default is
            :func:`default_ssl_context` (certifi bundle, host name check, TLS >= 1.2). Pass your own
            to trust a private CA.

    Raises:
        ValueError: ``token_uri`` is not an ``https`` URL, or ``timeout`` is not positive.
    """

    __slots__ = ("_auth_uri", "_client_id", "_client_secret", "_opener", "_redirect_uri", "_timeout",
                 "_token_uri")

    def __init__(
        self,
        appClientId: str,
        appClientSecret: str,
        redirectUri: str,
        *,
        token_uri: str = EndPoints.TOKEN_URI,
        auth_uri: str = EndPoints.AUTH_URI,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(token_uri)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"token_uri must be an https URL, got {token_uri!r}")
        if parsed.query or parsed.username or parsed.password:
            raise ValueError("token_uri must not carry a query or credentials")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self._client_id = str(appClientId)
        self._client_secret = str(appClientSecret)
        self._redirect_uri = str(redirectUri)
        self._token_uri = token_uri
        self._auth_uri = auth_uri
        self._timeout = float(timeout)
        context = ssl_context if ssl_context is not None else default_ssl_context()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    # ----------------------------------------------------------------------------------- properties

    @property
    def appClientId(self) -> str:
        """The application's client id."""
        return self._client_id

    @property
    def redirectUri(self) -> str:
        """The redirect URI sent with authorization and code-exchange requests."""
        return self._redirect_uri

    @property
    def token_uri(self) -> str:
        """The token endpoint."""
        return self._token_uri

    @property
    def auth_uri(self) -> str:
        """The default authorization page."""
        return self._auth_uri

    @property
    def timeout(self) -> float:
        """Seconds allowed for the connection and for each read from the token endpoint."""
        return self._timeout

    def __repr__(self) -> str:
        return (f"Auth(appClientId={self._client_id!r}, appClientSecret={_REDACTED!r}, "
                f"redirectUri={self._redirect_uri!r}, token_uri={self._token_uri!r})")

    # ------------------------------------------------------------------------------------ public API

    def get_auth_uri(self, scope: str = "trading", base_uri: str | None = None) -> str:
        """Return the address of the page where a user grants this application access.

        The query carries ``client_id``, ``redirect_uri`` and ``scope`` (``"trading"`` or
        ``"accounts"``), URL-encoded; never the secret. After the user agrees, the browser is sent
        to the redirect URI with ``?code=...``; pass that code to :meth:`get_token` within a minute.

        Args:
            scope: the access asked for.
            base_uri: the authorization page; defaults to the ``auth_uri`` given to the constructor.
        """
        base = base_uri if base_uri is not None else self._auth_uri
        parts = urllib.parse.urlsplit(base)
        query = urllib.parse.urlencode(
            {"client_id": self._client_id, "redirect_uri": self._redirect_uri, "scope": scope}
        )
        if parts.query:
            query = f"{parts.query}&{query}"
        return urllib.parse.urlunsplit(parts._replace(query=query))

    def get_token(self, auth_code: str) -> dict[str, Any]:
        """Exchange an authorization code for tokens (``grant_type=authorization_code``).

        Returns:
            The token endpoint's JSON object as a dict: ``accessToken``, ``refreshToken``,
            ``expiresIn`` (seconds), ``tokenType``, and whatever else the server sends.

        Raises:
            AuthError: the server refused (its ``errorCode``/``description`` and the HTTP status),
                or the request failed (``error_code`` ``"TIMEOUT"``, ``"TLS_ERROR"``,
                ``"NETWORK_ERROR"``, ``"INVALID_RESPONSE"``, or ``"HTTP_<status>"``).
        """
        return self._request_token(
            {
                "grant_type": "authorization_code",
                "code": auth_code,
                "redirect_uri": self._redirect_uri,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            secrets=(auth_code,),
        )

    def refresh_token(self, refresh_token: str) -> dict[str, Any]:
        """Get a new access token with a refresh token (``grant_type=refresh_token``).

        The answer carries a new ``refreshToken`` too: keep it, the old one may stop working.

        Returns:
            The token endpoint's JSON object as a dict (see :meth:`get_token`).

        Raises:
            AuthError: as for :meth:`get_token`.
        """
        return self._request_token(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            secrets=(refresh_token,),
        )

    # old SDK names

    def getAuthUri(self, scope: str = "trading", baseUri: str | None = None) -> str:
        """Old SDK name of :meth:`get_auth_uri`."""
        return self.get_auth_uri(scope, baseUri)

    def getToken(self, authCode: str, baseUri: str | None = None) -> dict[str, Any]:
        """Old SDK name of :meth:`get_token`; ``baseUri`` (the old SDK's keyword) is another token
        endpoint for this call (``https`` only)."""
        if baseUri is not None:
            return self._with_token_uri(baseUri).get_token(authCode)
        return self.get_token(authCode)

    def refreshToken(self, refreshToken: str, baseUri: str | None = None) -> dict[str, Any]:
        """Old SDK name of :meth:`refresh_token`; ``baseUri`` as for :meth:`getToken`."""
        if baseUri is not None:
            return self._with_token_uri(baseUri).refresh_token(refreshToken)
        return self.refresh_token(refreshToken)

    def _with_token_uri(self, token_uri: str) -> Auth:
        """A copy of this helper for another token endpoint (validated as in the constructor)."""
        if token_uri == self._token_uri:
            return self
        other = Auth(self._client_id, self._client_secret, self._redirect_uri, token_uri=token_uri,
                     auth_uri=self._auth_uri, timeout=self._timeout)
        other._opener = self._opener  # the same TLS settings
        return other

    # -------------------------------------------------------------------------------------- private

    def _redact(self, text: str, secrets: tuple[str, ...]) -> str:
        """Remove the client secret and this request's code/token from text the server sent back."""
        for secret in (self._client_secret, *secrets):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _request_token(self, form: dict[str, str], secrets: tuple[str, ...]) -> dict[str, Any]:
        grant = form["grant_type"]
        body = urllib.parse.urlencode(form).encode("ascii")
        request = urllib.request.Request(
            self._token_uri,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": "ctrader_sync",
            },
        )
        host = urllib.parse.urlsplit(self._token_uri).hostname
        _log.debug("token request: POST %s (grant_type=%s)", self._token_uri, grant)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status = int(response.status)
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read(MAX_RESPONSE_BYTES + 1)
            except (OSError, ValueError):
                raw = b""
            finally:
                exc.close()
            _log.debug("token endpoint answered HTTP %d (grant_type=%s)", status, grant)
            payload, _ = _decode_json_object(raw)
            code = payload.get("errorCode") if payload else None
            description = payload.get("description") if payload else None
            raise AuthError(
                self._redact(str(code), secrets) if code else f"HTTP_{status}",
                self._redact(str(description), secrets) if description else str(exc.reason or ""),
                status,
            ) from None
        except urllib.error.URLError as exc:
            raise self._transport_error(exc.reason, host) from exc
        except OSError as exc:  # timeouts and resets while reading the answer
            raise self._transport_error(exc, host) from exc
        _log.debug("token endpoint answered HTTP %d (grant_type=%s)", status, grant)
        payload, problem = _decode_json_object(raw)
        if payload is None:
            raise AuthError("INVALID_RESPONSE", f"token endpoint {problem} (HTTP {status})", status)
        code = payload.get("errorCode")
        if code is not None:
            description = payload.get("description")
            raise AuthError(
                self._redact(str(code), secrets),
                self._redact(str(description), secrets) if description is not None else "",
                status,
            )
        return payload

    def _transport_error(self, reason: object, host: str | None) -> AuthError:
        """An AuthError for a failure below HTTP; the text names the host, never the request."""
        if isinstance(reason, TimeoutError):
            return AuthError("TIMEOUT", f"no answer from {host} within {self._timeout:g} s")
        if isinstance(reason, ssl.SSLCertVerificationError):
            detail = reason.verify_message or reason.reason or "verification failed"
            return AuthError("TLS_ERROR", f"certificate of {host} refused: {detail}")
        if isinstance(reason, ssl.SSLError):
            return AuthError("TLS_ERROR", f"TLS failure with {host}: {reason.reason or reason}")
        if isinstance(reason, OSError):
            text = reason.strerror or type(reason).__name__
            return AuthError("NETWORK_ERROR", f"cannot reach {host}: {text}")
        return AuthError("NETWORK_ERROR", f"cannot reach {host}: {reason}")


def _decode_json_object(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """Decode a JSON object: ``(value, "")``, or ``(None, what is wrong)``."""
    if len(raw) > MAX_RESPONSE_BYTES:
        return None, f"answer larger than {MAX_RESPONSE_BYTES} bytes"
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "answer is not JSON"
    if not isinstance(value, dict):
        return None, f"answer is JSON {type(value).__name__}, not an object"
    return value, ""
