"""Sphinx configuration: the user guide comes from README.rst, the API reference from the docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ctrader_sync  # noqa: E402 - after the path is set

project = "ctrader_sync"
author = "ctrader_sync contributors"
copyright = "ctrader_sync contributors"
release = version = ctrader_sync.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' "Args:", "Raises:", "Returns:" sections
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "A synchronous, thread-based client for the cTrader Open API",
                      "fixed_sidebar": True}
html_static_path: list[str] = []
