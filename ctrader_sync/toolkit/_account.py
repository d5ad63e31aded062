"""``Account``: one trading account on a logged-in client, the toolkit's entry point.

Get it with ``client.account()``. It holds the account's symbol catalogue and delegates history
downloads to :mod:`._history` and trading to :class:`._trading_api.TradingMixin`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import InvalidRequestError
from ..messages.OpenApiMessages_pb2 import ProtoOAAssetListReq, ProtoOATraderReq
from ..messages.OpenApiModelMessages_pb2 import (
    ProtoOAAccessRights,
    ProtoOAAccountType,
    ProtoOADeal,
    ProtoOADepositWithdraw,
    ProtoOAOrder,
    ProtoOATrader,
)
from ..units import money_from_raw
from ._api import ClientLike
from ._fetch import TimeLike, fetch_list, fetch_ticks, fetch_trendbars
from ._progress import Progress
from ._rows import Bars, Records, Ticks
from ._symbols import SymbolCatalog, SymbolLike
from ._trading_api import TradingMixin

__all__ = ["Account", "Trader", "account_of"]

_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Trader:
    """An account's trader record (``ProtoOATrader``) with money as ``Decimal`` in the deposit currency.

    Fields not copied here are on :attr:`raw` (``trader.raw.swapFree``...); attribute access falls
    through to it, so ``trader.brokerName`` works too.
    """

    account_id: int
    """The ``ctidTraderAccountId``."""
    login: int
    """The trader's login number, as shown in cTrader."""
    balance: Decimal
    """Balance in the deposit currency (``balance / 10**moneyDigits``)."""
    money_digits: int
    """The ``moneyDigits`` every money field of this account is scaled by."""
    deposit_asset_id: int
    """The deposit asset's id (see ``account.symbols.assets`` for its name)."""
    deposit_currency: str
    """The deposit asset's name (``"USD"``...), or ``""`` when the asset list does not have it."""
    leverage: Decimal
    """Leverage, e.g. ``Decimal("100")`` for 1:100 (``leverageInCents / 100``)."""
    manager_bonus: Decimal
    """Manager bonus, in the deposit currency."""
    ib_bonus: Decimal
    """Introducing broker bonus, in the deposit currency."""
    non_withdrawable_bonus: Decimal
    """Non-withdrawable bonus, in the deposit currency."""
    broker: str
    """The broker's name."""
    account_type: str
    """``"HEDGED"``, ``"NETTED"`` or ``"SPREAD_BETTING"``."""
    access_rights: str
    """``"FULL_ACCESS"``, ``"CLOSE_ONLY"``, ``"NO_TRADING"`` or ``"NO_LOGIN"``."""
    raw: ProtoOATrader = field(repr=False, compare=False)
    """The message as received."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "raw":  # "raw" itself missing: a copy being built
            raise AttributeError(name)
        return getattr(self.raw, name)

    @classmethod
    def from_proto(cls, trader: ProtoOATrader, assets: dict[int, str] | None = None) -> Trader:
        """Build from a ``ProtoOATrader`` (``moneyDigits`` 2 when the server leaves it out)."""
        digits = int(trader.moneyDigits) if trader.HasField("moneyDigits") else 2

        def money(name: str) -> Decimal:
            return money_from_raw(int(getattr(trader, name)), digits)

        return cls(
            account_id=int(trader.ctidTraderAccountId), login=int(trader.traderLogin), balance=money("balance"),
            money_digits=digits, deposit_asset_id=int(trader.depositAssetId),
            deposit_currency=(assets or {}).get(int(trader.depositAssetId), ""),
            leverage=Decimal(int(trader.leverageInCents)) / 100, manager_bonus=money("managerBonus"),
            ib_bonus=money("ibBonus"), non_withdrawable_bonus=money("nonWithdrawableBonus"),
            broker=str(trader.brokerName), account_type=ProtoOAAccountType.Name(trader.accountType),
            access_rights=ProtoOAAccessRights.Name(trader.accessRights), raw=trader)


class Account(TradingMixin):
    """One trading account on a logged-in :class:`~ctrader_sync.Client`: ``client.account()``.

    Attributes:
        id: the ``ctidTraderAccountId``.
        client: the client it uses (only through its public API).
    """

    def __init__(self, client: ClientLike, account_id: int, *, timeout: float | None = None) -> None:
        self.client = client
        self.id = int(account_id)
        self.timeout = timeout
        self._lock = threading.RLock()
        self._symbols: SymbolCatalog | None = None

    def __repr__(self) -> str:
        return f"<ctrader_sync Account {self.id}>"

    @property
    def symbols(self) -> SymbolCatalog:
        """The account's :class:`SymbolCatalog` (loaded on first use: ``account.symbols["EURUSD"]``)."""
        catalog = self._symbols
        if catalog is None:
            with self._lock:
                if self._symbols is None:
                    self._symbols = SymbolCatalog(self.client, self.id, self.timeout)
                catalog = self._symbols
        return catalog

    def trader(self, timeout: float | None = None) -> Trader:
        """Ask the server for the account's trader record (balance, leverage, broker...).

        Raises what the request raises (``ServerError``, ``RequestTimeoutError``...).
        """
        wait = timeout if timeout is not None else self.timeout
        trader_f = self.client.send(ProtoOATraderReq(ctidTraderAccountId=self.id), timeout=wait)
        catalog = self._symbols
        assets_f = None if catalog is not None else self.client.send(
            ProtoOAAssetListReq(ctidTraderAccountId=self.id), timeout=wait)
        limit = None if wait is None else wait + 5.0
        trader = trader_f.result(limit).trader
        if assets_f is not None:
            assets = {int(a.assetId): str(a.name) for a in assets_f.result(limit).asset}
        else:
            assert catalog is not None
            assets = catalog.assets
        return Trader.from_proto(trader, assets)

    # -- history --------------------------------------------------------------------------------

    def trendbars(self, symbol: SymbolLike, period: str | int, start: TimeLike, end: TimeLike | None = None, *,
                  progress: Progress = None, on_bad: str = "drop", timeout: float | None = None) -> Bars:
        """Every bar of ``symbol`` whose open time is in ``[start, end)``, ascending, each once.

        Args:
            symbol: a name (any case), an id or a :class:`SymbolInfo`.
            period: a ``ProtoOATrendbarPeriod`` name (``"M1"``, ``"H1"``, ``"D1"``...) or value.
            start, end: aware datetimes, naive ones (taken as UTC), dates, epoch milliseconds or
                ISO 8601 texts; ``end`` defaults to now.
            progress: a callable ``(done, total)`` in requests, ``True`` for a bar on stderr,
                ``False`` for none; by default a bar when stderr is a terminal and it takes > 2 s.
            on_bad: a bar breaking high >= max(open, close) >= min(open, close) >= low is
                ``"drop"``-ped (default) or ``"keep"``-t, with a :class:`BadBarWarning` either way
                and listed in ``Bars.bad``; or ``"raise"`` :class:`BadBarError`.
            timeout: each request's response timeout (default: the client's).

        The range is split into windows the server accepts, each drained through ``hasMore``,
        with as many requests queued as the historical budget (5/s) allows: it takes about
        ``requests / 5`` seconds (``bars.requests``, ``bars.seconds``).

        Raises:
            UnknownSymbolError: no such symbol. ValueError: a bad period, range or option.
            ServerError, RequestTimeoutError, ConnectionLostError: a request failed.
        """
        info = self.symbols.resolve(symbol)
        return fetch_trendbars(self.client, self.id, info, period, start, end, progress=progress, on_bad=on_bad,
                               timeout=self._wait(timeout))

    def ticks(self, symbol: SymbolLike, start: TimeLike, end: TimeLike | None = None, side: str = "bid", *,
              progress: Progress = None, timeout: float | None = None) -> Ticks:
        """Every tick of ``symbol`` in ``[start, end)``, ascending: :class:`Tick` rows ``(time, bid, ask)``.

        ``side`` is ``"bid"``, ``"ask"`` or ``"both"`` (both downloaded and merged by time: each row
        holds the latest bid and ask at its time). Other arguments as for :meth:`trendbars`;
        windows are one week wide.
        """
        info = self.symbols.resolve(symbol)
        return fetch_ticks(self.client, self.id, info, start, end, side, progress=progress,
                           timeout=self._wait(timeout))

    def deals(self, start: TimeLike, end: TimeLike | None = None, *, progress: Progress = None,
              timeout: float | None = None) -> Records[ProtoOADeal]:
        """The account's deals executed in ``[start, end]`` (``ProtoOADeal``), ascending, each once."""
        return fetch_list(self.client, self.id, "deals", start, end, progress=progress, timeout=self._wait(timeout))

    def order_history(self, start: TimeLike, end: TimeLike | None = None, *, progress: Progress = None,
                      timeout: float | None = None) -> Records[ProtoOAOrder]:
        """The account's orders of ``[start, end]`` (``ProtoOAOrder``, ``ProtoOAOrderListReq``), ascending."""
        return fetch_list(self.client, self.id, "orders", start, end, progress=progress, timeout=self._wait(timeout))

    def cash_flow(self, start: TimeLike, end: TimeLike | None = None, *, progress: Progress = None,
                  timeout: float | None = None) -> Records[ProtoOADepositWithdraw]:
        """Deposits and withdrawals of ``[start, end]`` (``ProtoOADepositWithdraw``), ascending, in
        one-week windows (the server's limit)."""
        return fetch_list(self.client, self.id, "cash_flow", start, end, progress=progress,
                          timeout=self._wait(timeout))

    def _wait(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.timeout


def account_of(client: ClientLike, account_id: int | None = None) -> Account:
    """``client.account(ctidTraderAccountId)``: the :class:`Account` of one trading account.

    With no id, the only account authorized through ``client.login``. Repeated calls return the
    same object (kept on the client), so symbols are loaded once per account.

    Raises:
        ValueError: no id given and several accounts are authorized (the text lists them).
        InvalidRequestError: no id given and no account is authorized (log in first).
        TypeError: the id is not an int.
    """
    if account_id is None:
        authorized = client.authorized_accounts
        if len(authorized) > 1:
            raise ValueError(f"several accounts are authorized ({', '.join(map(str, authorized))}): "
                             f"pass one, e.g. client.account({authorized[0]})")
        if not authorized:
            raise InvalidRequestError("no account is authorized on this client: call client.login(...) first, "
                                      "or pass the ctidTraderAccountId")
        account_id = authorized[0]
    if isinstance(account_id, bool) or not isinstance(account_id, int):
        raise TypeError(f"ctidTraderAccountId must be an int, not {type(account_id).__name__}")
    with _CACHE_LOCK:
        accounts: dict[int, Account] = vars(client).setdefault("_toolkit_accounts", {})
        account = accounts.get(account_id)
        if account is None:
            account = accounts[account_id] = Account(client, account_id)
        return account
