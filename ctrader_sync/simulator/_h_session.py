"""Request handlers: the session (version, application and account authorization, tokens, profile)."""

from __future__ import annotations

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiCommonMessages_pb2 import ProtoErrorRes
from ..messages.OpenApiModelMessages_pb2 import SCOPE_TRADE, ProtoOACtidProfile, ProtoOACtidTraderAccount
from ..protobuf import WITHDRAWN_PAYLOAD_TYPES, Protobuf
from ._accounts import Account
from ._preamble import Peer, Table, handles, needs_account, needs_app

__all__ = ["TABLE"]

TABLE: Table = {}


@handles(TABLE, M.ProtoOAVersionReq)
def version(peer: Peer, msg: M.ProtoOAVersionReq, cid: str | None) -> None:
    """``ProtoOAVersionReq`` (no authentication needed)."""
    peer.respond(M.ProtoOAVersionRes(version=peer.world.version), cid)


@handles(TABLE, M.ProtoOAApplicationAuthReq)
def application_auth(peer: Peer, msg: M.ProtoOAApplicationAuthReq, cid: str | None) -> None:
    """``ProtoOAApplicationAuthReq``: once per connection, with the right id and secret."""
    creds = peer.world.credentials
    if peer.app_authorized:
        peer.error(cid, "CH_CLIENT_ALREADY_AUTHENTICATED", "the application is already authenticated")
    elif msg.clientId != creds.client_id or msg.clientSecret != creds.client_secret:
        peer.error(cid, "CH_CLIENT_AUTH_FAILURE", "wrong client id or secret")
    else:
        peer.app_authorized = True
        peer.record.app_authorized = True
        peer.respond(M.ProtoOAApplicationAuthRes(), cid)


@handles(TABLE, M.ProtoOAGetAccountListByAccessTokenReq)
@needs_app
def account_list(peer: Peer, msg: M.ProtoOAGetAccountListByAccessTokenReq, cid: str | None) -> None:
    """``ProtoOAGetAccountListByAccessTokenReq``."""
    if not peer.world.credentials.token_valid(msg.accessToken):
        peer.error(cid, "CH_ACCESS_TOKEN_INVALID", "the access token is not valid")
        return
    res = M.ProtoOAGetAccountListByAccessTokenRes(accessToken=msg.accessToken, permissionScope=SCOPE_TRADE)
    for account in peer.world.accounts.values():
        res.ctidTraderAccount.append(ProtoOACtidTraderAccount(
            ctidTraderAccountId=account.account_id, isLive=account.is_live,
            traderLogin=account.trader_login, brokerTitleShort="SIM"))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAGetCtidProfileByTokenReq)
@needs_app
def ctid_profile(peer: Peer, msg: M.ProtoOAGetCtidProfileByTokenReq, cid: str | None) -> None:
    """``ProtoOAGetCtidProfileByTokenReq``: the simulated user's id."""
    if not peer.world.credentials.token_valid(msg.accessToken):
        peer.error(cid, "CH_ACCESS_TOKEN_INVALID", "the access token is not valid")
        return
    peer.respond(M.ProtoOAGetCtidProfileByTokenRes(profile=ProtoOACtidProfile(userId=peer.world.user_id)), cid)


@handles(TABLE, M.ProtoOAAccountAuthReq)
@needs_app
def account_auth(peer: Peer, msg: M.ProtoOAAccountAuthReq, cid: str | None) -> None:
    """``ProtoOAAccountAuthReq``: authorize one account on this connection."""
    account_id = int(msg.ctidTraderAccountId)
    if not peer.world.credentials.token_valid(msg.accessToken):
        peer.error(cid, "CH_ACCESS_TOKEN_INVALID", "the access token is not valid", account_id)
    elif account_id not in peer.world.accounts:
        peer.error(cid, "CH_CTID_TRADER_ACCOUNT_NOT_FOUND", f"no account {account_id}", account_id)
    elif account_id in peer.authorized:
        peer.error(cid, "ALREADY_LOGGED_IN", f"account {account_id} is already authorized", account_id)
    else:
        with peer.world.exchange.lock:
            peer.authorized.add(account_id)
        peer.record.note_account(account_id, True)
        peer.respond(M.ProtoOAAccountAuthRes(ctidTraderAccountId=account_id), cid)


@handles(TABLE, M.ProtoOAAccountLogoutReq)
@needs_account
def account_logout(peer: Peer, account: Account, msg: M.ProtoOAAccountLogoutReq, cid: str | None) -> None:
    """``ProtoOAAccountLogoutReq``: answered, then the account is logged out on this connection."""
    peer.logout(account.account_id)
    peer.respond(M.ProtoOAAccountLogoutRes(ctidTraderAccountId=account.account_id), cid)


@handles(TABLE, M.ProtoOARefreshTokenReq)
@needs_app
def refresh_token(peer: Peer, msg: M.ProtoOARefreshTokenReq, cid: str | None) -> None:
    """``ProtoOARefreshTokenReq``: issue a new access token, accepted from then on."""
    tokens = peer.world.credentials.refresh(msg.refreshToken)
    if tokens is None:
        peer.error(cid, "CH_ACCESS_TOKEN_INVALID", "the refresh token is not valid")
        return
    access, refresh = tokens
    peer.respond(M.ProtoOARefreshTokenRes(accessToken=access, tokenType="bearer", expiresIn=2_628_000,
                                          refreshToken=refresh), cid)
    # As the real server does: the old access token is invalid now, so the accounts this connection
    # had authorized are logged out, with an event saying why (after the answer).
    accounts = sorted(peer.authorized)
    if accounts:
        peer.respond(M.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=accounts,
                                                            reason="Access token was refreshed"), None)
        for account_id in accounts:
            peer.logout(account_id)


def _withdrawn(peer: Peer, msg: object, cid: str | None) -> None:
    """A withdrawn v1 PnL request: ``UNSUPPORTED_MESSAGE``, pointing to the documented way."""
    peer.respond(ProtoErrorRes(errorCode="UNSUPPORTED_MESSAGE", description=(
        f"{type(msg).__name__} was withdrawn upstream after release 91; "
        "use ProtoOAGetPositionUnrealizedPnLReq")), cid)


for _pt in sorted(WITHDRAWN_PAYLOAD_TYPES):
    if Protobuf.get_class(_pt).__name__.endswith("Req"):
        TABLE[_pt] = _withdrawn
