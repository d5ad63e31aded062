#!/usr/bin/env python3
"""Build the sdist and wheel as a release would, and check what users get from them.

1. ``python -m build`` and ``pip wheel .`` must print no warning (a setuptools deprecation, a
   package-data mistake, ...).
2. The wheel must hold the package, the generated messages and their stubs, ``py.typed`` and the
   simulator's TEST-ONLY certificates; its metadata must carry the SPDX licence expression, no
   licence classifier, only ``protobuf`` and ``certifi`` as runtime dependencies, and the
   interpreter classifiers that CI tests.
3. Installed into a fresh virtual environment (outside the repository), the wheel must run the demo
   against the bundled simulator, and ``python -m ctrader_sync.simulator --json-file`` must let the
   demo connect to it with ``--simulator-json`` (certificates found as package data).

Usage: ``python scripts/check_dist.py [--keep DIR]`` (needs ``build``, part of the ``dev`` extra).
Exit status 0 when everything holds; each failed check is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REQUIRED_FILES = [
    "ctrader_sync/__init__.py",
    "ctrader_sync/py.typed",
    "ctrader_sync/aio.py",
    "ctrader_sync/demo.py",
    "ctrader_sync/simulator/__main__.py",
    "ctrader_sync/simulator/certs/ca.pem",
    "ctrader_sync/simulator/certs/server.pem",
    "ctrader_sync/simulator/certs/server-key.pem",
    "ctrader_sync/simulator/certs/README.txt",
    *(f"ctrader_sync/messages/{name}_pb2.{ext}" for name in (
        "OpenApiCommonMessages", "OpenApiCommonModelMessages", "OpenApiMessages", "OpenApiModelMessages")
      for ext in ("py", "pyi")),
]
TESTED_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
_WARNING = re.compile(r"warning|deprecat", re.IGNORECASE)


def _quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    # This machine sets PYTHONDONTWRITEBYTECODE, which makes setuptools print "byte-compiling is
    # disabled" warnings that say nothing about the project; a release build has it unset.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def build(out: Path, problems: list[str]) -> Path:
    """Build sdist and wheel into ``out``; return the wheel."""
    for label, cmd in (("python -m build", [sys.executable, "-m", "build", "--outdir", str(out / "build"), "."]),
                       ("pip wheel .", [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                                        str(out / "pip"), "."])):
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_quiet_env(), timeout=600)
        print(f"  {label}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            problems.append(f"{label} failed:\n{done.stdout}\n{done.stderr}")
            continue
        noisy = [line for line in (done.stdout + done.stderr).splitlines() if _WARNING.search(line)]
        if noisy:
            problems.append(f"{label} printed warnings:\n  " + "\n  ".join(noisy[:20]))
    wheels = sorted((out / "build").glob("*.whl"))
    if not wheels:
        raise SystemExit("no wheel was built:\n" + "\n".join(problems))
    return wheels[0]


def check_wheel(wheel: Path, problems: list[str]) -> None:
    """The wheel's files and metadata."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(metadata_name).decode()
    missing = [f for f in REQUIRED_FILES if f not in names]
    if missing:
        problems.append(f"the wheel lacks {missing}")
    strays = sorted(n for n in names if n.startswith(("tests/", "scripts/", "docs/", "examples/")))
    if strays:
        problems.append(f"the wheel carries files that are not the package: {strays[:5]}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("the wheel lacks its LICENSE file")
    headers = [line for line in metadata.splitlines() if ": " in line and not line.startswith(" ")]
    if "License-Expression: MIT" not in headers:
        problems.append("METADATA has no 'License-Expression: MIT'")
    if any(h.startswith("Classifier: License ::") for h in headers):
        problems.append("METADATA still has a licence classifier")
    runtime = sorted(h.split(": ", 1)[1] for h in headers if h.startswith("Requires-Dist:") and "extra ==" not in h)
    names_only = sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in runtime)
    if names_only != ["certifi", "protobuf"]:
        problems.append(f"runtime dependencies must be protobuf and certifi only, not {runtime}")
    classifiers = sorted(h.rsplit(":: ", 1)[1] for h in headers
                         if re.fullmatch(r"Classifier: Programming Language :: Python :: 3\.\d+", h))
    if classifiers != TESTED_PYTHONS:
        problems.append(f"interpreter classifiers {classifiers} differ from the tested {TESTED_PYTHONS}")
    print(f"  {wheel.name}: {len(names)} files, {len(REQUIRED_FILES)} required present: {not missing}")


def check_install(wheel: Path, work: Path, problems: list[str]) -> None:
    """Install the wheel into a fresh venv and run the demo and the simulator from it."""
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    started = time.monotonic()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600)
    print(f"  installed into a fresh venv in {time.monotonic() - started:.0f} s")
    outside = work / "elsewhere"  # not the repository: the installed package must be what runs
    outside.mkdir()
    demo = subprocess.run([str(python), "-m", "ctrader_sync.demo", "--quiet"], cwd=outside, capture_output=True,
                          text=True, timeout=180)
    if demo.returncode != 0 or "[10/10]" not in demo.stdout:
        problems.append(f"installed demo (bundled simulator) failed: exit {demo.returncode}\n"
                        f"{demo.stdout}{demo.stderr}")
    else:
        print("  installed demo against the bundled simulator: 10/10 steps")
    info = outside / "sim.json"
    sim = subprocess.Popen([str(python), "-m", "ctrader_sync.simulator", "--port", "0", "--json-file", str(info)],
                           cwd=outside, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, sim.kill)  # the first stdout line is the signal; never wait forever
    watchdog.start()
    try:
        first = sim.stdout.readline() if sim.stdout else ""  # printed after --json-file is written
        watchdog.cancel()
        if not first or not info.exists():
            problems.append(f"python -m ctrader_sync.simulator wrote no --json-file: {first!r}")
            return
        demo = subprocess.run([str(python), "-m", "ctrader_sync.demo", "--simulator-json", str(info), "--quiet"],
                              cwd=outside, capture_output=True, text=True, timeout=180)
        if demo.returncode != 0 or "[10/10]" not in demo.stdout:
            problems.append(f"installed demo --simulator-json failed: exit {demo.returncode}\n"
                            f"{demo.stdout}{demo.stderr}")
        else:
            print("  installed demo against `python -m ctrader_sync.simulator` (--simulator-json): 10/10 steps")
    finally:
        watchdog.cancel()
        sim.terminate()
        try:
            code = sim.wait(15)
        except subprocess.TimeoutExpired:
            sim.kill()
            code = sim.wait(15)
        if code != 0:
            problems.append(f"the simulator exited with {code} on SIGTERM")


def main(argv: list[str] | None = None) -> int:
    """Run every check; return 0 when all hold."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build into this directory and keep it")
    parser.add_argument("--no-install", action="store_true", help="skip the fresh-venv install and runs")
    args = parser.parse_args(argv)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ctrader_sync-dist-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("building sdist and wheel")
        wheel = build(work, problems)
        print("checking the wheel")
        check_wheel(wheel, problems)
        if not args.no_install:
            print("installing the wheel")
            check_install(wheel, work, problems)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print("dist check: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
