"""The project's own tools: the benchmark smoke's table, CI's interpreter matrix, the dist check."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_table_judges_nothing() -> None:
    bench = _load(ROOT / "scripts" / "bench.py", "ctrader_bench_under_test")
    run = bench.Run(("raw", "sdk"))
    run.rows["rtt_median"].raw, run.rows["rtt_median"].sdk = 50.0, 500.0  # 10x: far over its target
    run.rows["memory"].sdk = 4096.0
    full = bench.table(run)
    assert "FAIL" in full  # a full run judges its targets ...
    quick = bench.table(run, judged=False)
    assert "FAIL" not in quick and "PASS" not in quick  # ... --quick asserts nothing, so it says nothing
    assert "not judged" in quick.splitlines()[0] and "10.00x" in quick


def _ci(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / ".ci" / "run"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_ci_plan_covers_3_10_to_the_newest_installed() -> None:
    result = _ci("--plan")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("python3.10: ")
    minors = [int(line.split(":")[0].removeprefix("python3.")) for line in lines]
    assert minors == list(range(10, minors[-1] + 1)), "every minor version from 3.10 on, none left out"
    running = [line for line in lines if "not installed" not in line]
    assert sum("default job" in line for line in running) == 1
    assert sum("lowest protobuf (6.31.1)" in line for line in running) == (1 if len(running) > 1 else 0)


def test_ci_skips_a_missing_interpreter_with_a_line_and_does_not_fail(tmp_path: Path) -> None:
    result = _ci(CI_PYTHONS="3.19", CI_VENV=str(tmp_path / "venvs"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python3.19: not installed, skipped" in result.stdout
    assert "CI result: python3.19" in result.stdout and "skipped (not installed)" in result.stdout
    assert "CI total:" in result.stdout
    assert not any((tmp_path / "venvs").iterdir()), "nothing was installed for a missing interpreter"


def test_ci_runs_the_test_command_the_readme_shows() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.rst").read_text()
    command = script.split('TEST_CMD="', 1)[1].split('"', 1)[0]
    assert command == "python -m pytest -q"
    assert f"pip install -e '.[test]' && {command}" in readme


def test_dist_check_rejects_a_wheel_without_the_simulator_certificates(tmp_path: Path) -> None:
    import zipfile

    check = _load(ROOT / "scripts" / "check_dist.py", "ctrader_check_dist_under_test")
    wheel = tmp_path / "ctrader_sync-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in check.REQUIRED_FILES:
            if "certs/" not in name:
                zf.writestr(name, "")
        zf.writestr("ctrader_sync-0.0.dist-info/licenses/LICENSE", "MIT")
        zf.writestr("ctrader_sync-0.0.dist-info/METADATA", "\n".join([
            "Metadata-Version: 2.4", "Name: ctrader-sync", "License-Expression: MIT",
            "Classifier: License :: OSI Approved :: MIT License",
            *(f"Classifier: Programming Language :: Python :: {v}" for v in check.TESTED_PYTHONS),
            "Requires-Dist: protobuf<8,>=6.31.1", "Requires-Dist: certifi>=2023.7.22",
            'Requires-Dist: pytest; extra == "test"', ""]))
    problems: list[str] = []
    check.check_wheel(wheel, problems)
    assert any("certs/ca.pem" in p for p in problems), problems
    assert any("licence classifier" in p for p in problems), problems
    assert len(problems) == 2, problems


@pytest.mark.parametrize("name", ["CHANGELOG.rst", "CONTRIBUTING.rst", ".pre-commit-config.yaml", "docs/conf.py"])
def test_contributor_files_exist_and_are_in_the_sdist_manifest(name: str) -> None:
    assert (ROOT / name).is_file()
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert name.split("/")[0] in manifest
