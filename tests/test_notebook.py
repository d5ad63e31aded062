"""``examples/quickstart.ipynb`` executed by a real Jupyter kernel, twice in the same kernel.

The old SDK runs on a Twisted reactor, which cannot be restarted, so its notebooks work once per
kernel.  Here the second run must succeed too, and after the notebook's ``close()`` calls no
``ctrader_sync-*`` thread (client or simulator) may be left in the kernel: the notebook's last cell
asserts that from inside the kernel, and this test reads its output.

The kernel is ipykernel's built-in ``python3`` spec, which always runs ``sys.executable`` (this
venv): a kernel spec manager that looks only in an empty directory finds no installed spec and falls
back to it, so no ``ipykernel install`` step is needed and a user-level spec cannot interfere.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402 - only once the skips passed
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from jupyter_core.utils import run_sync  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "quickstart.ipynb"
THREADS_LINE = "ctrader_sync threads left: []"


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def _errors(nb: Any) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def _cells(nb: Any) -> list[tuple[str, str, str]]:
    return [(c.cell_type, c.get("id", ""), c.source) for c in nb.cells]


def test_notebook_is_valid_and_matches_its_generator() -> None:
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    spec = importlib.util.spec_from_file_location("make_quickstart", EXAMPLES / "make_quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert _cells(module.build()) == _cells(nb), \
        "examples/quickstart.ipynb is stale: run python examples/make_quickstart.py"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needed in ("Simulator(", "client.login(", "client.events(", "decode_trendbars", "ProtoOANewOrderReq",
                   "await aclient.request(", "client.close()", "sim.close()"):
        assert needed in code, needed


def test_notebook_is_committed_with_its_outputs() -> None:
    """Readers on GitHub or PyPI see a real session: every code cell ran, without an error, in order,
    and the outputs include the bars as a table and as a chart."""
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1)), "run every cell, in order"
    assert not _errors(nb), _errors(nb)
    kinds = [set(o.get("data", {})) for c in code for o in c.get("outputs", [])]
    assert any("text/html" in k for k in kinds), "the trendbars table is missing"
    assert any("image/png" in k for k in kinds), "the chart is missing (generate with matplotlib installed)"
    texts = "\n".join(_text(c) for c in code)
    assert texts.count("bid 1.0") == 5 and "bought 1000" in texts and THREADS_LINE in texts


def test_notebook_runs_twice_in_one_kernel_and_leaves_no_thread(tmp_path: Path) -> None:
    empty = tmp_path / "kernels"
    empty.mkdir()
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(empty)]))
    source = nbformat.read(str(NOTEBOOK), as_version=4)
    # A probe cell, added by the test only: it counts the runs inside the kernel and names the process.
    source.cells.append(nbformat.v4.new_code_cell(
        "import os\n_quickstart_runs = globals().get('_quickstart_runs', 0) + 1\n"
        "print(f'run {_quickstart_runs} in kernel process {os.getpid()}')", id="test-probe"))
    runs: list[Any] = []
    try:
        for _ in range(2):
            nb = nbformat.from_dict(json.loads(json.dumps(source)))  # a fresh copy: outputs do not pile up
            client = nbclient.NotebookClient(nb, km=km, timeout=60, startup_timeout=60,
                                             resources={"metadata": {"path": str(EXAMPLES)}})
            runs.append(client.execute())
    finally:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)

    probes = []
    for number, nb in enumerate(runs, 1):
        assert not _errors(nb), _errors(nb)
        texts = [_text(c) for c in nb.cells if c.cell_type == "code"]
        assert texts[-2].strip() == THREADS_LINE, texts[-2]  # the notebook's own last cell
        assert texts[-1].startswith(f"run {number} in kernel process "), texts[-1]
        probes.append(texts[-1].split("kernel process ")[1].strip())
        outputs = "\n".join(texts)
        assert outputs.count("bid 1.0") == 5, outputs  # five EURUSD spot prices, 5 digits
        assert "bought 1000" in outputs and "closed at" in outputs
        assert re.search(r"position \d+: buy 0\.1 lots EURUSD at [\d.]+, SL [\d.]+, TP [\d.]+, P&L -?\d+\.\d\d",
                         outputs), outputs  # the toolkit's positions with P&L
        assert "open positions: 0 balance" in outputs
    assert probes[0] == probes[1], "the second run must use the same kernel"


def test_notebook_uses_the_toolkit() -> None:
    """The notebook shows the trader's toolkit: an account, a symbol by name, a year of bars, a chart."""
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needed in ("client.account()", '.symbols["eurusd"]', ".trendbars(", ".to_pandas()", ".plot("):
        assert needed in code, needed
