"""Request handlers: reference data (trader, symbols, assets, classes, categories, conversion, leverage)."""

from __future__ import annotations

from ..messages import OpenApiMessages_pb2 as M
from ..messages.OpenApiModelMessages_pb2 import (
    ProtoOAAsset,
    ProtoOAAssetClass,
    ProtoOADynamicLeverage,
    ProtoOADynamicLeverageTier,
    ProtoOAInterval,
    ProtoOALightSymbol,
    ProtoOASymbol,
    ProtoOASymbolCategory,
)
from ._accounts import Account, trader_proto
from ._market import ASSET_CLASSES, ASSETS, SYMBOL_CATEGORIES, SymbolInfo
from ._preamble import Peer, Table, handles, needs_account

__all__ = ["LEVERAGE_ID", "TABLE"]

TABLE: Table = {}

LEVERAGE_ID = 1
"""The one dynamic leverage profile of the simulated broker (``ProtoOASymbol.leverageId``)."""


def light(s: SymbolInfo, sorting: float) -> ProtoOALightSymbol:
    """The ``ProtoOALightSymbol`` of ``s``."""
    return ProtoOALightSymbol(symbolId=s.symbol_id, symbolName=s.name, enabled=True, baseAssetId=s.base_asset_id,
                              quoteAssetId=s.quote_asset_id, symbolCategoryId=s.category_id, description=s.name,
                              sortingNumber=sorting)


@handles(TABLE, M.ProtoOATraderReq)
@needs_account
def trader(peer: Peer, account: Account, msg: M.ProtoOATraderReq, cid: str | None) -> None:
    """``ProtoOATraderReq``: balance, currency, leverage (money in the account's ``moneyDigits``)."""
    with peer.world.exchange.lock:
        res = M.ProtoOATraderRes(ctidTraderAccountId=account.account_id, trader=trader_proto(account))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOASymbolsListReq)
@needs_account
def symbols_list(peer: Peer, account: Account, msg: M.ProtoOASymbolsListReq, cid: str | None) -> None:
    """``ProtoOASymbolsListReq`` (no archived symbols)."""
    res = M.ProtoOASymbolsListRes(ctidTraderAccountId=account.account_id)
    res.symbol.extend(light(s, float(i)) for i, s in enumerate(peer.world.symbols))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOASymbolByIdReq)
@needs_account
def symbol_by_id(peer: Peer, account: Account, msg: M.ProtoOASymbolByIdReq, cid: str | None) -> None:
    """``ProtoOASymbolByIdReq``: full details of the known ids (SYMBOL_NOT_FOUND if none is)."""
    by_id = peer.world.exchange.symbols
    found = [by_id[int(i)] for i in msg.symbolId if int(i) in by_id]
    if not found:
        peer.error(cid, "SYMBOL_NOT_FOUND", f"no symbol among {list(msg.symbolId)}", account.account_id)
        return
    model = peer.world.exchange.money.model
    res = M.ProtoOASymbolByIdRes(ctidTraderAccountId=account.account_id)
    for s in found:
        res.symbol.append(ProtoOASymbol(
            symbolId=s.symbol_id, digits=s.digits, pipPosition=s.pip_position, enableShortSelling=True,
            minVolume=s.min_volume, maxVolume=s.max_volume, stepVolume=s.step_volume, lotSize=s.lot_size,
            measurementUnits="", swapLong=model.swap_long_per_lot, swapShort=model.swap_short_per_lot,
            leverageId=LEVERAGE_ID, scheduleTimeZone="UTC",
            schedule=[ProtoOAInterval(startSecond=(22 * 3600 + d * 86400), endSecond=(22 * 3600 + (d + 1) * 86400))
                      for d in range(5)]))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAAssetListReq)
@needs_account
def asset_list(peer: Peer, account: Account, msg: M.ProtoOAAssetListReq, cid: str | None) -> None:
    """``ProtoOAAssetListReq``."""
    res = M.ProtoOAAssetListRes(ctidTraderAccountId=account.account_id)
    res.asset.extend(ProtoOAAsset(assetId=a.asset_id, name=a.name, displayName=a.name, digits=a.digits)
                     for a in ASSETS)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAAssetClassListReq)
@needs_account
def asset_class_list(peer: Peer, account: Account, msg: M.ProtoOAAssetClassListReq, cid: str | None) -> None:
    """``ProtoOAAssetClassListReq``."""
    res = M.ProtoOAAssetClassListRes(ctidTraderAccountId=account.account_id)
    res.assetClass.extend(ProtoOAAssetClass(id=i, name=n, sortingNumber=float(i)) for i, n in ASSET_CLASSES)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOASymbolCategoryListReq)
@needs_account
def symbol_category_list(peer: Peer, account: Account, msg: M.ProtoOASymbolCategoryListReq,
                         cid: str | None) -> None:
    """``ProtoOASymbolCategoryListReq``."""
    res = M.ProtoOASymbolCategoryListRes(ctidTraderAccountId=account.account_id)
    res.symbolCategory.extend(ProtoOASymbolCategory(id=i, assetClassId=c, name=n, sortingNumber=float(i))
                              for i, c, n in SYMBOL_CATEGORIES)
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOASymbolsForConversionReq)
@needs_account
def symbols_for_conversion(peer: Peer, account: Account, msg: M.ProtoOASymbolsForConversionReq,
                           cid: str | None) -> None:
    """``ProtoOASymbolsForConversionReq``: the chain of symbols from ``firstAssetId`` to ``lastAssetId``."""
    chain = peer.world.exchange.money.chain(int(msg.firstAssetId), int(msg.lastAssetId))
    if chain is None:
        peer.error(cid, "SYMBOL_NOT_FOUND", f"no conversion from asset {msg.firstAssetId} to {msg.lastAssetId}",
                   account.account_id)
        return
    res = M.ProtoOASymbolsForConversionRes(ctidTraderAccountId=account.account_id)
    res.symbol.extend(light(s, float(i)) for i, s in enumerate(chain))
    peer.respond(res, cid)


@handles(TABLE, M.ProtoOAGetDynamicLeverageByIDReq)
@needs_account
def dynamic_leverage(peer: Peer, account: Account, msg: M.ProtoOAGetDynamicLeverageByIDReq,
                     cid: str | None) -> None:
    """``ProtoOAGetDynamicLeverageByIDReq``: one profile, the account's leverage up to 10 million units."""
    if int(msg.leverageId) != LEVERAGE_ID:
        peer.error(cid, "INCORRECT_BOUNDARIES", f"no leverage profile {msg.leverageId}", account.account_id)
        return
    lev = account.leverage_in_cents // 100
    res = M.ProtoOAGetDynamicLeverageByIDRes(ctidTraderAccountId=account.account_id, leverage=ProtoOADynamicLeverage(
        leverageId=LEVERAGE_ID, tiers=[ProtoOADynamicLeverageTier(volume=1_000_000_000, leverage=lev * 100),
                                       ProtoOADynamicLeverageTier(volume=10_000_000_000, leverage=lev * 50)]))
    peer.respond(res, cid)
