"""Conversions between the Open API's raw integers and exact :class:`~decimal.Decimal` values.

The Open API sends numbers as scaled integers:

* **prices** (spot events, trendbars, ticks, order prices in some messages) in 1/100000 of the quote
  unit: ``123456`` is ``1.23456``; a symbol's ``digits`` says how many decimals to show;
* **volumes** in 1/100 of a unit ("cents"): ``100000`` is ``1000`` units; a symbol's ``lotSize`` is in
  cents too, so one standard FX lot (100 000 units) is ``lotSize == 10000000``;
* **money** (balances, P&L, commissions) scaled by the message's or trader's ``moneyDigits``:
  ``1234567`` with ``moneyDigits=2`` is ``12345.67``;
* **timestamps** in Unix milliseconds (trendbars carry minutes).

Every helper here is exact: values go through :class:`~decimal.Decimal`, never through binary floats.
A value that cannot be represented exactly in the target unit (a price with more than five decimals,
half a volume cent, a non-integral raw number) raises :class:`ValueError` instead of being rounded
silently. Floats given as input are read by their shortest ``repr`` (so ``1.1`` means ``1.1``, not
``1.100000000000000088...``). Values of the wrong type (strings for raw integers, booleans, ``None``)
raise :class:`TypeError`.

Trendbars and tick data arrive compressed; :func:`decode_trendbars` and :func:`decode_ticks` turn them
into plain rows (:class:`Bar`, :class:`Tick`).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple, Protocol, TypeAlias

__all__ = [
    "MONEY_DIGITS_MAX",
    "PRICE_SCALE",
    "VOLUME_SCALE",
    "Bar",
    "Number",
    "Tick",
    "TickDataLike",
    "TickDataResponseLike",
    "TrendbarLike",
    "TrendbarsResponseLike",
    "datetime_to_ms",
    "decode_ticks",
    "decode_trendbars",
    "lots_to_volume",
    "minutes_to_datetime",
    "money_from_raw",
    "money_to_raw",
    "ms_to_datetime",
    "price_from_raw",
    "price_to_raw",
    "volume_from_raw",
    "volume_to_lots",
    "volume_to_raw",
]

PRICE_SCALE = 5
"""Raw prices are integers in 1/10**PRICE_SCALE (1/100000) of the quote unit."""

VOLUME_SCALE = 2
"""Raw volumes are integers in 1/10**VOLUME_SCALE (1/100) of a unit."""

MONEY_DIGITS_MAX = 18
"""The largest ``moneyDigits`` accepted (the server uses 0..8 in practice; this only catches garbage)."""

Number: TypeAlias = "Decimal | int | float | str | Fraction"
"""Types accepted where a human-scale amount (price, units, lots, money) is expected."""

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)

# A context large enough that shifting the exponent and quantizing never round.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
    rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation],
)


# --------------------------------------------------------------------------------------------------
# input checks


def _raw_int(value: object, name: str) -> int:
    """Return ``value`` as an ``int`` if it is an integral number, else raise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not bool")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (Decimal, float, Fraction)):
        try:
            integral = value == int(value)
        except (ValueError, OverflowError):  # NaN, infinity
            raise ValueError(f"{name} must be a finite integer, got {value!r}") from None
        if not integral:
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    raise TypeError(f"{name} must be an integer, not {type(value).__name__}")


def _to_decimal(value: object, name: str) -> Decimal:
    """Read a human-scale number exactly as a finite ``Decimal``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not bool")
    result: Decimal
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr gives the shortest text that reads back as the same float: 0.1 -> "0.1"
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"{name} is not a number: {value!r}") from None
    elif isinstance(value, Fraction):
        return _fraction_to_decimal(value, name)
    else:
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _fraction_to_decimal(value: Fraction, name: str) -> Decimal:
    """Convert a fraction whose denominator divides a power of ten; refuse others (not exact)."""
    denominator = value.denominator
    places = 0
    while denominator % 10 == 0:
        denominator //= 10
        places += 1
    while denominator % 2 == 0 or denominator % 5 == 0:
        denominator = denominator // 2 if denominator % 2 == 0 else denominator // 5
        places += 1
    if denominator != 1:
        raise ValueError(f"{name} has no exact decimal form: {value}")
    numerator = value.numerator * 10**places // value.denominator
    return _shift(numerator, -places)


def _digits(value: object, name: str, maximum: int) -> int:
    digits = _raw_int(value, name)
    if not 0 <= digits <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}, got {digits}")
    return digits


def _shift(value: int | Decimal, places: int) -> Decimal:
    """``value * 10**places``, exactly."""
    return Decimal(value).scaleb(places, context=_EXACT)


def _scaled_int(value: Decimal, places: int, name: str, unit: str) -> int:
    """``value * 10**places`` as an int; ValueError if that is not integral."""
    scaled = _shift(value, places)
    if scaled != scaled.to_integral_value(context=_EXACT):
        raise ValueError(f"{name} {value} is not a whole number of {unit}")
    return int(scaled)


def _round(value: Decimal, digits: int | None) -> Decimal:
    """Round half up to ``digits`` decimals, or return ``value`` unchanged when ``digits`` is None."""
    if digits is None:
        return value
    return value.quantize(Decimal(1).scaleb(-digits), context=_EXACT)


# --------------------------------------------------------------------------------------------------
# prices


def price_from_raw(raw: int, digits: int | None = None) -> Decimal:
    """Convert a raw price (an integer in 1/100000) to a :class:`~decimal.Decimal`.

    Args:
        raw: the raw price, e.g. ``ProtoOASpotEvent.bid``.
        digits: when given (usually ``ProtoOASymbol.digits``), round half up to that many decimals;
            otherwise the result is exact with five decimals.

    Example: ``price_from_raw(123456) == Decimal("1.23456")``,
    ``price_from_raw(15055, digits=2) == Decimal("0.15")`` (0.15055 rounded).

    Raises:
        ValueError: ``raw`` is a non-integral number, or ``digits`` is negative or above 18.
        TypeError: ``raw`` is not a number.
    """
    value = _shift(_raw_int(raw, "raw price"), -PRICE_SCALE)
    return _round(value, None if digits is None else _digits(digits, "digits", 18))


def price_to_raw(price: Number) -> int:
    """Convert a price to its raw integer in 1/100000 (``Decimal("1.23456")`` -> ``123456``).

    Raises:
        ValueError: the price has more than five decimals, is not finite, or is not a number.
    """
    return _scaled_int(_to_decimal(price, "price"), PRICE_SCALE, "price", "1/100000")


# --------------------------------------------------------------------------------------------------
# volumes


def volume_from_raw(cents: int) -> Decimal:
    """Convert a raw volume (an integer in cents of a unit) to units: ``100000`` -> ``Decimal("1000.00")``.

    Raises:
        ValueError: ``cents`` is negative or non-integral.
    """
    raw = _raw_int(cents, "volume")
    if raw < 0:
        raise ValueError(f"volume must not be negative, got {raw}")
    return _shift(raw, -VOLUME_SCALE)


def volume_to_raw(units: Number) -> int:
    """Convert a volume in units to the raw integer in cents: ``1000`` -> ``100000``.

    Raises:
        ValueError: ``units`` is negative, not finite, or has more than two decimals.
    """
    value = _to_decimal(units, "volume")
    if value < 0:
        raise ValueError(f"volume must not be negative, got {value}")
    return _scaled_int(value, VOLUME_SCALE, "volume", "cents")


def _lot_size(lot_size_cents: object) -> int:
    size = _raw_int(lot_size_cents, "lot size")
    if size <= 0:
        raise ValueError(f"lot size must be positive, got {size}")
    return size


def lots_to_volume(lots: Number, lot_size_cents: int) -> int:
    """Convert lots to the raw volume in cents that order requests take.

    Args:
        lots: the number of lots, e.g. ``Decimal("0.01")``.
        lot_size_cents: the symbol's ``ProtoOASymbol.lotSize`` (in cents; ``10000000`` for 100 000 units).

    Example: ``lots_to_volume("0.01", 10000000) == 100000`` (1 000 units).

    Raises:
        ValueError: ``lots`` is negative or does not make a whole number of cents, or the lot size
            is not a positive integer.
    """
    size = _lot_size(lot_size_cents)
    value = _to_decimal(lots, "lots")
    if value < 0:
        raise ValueError(f"lots must not be negative, got {value}")
    scaled = Fraction(value) * size  # exact, whatever the sizes
    if scaled.denominator != 1:
        raise ValueError(f"{value} lots of {size} cents is not a whole number of cents")
    return int(scaled)


def volume_to_lots(volume_cents: int, lot_size_cents: int) -> Decimal:
    """Convert a raw volume in cents to lots: ``volume_to_lots(100000, 10000000) == Decimal("0.01")``.

    The result is exact whenever the lot size divides a power of ten (all real symbols); otherwise it
    is rounded to 28 significant digits.

    Raises:
        ValueError: the volume is negative or non-integral, or the lot size is not a positive integer.
    """
    size = _lot_size(lot_size_cents)
    raw = _raw_int(volume_cents, "volume")
    if raw < 0:
        raise ValueError(f"volume must not be negative, got {raw}")
    ratio = Fraction(raw, size)
    try:
        return _fraction_to_decimal(ratio, "lots")
    except ValueError:
        return Decimal(raw) / Decimal(size)


# --------------------------------------------------------------------------------------------------
# money


def money_from_raw(value: int, money_digits: int) -> Decimal:
    """Convert a raw money amount scaled by ``moneyDigits`` to a :class:`~decimal.Decimal`.

    Example: ``money_from_raw(1234567, 2) == Decimal("12345.67")``. Negative amounts (losses,
    commissions) are allowed.

    Raises:
        ValueError: ``value`` is non-integral, or ``money_digits`` is outside 0..18.
    """
    digits = _digits(money_digits, "money_digits", MONEY_DIGITS_MAX)
    return _shift(_raw_int(value, "money value"), -digits)


def money_to_raw(amount: Number, money_digits: int) -> int:
    """Convert a money amount to its raw integer scaled by ``moneyDigits``.

    Example: ``money_to_raw("12345.67", 2) == 1234567``.

    Raises:
        ValueError: the amount has more decimals than ``money_digits``, is not finite, or
            ``money_digits`` is outside 0..18.
    """
    digits = _digits(money_digits, "money_digits", MONEY_DIGITS_MAX)
    return _scaled_int(_to_decimal(amount, "money amount"), digits, "money amount", f"1e-{digits}")


# --------------------------------------------------------------------------------------------------
# time


def ms_to_datetime(ms: int) -> datetime:
    """Convert Unix milliseconds to an aware UTC :class:`~datetime.datetime` (exact, no float)."""
    return _EPOCH + timedelta(milliseconds=_raw_int(ms, "timestamp"))


def minutes_to_datetime(minutes: int) -> datetime:
    """Convert Unix minutes (``ProtoOATrendbar.utcTimestampInMinutes``) to an aware UTC datetime."""
    return _EPOCH + timedelta(minutes=_raw_int(minutes, "timestamp in minutes"))


def datetime_to_ms(when: datetime) -> int:
    """Convert an aware :class:`~datetime.datetime` to Unix milliseconds (for ``fromTimestamp`` etc.).

    Sub-millisecond parts are dropped (rounded toward the past), so the result never lies after
    ``when``.

    Raises:
        ValueError: ``when`` is naive (it has no time zone, so the instant is ambiguous).
        TypeError: ``when`` is not a datetime.
    """
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("naive datetime: attach a time zone, e.g. when.replace(tzinfo=timezone.utc)")
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# --------------------------------------------------------------------------------------------------
# trendbars and ticks


class TrendbarLike(Protocol):
    """What :func:`decode_trendbars` reads from each bar (``ProtoOATrendbar`` has it)."""

    @property
    def low(self) -> int:
        """Absolute low price, raw."""

    @property
    def deltaOpen(self) -> int:
        """Open minus low, raw."""

    @property
    def deltaHigh(self) -> int:
        """High minus low, raw."""

    @property
    def deltaClose(self) -> int:
        """Close minus low, raw."""

    @property
    def volume(self) -> int:
        """Tick volume of the bar."""

    @property
    def utcTimestampInMinutes(self) -> int:
        """Bar open time in Unix minutes."""


class TickDataLike(Protocol):
    """What :func:`decode_ticks` reads from each tick (``ProtoOATickData`` has it)."""

    @property
    def timestamp(self) -> int:
        """Absolute (first tick) or delta Unix milliseconds."""

    @property
    def tick(self) -> int:
        """Absolute (first tick) or delta raw price."""


class TrendbarsResponseLike(Protocol):
    """A message holding trendbars in a ``trendbar`` field (``ProtoOAGetTrendbarsRes``)."""

    @property
    def trendbar(self) -> Iterable[TrendbarLike]:
        """The bars."""


class TickDataResponseLike(Protocol):
    """A message holding ticks in a ``tickData`` field (``ProtoOAGetTickDataRes``)."""

    @property
    def tickData(self) -> Iterable[TickDataLike]:
        """The delta-encoded ticks, newest first."""


class Bar(NamedTuple):
    """One decoded trendbar: open time (UTC), prices as :class:`~decimal.Decimal`, tick volume."""

    time: datetime
    """Bar open time, aware UTC."""
    open: Decimal
    """Open price."""
    high: Decimal
    """High price."""
    low: Decimal
    """Low price."""
    close: Decimal
    """Close price."""
    volume: int
    """Tick volume (number of ticks in the bar), as the server sends it."""


class Tick(NamedTuple):
    """One decoded tick: time (UTC) and price as :class:`~decimal.Decimal`."""

    time: datetime
    """Tick time, aware UTC, millisecond precision."""
    price: Decimal
    """Bid or ask price, whichever was requested."""


def decode_trendbars(
    trendbars: Iterable[TrendbarLike] | TrendbarsResponseLike, digits: int | None = None
) -> list[Bar]:
    """Decode trendbars (``ProtoOAGetTrendbarsRes.trendbar`` or live bars of a spot event) into rows.

    Each bar holds ``low`` as an absolute raw price and ``deltaOpen``/``deltaHigh``/``deltaClose``
    relative to it: open = low + deltaOpen, and so on. Rows keep the input order (the server sends
    historical bars oldest first).

    Args:
        trendbars: the bars; a ``ProtoOAGetTrendbarsRes`` itself is accepted too.
        digits: round prices to the symbol's digits (see :func:`price_from_raw`).

    Raises:
        ValueError: a delta is negative (open/high/close below low) or a field is not integral.
    """
    bars = trendbars if isinstance(trendbars, Iterable) else trendbars.trendbar
    rows: list[Bar] = []
    for index, bar in enumerate(bars):
        low = _raw_int(bar.low, "trendbar low")
        deltas = (bar.deltaOpen, bar.deltaHigh, bar.deltaClose)
        d_open, d_high, d_close = (_raw_int(d, "trendbar delta") for d in deltas)
        if min(d_open, d_high, d_close) < 0:
            raise ValueError(f"trendbar {index}: negative delta from low ({d_open}, {d_high}, {d_close})")
        rows.append(Bar(
            time=minutes_to_datetime(bar.utcTimestampInMinutes),
            open=price_from_raw(low + d_open, digits),
            high=price_from_raw(low + d_high, digits),
            low=price_from_raw(low, digits),
            close=price_from_raw(low + d_close, digits),
            volume=_raw_int(bar.volume, "trendbar volume"),
        ))
    return rows


def decode_ticks(
    tick_data: Iterable[TickDataLike] | TickDataResponseLike, digits: int | None = None
) -> list[Tick]:
    """Decode ``ProtoOAGetTickDataRes.tickData`` into ticks, **oldest first**.

    The server sends ticks newest first and delta-encoded: the first entry holds the absolute
    timestamp (ms) and raw price; each later entry holds the difference from the entry before it
    (so its timestamp delta is normally negative). This function accumulates the deltas and returns
    the ticks in time order, oldest first, ready to append to a chart or a table.

    Args:
        tick_data: the entries; a ``ProtoOAGetTickDataRes`` itself is accepted too.
        digits: round prices to the symbol's digits (see :func:`price_from_raw`).

    Raises:
        ValueError: a field is not integral.
    """
    entries = tick_data if isinstance(tick_data, Iterable) else tick_data.tickData
    rows: list[Tick] = []
    timestamp = price = 0
    for entry in entries:
        # the first entry is absolute: adding it to zero gives it unchanged
        timestamp += _raw_int(entry.timestamp, "tick timestamp")
        price += _raw_int(entry.tick, "tick price")
        rows.append(Tick(ms_to_datetime(timestamp), price_from_raw(price, digits)))
    rows.reverse()
    return rows
