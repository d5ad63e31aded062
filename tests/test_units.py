"""Units helpers against hand-computed values, plus property-based round trips."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAGetTickDataRes, ProtoOAGetTrendbarsRes
from ctrader_sync.messages.OpenApiModelMessages_pb2 import H1, M1, ProtoOATickData, ProtoOATrendbar
from ctrader_sync.units import (
    Bar,
    Tick,
    datetime_to_ms,
    decode_ticks,
    decode_trendbars,
    lots_to_volume,
    minutes_to_datetime,
    money_from_raw,
    money_to_raw,
    ms_to_datetime,
    price_from_raw,
    price_to_raw,
    volume_from_raw,
    volume_to_lots,
    volume_to_raw,
)

UTC = timezone.utc


# ---------------------------------------------------------------------------------------- prices


def test_price_from_raw_hand_values() -> None:
    # 123456 / 100000 = 1.23456
    assert price_from_raw(123456) == Decimal("1.23456")
    assert str(price_from_raw(123456)) == "1.23456"
    # 15055 / 100000 = 0.15055 -> 2 digits, half up: 0.15 (the dropped part 0.00055 < 0.005)
    assert str(price_from_raw(15055, digits=2)) == "0.15"
    # 112345 / 100000 = 1.12345 -> 4 digits: the dropped 5 rounds up -> 1.1235
    assert str(price_from_raw(112345, digits=4)) == "1.1235"
    # 15678000 / 100000 = 156.78 -> 3 digits shows 156.780 (a JPY-like symbol)
    assert str(price_from_raw(15678000, digits=3)) == "156.780"
    # 0 / 100000 = 0
    assert price_from_raw(0) == 0
    # -150 / 100000 = -0.0015 (negative prices exist: e.g. spreads and some futures)
    assert price_from_raw(-150) == Decimal("-0.0015")
    # an integral float or Decimal is accepted: 100000.0 -> 1
    assert price_from_raw(100000.0) == 1  # type: ignore[arg-type]


def test_price_from_raw_is_exact_for_huge_raw_values() -> None:
    # 2**64 - 1 = 18446744073709551615 -> /100000 = 184467440737095.51615, no rounding
    assert str(price_from_raw(2**64 - 1)) == "184467440737095.51615"
    # 10**40 + 1 -> 10**35 + 0.00001: more digits than the default 28-digit context holds
    assert str(price_from_raw(10**40 + 1)) == "1" + "0" * 35 + ".00001"


@pytest.mark.parametrize("bad", [1.5, Decimal("2.5"), Fraction(1, 2), float("nan"), float("inf")])
def test_price_from_raw_rejects_non_integral(bad: object) -> None:
    with pytest.raises(ValueError):
        price_from_raw(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["123456", None, True])
def test_price_from_raw_rejects_wrong_types(bad: object) -> None:
    with pytest.raises(TypeError):
        price_from_raw(bad)  # type: ignore[arg-type]


def test_price_from_raw_rejects_bad_digits() -> None:
    with pytest.raises(ValueError, match="digits"):
        price_from_raw(1, digits=-1)
    with pytest.raises(ValueError, match="digits"):
        price_from_raw(1, digits=2.5)  # type: ignore[arg-type]


def test_price_to_raw_hand_values() -> None:
    # 1.23456 * 100000 = 123456
    assert price_to_raw(Decimal("1.23456")) == 123456
    # float 1.1 reads as "1.1": 1.1 * 100000 = 110000 (not 110000.00000000001)
    assert price_to_raw(1.1) == 110000
    # "156.78" * 100000 = 15678000
    assert price_to_raw("156.78") == 15678000
    # 2 * 100000 = 200000
    assert price_to_raw(2) == 200000
    # 1/8 = 0.125 * 100000 = 12500
    assert price_to_raw(Fraction(1, 8)) == 12500
    # trailing zeros beyond 5 decimals are fine: 1.2345600 -> 123456
    assert price_to_raw(Decimal("1.2345600")) == 123456


@pytest.mark.parametrize("bad", [Decimal("1.234567"), "0.000001", 1e-6, Fraction(1, 3), "abc", "NaN",
                                 Decimal("Infinity")])
def test_price_to_raw_rejects_inexact(bad: object) -> None:
    with pytest.raises(ValueError):
        price_to_raw(bad)  # type: ignore[arg-type]


def test_price_to_raw_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        price_to_raw(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        price_to_raw(True)


# --------------------------------------------------------------------------------------- volumes


def test_volume_hand_values() -> None:
    # 100000 cents / 100 = 1000 units
    assert volume_from_raw(100000) == Decimal("1000")
    # 1 cent = 0.01 unit
    assert str(volume_from_raw(1)) == "0.01"
    # 1000 units * 100 = 100000 cents
    assert volume_to_raw(1000) == 100000
    # 0.5 units * 100 = 50 cents
    assert volume_to_raw("0.5") == 50
    assert volume_to_raw(0) == 0


def test_volume_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="negative"):
        volume_from_raw(-1)
    with pytest.raises(ValueError, match="negative"):
        volume_to_raw(-1)
    with pytest.raises(ValueError):
        volume_from_raw(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cents"):
        volume_to_raw("0.001")  # 0.001 * 100 = 0.1 cent


def test_lots_hand_values() -> None:
    # one FX lot = 100000 units = 10000000 cents; 0.01 lot * 10000000 = 100000 cents (1000 units)
    assert lots_to_volume("0.01", 10000000) == 100000
    assert lots_to_volume(Decimal("1"), 10000000) == 10000000
    # float 0.1 lot * 10000000 = 1000000 cents, exactly (0.1 read as "0.1")
    assert lots_to_volume(0.1, 10000000) == 1000000
    # 100000 / 10000000 = 0.01 lot
    assert volume_to_lots(100000, 10000000) == Decimal("0.01")
    # 250 / 100 = 2.5 lots (an index CFD with lot size 1 unit = 100 cents)
    assert volume_to_lots(250, 100) == Decimal("2.5")
    # 1 / 3 has no exact decimal: rounded to 28 significant digits
    assert volume_to_lots(1, 3) == Decimal(1) / Decimal(3)


def test_lots_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="lot size"):
        lots_to_volume(1, 0)
    with pytest.raises(ValueError, match="lot size"):
        volume_to_lots(1, -100)
    with pytest.raises(ValueError, match="negative"):
        lots_to_volume("-0.01", 10000000)
    with pytest.raises(ValueError, match="negative"):
        volume_to_lots(-1, 100)
    # 0.001 lot * 100 cents = 0.1 cent: not a whole number of cents
    with pytest.raises(ValueError, match="whole number"):
        lots_to_volume("0.001", 100)


# ----------------------------------------------------------------------------------------- money


def test_money_hand_values() -> None:
    # 1234567 / 10**2 = 12345.67
    assert str(money_from_raw(1234567, 2)) == "12345.67"
    # -5 / 10**8 = -0.00000005 (a commission in a crypto account with moneyDigits 8)
    assert money_from_raw(-5, 8) == Decimal("-0.00000005")
    # 42 / 10**0 = 42
    assert money_from_raw(42, 0) == 42
    # 12345.67 * 10**2 = 1234567
    assert money_to_raw("12345.67", 2) == 1234567
    # -0.5 * 10**3 = -500
    assert money_to_raw(-0.5, 3) == -500


def test_money_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="money_digits"):
        money_from_raw(1, -1)
    with pytest.raises(ValueError, match="money_digits"):
        money_to_raw(1, 19)
    with pytest.raises(ValueError):
        money_from_raw(Decimal("1.5"), 2)  # type: ignore[arg-type]
    # 0.001 with 2 money digits = 0.1 of the smallest unit
    with pytest.raises(ValueError, match="whole number"):
        money_to_raw("0.001", 2)


# ------------------------------------------------------------------------------------------ time


def test_time_hand_values() -> None:
    # 1700000000000 ms = 1700000000 s = 2023-11-14 22:13:20 UTC
    assert ms_to_datetime(1_700_000_000_123) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert datetime_to_ms(datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)) == 1_700_000_000_123
    # 23:13:20 at UTC+1 is the same instant
    plus_one = timezone(timedelta(hours=1))
    assert datetime_to_ms(datetime(2023, 11, 14, 23, 13, 20, tzinfo=plus_one)) == 1_700_000_000_000
    # sub-millisecond parts are dropped toward the past: 999 µs -> 0 ms, and -1 µs -> -1 ms
    assert datetime_to_ms(datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC)) == 0
    assert datetime_to_ms(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    # 28333333 minutes * 60 = 1699999980 s = 2023-11-14 22:13:00 UTC
    assert minutes_to_datetime(28_333_333) == datetime(2023, 11, 14, 22, 13, tzinfo=UTC)
    assert ms_to_datetime(0).tzinfo is UTC


def test_datetime_to_ms_rejects_naive_and_non_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        datetime_to_ms(1_700_000_000_000)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ trendbars, ticks


def test_decode_trendbars_hand_values() -> None:
    bars = [
        # low 1.10000, open = 1.10000 + 0.00020 = 1.10020, high = 1.10000 + 0.00050 = 1.10050,
        # close = 1.10000 + 0.00010 = 1.10010; 28333320 min * 60 = 1699999200 s = 2023-11-14 22:00 UTC
        ProtoOATrendbar(low=110000, deltaOpen=20, deltaHigh=50, deltaClose=10, volume=321,
                        utcTimestampInMinutes=28_333_320, period=H1),
        # the next hour: low 1.09995, open 1.09995 + 0.00015 = 1.10010, high = close = 1.09995 + 0.00040
        ProtoOATrendbar(low=109995, deltaOpen=15, deltaHigh=40, deltaClose=40, volume=7,
                        utcTimestampInMinutes=28_333_380, period=H1),
    ]
    rows = decode_trendbars(bars)
    assert rows == [
        Bar(datetime(2023, 11, 14, 22, tzinfo=UTC), Decimal("1.10020"), Decimal("1.10050"),
            Decimal("1.10000"), Decimal("1.10010"), 321),
        Bar(datetime(2023, 11, 14, 23, tzinfo=UTC), Decimal("1.10010"), Decimal("1.10035"),
            Decimal("1.09995"), Decimal("1.10035"), 7),
    ]
    assert rows[0].high == Decimal("1.1005") and rows[0].volume == 321
    # digits=4 rounds half up: 1.10035 -> 1.1004, 1.09995 -> 1.1000
    rounded = decode_trendbars(bars, digits=4)
    assert [str(v) for v in rounded[1][1:5]] == ["1.1001", "1.1004", "1.1000", "1.1004"]
    # the response message itself is accepted
    response = ProtoOAGetTrendbarsRes(ctidTraderAccountId=1, period=H1, symbolId=1, trendbar=bars)
    assert decode_trendbars(response) == rows
    assert decode_trendbars([]) == []


def test_decode_trendbars_missing_deltas_mean_zero() -> None:
    # a doji with no deltas set: open = high = close = low = 1.5
    [row] = decode_trendbars([ProtoOATrendbar(low=150000, volume=1, period=M1, utcTimestampInMinutes=0)])
    assert row == Bar(datetime(1970, 1, 1, tzinfo=UTC), Decimal("1.5"), Decimal("1.5"), Decimal("1.5"),
                      Decimal("1.5"), 1)


class _PlainBar(NamedTuple):
    """A duck-typed bar (protobuf's uint64 deltas cannot hold a negative value; other sources can)."""

    low: int
    deltaOpen: int
    deltaHigh: int
    deltaClose: int
    volume: int
    utcTimestampInMinutes: int


def test_decode_trendbars_accepts_duck_typed_bars() -> None:
    # low 0.00100, open 0.00100 + 0.00002, high 0.00100 + 0.00003, close 0.00100 + 0.00001
    [row] = decode_trendbars([_PlainBar(100, 2, 3, 1, 5, 1)])
    assert row == Bar(datetime(1970, 1, 1, 0, 1, tzinfo=UTC), Decimal("0.00102"), Decimal("0.00103"),
                      Decimal("0.00100"), Decimal("0.00101"), 5)


def test_decode_trendbars_rejects_negative_delta() -> None:
    bad = _PlainBar(low=100, deltaOpen=-1, deltaHigh=0, deltaClose=0, volume=1, utcTimestampInMinutes=0)
    with pytest.raises(ValueError, match="negative delta"):
        decode_trendbars([bad])


def test_decode_ticks_hand_values() -> None:
    # newest first: t0 = 1700000003000 ms price 1.10020 (absolute), then deltas going back in time
    data = [
        ProtoOATickData(timestamp=1_700_000_003_000, tick=110020),
        ProtoOATickData(timestamp=-1_000, tick=-5),   # 1700000002000 ms, 110020 - 5 = 110015
        ProtoOATickData(timestamp=-500, tick=+12),    # 1700000001500 ms, 110015 + 12 = 110027
        ProtoOATickData(timestamp=-1_500, tick=0),    # 1700000000000 ms, 110027
    ]
    base = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # = 1700000000000 ms
    expected = [  # oldest first
        Tick(base, Decimal("1.10027")),
        Tick(base + timedelta(milliseconds=1500), Decimal("1.10027")),
        Tick(base + timedelta(milliseconds=2000), Decimal("1.10015")),
        Tick(base + timedelta(milliseconds=3000), Decimal("1.10020")),
    ]
    assert decode_ticks(data) == expected
    # digits=4: 1.10027 -> 1.1003, 1.10015 -> 1.1002 (half up), 1.10020 -> 1.1002
    assert [str(t.price) for t in decode_ticks(data, digits=4)] == ["1.1003", "1.1003", "1.1002", "1.1002"]
    response = ProtoOAGetTickDataRes(ctidTraderAccountId=1, tickData=data, hasMore=False)
    assert decode_ticks(response) == expected
    assert decode_ticks([]) == []


def test_decode_ticks_single_entry_is_absolute() -> None:
    assert decode_ticks([ProtoOATickData(timestamp=60_000, tick=1)]) == [
        Tick(datetime(1970, 1, 1, 0, 1, tzinfo=UTC), Decimal("0.00001"))
    ]


# -------------------------------------------------------------------------------- round trips

raw_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
non_negative = st.integers(min_value=0, max_value=2**63 - 1)


@given(raw_ints)
def test_price_round_trip(raw: int) -> None:
    assert price_to_raw(price_from_raw(raw)) == raw
    assert price_to_raw(str(price_from_raw(raw))) == raw


@given(st.decimals(allow_nan=False, allow_infinity=False, places=5, min_value=-10**9, max_value=10**9))
def test_price_round_trip_from_decimal(price: Decimal) -> None:
    assert price_from_raw(price_to_raw(price)) == price


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=5))
def test_price_rounding_stays_within_half_a_step(raw: int, digits: int) -> None:
    exact = price_from_raw(raw)
    rounded = price_from_raw(raw, digits)
    assert abs(rounded - exact) <= Decimal(1).scaleb(-digits) / 2
    assert rounded.as_tuple().exponent == -digits


@given(non_negative)
def test_volume_round_trip(cents: int) -> None:
    assert volume_to_raw(volume_from_raw(cents)) == cents


@given(non_negative, st.sampled_from([1, 100, 10_000, 100_000, 10_000_000, 1_000_000_000]))
def test_lots_round_trip(cents: int, lot_size: int) -> None:
    assert lots_to_volume(volume_to_lots(cents, lot_size), lot_size) == cents


@given(raw_ints, st.integers(min_value=0, max_value=18))
def test_money_round_trip(value: int, digits: int) -> None:
    assert money_to_raw(money_from_raw(value, digits), digits) == value


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))  # years 1..9999
def test_ms_round_trip(ms: int) -> None:
    assert datetime_to_ms(ms_to_datetime(ms)) == ms


@given(st.lists(st.tuples(st.integers(0, 10**13), st.integers(0, 10**7)), max_size=50))
def test_ticks_encode_decode_round_trip(ticks: list[tuple[int, int]]) -> None:
    # encode oldest-first absolute ticks the way the server does (newest first, deltas), then decode
    ticks.sort()
    newest_first = list(reversed(ticks))
    encoded: list[ProtoOATickData] = []
    previous = (0, 0)
    for ts, price in newest_first:
        encoded.append(ProtoOATickData(timestamp=ts - previous[0], tick=price - previous[1]))
        previous = (ts, price)
    decoded = decode_ticks(encoded)
    assert [(datetime_to_ms(t.time), price_to_raw(t.price)) for t in decoded] == ticks
