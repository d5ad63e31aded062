#!/usr/bin/env python3
"""Regenerate ``ctrader_sync/messages/*_pb2.py`` and ``*.pyi`` from ``protos/``.

The generated modules are committed; ``tests/test_generated.py`` runs this
script into a temporary folder and fails when the result differs from what
is committed.  The tools are pinned (``PINNED`` below, also in the ``gen``
extra: ``pip install -e '.[gen]'``) because a different ``protoc`` or
``mypy-protobuf`` writes different files.

Usage::

    python scripts/generate_messages.py            # rewrite ctrader_sync/messages
    python scripts/generate_messages.py --out DIR  # write elsewhere (for checks)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "ctrader_sync" / "messages"
MODULES = (
    "OpenApiCommonModelMessages",
    "OpenApiCommonMessages",
    "OpenApiModelMessages",
    "OpenApiMessages",
)
# protoc 31.1 (inside grpcio-tools 1.76.0) writes gencode 6.31.1, which any
# protobuf runtime >= 6.31.1 (6.x and 7.x) accepts.
PINNED = {"grpcio-tools": "1.76.0", "mypy-protobuf": "5.1.0"}

# protoc writes ``import OpenApiModelMessages_pb2 as ...`` (a top-level
# module); inside the package the import must be relative.
_IMPORT = re.compile(r"^import (OpenApi\w+_pb2)( as \w+)?$", re.MULTILINE)
# protoc names the message classes' module ``OpenApiMessages_pb2`` (top-level); with the package's
# real module name they pickle (as do the exceptions that carry them, e.g. ``ServerError.response``).
_MODULE_NAME = re.compile(r"^(_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'OpenApi\w+_pb2'(, _globals\))$",
                          re.MULTILINE)


def check_tools() -> None:
    """Exit with a clear message unless the pinned generator versions are installed."""
    wrong = []
    for name, want in PINNED.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        if have != want:
            wrong.append(f"{name}=={want} (found {have})")
    if wrong:
        sys.exit(
            "generate_messages: needs " + ", ".join(wrong)
            + "; install them with: pip install -e '.[dev]'"
        )


def _mypy_plugin() -> str:
    exe = shutil.which("protoc-gen-mypy")
    if exe is None:
        candidate = Path(sys.executable).with_name("protoc-gen-mypy")
        if candidate.exists():
            exe = str(candidate)
    if exe is None:
        sys.exit("generate_messages: protoc-gen-mypy (from mypy-protobuf) is not on PATH")
    return exe


def generate(out: Path) -> list[Path]:
    """Generate the modules and stubs into ``out``; return the files written."""
    check_tools()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"--proto_path={PROTOS}",
            f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            *(f"{name}.proto" for name in MODULES),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        written = []
        for name in MODULES:
            for suffix in ("_pb2.py", "_pb2.pyi"):
                text = (Path(tmp) / f"{name}{suffix}").read_text(encoding="utf-8")
                text = _IMPORT.sub(lambda m: f"from . import {m.group(1)}{m.group(2) or ''}", text)
                text = _MODULE_NAME.sub(r"\1__name__\2", text)
                target = out / f"{name}{suffix}"
                target.write_text(text, encoding="utf-8")
                written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()
    for path in generate(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
