"""TcpProtocol: framing, decoding and its errors, without sockets."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import fill

from ctrader_sync import (
    FrameTooLargeError,
    InvalidRequestError,
    MessageDecodeError,
    Protobuf,
    ProtocolError,
    TcpProtocol,
    TruncatedStreamError,
)
from ctrader_sync._codec import Frame, decode_body, encode_varint
from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent, ProtoMessage
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOAApplicationAuthReq,
    ProtoOASpotEvent,
    ProtoOAVersionReq,
    ProtoOAVersionRes,
)

ALL_TYPES = sorted(Protobuf.payload_types().items())


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 8))))
    chunks, last = [], 0
    for c in cuts:
        chunks.append(data[last:c])  # may be empty
        last = c
    chunks.append(data[last:])
    return chunks


@pytest.mark.parametrize(("payload_type", "cls"), ALL_TYPES, ids=[c.__name__ for _, c in ALL_TYPES])
def test_every_payload_type_round_trips_in_random_splits(payload_type: int, cls: type) -> None:
    codec = TcpProtocol()
    message = fill(cls(), seed=payload_type)
    assert message.IsInitialized()
    data = codec.encode(message, clientMsgId=f"id-{payload_type}") + codec.encode(message)
    rng = random.Random(payload_type)
    decoded: list[Frame] = []
    for chunk in _split(data, rng):
        decoded.extend(codec.feed(chunk))
    assert decoded == [Frame(payload_type, f"id-{payload_type}", message), Frame(payload_type, None, message)]
    assert type(decoded[0].message) is cls
    assert codec.buffered == 0
    codec.eof()  # nothing left: no error


def test_hand_built_envelope_equals_protobuf_serialization() -> None:
    msg = ProtoOAVersionRes(version="x" * 300)  # payload longer than 127: multi-byte varint
    body = TcpProtocol.encode_body(msg, "é" * 200)
    reference = ProtoMessage(payloadType=2105, payload=msg.SerializeToString(), clientMsgId="é" * 200)
    assert ProtoMessage.FromString(body) == reference
    assert body == reference.SerializeToString()
    # A heartbeat has an empty payload, still present on the wire as field 2.
    assert ProtoMessage.FromString(TcpProtocol.encode_body(ProtoHeartbeatEvent())).HasField("payload")


def test_encode_accepts_a_ready_envelope_and_rejects_non_messages() -> None:
    codec = TcpProtocol()
    env = Protobuf.wrap(ProtoOAVersionReq())
    [frame] = codec.feed(codec.encode(env, clientMsgId="k"))
    assert frame == Frame(2104, "k", ProtoOAVersionReq())
    assert not env.HasField("clientMsgId")  # the caller's envelope is not modified
    with pytest.raises(InvalidRequestError, match="not an Open API message"):
        codec.encode(ProtoMessage.DESCRIPTOR)  # type: ignore[arg-type]


def test_missing_required_fields_is_a_clear_error_naming_them() -> None:
    with pytest.raises(InvalidRequestError, match="clientSecret"):
        TcpProtocol().encode(ProtoOAApplicationAuthReq(clientId="id"))


def test_varint() -> None:
    for n in (0, 1, 127, 128, 300, 2**32 - 1, 2**63):
        env = ProtoMessage(payloadType=1, payload=b"\0" * (n if n < 5000 else 0))
        assert encode_varint(n)[-1] < 0x80
        if n < 5000:
            assert encode_varint(len(env.payload)) in env.SerializeToString()


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.tuples(st.sampled_from([t for t, _ in ALL_TYPES]), st.one_of(st.none(), st.text(max_size=40)),
                                st.integers(0, 1000)), max_size=12),
    seed=st.integers(0, 2**32),
)
def test_framing_with_random_chunk_boundaries(messages: list[tuple[int, str | None, int]], seed: int) -> None:
    codec = TcpProtocol()
    expected = []
    data = b""
    for pt, cid, s in messages:
        msg = fill(Protobuf.get(pt), seed=s)
        expected.append(Frame(pt, cid, msg))
        data += codec.encode(msg, cid)
    got: list[Frame] = []
    for chunk in _split(data, random.Random(seed)):
        got.extend(codec.feed(chunk))
    assert got == expected
    assert codec.buffered == 0


def test_many_frames_in_one_chunk_and_empty_chunks() -> None:
    codec = TcpProtocol()
    spot = fill(ProtoOASpotEvent(), seed=3)
    data = codec.encode(spot) * 10_000
    assert codec.feed(b"") == []
    frames = codec.feed(data)
    assert len(frames) == 10_000 and frames[-1].message == spot
    assert codec.feed(b"") == []


def test_maximum_size_frame_is_accepted_and_one_byte_more_is_not() -> None:
    big = ProtoOAVersionRes(version="v" * 1000)
    body_len = len(TcpProtocol.encode_body(big))
    codec = TcpProtocol(max_frame_size=body_len)
    data = codec.encode(big)
    got: list[Frame] = []
    for i in range(0, len(data), 97):
        got.extend(codec.feed(data[i:i + 97]))
    assert got == [Frame(2105, None, big)]
    with pytest.raises(InvalidRequestError, match="over the frame limit"):
        TcpProtocol(max_frame_size=body_len - 1).encode(big)
    with pytest.raises(FrameTooLargeError) as info:
        TcpProtocol(max_frame_size=body_len - 1).feed(data)
    assert (info.value.length, info.value.limit) == (body_len, body_len - 1)


def test_default_max_frame_is_16_mib() -> None:
    assert TcpProtocol().max_frame_size == 16 * 1024 * 1024
    with pytest.raises(ValueError):
        TcpProtocol(max_frame_size=0)


def test_2gib_length_prefix_fails_before_buffering() -> None:
    codec = TcpProtocol()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLargeError) as info:
            codec.feed((2**31).to_bytes(4, "big") + b"\0" * 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.length == 2**31
    assert peak < 1_000_000, f"peak {peak} bytes: the frame must not be allocated"
    assert codec.buffered == 0
    with pytest.raises(ProtocolError, match="already failed"):
        codec.feed(b"\0\0\0\0")
    codec.reset()
    assert codec.feed(TcpProtocol().encode(ProtoOAVersionReq())) == [Frame(2104, None, ProtoOAVersionReq())]


def test_frames_before_a_bad_one_are_handed_over() -> None:
    codec = TcpProtocol()
    good = codec.encode(ProtoOAVersionReq())
    with pytest.raises(FrameTooLargeError) as info:
        codec.feed(good + good + b"\xff\xff\xff\xff")
    assert len(info.value.frames) == 2  # type: ignore[attr-defined]


def test_truncated_stream() -> None:
    codec = TcpProtocol()
    data = codec.encode(ProtoOAVersionRes(version="1"))
    assert codec.feed(data[:-1]) == []
    with pytest.raises(TruncatedStreamError, match="inside a frame"):
        codec.eof()
    codec.feed(b"\0\0")  # a partial length prefix is truncation too
    with pytest.raises(TruncatedStreamError):
        codec.eof()


def test_garbage_body_is_not_a_protomessage() -> None:
    garbage = b"\xff" * 9
    with pytest.raises(MessageDecodeError, match="not a ProtoMessage") as info:
        TcpProtocol().feed(len(garbage).to_bytes(4, "big") + garbage)
    assert info.value.payload_type is None


def test_bad_payload_names_its_payload_type() -> None:
    body = ProtoMessage(payloadType=2105, payload=b"\xff\xff\xff").SerializeToString()
    with pytest.raises(MessageDecodeError, match="2105") as info:
        TcpProtocol().feed(len(body).to_bytes(4, "big") + body)
    assert info.value.payload_type == 2105
    assert "ProtoOAVersionRes" in str(info.value)
    # Required fields are not enforced on receive (documented): a server omitting one is tolerated.
    empty = ProtoMessage(payloadType=2105, payload=b"").SerializeToString()
    assert decode_body(empty) == Frame(2105, None, ProtoOAVersionRes())


def test_unknown_payload_type_is_delivered_raw() -> None:
    raw = ProtoMessage(payloadType=7777, payload=b"\x01\x02", clientMsgId="z")
    body = raw.SerializeToString()
    [frame] = TcpProtocol().feed(len(body).to_bytes(4, "big") + body)
    assert frame == Frame(7777, "z", raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes_raise_only_protocol_errors(data: bytes, step: int) -> None:
    codec = TcpProtocol(max_frame_size=4096)
    try:
        for i in range(0, len(data), step):
            codec.feed(data[i:i + step])
    except ProtocolError:
        pass
    assert codec.buffered <= 4096 + 4 + step


def test_decoding_is_linear_in_size() -> None:
    """Many frames in one chunk and one huge frame fed byte-slice by slice decode without re-scanning."""
    import time

    codec = TcpProtocol()
    spot = fill(ProtoOASpotEvent(), seed=1)
    one = codec.encode(spot)

    def run(n: int) -> float:
        data = one * n
        start = time.perf_counter()
        TcpProtocol().feed(data)
        return time.perf_counter() - start

    run(1000)
    small, large = min(run(2000) for _ in range(3)), min(run(20000) for _ in range(3))
    # 10x the data must cost nowhere near 100x (a quadratic decoder would); generous bound for noise.
    assert large < small * 30, (small, large)
    # A 4 MiB frame arriving in 4 KiB chunks: the buffer is appended, not re-copied per chunk.
    big = ProtoOAVersionRes(version="v" * (4 << 20))
    data = TcpProtocol().encode(big)
    start = time.perf_counter()
    got = []
    for i in range(0, len(data), 4096):
        got.extend(codec.feed(data[i:i + 4096]))
    assert got[0].message == big
    assert time.perf_counter() - start < 5.0
