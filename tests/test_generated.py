"""The committed message modules must be what scripts/generate_messages.py makes from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) regenerates the messages")
pytest.importorskip("mypy_protobuf", reason="mypy-protobuf (test extra) regenerates the stubs")


def test_committed_modules_match_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_messages.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    committed = ROOT / "ctrader_sync" / "messages"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert len(fresh) == 8
    stale = [name for name in fresh if (committed / name).read_bytes() != (tmp_path / name).read_bytes()]
    assert not stale, f"regenerate with scripts/generate_messages.py: {stale} differ from protos/"


def test_old_sdk_style_imports() -> None:
    from ctrader_sync.messages.OpenApiCommonMessages_pb2 import ProtoHeartbeatEvent, ProtoMessage
    from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAApplicationAuthReq, ProtoOAVersionReq
    from ctrader_sync.messages.OpenApiModelMessages_pb2 import ProtoOAPayloadType, ProtoOATradeSide

    assert ProtoOAVersionReq().payloadType == ProtoOAPayloadType.Value("PROTO_OA_VERSION_REQ") == 2104
    assert ProtoOAApplicationAuthReq(clientId="a", clientSecret="b").IsInitialized()
    assert ProtoHeartbeatEvent().payloadType == 51
    assert ProtoMessage(payloadType=51).payloadType == 51
    assert ProtoOATradeSide.Value("SELL") == 2
