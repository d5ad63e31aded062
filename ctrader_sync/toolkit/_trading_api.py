"""The trading half of :class:`~ctrader_sync.toolkit.Account` (orders, positions, P&L, quotes, depth).

``TradingMixin`` may rely on ``self.client``, ``self.id``, ``self.symbols`` (a
:class:`~ctrader_sync.toolkit.SymbolCatalog`) and ``self._lock``, which ``Account`` provides.
"""

from __future__ import annotations

__all__ = ["TradingMixin"]


class TradingMixin:
    """Trading half of Account (see _trading_api)."""
