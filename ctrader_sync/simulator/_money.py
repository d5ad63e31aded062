"""Money: conversion between assets, profit and loss, commission, swap and margin.

Everything a balance sees is an integer scaled by the account's ``moneyDigits``.  Simulator
choices (the real broker's are its own): conversion goes through the shortest chain of symbols
between two assets at each symbol's current **bid**; commission is a fixed amount per lot and per
side in the account's currency, charged to the balance when the position closes (both sides);
swap is a fixed amount per lot and per night (each 22:00 UTC rollover from Monday to Friday, no
triple-swap day), also charged at close.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..messages.OpenApiModelMessages_pb2 import BUY, ProtoOATradeSide
from ._market import DAY_MS, SymbolInfo

__all__ = ["Money", "MoneyModel"]

_ROLLOVER_OFFSET = 22 * 3_600_000


@dataclass(frozen=True)
class MoneyModel:
    """The simulator's commission and swap model, in the account's currency per lot (100,000 units
    for currencies; the symbol's ``lot_size``)."""

    commission_per_lot: float = 3.0
    """Charged per side (opening and closing) per lot."""
    swap_long_per_lot: float = -0.5
    """Per night per lot for BUY positions (negative: charged)."""
    swap_short_per_lot: float = -0.3
    """Per night per lot for SELL positions."""


class Money:
    """Money arithmetic on top of the current quotes (``quote(symbol_id) -> (bid, ask)``)."""

    def __init__(self, symbols: Sequence[SymbolInfo], quote: Callable[[int], tuple[int, int]],
                 model: MoneyModel) -> None:
        self.symbols = tuple(symbols)
        self.model = model
        self._quote = quote

    def chain(self, from_asset: int, to_asset: int) -> list[SymbolInfo] | None:
        """The shortest chain of symbols converting ``from_asset`` into ``to_asset`` ([] if equal)."""
        if from_asset == to_asset:
            return []
        seen = {from_asset: list[SymbolInfo]()}
        queue = deque([from_asset])
        while queue:
            asset = queue.popleft()
            for s in self.symbols:
                for a, b in ((s.base_asset_id, s.quote_asset_id), (s.quote_asset_id, s.base_asset_id)):
                    if a == asset and b not in seen:
                        seen[b] = seen[asset] + [s]
                        if b == to_asset:
                            return seen[b]
                        queue.append(b)
        return None

    def rate(self, from_asset: int, to_asset: int) -> float:
        """How much of ``to_asset`` one unit of ``from_asset`` is worth now (bids along the chain)."""
        chain = self.chain(from_asset, to_asset)
        if chain is None:
            raise LookupError(f"no conversion from asset {from_asset} to {to_asset}")
        value, asset = 1.0, from_asset
        for s in chain:
            bid = self._quote(s.symbol_id)[0] / 100_000.0
            if asset == s.base_asset_id:
                value, asset = value * bid, s.quote_asset_id
            else:
                value, asset = value / bid, s.base_asset_id
        return value

    @staticmethod
    def scale(amount: float, digits: int) -> int:
        """``amount`` in money units of ``digits`` decimals, rounded half away from zero."""
        scaled = amount * 10 ** digits
        return int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)

    def gross_profit(self, symbol: SymbolInfo, side: ProtoOATradeSide.ValueType, volume: int, entry: float,
                     exit_: float, deposit_asset: int, digits: int) -> int:
        """Profit of ``volume`` (cents of units) from ``entry`` to ``exit_``, in the deposit currency."""
        direction = 1 if side == BUY else -1
        in_quote = (exit_ - entry) * direction * volume / 100
        return self.scale(in_quote * self.rate(symbol.quote_asset_id, deposit_asset), digits)

    def commission(self, symbol: SymbolInfo, volume: int, digits: int) -> int:
        """One side's commission for ``volume`` (negative money units)."""
        return -self.scale(self.model.commission_per_lot * volume / symbol.lot_size, digits)

    def swap(self, symbol: SymbolInfo, side: ProtoOATradeSide.ValueType, volume: int, open_ms: int,
             now_ms: int, digits: int) -> int:
        """Swap accrued from ``open_ms`` to ``now_ms`` (negative: charged)."""
        per_lot = self.model.swap_long_per_lot if side == BUY else self.model.swap_short_per_lot
        return self.scale(per_lot * volume / symbol.lot_size * rollovers(open_ms, now_ms), digits)

    def margin(self, symbol: SymbolInfo, volume: int, deposit_asset: int, leverage_in_cents: int,
               digits: int) -> int:
        """Margin that ``volume`` uses at the given leverage, in the deposit currency."""
        notional = volume / 100 * self.rate(symbol.base_asset_id, deposit_asset)
        return self.scale(notional * 100 / leverage_in_cents, digits)


def rollovers(start_ms: int, end_ms: int) -> int:
    """How many 22:00 UTC rollovers of Monday to Friday lie in ``(start_ms, end_ms]``."""
    count = 0
    first = (start_ms - _ROLLOVER_OFFSET) // DAY_MS + 1
    last = (end_ms - _ROLLOVER_OFFSET) // DAY_MS
    for day in range(first, last + 1):
        if (day + 3) % 7 < 5:  # day 0 (1970-01-01) was a Thursday: Monday = 0 .. Friday = 4
            count += 1
    return count
