"""The trader's toolkit: an account, its symbols by name, history over any range, trading.

Built only on the public :class:`~ctrader_sync.Client` API. Start from a logged-in client::

    account = client.account()                 # the only authorized account
    eurusd = account.symbols["EURUSD"]         # by name, any case
    bars = account.trendbars("EURUSD", "H1", datetime(2024, 1, 1))
    frame = bars.to_pandas()                   # needs the ``ctrader-sync[pandas]`` extra
"""

from __future__ import annotations

from ._account import Account, Trader, account_of
from ._history import BadBarError, BadBarWarning
from ._progress import TextBar
from ._rows import Bar, Bars, Records, Tick, Ticks
from ._symbols import SymbolCatalog, SymbolInfo, SymbolLike

__all__ = [
    "Account",
    "BadBarError",
    "BadBarWarning",
    "Bar",
    "Bars",
    "Records",
    "SymbolCatalog",
    "SymbolInfo",
    "SymbolLike",
    "TextBar",
    "Tick",
    "Ticks",
    "Trader",
    "account_of",
]

# -- trading half (tk2) -------------------------------------------------------------------------

from ._changes import Change, ChangeHandle, ChangeStream
from ._depth import DepthBook
from ._pnl import PnLRefresher
from ._quotes import Quote, Quotes
from ._refusals import OrderArgumentError, UnknownOrderSymbolError
from ._trade_types import ClosedPosition, Fill, Order, PnL, Position
from ._trading_api import KEEP

__all__ += [
    "KEEP",
    "Change",
    "ChangeHandle",
    "ChangeStream",
    "ClosedPosition",
    "DepthBook",
    "Fill",
    "Order",
    "OrderArgumentError",
    "PnL",
    "PnLRefresher",
    "Position",
    "Quote",
    "Quotes",
    "UnknownOrderSymbolError",
]
