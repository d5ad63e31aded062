"""Property-based fuzzing of the decoder (``TcpProtocol.feed``/``eof``) with random and mutated streams.

The properties, for any input and any way of cutting it into chunks:

* it never hangs: each ``feed`` returns quickly (bounded by a generous wall-clock check);
* it never buffers more than ``max_frame_size + 4 + chunk`` bytes, and never allocates a frame
  because a length prefix announced one (tracemalloc);
* it raises only :class:`~ctrader_sync.errors.ProtocolError` subclasses (``FrameTooLargeError``,
  ``MessageDecodeError``, ``TruncatedStreamError``), and once failed it stays failed;
* frames entirely before the first damaged byte are delivered intact (returned, or on the
  exception's ``frames``).

``tests/test_codec.py`` feeds random bytes; these tests start from *valid* streams and damage them
the way a broken peer or network would: bit flips, truncation, tampered length prefixes, spliced
and duplicated slices.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import fill

from ctrader_sync import Protobuf, ProtocolError, TcpProtocol, TruncatedStreamError
from ctrader_sync._codec import Frame

TYPES = sorted(Protobuf.payload_types())
MAX_FRAME = 4096
SLOW_FEED_S = 2.0  # far above any real feed of a few KiB; a hang or quadratic blow-up trips it

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[Frame], list[int]]:
    """A stream of 1..8 valid frames; returns (bytes, frames, end offset of each frame)."""
    codec = TcpProtocol(max_frame_size=MAX_FRAME)
    data = b""
    frames: list[Frame] = []
    ends: list[int] = []
    for _ in range(draw(st.integers(1, 8))):
        pt = draw(st.sampled_from(TYPES))
        cid = draw(st.one_of(st.none(), st.text(max_size=20)))
        message = fill(Protobuf.get(pt), seed=draw(st.integers(0, 1000)))
        encoded = codec.encode(message, cid)
        data += encoded
        frames.append(Frame(pt, cid, message))
        ends.append(len(data))
    return data, frames, ends


def feed_all(codec: TcpProtocol, data: bytes, step: int) -> tuple[list[Frame], BaseException | None, int]:
    """Feed ``data`` in ``step``-byte chunks; return (frames delivered, the error, peak buffered)."""
    got: list[Frame] = []
    peak = 0
    for i in range(0, len(data), step):
        start = time.perf_counter()
        try:
            got.extend(codec.feed(data[i:i + step]))
        except Exception as exc:
            assert isinstance(exc, ProtocolError), f"undocumented {type(exc).__name__}: {exc}"
            got.extend(getattr(exc, "frames", []))
            # once failed, it stays failed (and says so with a ProtocolError)
            try:
                codec.feed(b"\x00\x00\x00\x00")
            except ProtocolError:
                pass
            else:
                raise AssertionError("the codec accepted input after failing") from None
            return got, exc, max(peak, codec.buffered)
        finally:
            assert time.perf_counter() - start < SLOW_FEED_S, "a single feed() took too long"
        peak = max(peak, codec.buffered)
        assert codec.buffered <= MAX_FRAME + 4 + step, f"buffered {codec.buffered} bytes"
    return got, None, peak


def intact_prefix(frames: list[Frame], ends: list[int], first_damage: int) -> list[Frame]:
    """The frames that end at or before the first damaged byte."""
    return [f for f, end in zip(frames, ends, strict=True) if end <= first_damage]


def check_eof(codec: TcpProtocol, failed: BaseException | None) -> None:
    if failed is not None:
        return
    try:
        codec.eof()
    except Exception as exc:
        assert isinstance(exc, TruncatedStreamError), f"eof() raised {exc!r}"
    assert codec.buffered == 0


@FUZZ
@given(stream=valid_streams(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1,
                                              max_size=4), step=st.integers(1, 512))
def test_bit_flips(stream: tuple[bytes, list[Frame], list[int]], flips: list[tuple[int, int]], step: int) -> None:
    data, frames, ends = stream
    mutated = bytearray(data)
    positions = []
    for pos, bit in flips:
        pos %= len(mutated)
        mutated[pos] ^= 1 << bit
        positions.append(pos)
    codec = TcpProtocol(max_frame_size=MAX_FRAME)
    got, failed, _ = feed_all(codec, bytes(mutated), step)
    expected = intact_prefix(frames, ends, min(positions))
    assert got[:len(expected)] == expected
    check_eof(codec, failed)


@FUZZ
@given(stream=valid_streams(), cut=st.integers(0, 10**6), step=st.integers(1, 512))
def test_truncation(stream: tuple[bytes, list[Frame], list[int]], cut: int, step: int) -> None:
    data, frames, ends = stream
    cut %= len(data) + 1
    codec = TcpProtocol(max_frame_size=MAX_FRAME)
    got, failed, _ = feed_all(codec, data[:cut], step)
    assert failed is None  # a valid prefix is never an error until the stream ends
    assert got == intact_prefix(frames, ends, cut)
    if cut in (0, *ends):
        codec.eof()
    else:
        try:
            codec.eof()
        except TruncatedStreamError as exc:
            assert "inside a frame" in str(exc)
        else:
            raise AssertionError("eof() inside a frame did not raise TruncatedStreamError")
    assert codec.buffered == 0


@FUZZ
@given(stream=valid_streams(), which=st.integers(0, 7),
       length=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, MAX_FRAME, MAX_FRAME + 1, 2**31,
                                                                      2**32 - 1])),
       step=st.integers(1, 512))
def test_tampered_length_prefix(stream: tuple[bytes, list[Frame], list[int]], which: int, length: int,
                                step: int) -> None:
    data, frames, ends = stream
    which %= len(frames)
    start = ends[which - 1] if which else 0
    mutated = data[:start] + length.to_bytes(4, "big") + data[start + 4:]
    codec = TcpProtocol(max_frame_size=MAX_FRAME)
    got, failed, peak = feed_all(codec, mutated, step)
    assert got[:which] == frames[:which]
    assert peak <= MAX_FRAME + 4 + step
    if length > MAX_FRAME:
        assert failed is not None and type(failed).__name__ == "FrameTooLargeError"
    check_eof(codec, failed)


@FUZZ
@given(stream=valid_streams(), other=valid_streams(), a=st.integers(0, 10**6), b=st.integers(0, 10**6),
       step=st.integers(1, 512))
def test_spliced_and_duplicated_slices(stream: tuple[bytes, list[Frame], list[int]],
                                       other: tuple[bytes, list[Frame], list[int]], a: int, b: int,
                                       step: int) -> None:
    """A slice of another stream inserted mid-frame (a lost/duplicated TCP segment, a bad proxy)."""
    data, frames, ends = stream
    pos = a % (len(data) + 1)
    piece = other[0][: b % (len(other[0]) + 1)]
    codec = TcpProtocol(max_frame_size=MAX_FRAME)
    got, failed, _ = feed_all(codec, data[:pos] + piece + data[pos:], step)
    expected = intact_prefix(frames, ends, pos)
    assert got[:len(expected)] == expected
    check_eof(codec, failed)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048), step=st.integers(1, 256), limit=st.integers(1, 300))
def test_random_streams_with_tiny_frame_limits(data: bytes, step: int, limit: int) -> None:
    codec = TcpProtocol(max_frame_size=limit)
    got: list[Any] = []
    for i in range(0, len(data), step):
        try:
            got.extend(codec.feed(data[i:i + step]))
        except ProtocolError:
            break
        assert codec.buffered <= limit + 4 + step
    assert all(isinstance(f, Frame) for f in got)


def test_no_allocation_follows_a_length_prefix() -> None:
    """Announced but unsent frames cost nothing: buffers grow with bytes received, never with
    announced lengths (16 MiB default limit; prefixes of 16 MiB, 1 GiB and 2 GiB)."""
    header_only = [(16 << 20).to_bytes(4, "big"), (1 << 30).to_bytes(4, "big"), (2 << 30).to_bytes(4, "big")]
    tracemalloc.start()
    try:
        for prefix in header_only:
            codec = TcpProtocol()
            try:
                codec.feed(prefix + b"\x08\x01")  # the prefix and two bytes of body
                for _ in range(100):
                    codec.feed(b"\x00" * 100)
                assert codec.buffered == 4 + 2 + 100 * 100
            except ProtocolError:
                assert codec.buffered == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"{peak} bytes traced: an announced frame was allocated"
