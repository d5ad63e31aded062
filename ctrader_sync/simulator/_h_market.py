"""Request handlers: market data subscriptions (spots, live trendbars, depth quotes)."""

from __future__ import annotations

from ..messages import OpenApiMessages_pb2 as M
from ._accounts import Account
from ._market import PERIOD_MINUTES
from ._preamble import Peer, Table, handles, needs_account

__all__ = ["TABLE"]

TABLE: Table = {}


@handles(TABLE, M.ProtoOASubscribeSpotsReq)
@needs_account
def subscribe_spots(peer: Peer, account: Account, msg: M.ProtoOASubscribeSpotsReq, cid: str | None) -> None:
    """``ProtoOASubscribeSpotsReq``: answer, then the latest quote at once, then every move."""
    ex = peer.world.exchange
    aid = account.account_id
    ids = [int(i) for i in msg.symbolId]
    with ex.lock:
        subs = ex.spots(peer)
        for symbol_id in ids:
            if symbol_id not in ex.symbols:
                peer.error(cid, "SYMBOL_NOT_FOUND", f"no symbol {symbol_id}", aid)
                return
            if (aid, symbol_id) in subs:
                peer.error(cid, "ALREADY_SUBSCRIBED", f"already subscribed to spots of {symbol_id}", aid)
                return
        peer.respond(M.ProtoOASubscribeSpotsRes(ctidTraderAccountId=aid), cid)
        if peer.start_flood():
            return
        for symbol_id in ids:
            subs.add((aid, symbol_id))
            peer.record.note_subscription(symbol_id, True)
            peer.respond(ex.spot_event(peer, aid, symbol_id), None)  # the latest quote at once, as the server does


@handles(TABLE, M.ProtoOAUnsubscribeSpotsReq)
@needs_account
def unsubscribe_spots(peer: Peer, account: Account, msg: M.ProtoOAUnsubscribeSpotsReq, cid: str | None) -> None:
    """``ProtoOAUnsubscribeSpotsReq`` (also ends the symbols' live trendbars)."""
    ex = peer.world.exchange
    aid = account.account_id
    with ex.lock:
        subs = ex.spots(peer)
        for symbol_id in msg.symbolId:
            if (aid, int(symbol_id)) not in subs:
                peer.error(cid, "NOT_SUBSCRIBED_TO_SPOTS", f"not subscribed to spots of {symbol_id}", aid)
                return
        for symbol_id in msg.symbolId:
            drop_spot(peer, aid, int(symbol_id))
    peer.respond(M.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=aid), cid)


def drop_spot(peer: Peer, account_id: int, symbol_id: int) -> None:
    """End ``account_id``'s spot subscription to ``symbol_id`` on ``peer`` (hold the exchange lock)."""
    ex = peer.world.exchange
    ex.spots(peer).discard((account_id, symbol_id))
    bars = ex.trendbars(peer)
    for key in [k for k in bars if k[0] == account_id and k[1] == symbol_id]:
        bars.discard(key)
    if not any(s == symbol_id for _, s in ex.spots(peer)):
        peer.record.note_subscription(symbol_id, False)


@handles(TABLE, M.ProtoOASubscribeLiveTrendbarReq)
@needs_account
def subscribe_live_trendbar(peer: Peer, account: Account, msg: M.ProtoOASubscribeLiveTrendbarReq,
                            cid: str | None) -> None:
    """``ProtoOASubscribeLiveTrendbarReq``: needs a spot subscription to the symbol."""
    ex = peer.world.exchange
    aid = account.account_id
    symbol_id, period = int(msg.symbolId), int(msg.period)
    with ex.lock:
        if symbol_id not in ex.symbols:
            peer.error(cid, "SYMBOL_NOT_FOUND", f"no symbol {symbol_id}", aid)
        elif period not in PERIOD_MINUTES:
            peer.error(cid, "INCORRECT_BOUNDARIES", f"unknown period {period}", aid)
        elif (aid, symbol_id) not in ex.spots(peer):
            peer.error(cid, "NOT_SUBSCRIBED_TO_SPOTS", "subscribe to spots of the symbol first", aid)
        elif (aid, symbol_id, period) in ex.trendbars(peer):
            peer.error(cid, "ALREADY_SUBSCRIBED", "already subscribed to this trendbar", aid)
        else:
            ex.watch_bars(symbol_id, period)
            ex.trendbars(peer).add((aid, symbol_id, period))
            peer.respond(M.ProtoOASubscribeLiveTrendbarRes(ctidTraderAccountId=aid), cid)


@handles(TABLE, M.ProtoOAUnsubscribeLiveTrendbarReq)
@needs_account
def unsubscribe_live_trendbar(peer: Peer, account: Account, msg: M.ProtoOAUnsubscribeLiveTrendbarReq,
                              cid: str | None) -> None:
    """``ProtoOAUnsubscribeLiveTrendbarReq``."""
    ex = peer.world.exchange
    key = (account.account_id, int(msg.symbolId), int(msg.period))
    with ex.lock:
        if key not in ex.trendbars(peer):
            peer.error(cid, "NOT_SUBSCRIBED_TO_SPOTS", "not subscribed to this trendbar", account.account_id)
            return
        ex.trendbars(peer).discard(key)
    peer.respond(M.ProtoOAUnsubscribeLiveTrendbarRes(ctidTraderAccountId=account.account_id), cid)


@handles(TABLE, M.ProtoOASubscribeDepthQuotesReq)
@needs_account
def subscribe_depth(peer: Peer, account: Account, msg: M.ProtoOASubscribeDepthQuotesReq, cid: str | None) -> None:
    """``ProtoOASubscribeDepthQuotesReq``: answer, then the whole book as new quotes, then changes."""
    ex = peer.world.exchange
    aid = account.account_id
    with ex.lock:
        ids = [int(i) for i in msg.symbolId]
        for symbol_id in ids:
            if symbol_id not in ex.symbols:
                peer.error(cid, "SYMBOL_NOT_FOUND", f"no symbol {symbol_id}", aid)
                return
            if (aid, symbol_id) in ex.depth(peer):
                peer.error(cid, "ALREADY_SUBSCRIBED", f"already subscribed to depth of {symbol_id}", aid)
                return
        peer.respond(M.ProtoOASubscribeDepthQuotesRes(ctidTraderAccountId=aid), cid)
        for symbol_id in ids:
            ex.depth(peer).add((aid, symbol_id))
            peer.respond(M.ProtoOADepthEvent(ctidTraderAccountId=aid, symbolId=symbol_id,
                                             newQuotes=ex.depth_snapshot(symbol_id)), None)


@handles(TABLE, M.ProtoOAUnsubscribeDepthQuotesReq)
@needs_account
def unsubscribe_depth(peer: Peer, account: Account, msg: M.ProtoOAUnsubscribeDepthQuotesReq,
                      cid: str | None) -> None:
    """``ProtoOAUnsubscribeDepthQuotesReq``."""
    ex = peer.world.exchange
    aid = account.account_id
    with ex.lock:
        keys = [(aid, int(i)) for i in msg.symbolId]
        if any(k not in ex.depth(peer) for k in keys):
            peer.error(cid, "NOT_SUBSCRIBED_TO_SPOTS", "not subscribed to depth quotes of these symbols", aid)
            return
        for k in keys:
            ex.depth(peer).discard(k)
    peer.respond(M.ProtoOAUnsubscribeDepthQuotesRes(ctidTraderAccountId=aid), cid)
