"""A local cTrader Open API server over TLS: test a trading bot without a broker.

``Simulator`` speaks the real protocol (length-prefixed protobuf over TLS) with the real error
codes, limits, heartbeats and push events, records every message on every connection, and can
inject faults (disconnects, freezes, broken frames, server events) on demand::

    from ctrader_sync.simulator import Simulator

    with Simulator(seed=1) as sim:
        print(sim.host, sim.port, sim.client_id, sim.account_ids)

Run it on its own with ``python -m ctrader_sync.simulator``.  Its certificates are TEST-ONLY.
"""

from ._market import Asset, SymbolInfo
from ._recording import ConnectionRecord, Record
from ._server import Simulator, SimulatorOptions, certs_dir

__all__ = ["Asset", "ConnectionRecord", "Record", "Simulator", "SimulatorOptions", "SymbolInfo", "certs_dir"]
