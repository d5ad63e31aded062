"""The simulated broker's reference data and trading hours: assets, symbols, periods, FX week.

All prices are integers in 1/100000 of the quote unit, as on the wire; times are Unix ms.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ASSETS",
    "ASSET_CLASSES",
    "DAY_MS",
    "FX_OPEN_MS",
    "PERIOD_MINUTES",
    "SYMBOLS",
    "SYMBOL_CATEGORIES",
    "WEEK_MS",
    "WEEK_ORIGIN_MS",
    "Asset",
    "SymbolInfo",
    "fx_open",
    "next_fx_open",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WEEK_ORIGIN_MS = 3 * DAY_MS + 22 * HOUR_MS
"""Sunday 1970-01-04 22:00 UTC: the FX week opens on Sundays at 22:00 UTC."""
FX_OPEN_MS = 5 * DAY_MS
"""The FX week is open for five days: Sunday 22:00 to Friday 22:00 UTC."""


@dataclass(frozen=True)
class Asset:
    """An asset (currency or commodity) of the simulated broker."""

    asset_id: int
    name: str
    digits: int


@dataclass(frozen=True)
class SymbolInfo:
    """A tradable symbol of the simulated broker.

    ``base_price`` and ``spread`` are in 1/100000 of the quote unit; volumes in 1/100 of a unit;
    ``lot_size`` in 1/100 of a unit (10,000,000: a lot of 100,000 units).
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
    lot_size: int = 10_000_000
    category_id: int = 1

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

ASSET_CLASSES: tuple[tuple[int, str], ...] = ((1, "Forex"), (2, "Metals"))
"""``ProtoOAAssetClassListRes``: (id, name)."""

SYMBOL_CATEGORIES: tuple[tuple[int, int, str], ...] = ((1, 1, "Majors"), (2, 2, "Spot metals"))
"""``ProtoOASymbolCategoryListRes``: (id, asset class id, name)."""

SYMBOLS: tuple[SymbolInfo, ...] = (
    SymbolInfo(1, "EURUSD", 5, 4, 2, 1, 108_500, 10),
    SymbolInfo(2, "GBPUSD", 5, 4, 3, 1, 127_000, 15),
    SymbolInfo(3, "USDJPY", 3, 2, 1, 4, 15_150_000, 1_000),
    SymbolInfo(4, "EURGBP", 5, 4, 2, 3, 85_400, 12),
    SymbolInfo(41, "XAUUSD", 2, 1, 5, 1, 235_000_000, 30_000, min_volume=100, step_volume=100,
               lot_size=10_000, category_id=2),
)
"""The symbol table (ids, names, digits, base prices)."""

PERIOD_MINUTES: dict[int, int] = {
    1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 10, 7: 15, 8: 30, 9: 60, 10: 240, 11: 720, 12: 1440,
    13: 10080, 14: 43200,
}
"""``ProtoOATrendbarPeriod`` value -> minutes (MN1: calendar months; 43200 is only nominal)."""


def fx_open(t_ms: int) -> bool:
    """True when ``t_ms`` is inside FX trading hours (Sunday 22:00 to Friday 22:00 UTC)."""
    return (t_ms - WEEK_ORIGIN_MS) % WEEK_MS < FX_OPEN_MS


def next_fx_open(t_ms: int) -> int:
    """``t_ms`` if the FX market is open then, else the next Sunday 22:00 UTC."""
    offset = (t_ms - WEEK_ORIGIN_MS) % WEEK_MS
    return t_ms if offset < FX_OPEN_MS else t_ms + WEEK_MS - offset
