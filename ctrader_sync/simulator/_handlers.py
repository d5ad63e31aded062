"""The dispatch table: payload type -> request handler, from every handler module.

Requests the simulator cannot serve are absent and get ``UNSUPPORTED_MESSAGE``; the withdrawn v1
PnL requests are present and answer ``UNSUPPORTED_MESSAGE`` with a pointer to
``ProtoOAGetPositionUnrealizedPnLReq``.
"""

from __future__ import annotations

from . import _h_history, _h_market, _h_reference, _h_session, _h_trading
from ._preamble import Table

__all__ = ["HANDLERS"]

HANDLERS: Table = {}
for _module in (_h_session, _h_reference, _h_market, _h_trading, _h_history):
    overlap = HANDLERS.keys() & _module.TABLE.keys()
    if overlap:  # pragma: no cover - a programming error
        raise RuntimeError(f"payload types handled twice: {sorted(overlap)}")
    HANDLERS.update(_module.TABLE)
