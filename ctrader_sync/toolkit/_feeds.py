"""Spot and depth subscriptions shared by the :class:`Quotes` and :class:`DepthBook` of one account.

The server refuses a second subscription to a symbol (``ALREADY_SUBSCRIBED``), and one
unsubscribe ends it for every listener on the connection.  So an account counts the users of each
symbol's feed: the first one subscribes, the last one to leave unsubscribes, and a user that joins
a feed already running starts from what an earlier user has (the server sends the latest quote or
the whole book only right after subscribing).  A symbol subscribed outside the toolkit (the answer
is ``ALREADY_SUBSCRIBED``) is used as it is and never unsubscribed by the toolkit.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ServerError

__all__ = ["Feed"]

_ALREADY = "ALREADY_SUBSCRIBED"


class Feed:
    """The users of one kind of subscription (spots or depth quotes) of one account, by symbol id.

    ``subscribe`` / ``unsubscribe`` are the request classes (``ProtoOASubscribeSpotsReq``...).
    Thread-safe: openings and closings of one feed run one at a time.
    """

    def __init__(self, client: Any, account_id: int, subscribe: Any, unsubscribe: Any) -> None:
        self._client = client
        self.account_id = account_id
        self._subscribe_type = subscribe
        self._unsubscribe_type = unsubscribe
        self._lock = threading.Lock()
        self._users: dict[int, list[Any]] = {}
        self._external: set[int] = set()  # subscribed by someone else: never unsubscribed here

    def users(self, symbol_id: int) -> list[Any]:
        """The current users of ``symbol_id``, earliest first."""
        with self._lock:
            return list(self._users.get(int(symbol_id), []))

    def acquire(self, user: Any, symbol_ids: list[int], timeout: float) -> list[Any]:
        """Add ``user`` to the feeds of ``symbol_ids``, subscribing those nobody uses yet.

        Returns the users that were there before (earliest first), whose state the new user may
        start from.  Raises what the subscription request raises (nothing is then acquired).
        """
        with self._lock:
            fresh = [s for s in symbol_ids if not self._users.get(s)]
            if fresh:
                self._subscribe(fresh, timeout)
            earlier: list[Any] = []
            for symbol_id in symbol_ids:
                users = self._users.setdefault(symbol_id, [])
                earlier.extend(u for u in users if u is not user and all(u is not e for e in earlier))
                if all(u is not user for u in users):
                    users.append(user)
            return earlier

    def release(self, user: Any, symbol_ids: list[int], timeout: float) -> None:
        """Remove ``user``; unsubscribe the symbols it was the last user of (never raises for a
        lost connection or a closed client: there is nothing left to unsubscribe from then)."""
        with self._lock:
            gone = []
            for symbol_id in symbol_ids:
                users = [u for u in self._users.get(symbol_id, []) if u is not user]
                if users:
                    self._users[symbol_id] = users
                    continue
                self._users.pop(symbol_id, None)
                if symbol_id in self._external:
                    self._external.discard(symbol_id)
                else:
                    gone.append(symbol_id)
            if gone:
                try:
                    self._request(self._unsubscribe_type, gone, timeout)
                except Exception:  # a closed client or a lost connection
                    pass

    def _request(self, kind: Any, symbol_ids: list[int], timeout: float) -> None:
        self._client.request(kind(ctidTraderAccountId=self.account_id, symbolId=sorted(symbol_ids)), timeout)

    def _subscribe(self, symbol_ids: list[int], timeout: float) -> None:
        try:
            self._request(self._subscribe_type, symbol_ids, timeout)
            return
        except ServerError as exc:
            if exc.error_code != _ALREADY:
                raise
        # Some are subscribed outside the toolkit: take the symbols one by one.
        done: list[int] = []
        try:
            for symbol_id in symbol_ids:
                try:
                    self._request(self._subscribe_type, [symbol_id], timeout)
                    done.append(symbol_id)
                except ServerError as exc:
                    if exc.error_code != _ALREADY:
                        raise
                    self._external.add(symbol_id)
        except BaseException:
            for symbol_id in symbol_ids:
                self._external.discard(symbol_id)
            if done:
                try:
                    self._request(self._unsubscribe_type, done, timeout)
                except Exception:
                    pass
            raise
