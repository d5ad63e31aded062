"""The session: what ``login()`` established, kept so that a new connection can restore it.

After a reconnect the server has forgotten everything (application auth, account auth and every
subscription).  ``SessionState`` remembers what :meth:`Client.login` established and what the user
subscribed to since, and lists the requests that rebuild it, in order.  ``SessionManager`` runs
login, token refresh and recovery with the client's send functions (handed to it when it is
built) and applies what inbound routing reports.  The state holds secrets, so its ``repr`` masks
them; nothing here logs a secret.

Lock: the session state is read and written only under the client's core lock (see ``_outbox``);
no request is sent or awaited while holding it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from ._keepalive import SessionKeeper, as_refresh_error
from ._pending import RequestFuture
from .errors import AuthenticationError, InvalidRequestError, ServerError
from .messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAAccountDisconnectEvent,
    ProtoOAAccountLogoutReq,
    ProtoOAAccountsTokenInvalidatedEvent,
    ProtoOAApplicationAuthReq,
    ProtoOAGetAccountListByAccessTokenReq,
    ProtoOARefreshTokenReq,
    ProtoOARefreshTokenRes,
    ProtoOASubscribeDepthQuotesReq,
    ProtoOASubscribeLiveTrendbarReq,
    ProtoOASubscribeSpotsReq,
    ProtoOAUnsubscribeDepthQuotesReq,
    ProtoOAUnsubscribeLiveTrendbarReq,
    ProtoOAUnsubscribeSpotsReq,
)
from .messages.OpenApiModelMessages_pb2 import ProtoOACtidTraderAccount
from .protobuf import TYPE_OF

__all__ = ["SESSION_EVENTS", "SESSION_TYPES", "SessionManager", "SessionState"]

log = logging.getLogger("ctrader_sync")

SUBSCRIBE_SPOTS, UNSUBSCRIBE_SPOTS = TYPE_OF[ProtoOASubscribeSpotsReq], TYPE_OF[ProtoOAUnsubscribeSpotsReq]
SUBSCRIBE_TRENDBAR = TYPE_OF[ProtoOASubscribeLiveTrendbarReq]
UNSUBSCRIBE_TRENDBAR = TYPE_OF[ProtoOAUnsubscribeLiveTrendbarReq]
SUBSCRIBE_DEPTH, UNSUBSCRIBE_DEPTH = TYPE_OF[ProtoOASubscribeDepthQuotesReq], TYPE_OF[ProtoOAUnsubscribeDepthQuotesReq]
ACCOUNT_AUTH, ACCOUNT_LOGOUT = TYPE_OF[ProtoOAAccountAuthReq], TYPE_OF[ProtoOAAccountLogoutReq]
TOKEN_INVALIDATED = TYPE_OF[ProtoOAAccountsTokenInvalidatedEvent]
ACCOUNT_DISCONNECT = TYPE_OF[ProtoOAAccountDisconnectEvent]

SESSION_EVENTS = frozenset({TOKEN_INVALIDATED, ACCOUNT_DISCONNECT})
"""Server events that take accounts out of the session's authorized set."""

REFRESH_TOKEN = TYPE_OF[ProtoOARefreshTokenReq]

SESSION_TYPES = frozenset({SUBSCRIBE_SPOTS, UNSUBSCRIBE_SPOTS, SUBSCRIBE_TRENDBAR, UNSUBSCRIBE_TRENDBAR,
                           SUBSCRIBE_DEPTH, UNSUBSCRIBE_DEPTH, ACCOUNT_AUTH, ACCOUNT_LOGOUT, REFRESH_TOKEN})
"""Requests whose success changes what must be recovered (the client keeps their message)."""


@dataclass
class SessionState:
    """What a reconnect must restore. Mutated only under the client's lock."""

    client_id: str
    client_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    accounts: set[int] = field(default_factory=set)
    """Accounts to authorize on every new connection."""
    authorized: set[int] = field(default_factory=set)
    """Accounts authorized on the current connection."""
    spots: dict[int, dict[int, bool]] = field(default_factory=dict)
    """account -> symbol -> subscribeToSpotTimestamp."""
    trendbars: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    """account -> {(symbolId, period)}."""
    depth: dict[int, set[int]] = field(default_factory=dict)
    """account -> symbol ids."""
    refresh_token: str | None = field(default=None, repr=False)
    """The refresh token of ``access_token``, when ``login()`` was given one (automatic refresh)."""
    tokens: dict[int, str] = field(default_factory=dict, repr=False)
    """account -> the access token it was last authorized with."""

    def __repr__(self) -> str:
        return (f"SessionState(client_id={self.client_id!r}, client_secret='***', access_token='***', "
                f"accounts={sorted(self.accounts)}, authorized={sorted(self.authorized)})")

    def answered(self, payload_type: int, request: Any) -> None:
        """Record the effect of a request the server accepted."""
        account = int(getattr(request, "ctidTraderAccountId", 0))
        if payload_type == SUBSCRIBE_SPOTS:
            symbols = self.spots.setdefault(account, {})
            for sid in request.symbolId:
                symbols[int(sid)] = bool(request.subscribeToSpotTimestamp)
        elif payload_type == UNSUBSCRIBE_SPOTS:
            symbols = self.spots.get(account, {})
            for sid in request.symbolId:
                symbols.pop(int(sid), None)
                # The server drops live trendbars with the spot subscription.
                self.trendbars[account] = {t for t in self.trendbars.get(account, set()) if t[0] != sid}
        elif payload_type == SUBSCRIBE_TRENDBAR:
            self.trendbars.setdefault(account, set()).add((int(request.symbolId), int(request.period)))
        elif payload_type == UNSUBSCRIBE_TRENDBAR:
            self.trendbars.get(account, set()).discard((int(request.symbolId), int(request.period)))
        elif payload_type == SUBSCRIBE_DEPTH:
            self.depth.setdefault(account, set()).update(int(s) for s in request.symbolId)
        elif payload_type == UNSUBSCRIBE_DEPTH:
            self.depth.get(account, set()).difference_update(int(s) for s in request.symbolId)
        elif payload_type == ACCOUNT_AUTH:
            self.accounts.add(account)
            self.authorized.add(account)
            self.tokens[account] = request.accessToken
        elif payload_type == ACCOUNT_LOGOUT:
            self.forget(account)

    def forget(self, account: int) -> None:
        """The account is logged out or its token is invalid: stop recovering it."""
        self.accounts.discard(account)
        self.authorized.discard(account)
        self.spots.pop(account, None)
        self.trendbars.pop(account, None)
        self.depth.pop(account, None)
        self.tokens.pop(account, None)

    def event(self, payload_type: int, message: Any) -> list[int]:
        """Apply a server event; return the accounts it made unauthorized."""
        if payload_type == TOKEN_INVALIDATED:
            lost = [int(a) for a in message.ctidTraderAccountIds]
        elif payload_type == ACCOUNT_DISCONNECT:
            lost = [int(message.ctidTraderAccountId)]
        else:
            return []
        for account in lost:
            self.authorized.discard(account)
        return lost

    def app_auth(self) -> Message:
        """The application auth request."""
        return ProtoOAApplicationAuthReq(clientId=self.client_id, clientSecret=self.client_secret)

    def account_auths(self) -> list[Message]:
        """Account auth requests for every account to recover."""
        return [ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=self.access_token)
                for a in sorted(self.accounts)]

    def subscriptions(self, accounts: set[int]) -> list[Message]:
        """Requests that restore the subscriptions of ``accounts`` (spots before trendbars)."""
        out: list[Message] = []
        for account in sorted(accounts):
            by_flag: dict[bool, list[int]] = {}
            for sid, flag in sorted(self.spots.get(account, {}).items()):
                by_flag.setdefault(flag, []).append(sid)
            for flag, sids in sorted(by_flag.items()):
                req = ProtoOASubscribeSpotsReq(ctidTraderAccountId=account, symbolId=sids)
                if flag:
                    req.subscribeToSpotTimestamp = True
                out.append(req)
            for sid, period in sorted(self.trendbars.get(account, set())):
                out.append(ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=account, symbolId=sid,
                                                           period=period))  # type: ignore[arg-type]
            if self.depth.get(account):
                out.append(ProtoOASubscribeDepthQuotesReq(ctidTraderAccountId=account,
                                                          symbolId=sorted(self.depth[account])))
        return out


class SessionManager:
    """Login, token refresh and session recovery for one client.

    ``request(message, timeout)`` and ``send(message, timeout=...)`` are the client's public ones;
    ``send_priority(message)`` queues a session request ahead of ordinary ones (for recovery).
    """

    def __init__(self, lock: threading.RLock, request: Callable[..., Any], send: Callable[..., RequestFuture],
                 send_priority: Callable[[Message], RequestFuture], response_timeout: float) -> None:
        self._lock = lock
        self._request = request
        self._send = send
        self._send_priority = send_priority
        self._response_timeout = response_timeout
        self.state: SessionState | None = None
        """The session to recover; ``None`` before :meth:`login` (or once recovery was refused)."""
        self.keeper: SessionKeeper | None = None
        """Keeps the session authorized on a live connection (set by the client)."""

    @property
    def authorized_accounts(self) -> list[int]:
        """Accounts authorized on the current connection (sorted)."""
        session = self.state
        return sorted(session.authorized) if session is not None else []

    # -- reported by inbound routing (answered: under the core lock) ------------------------------

    def answered(self, payload_type: int, request: Any, response: Any = None) -> None:
        """The server accepted a session-changing request (called under the core lock)."""
        if self.state is not None:
            if payload_type == REFRESH_TOKEN:
                if self.keeper is not None:
                    self.keeper.refreshed(response)
                else:
                    self.state.access_token = response.accessToken
                return
            self.state.answered(payload_type, request)

    def events(self, frames: list[Any]) -> None:
        """Apply received session events (token invalidated, account disconnected)."""
        if self.state is None:
            return
        changes = []
        with self._lock:
            session = self.state
            for pt, _, message in frames:
                if pt in SESSION_EVENTS and session is not None:
                    lost = session.event(pt, message)
                    log.warning("ctrader_sync: accounts %s are no longer authorized (%s)", lost,
                                type(message).__name__)
                    changes.append((lost, pt == TOKEN_INVALIDATED))
        if self.keeper is not None:
            for lost, invalidated in changes:  # authorize them again on this connection
                self.keeper.lost(lost, invalidated)

    # -- user calls ---------------------------------------------------------------------------------

    def login(self, clientId: str, clientSecret: str, accessToken: str, accounts: list[int] | None,
              timeout: float, refresh_token: str | None = None, expires_in: float | None = None,
              on_token_refreshed: Callable[[ProtoOARefreshTokenRes], Any] | None = None,
              ) -> list[ProtoOACtidTraderAccount]:
        """See :meth:`Client.login`."""
        if expires_in is not None and not (0 < float(expires_in) < float("inf")):
            raise ValueError(f"expires_in must be a positive number of seconds, not {expires_in!r}")
        if expires_in is not None and refresh_token is None:
            raise ValueError("expires_in needs refresh_token (without one the token cannot be refreshed)")
        try:
            self._request(ProtoOAApplicationAuthReq(clientId=clientId, clientSecret=clientSecret), timeout)
        except AuthenticationError as exc:
            if exc.error_code != "CH_CLIENT_ALREADY_AUTHENTICATED":
                raise
        listing = self._request(ProtoOAGetAccountListByAccessTokenReq(accessToken=accessToken), timeout)
        available = {int(a.ctidTraderAccountId): a for a in listing.ctidTraderAccount}
        chosen = list(available) if accounts is None else [int(a) for a in accounts]
        unknown = [a for a in chosen if a not in available]
        if unknown:
            raise InvalidRequestError(f"accounts {unknown} are not granted by this access token "
                                      f"(granted: {sorted(available)})")
        session = SessionState(clientId, clientSecret, accessToken, refresh_token=refresh_token)
        with self._lock:
            if self.state is not None and self.state.client_id == clientId:
                # Keep subscriptions recorded so far (a second login on the same client).
                session.spots, session.trendbars, session.depth = (
                    self.state.spots, self.state.trendbars, self.state.depth)
            self.state = session
        futures = [self._send(ProtoOAAccountAuthReq(ctidTraderAccountId=a, accessToken=accessToken),
                              timeout=timeout) for a in chosen]
        for account, future in zip(chosen, futures, strict=True):
            try:
                future.result(timeout + 1.0)
            except AuthenticationError as exc:
                if exc.error_code != "ALREADY_LOGGED_IN":
                    raise
                with self._lock:
                    session.accounts.add(account)
                    session.authorized.add(account)
                    session.tokens[account] = accessToken
        if self.keeper is not None:
            self.keeper.on_token_refreshed = on_token_refreshed
            self.keeper.schedule_refresh(expires_in)
        return [available[a] for a in chosen]

    def refresh_access_token(self, refreshToken: str, timeout: float) -> ProtoOARefreshTokenRes:
        """See :meth:`Client.refresh_access_token`."""
        try:
            response: ProtoOARefreshTokenRes = self._request(ProtoOARefreshTokenReq(refreshToken=refreshToken),
                                                             timeout)
        except ServerError as exc:
            raise as_refresh_error(exc) from exc
        return response

    # -- recovery (on the supervisor thread) ----------------------------------------------------------

    def recover(self, number: int) -> None:
        """Restore the session on new connection ``number`` before ordinary requests are written.

        Runs on the supervisor thread; its requests go through ``send_priority``, which passes the
        gate.  Without :meth:`login` there is nothing to restore.
        """
        if self.keeper is not None:
            self.keeper.reset()
        with self._lock:
            session = self.state
            if session is None:
                return
            session.authorized.clear()
            app_auth, account_auths = session.app_auth(), session.account_auths()
        wait = self._response_timeout + 1.0
        try:
            self._send_priority(app_auth).result(wait)
        except AuthenticationError as exc:
            # Credentials the server refuses will not work on the next connection either: stop
            # recovering (instead of reconnecting forever) and let requests fail with clear errors.
            log.error("ctrader_sync: application auth refused on reconnect (%s); session recovery is "
                      "off until login() is called again", exc.error_code)
            with self._lock:
                if self.state is session:
                    self.state = None
            return
        futures = [(int(getattr(req, "ctidTraderAccountId", 0)), self._send_priority(req)) for req in account_auths]
        for account, future in futures:
            try:
                future.result(wait)
            except ServerError as exc:
                if exc.error_code == "ALREADY_LOGGED_IN":
                    continue
                log.warning("ctrader_sync: account %d could not be re-authorized (%s); it is dropped "
                            "from the session", account, exc.error_code)
                with self._lock:
                    session.forget(account)
        with self._lock:
            subscriptions = session.subscriptions(set(session.authorized))
        for future in [self._send_priority(req) for req in subscriptions]:
            try:
                future.result(wait)
            except ServerError as exc:
                log.warning("ctrader_sync: a subscription could not be restored: %s", exc)
        log.info("ctrader_sync: session recovered on connection %d (%d accounts, %d subscription requests)",
                 number, len(session.authorized), len(subscriptions))
