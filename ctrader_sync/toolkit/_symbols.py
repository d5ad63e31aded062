"""Symbols by name: :class:`SymbolInfo` (one symbol's trading facts) and :class:`SymbolCatalog`.

Symbol ids differ between brokers, so programs look symbols up by name. The catalogue loads an
account's symbols on first use with as few requests as possible (the light symbol list and the asset
list at once, then the details of every symbol by id in a few large batches) and keeps itself
current when the server says a symbol changed (``ProtoOASymbolChangedEvent``).
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ..errors import InvalidRequestError, UnknownSymbolError
from ..messages.OpenApiMessages_pb2 import (
    ProtoOAAssetListReq,
    ProtoOASymbolByIdReq,
    ProtoOASymbolChangedEvent,
    ProtoOASymbolsListReq,
)
from ..messages.OpenApiModelMessages_pb2 import ProtoOALightSymbol, ProtoOASymbol
from ..units import PRICE_SCALE, Number, _to_decimal, volume_from_raw, volume_to_raw
from ..units import lots_to_volume as _lots_to_volume
from ..units import volume_to_lots as _volume_to_lots
from ._api import ClientLike

__all__ = ["DETAILS_BATCH", "SymbolCatalog", "SymbolInfo", "SymbolLike"]

log = logging.getLogger("ctrader_sync")

DETAILS_BATCH = 1000
"""Symbol ids asked for in one ``ProtoOASymbolByIdReq`` (a broker has a few hundred to a few thousand)."""

_RAW_PRICE = 10**PRICE_SCALE


@dataclass(frozen=True)
class SymbolInfo:
    """One symbol of an account, with the conversions orders and prices need.

    Volumes are in **units** (``Decimal``; 1 lot of EURUSD is usually 100 000 units); the protocol's
    volumes are in cents of a unit, which :meth:`lots_to_volume` and :meth:`units_to_volume` produce.
    Prices on the wire are integers in 1/100000; :meth:`price` turns one into a float.
    """

    id: int
    """The broker's ``symbolId``."""
    name: str
    """The symbol's name, e.g. ``"EURUSD"``."""
    description: str
    """The broker's description (may be empty)."""
    digits: int
    """Decimals shown in prices."""
    pip_position: int
    """A pip is ``10 ** -pip_position`` (4 for EURUSD: 0.0001)."""
    lot_size: Decimal
    """Units in one lot."""
    min_volume: Decimal
    """Smallest order volume, in units."""
    max_volume: Decimal
    """Largest order volume, in units."""
    step_volume: Decimal
    """Order volumes are a whole number of steps, in units."""
    base_asset: str
    """The base asset's name (``"EUR"`` for EURUSD), or ``""`` when unknown."""
    quote_asset: str
    """The quote asset's name (``"USD"`` for EURUSD), or ``""`` when unknown."""

    # Not dataclass fields (the fields are exactly the eleven above): set by the catalogue.

    @property
    def enabled(self) -> bool:
        """Whether the broker lists the symbol as enabled (``True`` when it does not say)."""
        return bool(self.__dict__.get("_enabled", True))

    @property
    def details(self) -> ProtoOASymbol | None:
        """The server's full ``ProtoOASymbol`` (schedule, swaps, commissions...), when loaded."""
        details: ProtoOASymbol | None = self.__dict__.get("_details")
        return details

    def _attach(self, enabled: bool, details: ProtoOASymbol | None) -> SymbolInfo:
        object.__setattr__(self, "_enabled", enabled)
        object.__setattr__(self, "_details", details)
        return self

    @property
    def lot_size_cents(self) -> int:
        """The lot size as the protocol sends it (cents of a unit)."""
        return volume_to_raw(self.lot_size)

    def lots_to_volume(self, lots: Number) -> int:
        """Lots -> the protocol's volume in cents of a unit (``0.01`` lot of EURUSD -> ``100000``).

        Raises:
            ValueError: negative lots, or lots that make no whole number of cents.
        """
        return _lots_to_volume(lots, self.lot_size_cents)

    def volume_to_lots(self, volume: int) -> Decimal:
        """The protocol's volume in cents -> lots (``100000`` -> ``Decimal("0.01")`` for EURUSD)."""
        return _volume_to_lots(volume, self.lot_size_cents)

    def units_to_volume(self, units: Number) -> int:
        """Units -> the protocol's volume in cents (``1000`` -> ``100000``)."""
        return volume_to_raw(units)

    def volume_to_units(self, volume: int) -> Decimal:
        """The protocol's volume in cents -> units (``100000`` -> ``Decimal("1000")``)."""
        return volume_from_raw(volume)

    def normalize_volume(self, units: Number) -> Decimal:
        """Round a volume in units down to a whole number of steps and check it against the limits.

        Returns the volume in units (``Decimal``); ``units_to_volume`` of it is what an order takes.

        Raises:
            InvalidRequestError: the rounded volume is below ``min_volume`` or the volume is above
                ``max_volume`` (the text gives the limits), or it is not a positive number.
        """
        value = _to_decimal(units, "volume")
        if value <= 0:
            raise InvalidRequestError(f"{self.name}: volume must be positive, got {value} units")
        if value > self.max_volume:
            raise InvalidRequestError(
                f"{self.name}: {value} units is above the maximum of {self.max_volume} units "
                f"(min {self.min_volume}, step {self.step_volume})")
        step = self.step_volume
        rounded = (value // step) * step if step > 0 else value
        if rounded < self.min_volume:
            raise InvalidRequestError(
                f"{self.name}: {value} units is below the minimum of {self.min_volume} units "
                f"(step {step}, max {self.max_volume})")
        return rounded

    def price(self, raw: int) -> float:
        """A raw price (integer in 1/100000) -> a float rounded to the symbol's digits."""
        return float(round(int(raw) / _RAW_PRICE, self.digits))

    def raw_price(self, price: float | Decimal) -> int:
        """A price -> the raw integer in 1/100000 (rounded to the nearest)."""
        value = Decimal(repr(price) if isinstance(price, float) else price) * _RAW_PRICE
        return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))

    @property
    def pip(self) -> float:
        """The size of one pip as a price (``0.0001`` for EURUSD)."""
        return 10.0 ** -self.pip_position

    def pips_to_raw(self, pips: float | Decimal | int) -> int:
        """A distance in pips -> raw price units (1/100000): EURUSD ``10`` pips -> ``100``.

        This is what the relative stop-loss / take-profit fields of market orders take. Fractions
        of a pip are kept (rounded to the nearest raw unit).
        """
        value = Decimal(repr(pips)) if isinstance(pips, float) else Decimal(pips)
        if not value.is_finite():
            raise ValueError(f"pips must be finite, got {pips!r}")
        return int((value * 10 ** (PRICE_SCALE - self.pip_position)).to_integral_value(rounding=ROUND_HALF_EVEN))

    def raw_to_pips(self, raw: int) -> float:
        """Raw price units (1/100000) -> pips (inverse of :meth:`pips_to_raw`)."""
        return int(raw) / float(10 ** (PRICE_SCALE - self.pip_position))


SymbolLike = str | int | SymbolInfo
"""What every toolkit method takes as a symbol: a name (any case), a ``symbolId`` or a :class:`SymbolInfo`."""


def _units(proto: Any, name: str, default: int) -> Decimal:
    return volume_from_raw(getattr(proto, name) if proto.HasField(name) else default)


def _build(light: ProtoOALightSymbol, proto: ProtoOASymbol, assets: dict[int, str]) -> SymbolInfo:
    lot = _units(proto, "lotSize", 0)
    step = _units(proto, "stepVolume", 1)
    return SymbolInfo(
        id=int(light.symbolId), name=str(light.symbolName), description=str(light.description),
        digits=int(proto.digits), pip_position=int(proto.pipPosition), lot_size=lot,
        min_volume=_units(proto, "minVolume", 1), max_volume=_units(proto, "maxVolume", 2**62),
        step_volume=step, base_asset=assets.get(int(light.baseAssetId), ""),
        quote_asset=assets.get(int(light.quoteAssetId), ""),
    )._attach(bool(light.enabled) if light.HasField("enabled") else True, proto)


class SymbolCatalog:
    """The symbols of one account, by name (case-insensitive) or id.

    ``catalog["EURUSD"]``, ``catalog["eurusd"]``, ``catalog[1]`` and ``catalog[info]`` give the
    :class:`SymbolInfo`; an unknown name raises :class:`~ctrader_sync.UnknownSymbolError` (a
    ``KeyError``) naming close matches. ``search("eur")`` finds by part of a name or description;
    iteration and ``len`` cover every symbol. Loaded on first use; kept current on
    ``ProtoOASymbolChangedEvent``. Thread-safe.
    """

    def __init__(self, client: ClientLike, account_id: int, timeout: float | None = None) -> None:
        self._client = client
        self._account_id = int(account_id)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._by_id: dict[int, SymbolInfo] = {}
        self._by_name: dict[str, SymbolInfo] = {}
        self._assets: dict[int, str] = {}
        self._loaded = False
        self._handle: Any = None

    def __repr__(self) -> str:
        state = f"{len(self._by_id)} symbols" if self._loaded else "not loaded"
        return f"<SymbolCatalog account={self._account_id} {state}>"

    # -- loading ------------------------------------------------------------------------------

    def _ensure(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()

    def refresh(self) -> None:
        """Load every symbol again from the server (2 + one per 1000 symbols requests)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        account = self._account_id
        if self._handle is None:
            self._handle = self._client.on(ProtoOASymbolChangedEvent, self._on_changed)
        symbols_f = self._client.send(ProtoOASymbolsListReq(ctidTraderAccountId=account), timeout=self._timeout)
        assets_f = self._client.send(ProtoOAAssetListReq(ctidTraderAccountId=account), timeout=self._timeout)
        wait = None if self._timeout is None else self._timeout + 5.0
        lights = {int(s.symbolId): s for s in symbols_f.result(wait).symbol}
        details = self._details(list(lights), wait)
        self._assets = {int(a.assetId): str(a.name) for a in assets_f.result(wait).asset}
        by_id = {i: _build(lights[i], details[i], self._assets) for i in lights if i in details}
        self._by_id = by_id
        self._by_name = self._names(by_id.values())
        self._loaded = True
        log.debug("ctrader_sync: %d symbols loaded for account %d", len(by_id), account)

    def _details(self, ids: list[int], wait: float | None) -> dict[int, ProtoOASymbol]:
        futures = [self._client.send(ProtoOASymbolByIdReq(ctidTraderAccountId=self._account_id,
                                                          symbolId=ids[i:i + DETAILS_BATCH]),
                                     timeout=self._timeout)
                   for i in range(0, len(ids), DETAILS_BATCH)]
        found: dict[int, ProtoOASymbol] = {}
        for future in futures:
            for proto in future.result(wait).symbol:
                found[int(proto.symbolId)] = proto
        return found

    @staticmethod
    def _names(infos: Any) -> dict[str, SymbolInfo]:
        by_name: dict[str, SymbolInfo] = {}
        for info in infos:
            by_name[info.name] = info
            by_name.setdefault(info.name.casefold(), info)
        return by_name

    def _on_changed(self, event: ProtoOASymbolChangedEvent) -> None:
        """On the dispatcher thread: fetch the changed symbols without blocking it."""
        if int(event.ctidTraderAccountId) != self._account_id or not self._loaded:
            return
        changed = sorted({int(i) for i in event.symbolId})
        if not changed:
            return
        log.debug("ctrader_sync: symbols %s changed on account %d; reloading them", changed, self._account_id)
        try:
            lights_f = self._client.send(ProtoOASymbolsListReq(ctidTraderAccountId=self._account_id))
        except Exception as exc:  # closed client: nothing to keep current
            log.debug("ctrader_sync: cannot reload changed symbols: %s", exc)
            return

        def listed(future: Any) -> None:
            try:
                lights = {int(s.symbolId): s for s in future.result().symbol}
                present = [i for i in changed if i in lights]
                if not present:
                    self._apply(changed, lights, {})
                    return
                details_f = self._client.send(ProtoOASymbolByIdReq(ctidTraderAccountId=self._account_id,
                                                                   symbolId=present))
            except Exception as exc:
                log.warning("ctrader_sync: could not reload changed symbols %s: %s", changed, exc)
                return

            def detailed(f: Any) -> None:
                try:
                    protos = {int(p.symbolId): p for p in f.result().symbol}
                except Exception as exc:
                    log.warning("ctrader_sync: could not reload changed symbols %s: %s", changed, exc)
                    return
                self._apply(changed, lights, protos)

            details_f.add_done_callback(detailed)

        lights_f.add_done_callback(listed)

    def _apply(self, changed: list[int], lights: dict[int, ProtoOALightSymbol],
               protos: dict[int, ProtoOASymbol]) -> None:
        with self._lock:
            by_id = dict(self._by_id)
            for symbol_id in changed:
                if symbol_id in lights and symbol_id in protos:
                    by_id[symbol_id] = _build(lights[symbol_id], protos[symbol_id], self._assets)
                else:
                    by_id.pop(symbol_id, None)
            self._by_id = by_id
            self._by_name = self._names(by_id.values())

    def close(self) -> None:
        """Stop following symbol changes (the catalogue keeps what it has)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.remove()

    # -- lookup -------------------------------------------------------------------------------

    def resolve(self, symbol: SymbolLike) -> SymbolInfo:
        """The :class:`SymbolInfo` for a name (any case), an id or a ``SymbolInfo``.

        A ``SymbolInfo`` is looked up again by id, so the current details are returned.

        Raises:
            UnknownSymbolError: no such symbol on this account (a ``KeyError``), with close matches.
            TypeError: ``symbol`` is of another type.
        """
        self._ensure()
        if isinstance(symbol, SymbolInfo):
            symbol = symbol.id
        if isinstance(symbol, bool):
            raise TypeError("a symbol is a name, an id or a SymbolInfo, not a bool")
        if isinstance(symbol, int):
            info = self._by_id.get(symbol)
            if info is None:
                raise UnknownSymbolError(symbol)
            return info
        if not isinstance(symbol, str):
            raise TypeError(f"a symbol is a name, an id or a SymbolInfo, not {type(symbol).__name__}")
        by_name = self._by_name
        info = by_name.get(symbol) or by_name.get(symbol.strip().casefold())
        if info is None:
            raise UnknownSymbolError(symbol, self._close_matches(symbol))
        return info

    def _close_matches(self, name: str) -> list[str]:
        names = {info.name.casefold(): info.name for info in self._by_id.values()}
        key = name.strip().casefold()
        close = difflib.get_close_matches(key, list(names), n=5, cutoff=0.6)
        starts = [n for n in names if key and (n.startswith(key) or key.startswith(n))]
        ordered = list(dict.fromkeys([*close, *sorted(starts)]))[:5]
        return [names[n] for n in ordered]

    def __getitem__(self, symbol: SymbolLike) -> SymbolInfo:
        return self.resolve(symbol)

    def get(self, symbol: SymbolLike, default: SymbolInfo | None = None) -> SymbolInfo | None:
        """Like ``catalog[symbol]`` but returns ``default`` for an unknown symbol."""
        try:
            return self.resolve(symbol)
        except UnknownSymbolError:
            return default

    def __contains__(self, symbol: object) -> bool:
        if not isinstance(symbol, (str, int, SymbolInfo)):
            return False
        return self.get(symbol) is not None

    def search(self, text: str, limit: int | None = None) -> list[SymbolInfo]:
        """Symbols whose name or description contains ``text`` (any case).

        Names that start with ``text`` come first, then other name matches, then description
        matches; each group sorted by name.
        """
        self._ensure()
        key = text.strip().casefold()

        def rank(info: SymbolInfo) -> int:
            name = info.name.casefold()
            if name.startswith(key):
                return 0
            if key in name:
                return 1
            return 2 if key in info.description.casefold() else 3

        found = sorted((rank(i), i.name.casefold(), i.id, i) for i in self._by_id.values())
        result = [item[3] for item in found if item[0] < 3]
        return result if limit is None else result[:limit]

    def __iter__(self) -> Iterator[SymbolInfo]:
        self._ensure()
        return iter(sorted(self._by_id.values(), key=lambda i: (i.name.casefold(), i.id)))

    def __len__(self) -> int:
        self._ensure()
        return len(self._by_id)

    @property
    def assets(self) -> dict[int, str]:
        """Asset id -> asset name (``"USD"``...), as the server lists them."""
        self._ensure()
        return dict(self._assets)
