#!/usr/bin/env python3
"""Run the ctrader_sync demo: the same as ``python -m ctrader_sync.demo`` (see ``--help``).

Works from a checkout without installing: the repository root is put first on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ctrader_sync.demo import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
