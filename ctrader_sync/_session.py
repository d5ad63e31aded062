"""Session state kept for recovery: credentials, authorized accounts, active subscriptions.

After a reconnect the server has forgotten everything (application auth, account auth and every
subscription).  ``SessionState`` remembers what :meth:`Client.login` established and what the user
subscribed to since, and lists the requests that rebuild it, in order.  It holds secrets, so its
``repr`` masks them; nothing here logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from .messages.OpenApiMessages_pb2 import (
    ProtoOAAccountAuthReq,
    ProtoOAApplicationAuthReq,
    ProtoOASubscribeDepthQuotesReq,
    ProtoOASubscribeLiveTrendbarReq,
    ProtoOASubscribeSpotsReq,
)

__all__ = ["SESSION_TYPES", "SessionState"]

SUBSCRIBE_SPOTS, UNSUBSCRIBE_SPOTS = 2127, 2129
SUBSCRIBE_TRENDBAR, UNSUBSCRIBE_TRENDBAR = 2135, 2136
SUBSCRIBE_DEPTH, UNSUBSCRIBE_DEPTH = 2156, 2158
ACCOUNT_AUTH, ACCOUNT_LOGOUT = 2102, 2162
TOKEN_INVALIDATED, ACCOUNT_DISCONNECT = 2147, 2164

SESSION_TYPES = frozenset({SUBSCRIBE_SPOTS, UNSUBSCRIBE_SPOTS, SUBSCRIBE_TRENDBAR, UNSUBSCRIBE_TRENDBAR,
                           SUBSCRIBE_DEPTH, UNSUBSCRIBE_DEPTH, ACCOUNT_AUTH, ACCOUNT_LOGOUT})
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
        elif payload_type == ACCOUNT_LOGOUT:
            self.forget(account)

    def forget(self, account: int) -> None:
        """The account is logged out or its token is invalid: stop recovering it."""
        self.accounts.discard(account)
        self.authorized.discard(account)
        self.spots.pop(account, None)
        self.trendbars.pop(account, None)
        self.depth.pop(account, None)

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
