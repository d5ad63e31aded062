"""The README's trading examples (Trader's toolkit: Trading ... Depth) run against the simulator."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap

from ctrader_sync.simulator import Simulator
from tests.clienttools import connected
from tests.conftest import ROOT

SUBSECTIONS = ("Trading", "Certain outcomes", "The account mirror", "P&L", "Quotes", "Depth")


def trading_examples() -> list[tuple[str, str]]:
    """``(subsection, code)`` of every python block in the toolkit's trading subsections."""
    text = (ROOT / "README.rst").read_text()
    start = text.index("\nTrader's toolkit\n")
    end = text.index("\nConcepts\n", start)
    section = text[start:end]
    out: list[tuple[str, str]] = []
    titles = [(m.start(), m.group(1)) for m in re.finditer(r"\n([^\n]+)\n-{3,}\n", section)]
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    [^\n]*\n|\n)+)", section):
        title = [t for pos, t in titles if pos < match.start()][-1]
        if title in SUBSECTIONS:
            out.append((title, textwrap.dedent(match.group(1))))
    return out


def test_every_trading_subsection_has_an_example() -> None:
    assert {title for title, _ in trading_examples()} == set(SUBSECTIONS)


def test_readme_trading_examples_run_against_the_simulator() -> None:
    with Simulator(seed=11, spot_interval=0.05) as sim, connected(sim) as client:
        client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
        namespace = {"client": client, "sim": sim}
        for title, code in trading_examples():
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    exec(compile(code, f"README.rst ({title})", "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"README example {title!r} failed: {exc!r}\n{code}") from exc
            assert out.getvalue().strip(), f"the {title!r} example printed nothing"
        account = namespace["account"]
        assert account.positions, "the examples leave positions open"  # type: ignore[attr-defined]
