"""Keeping the session authorized while the connection stays up.

The server can take accounts out of a live session without closing the connection:

* ``ProtoOAAccountDisconnectEvent``: the account is logged out (server-side maintenance, another
  session); ``SessionKeeper`` authorizes it again at once with the session's access token, retries
  with the reconnect policy's backoff when the server does not answer or answers a transient error,
  and restores the account's spot, live-trendbar and depth subscriptions.
* ``ProtoOAAccountsTokenInvalidatedEvent``: the token the accounts were authorized with is no
  longer valid -- after a refresh (the server invalidates the old token), or revoked.  Accounts
  authorized with an older token than the session's are authorized again with the current one at
  once; when the current one is the invalidated one and a refresh token is known, the token is
  refreshed first.

And access tokens expire: after ``login(..., refresh_token=..., expires_in=...)`` the keeper
refreshes the token ahead of expiry (a quarter of its lifetime before, at most an hour before),
hands every new pair to ``on_token_refreshed`` (both tokens rotate: persist them), and reports a
refused refresh as a :class:`TokenRefreshFailed` event carrying a
:class:`~ctrader_sync.errors.TokenRefreshError`.

Threads: events arrive on the reader thread (``SessionManager.events``), answers' done-callbacks
run on the dispatcher, timers fire from the supervisor's watch loop (``tick``).  The keeper sends
through the client's ``send`` (never under the core lock) and keeps its state under the core lock.
Nothing here logs a secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ._reconnect import ReconnectPolicy
from .errors import AuthenticationError, ConnectionLostError, ServerError, TokenRefreshError
from .messages.OpenApiMessages_pb2 import ProtoOAAccountAuthReq, ProtoOARefreshTokenReq

__all__ = ["SessionKeeper", "TokenRefreshFailed", "keep_alive", "refresh_due"]

log = logging.getLogger("ctrader_sync")

MAX_REAUTH_ATTEMPTS = 5
"""Attempts to authorize a disconnected account again before giving up (until the next connection)."""
TOKEN_CODES = frozenset({"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})
"""Error codes that say the access token itself is no good (a refresh may help, a retry will not)."""


@dataclass(frozen=True)
class TokenRefreshFailed:
    """Event: the server refused to refresh the access token (``client.on(TokenRefreshFailed, f)``
    or ``client.events(TokenRefreshFailed)``).

    The current tokens stay in use until the access token expires; then requests fail with
    ``AuthenticationError`` and the user must authorize the application again.

    Attributes:
        error: the :class:`~ctrader_sync.errors.TokenRefreshError` (``error_code``, ``description``).
    """

    error: TokenRefreshError


def refresh_due(expires_in: float, now: float) -> float:
    """When to refresh a token that expires ``expires_in`` seconds after ``now`` (monotonic)."""
    return now + max(0.0, expires_in - min(expires_in * 0.25, 3600.0))


class SessionKeeper:
    """Re-authorization and token refresh for one client's session (see the module docs).

    ``state()`` returns the session's ``SessionState`` (or ``None``); ``send`` is the client's.
    """

    def __init__(self, lock: threading.RLock, state: Callable[[], Any],
                 send: Callable[..., Future[Any]], post: Callable[..., None], post_event: Callable[[object], None],
                 wake: Callable[[], None], policy: Callable[[], ReconnectPolicy | None]) -> None:
        self._lock = lock
        self._state = state
        self._send = send
        self._post = post
        self._post_event = post_event
        self._inflight: set[int] = set()  # accounts whose re-authorization is unanswered; under the lock
        self._wake = wake
        self._policy = policy
        self._due: list[tuple[float, int, int]] = []  # (when, account, attempt); under the lock
        self._refresh_at: float | None = None  # under the lock
        self._refreshing = False  # under the lock
        self.on_token_refreshed: Callable[[Any], Any] | None = None
        """Called with each ``ProtoOARefreshTokenRes`` (on the dispatcher thread)."""

    # -- scheduling (from login, recovery and the supervisor) -------------------------------------

    def reset(self) -> None:
        """A new connection: its recovery authorizes every account; pending retries are moot."""
        with self._lock:
            self._due.clear()
            self._inflight.clear()

    def schedule_refresh(self, expires_in: float | None) -> None:
        """Refresh ahead of expiry (``None``: no automatic refresh)."""
        with self._lock:
            self._refresh_at = None if expires_in is None else refresh_due(float(expires_in), time.monotonic())
        self._wake()

    def tick(self) -> float:
        """Fire what is due (called by the supervisor, outside any lock); return the seconds until
        the next item is due (at most 1)."""
        now = time.monotonic()
        due: list[tuple[float, int, int]] = []
        refresh = False
        with self._lock:
            if self._due and self._due[0][0] <= now:
                due = [d for d in self._due if d[0] <= now]
                self._due = [d for d in self._due if d[0] > now]
            if self._refresh_at is not None and self._refresh_at <= now and not self._refreshing:
                refresh, self._refresh_at = True, None
            nxt = min([d[0] for d in self._due] + ([self._refresh_at] if self._refresh_at is not None else []),
                      default=now + 1.0)
        for _, account, attempt in due:
            self.reauthorize(account, attempt)
        if refresh:
            self.refresh()
        return max(0.0, min(1.0, nxt - now))

    # -- events (reader thread) -----------------------------------------------------------------------

    def lost(self, accounts: list[int], token_invalidated: bool) -> None:
        """Accounts of the session were logged out by the server (after the session marked them)."""
        refresh = False
        now: list[int] = []
        with self._lock:
            session = self._state()
            if session is None:
                return
            for account in accounts:
                if account not in session.accounts:
                    continue
                if token_invalidated and session.tokens.get(account) == session.access_token:
                    # The session's own token is the invalid one: only a refresh can help.
                    if session.refresh_token is not None:
                        refresh = True
                    else:
                        log.error("ctrader_sync: the access token of account %d was invalidated and no refresh "
                                  "token is known; its requests fail until login() is called again", account)
                else:
                    now.append(account)
        for account in now:
            self.reauthorize(account, 1)
        if refresh:
            self.refresh()

    # -- re-authorization -------------------------------------------------------------------------------

    def reauthorize(self, account: int, attempt: int) -> None:
        """Send the account's auth request with the session's token now (its answer: _authorized)."""
        with self._lock:
            session = self._state()
            if (session is None or account not in session.accounts or account in session.authorized
                    or account in self._inflight):
                return
            self._inflight.add(account)
            token = session.access_token
        log.info("ctrader_sync: authorizing account %d again (attempt %d)", account, attempt)
        try:
            future = self._send(ProtoOAAccountAuthReq(ctidTraderAccountId=account, accessToken=token))
        except Exception as exc:  # closed, gave up: nothing to keep alive any more
            with self._lock:
                self._inflight.discard(account)
            log.info("ctrader_sync: account %d not authorized again: %s", account, exc)
            return
        future.add_done_callback(lambda f: self._authorized(account, attempt, f))

    def _authorized(self, account: int, attempt: int, future: Future[Any]) -> None:
        """The answer to a re-authorization (dispatcher thread)."""
        with self._lock:
            self._inflight.discard(account)
        error = None if future.cancelled() else future.exception()
        if isinstance(error, ServerError) and error.error_code == "ALREADY_LOGGED_IN":
            error = None
            with self._lock:
                session = self._state()
                if session is not None:
                    session.authorized.add(account)
        if error is None and not future.cancelled():
            self._resubscribe(account)
            return
        if isinstance(error, ConnectionLostError):
            return  # the next connection's recovery authorizes it
        with self._lock:
            session = self._state()
            has_refresh = session is not None and session.refresh_token is not None
        if isinstance(error, AuthenticationError) and error.error_code in TOKEN_CODES:
            if has_refresh:
                self.refresh()
                return
            log.error("ctrader_sync: account %d cannot be authorized again (%s); its requests fail until "
                      "login() is called again", account, error.error_code)
            return
        policy = self._policy() or ReconnectPolicy()
        if attempt >= MAX_REAUTH_ATTEMPTS or isinstance(error, AuthenticationError):
            log.error("ctrader_sync: account %d could not be authorized again after %d attempt(s) (%s); its "
                      "requests fail until the next connection or login()", account, attempt, error)
            return
        delay = policy.delay(attempt)
        log.warning("ctrader_sync: authorizing account %d again failed (%s); retry in %.2f s", account, error, delay)
        with self._lock:
            self._due.append((time.monotonic() + delay, account, attempt + 1))
            self._due.sort()
        self._wake()

    def _resubscribe(self, account: int) -> None:
        """Restore the subscriptions the account had (dispatcher thread; answers not awaited)."""
        with self._lock:
            session = self._state()
            requests = session.subscriptions({account}) if session is not None else []
        for request in requests:
            try:
                self._send(request).add_done_callback(_log_failure)
            except Exception as exc:
                log.info("ctrader_sync: a subscription of account %d not restored: %s", account, exc)
                return
        log.info("ctrader_sync: account %d authorized again (%d subscription requests)", account, len(requests))

    # -- token refresh ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Refresh the access token with the session's refresh token (answer: ``refreshed``)."""
        with self._lock:
            session = self._state()
            if session is None or session.refresh_token is None or self._refreshing:
                return
            self._refreshing = True
            token = session.refresh_token
        try:
            future = self._send(ProtoOARefreshTokenReq(refreshToken=token))
        except Exception as exc:
            with self._lock:
                self._refreshing = False
            log.info("ctrader_sync: token refresh not sent: %s", exc)
            return
        future.add_done_callback(self._refresh_done)

    def _refresh_done(self, future: Future[Any]) -> None:
        """The answer to an automatic refresh (dispatcher thread); a success was already applied
        by :meth:`refreshed` when the answer was read."""
        with self._lock:
            self._refreshing = False
        error = None if future.cancelled() else future.exception()
        if error is None:
            return
        if isinstance(error, ServerError):
            refused = error if isinstance(error, TokenRefreshError) else as_refresh_error(error)
            log.error("ctrader_sync: the server refused to refresh the access token (%s)", refused.error_code)
            self._post_event(TokenRefreshFailed(refused))
            return
        delay = (self._policy() or ReconnectPolicy()).delay(1)
        log.warning("ctrader_sync: token refresh failed (%s); retry in %.2f s", error, delay)
        with self._lock:
            self._refresh_at = time.monotonic() + delay
        self._wake()

    def refreshed(self, response: Any) -> None:
        """A refresh was answered (on the reader, under the core lock, before any later frame is
        handled): the new pair is the session's from now on; schedule the next refresh; hand the
        pair to ``on_token_refreshed`` (on the dispatcher)."""
        session = self._state()
        if session is None:
            return
        session.access_token = response.accessToken
        if response.refreshToken:
            session.refresh_token = response.refreshToken
        if session.refresh_token is not None and response.expiresIn:
            self._refresh_at = refresh_due(float(response.expiresIn), time.monotonic())
        hook = self.on_token_refreshed
        if hook is not None:
            self._post(hook, response)
        # Accounts left unauthorized by an invalidated token get the new one now.
        for account in sorted(session.accounts - session.authorized):
            self._due.append((0.0, account, 1))
        self._due.sort()
        self._wake()


def as_refresh_error(error: ServerError) -> TokenRefreshError:
    """The :class:`TokenRefreshError` for a server's refusal of a refresh."""
    refused = TokenRefreshError(error.error_code, error.description, retry_after=error.retry_after,
                                response=error.response)
    refused.__cause__ = error
    return refused


def _log_failure(future: Future[Any]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None and not isinstance(error, ConnectionLostError):
        log.warning("ctrader_sync: a subscription could not be restored: %s", error)


def keep_alive(sessions: Any, supervisor: Any, outbox: Any, send: Callable[..., Future[Any]],
               post: Callable[..., None], post_event: Callable[[object], None]) -> SessionKeeper:
    """Build the keeper of a client's session and hand it to the session manager (events, answers,
    recovery) and the supervisor (timers).  Its closures hold the units, never the client (see
    ``_lifecycle``)."""
    keeper = SessionKeeper(outbox.lock, lambda: sessions.state, send, post, post_event, outbox.wake_supervisor,
                           lambda: supervisor.reconnect)
    sessions.keeper = keeper
    supervisor.tick = keeper.tick
    return keeper
