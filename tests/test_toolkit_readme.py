"""The README's "Trader's toolkit" examples run as written, against the bundled simulator."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.rst"


def toolkit_blocks() -> list[str]:
    """The ``.. code-block:: python`` blocks of the README section "Trader's toolkit", in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("Trader's toolkit\n================\n")
    following = re.search(r"\n[^\n]+\n=+\n", text[start + 30:])
    section = text[start:start + 30 + following.start()] if following else text[start:]
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines))
    return blocks


def test_the_readme_toolkit_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pandas")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = toolkit_blocks()
    assert len(blocks) >= 3, "the Trader's toolkit section lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        for name in ("client", "sim"):
            if name in namespace:
                namespace[name].close()
        plt.close("all")
    out = capsys.readouterr().out
    assert "USD" in out and "EURUSD" in out
    assert namespace["bars"].requests >= 1 and 6000 < len(namespace["bars"]) < 6400  # a year of H1, weekends closed
    assert os.path.getsize(tmp_path / "eurusd-h1.csv") > 100_000
    assert namespace["eurusd"].normalize_volume(2500) == 2000
