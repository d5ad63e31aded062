"""Rows people can use: ``Bar``/``Tick`` with UTC datetimes and float prices, ``Bars``/``Ticks``
sequences with ``to_pandas()`` (optional extra ``ctrader-sync[pandas]``) and ``to_csv()`` (no pandas).

Exact ``Decimal`` values stay available: ``Bars.raw`` holds the trendbars as received, for
:func:`ctrader_sync.units.decode_trendbars`.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import IO, Any, Generic, NamedTuple, TypeVar, overload

__all__ = ["Bar", "Bars", "Records", "Tick", "Ticks", "format_time", "require_pandas"]

_UTC = timezone.utc
PANDAS_HINT = "pip install 'ctrader-sync[pandas]'"


class Bar(NamedTuple):
    """One trendbar: open time (aware UTC ``datetime``), float prices, tick volume."""

    time: datetime
    """Bar open time, aware UTC."""
    open: float
    """Open price."""
    high: float
    """High price."""
    low: float
    """Low price."""
    close: float
    """Close price."""
    volume: int
    """Tick volume (number of ticks in the bar)."""


class Tick(NamedTuple):
    """One tick: time (aware UTC, millisecond precision) and the bid and ask at that time.

    With ``side="bid"`` (or ``"ask"``) the other side is ``nan``; with ``side="both"`` each row
    holds the latest bid and ask known at its time (``nan`` until a side's first tick).
    """

    time: datetime
    """Tick time, aware UTC."""
    bid: float
    """Bid price (``nan`` when not known)."""
    ask: float
    """Ask price (``nan`` when not known)."""


def require_pandas(what: str) -> Any:
    """Import pandas or raise an ``ImportError`` naming the extra to install."""
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError(f"{what} needs pandas, an optional extra: {PANDAS_HINT}") from exc


def format_time(when: datetime, millis: bool = False) -> str:
    """ISO 8601 in UTC with an explicit offset: ``2024-01-02T03:04:05+00:00`` (``.123`` with ``millis``)."""
    text = when.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{when.microsecond // 1000:03d}"
    return text + "+00:00"


R = TypeVar("R")


class _Rows(Sequence[R], Generic[R]):
    """A read-only sequence of rows with a few facts about the download that made it."""

    def __init__(self, rows: list[R]) -> None:
        self._rows = rows
        self.requests = 0
        """Requests the download took."""
        self.seconds = 0.0
        """Seconds the download took."""

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> list[R]: ...

    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[R]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Rows):
            return self._rows == other._rows
        if isinstance(other, list):
            return self._rows == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def _write_csv(self, path_or_file: str | os.PathLike[str] | IO[str], header: list[str],
                   lines: Iterator[list[str]]) -> int:
        if isinstance(path_or_file, (str, os.PathLike)):
            with open(path_or_file, "w", newline="", encoding="utf-8") as handle:
                return self._write_csv(handle, header, lines)
        writer = csv.writer(path_or_file, lineterminator="\n")
        writer.writerow(header)
        count = 0
        for line in lines:
            writer.writerow(line)
            count += 1
        return count


class Bars(_Rows[Bar]):
    """Trendbars in ascending time, checked and without duplicates: a sequence of :class:`Bar`.

    Attributes:
        symbol: the symbol's name.
        period: the period's name (``"H1"``).
        digits: the symbol's digits (prices are rounded to them).
        bad: bars the server sent that break high >= max(open, close) >= min(open, close) >= low
            (kept out of the rows unless ``on_bad="keep"``).
        raw: the good trendbars as received (``ProtoOATrendbar``), ascending, for exact decoding
            with :func:`ctrader_sync.units.decode_trendbars`.
    """

    def __init__(self, rows: list[Bar], symbol: str = "", period: str = "", digits: int = 5,
                 bad: list[Bar] | None = None, raw: list[Any] | None = None) -> None:
        super().__init__(rows)
        self.symbol = symbol
        self.period = period
        self.digits = digits
        self.bad: list[Bar] = list(bad or [])
        self.raw: list[Any] = list(raw or [])

    def __repr__(self) -> str:
        span = f" {format_time(self[0].time)}..{format_time(self[-1].time)}" if self else ""
        return f"<Bars {self.symbol} {self.period} {len(self)} bars{span}>"

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``: UTC ``DatetimeIndex`` named ``time``; float64 columns
        ``open, high, low, close, volume``. Needs the ``ctrader-sync[pandas]`` extra."""
        pd = require_pandas("Bars.to_pandas()")
        index = pd.DatetimeIndex([b.time for b in self._rows], name="time")
        index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
        columns = {name: pd.array([getattr(b, name) for b in self._rows], dtype="float64")
                   for name in ("open", "high", "low", "close", "volume")}
        return pd.DataFrame(columns, index=index)

    def to_csv(self, path_or_file: str | os.PathLike[str] | IO[str]) -> int:
        """Write ``time,open,high,low,close,volume`` rows (ISO 8601 UTC times, prices with the
        symbol's digits) to a path or an open text file; return the number of rows. No pandas needed."""
        digits = self.digits
        lines = ([format_time(b.time), f"{b.open:.{digits}f}", f"{b.high:.{digits}f}",
                  f"{b.low:.{digits}f}", f"{b.close:.{digits}f}", str(b.volume)] for b in self._rows)
        return self._write_csv(path_or_file, ["time", "open", "high", "low", "close", "volume"], lines)

    @classmethod
    def read_csv(cls, path_or_file: str | os.PathLike[str] | IO[str], symbol: str = "", period: str = "") -> Bars:
        """Read what :meth:`to_csv` wrote."""
        text = _read_text(path_or_file)
        rows = [Bar(datetime.fromisoformat(r["time"]).astimezone(_UTC), float(r["open"]), float(r["high"]),
                    float(r["low"]), float(r["close"]), int(r["volume"]))
                for r in csv.DictReader(io.StringIO(text))]
        digits = _digits_of(text)
        return cls(rows, symbol, period, digits)


class Ticks(_Rows[Tick]):
    """Ticks in ascending time: a sequence of :class:`Tick` (``time, bid, ask``).

    Attributes:
        symbol: the symbol's name.
        side: ``"bid"``, ``"ask"`` or ``"both"``.
        digits: the symbol's digits.
    """

    def __init__(self, rows: list[Tick], symbol: str = "", side: str = "both", digits: int = 5) -> None:
        super().__init__(rows)
        self.symbol = symbol
        self.side = side
        self.digits = digits

    def __repr__(self) -> str:
        return f"<Ticks {self.symbol} {self.side} {len(self)} ticks>"

    @property
    def columns(self) -> list[str]:
        """The price columns this download holds: ``["bid"]``, ``["ask"]`` or ``["bid", "ask"]``."""
        return ["bid", "ask"] if self.side == "both" else [self.side]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``: UTC ``DatetimeIndex`` named ``time``; float64 columns for the
        side(s) downloaded. Needs the ``ctrader-sync[pandas]`` extra."""
        pd = require_pandas("Ticks.to_pandas()")
        index = pd.DatetimeIndex([t.time for t in self._rows], name="time")
        index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
        columns = {name: pd.array([getattr(t, name) for t in self._rows], dtype="float64") for name in self.columns}
        return pd.DataFrame(columns, index=index)

    def to_csv(self, path_or_file: str | os.PathLike[str] | IO[str]) -> int:
        """Write ``time,bid[,ask]`` rows (an empty field for a side not known yet); return the count."""
        digits, columns = self.digits, self.columns

        def price(value: float) -> str:
            return "" if math.isnan(value) else f"{value:.{digits}f}"

        lines = ([format_time(t.time, millis=True), *(price(getattr(t, c)) for c in columns)] for t in self._rows)
        return self._write_csv(path_or_file, ["time", *columns], lines)


class Records(_Rows[R]):
    """History records as the server sends them (``ProtoOADeal``, ``ProtoOAOrder``,
    ``ProtoOADepositWithdraw``), ascending by time, each once."""

    def __repr__(self) -> str:
        return f"<Records {len(self)}>"

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per record and one column per field that any record
        has (nested messages flattened as ``tradeData.symbolId``; enums by name; ``...Timestamp``
        fields as UTC datetimes; money fields (``balance``, ``delta``, ``equity``, ``commission``,
        ``grossProfit``, ``swap``, ``pnlConversionFee``) as floats in the account currency, scaled
        by the record's ``moneyDigits``; other numbers as the server sends them). Exact values stay
        on the records themselves. Needs the ``ctrader-sync[pandas]`` extra."""
        pd = require_pandas("Records.to_pandas()")
        frame = pd.DataFrame([_flatten(record) for record in self._rows])
        for column in frame.columns:
            if column.endswith("Timestamp"):
                frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
        return frame


MONEY_FIELDS = frozenset({"balance", "delta", "equity", "commission", "grossProfit", "swap", "pnlConversionFee"})
"""Integer money fields of history records, scaled by their message's ``moneyDigits``."""


def _flatten(message: Any, prefix: str = "", digits: int | None = None) -> dict[str, Any]:
    """The set fields of a protobuf message as ``{"a.b": value}`` (enums by name, lists kept, money
    fields scaled by the nearest ``moneyDigits`` to floats)."""
    row: dict[str, Any] = {}
    if "moneyDigits" in message.DESCRIPTOR.fields_by_name and message.HasField("moneyDigits"):
        digits = int(message.moneyDigits)
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == field.TYPE_MESSAGE and not _is_repeated(field):
            row.update(_flatten(value, name + ".", digits))
        elif field.type == field.TYPE_ENUM and not _is_repeated(field):
            row[name] = field.enum_type.values_by_number[value].name
        elif field.name in MONEY_FIELDS and digits is not None and not _is_repeated(field):
            row[name] = int(value) / 10**digits
        else:
            row[name] = list(value) if _is_repeated(field) else value
    return row


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` is deprecated there
    return bool(repeated) if repeated is not None else bool(field.label == field.LABEL_REPEATED)


def _read_text(path_or_file: str | os.PathLike[str] | IO[str]) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, encoding="utf-8", newline="") as handle:
            return handle.read()
    return path_or_file.read()


def _digits_of(text: str) -> int:
    lines = text.splitlines()
    if len(lines) < 2:
        return 5
    field = lines[1].split(",")[1]
    return len(field.partition(".")[2])
