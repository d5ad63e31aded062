"""The simulated market: symbols, assets, seeded spot walks and deterministic history.

All prices are integers in 1/100000 of the quote unit, as on the wire.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = [
    "ASSETS",
    "PERIOD_MINUTES",
    "SYMBOLS",
    "Asset",
    "SpotWalk",
    "SymbolInfo",
    "history_price",
    "history_volume",
]


@dataclass(frozen=True)
class Asset:
    """An asset (currency or commodity) of the simulated broker."""

    asset_id: int
    name: str
    digits: int


@dataclass(frozen=True)
class SymbolInfo:
    """A tradable symbol of the simulated broker.

    ``base_price`` and ``spread`` are in 1/100000 of the quote unit; volumes in 1/100 of a unit.
    """

    symbol_id: int
    name: str
    digits: int
    pip_position: int
    base_asset_id: int
    quote_asset_id: int
    base_price: int
    spread: int
    min_volume: int = 100_000
    max_volume: int = 10_000_000_000
    step_volume: int = 100_000

    @property
    def point(self) -> int:
        """One unit of the last displayed digit, in 1/100000."""
        return 10 ** (5 - self.digits) if self.digits <= 5 else 1


ASSETS: tuple[Asset, ...] = (
    Asset(1, "USD", 2),
    Asset(2, "EUR", 2),
    Asset(3, "GBP", 2),
    Asset(4, "JPY", 0),
    Asset(5, "XAU", 2),
)
"""The asset table (``ProtoOAAssetListRes``)."""

SYMBOLS: tuple[SymbolInfo, ...] = (
    SymbolInfo(1, "EURUSD", 5, 4, 2, 1, 108_500, 10),
    SymbolInfo(2, "GBPUSD", 5, 4, 3, 1, 127_000, 15),
    SymbolInfo(3, "USDJPY", 3, 2, 1, 4, 15_150_000, 1_000),
    SymbolInfo(4, "EURGBP", 5, 4, 2, 3, 85_400, 12),
    SymbolInfo(41, "XAUUSD", 2, 1, 5, 1, 235_000_000, 30_000, min_volume=100, step_volume=100),
)
"""The symbol table (ids, names, digits, base prices)."""

PERIOD_MINUTES: dict[int, int] = {
    1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 10, 7: 15, 8: 30, 9: 60, 10: 240, 11: 720, 12: 1440,
    13: 10080, 14: 43200,
}
"""``ProtoOATrendbarPeriod`` value -> minutes (MN1 taken as 30 days)."""

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """A 64-bit integer hash (splitmix64 finaliser): the same input always gives the same output."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _noise(seed: int, symbol_id: int, key: int) -> float:
    """Deterministic noise in [-1, 1) for (seed, symbol, key)."""
    h = _mix(_mix(_mix(seed & _MASK) ^ symbol_id) ^ (key & _MASK))
    return (h >> 11) / float(1 << 52) - 1.0


def history_price(seed: int, symbol: SymbolInfo, t_ms: int) -> int:
    """The deterministic historical bid of ``symbol`` at ``t_ms`` (Unix ms), in 1/100000.

    The same (seed, symbol, time) always gives the same price, so history is consistent between
    requests and pages.
    """
    minutes = t_ms / 60_000.0
    phase = _noise(seed, symbol.symbol_id, -1) * math.pi
    base = symbol.base_price
    slow = 0.004 * math.sin(minutes / 1440.0 + phase)
    mid = 0.001 * math.sin(minutes / 37.0 + 2 * phase)
    jitter = 0.0002 * _noise(seed, symbol.symbol_id, t_ms // 1000)
    price = int(base * (1.0 + slow + mid + jitter))
    point = symbol.point
    return max(point, price - price % point)


def history_volume(seed: int, symbol_id: int, t_ms: int) -> int:
    """A deterministic positive tick volume for a bar starting at ``t_ms``."""
    return 50 + int((_noise(seed, symbol_id, t_ms // 60_000 + 7) + 1.0) * 500)


class SpotWalk:
    """A seeded random walk of one symbol's quotes: the same seed gives the same sequence.

    Each call of :meth:`step` moves the bid by a few points and returns ``(bid, ask)``.
    """

    __slots__ = ("_rng", "bid", "symbol")

    def __init__(self, seed: int, symbol: SymbolInfo) -> None:
        self.symbol = symbol
        self._rng = random.Random(seed * 1_000_003 + symbol.symbol_id)
        self.bid = symbol.base_price

    def step(self) -> tuple[int, int]:
        """Advance one tick; return the new ``(bid, ask)``."""
        point = self.symbol.point
        self.bid = max(point, self.bid + self._rng.randint(-3, 3) * point)
        return self.bid, self.bid + self.symbol.spread
