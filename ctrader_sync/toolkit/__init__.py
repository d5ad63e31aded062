"""The trader's toolkit: an account, its symbols by name, history over any range, trading.

Built only on the public :class:`~ctrader_sync.Client` API. Start from a logged-in client::

    account = client.account()                 # the only authorized account
    eurusd = account.symbols["EURUSD"]         # by name, any case
    bars = account.trendbars("EURUSD", "H1", datetime(2024, 1, 1))
    frame = bars.to_pandas()                   # needs the ``ctrader-sync[pandas]`` extra
"""

from __future__ import annotations

from ._account import Account, Trader
from ._symbols import SymbolCatalog, SymbolInfo, SymbolLike

__all__ = [
    "Account",
    "SymbolCatalog",
    "SymbolInfo",
    "SymbolLike",
    "Trader",
]

# -- trading half (tk2) -------------------------------------------------------------------------
