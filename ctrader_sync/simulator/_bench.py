"""The benchmark path: prebuilt answers to ``ProtoOAVersionReq`` and a prebuilt spot-event flood.

In benchmark mode a connection answers version requests from prebuilt bytes without parsing them
and, after a spot subscription, streams ``flood_count`` spot events from one prebuilt block.
"""

from __future__ import annotations

import time

from .._codec import TcpProtocol
from ..messages.OpenApiMessages_pb2 import ProtoOASpotEvent, ProtoOAVersionRes
from ._framing import frame, scan_client_msg_id
from ._market import SymbolInfo

__all__ = ["FLOOD_BLOCK_EVENTS", "VERSION_REQ_PREFIX", "BenchAnswers"]

FLOOD_BLOCK_EVENTS = 1024
VERSION_REQ_PREFIX = b"\x08" + bytes((2104 & 0x7F | 0x80, 2104 >> 7))
"""How a ``ProtoMessage`` holding a ``ProtoOAVersionReq`` starts (payloadType 2104)."""


class BenchAnswers:
    """Prebuilt bytes shared by every connection of a benchmark-mode simulator."""

    def __init__(self, version: str, symbol: SymbolInfo, account_id: int) -> None:
        self.version_res_body = TcpProtocol.encode_body(ProtoOAVersionRes(version=version))
        block = bytearray()
        offsets = [0]
        now_ms = int(time.time() * 1000)
        for i in range(FLOOD_BLOCK_EVENTS):
            bid = symbol.base_price + (i % 50)
            data, _, _ = frame(ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol.symbol_id,
                                                bid=bid, ask=bid + symbol.spread, timestamp=now_ms + i))
            block += data
            offsets.append(len(block))
        self.flood_block = bytes(block)
        self.flood_offsets = offsets

    def flood(self, remaining: int) -> tuple[bytes, int]:
        """Up to one block of spot events: ``(bytes, events)``."""
        n = min(remaining, FLOOD_BLOCK_EVENTS)
        data = self.flood_block if n == FLOOD_BLOCK_EVENTS else self.flood_block[:self.flood_offsets[n]]
        return data, n

    def answer_version(self, body: bytes) -> bytes | None:
        """The answer frame to one version-request body, None if ``body`` is something else."""
        if not body.startswith(VERSION_REQ_PREFIX):
            return None
        raw_cid = scan_client_msg_id(body)
        head = self.version_res_body
        if raw_cid is None:
            return len(head).to_bytes(4, "big") + head
        return (len(head) + len(raw_cid)).to_bytes(4, "big") + head + raw_cid

    def answer_versions(self, data: bytes, limit: int) -> tuple[bytes, int]:
        """Answer the leading run of version-request frames in ``data`` as ``TcpProtocol`` writes them.

        A version request is ``08 b8 10 12 00 1a <n> <clientMsgId>``; its answer is the prebuilt
        body plus the request's raw clientMsgId field.  Returns ``(answers, bytes consumed)``; the
        rest (another frame, or an incomplete one) takes the full path.
        """
        head = self.version_res_body
        grow = len(head) - 5
        prefix = VERSION_REQ_PREFIX + b"\x12\x00\x1a"
        out: list[bytes] = []
        append = out.append
        total = len(data)
        pos = 0
        while total - pos >= 4:
            length = int.from_bytes(data[pos:pos + 4], "big")
            end = pos + 4 + length
            if end > total or (limit and length > limit):
                break
            if length >= 7 and data.startswith(prefix, pos + 4) and length == 7 + data[pos + 10]:
                append((length + grow).to_bytes(4, "big"))
                append(head)
                append(data[pos + 9:end])
                pos = end
                continue
            break
        return b"".join(out), pos
