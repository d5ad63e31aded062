"""What request handlers see of a connection (:class:`Peer`) and the checks every handler starts with.

A handler is ``handler(peer, message, clientMsgId)``.  The preamble that every account request
repeats (application authenticated? account authorized on this connection?) is written once, in
:func:`needs_app` and :func:`needs_account`; :func:`handles` registers a handler in a table keyed by
payload type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from ..messages import OpenApiMessages_pb2 as M
from ..protobuf import TYPE_OF
from ._accounts import Account
from ._market import SymbolInfo
from ._options import World
from ._recording import ConnectionRecord
from ._trading import Refusal

__all__ = ["Handler", "Peer", "Table", "handles", "needs_account", "needs_app", "symbol_or_error"]

Handler = Callable[["Peer", Any, "str | None"], None]
Table = dict[int, Handler]
F = TypeVar("F", bound=Callable[..., None])


class Peer(Protocol):
    """One connection's protocol state, as handlers use it."""

    world: World
    record: ConnectionRecord
    app_authorized: bool
    authorized: set[int]

    def respond(self, message: Message, client_msg_id: str | None) -> None:
        """Queue ``message`` as (part of) the answer to the request being handled."""

    def error(self, cid: str | None, code: str, description: str, account_id: int | None = None) -> None:
        """Answer ``ProtoOAErrorRes``."""

    def refuse(self, cid: str | None, account_id: int, refusal: Refusal) -> None:
        """Answer ``ProtoOAOrderErrorEvent`` for a refused trading request."""

    def execute(self, cid: str | None, account_id: int, events: list[Message]) -> None:
        """Answer a trading request with its events and push them to the account's other connections."""

    def logout(self, account_id: int) -> None:
        """Forget ``account_id`` on this connection, with its subscriptions."""

    def holds(self, account_id: int) -> bool:
        """True if ``account_id`` is authorized on this connection."""

    def deliver(self, messages: list[Message], done: threading.Event | None) -> None:
        """Push ``messages`` on the connection's thread."""

    def start_flood(self) -> bool:
        """Benchmark mode: start a spot-event flood; False when not in benchmark mode."""

    def keep_reading(self) -> None:
        """Called now and then by a long handler: the connection takes in what arrived meanwhile
        (not handled yet), so later requests keep their own arrival times."""


def handles(table: Table, cls: type[Message]) -> Callable[[F], F]:
    """Register the decorated handler for ``cls``'s payload type in ``table``."""
    def register(fn: F) -> F:
        table[TYPE_OF[cls]] = fn
        return fn
    return register


def needs_app(fn: Callable[[Peer, Any, str | None], None]) -> Handler:
    """Answer CH_CLIENT_NOT_AUTHENTICATED unless the application is authenticated."""
    def wrapper(peer: Peer, msg: Any, cid: str | None) -> None:
        if not peer.app_authorized:
            peer.error(cid, "CH_CLIENT_NOT_AUTHENTICATED", "the application is not authenticated")
            return
        fn(peer, msg, cid)
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def needs_account(fn: Callable[[Peer, Account, Any, str | None], None]) -> Handler:
    """The account preamble: application authenticated and ``ctidTraderAccountId`` authorized here.

    The handler gets the :class:`Account` as its second argument.
    """
    def wrapper(peer: Peer, msg: Any, cid: str | None) -> None:
        if not peer.app_authorized:
            peer.error(cid, "CH_CLIENT_NOT_AUTHENTICATED", "the application is not authenticated")
            return
        account_id = int(msg.ctidTraderAccountId)
        if account_id not in peer.authorized:
            peer.error(cid, "ACCOUNT_NOT_AUTHORIZED", f"account {account_id} is not authorized on this connection",
                       account_id)
            return
        fn(peer, peer.world.accounts[account_id], msg, cid)
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def symbol_or_error(peer: Peer, account: Account, msg: Any, cid: str | None) -> SymbolInfo | None:
    """The symbol ``msg.symbolId`` names, or None after answering SYMBOL_NOT_FOUND."""
    symbol = peer.world.exchange.symbols.get(int(msg.symbolId))
    if symbol is None:
        peer.error(cid, "SYMBOL_NOT_FOUND", f"no symbol {msg.symbolId}", account.account_id)
    return symbol


def error_res(code: str, description: str, account_id: int | None = None) -> M.ProtoOAErrorRes:
    """A ``ProtoOAErrorRes``."""
    err = M.ProtoOAErrorRes(errorCode=code, description=description)
    if account_id is not None:
        err.ctidTraderAccountId = account_id
    return err
