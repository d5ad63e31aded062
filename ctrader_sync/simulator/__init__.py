"""A local cTrader Open API server over TLS: test a trading bot without a broker.

``Simulator`` speaks the real protocol (length-prefixed protobuf over TLS) with the real error
codes, limits, heartbeats and push events, and behaves like a small exchange: seeded price paths
drive spot events, live trendbars, depth quotes and history; resting orders fill when the price
crosses them, stop losses and take profits trigger, balances move by the money model.  It records
every message on every connection and can inject faults (disconnects, freezes, broken frames,
server events) on demand::

    from ctrader_sync.simulator import Simulator

    with Simulator(seed=1) as sim:
        print(sim.host, sim.port, sim.client_id, sim.account_ids)
        sim.set_price("EURUSD", 1.08500, 1.08510)

Run it on its own with ``python -m ctrader_sync.simulator``.  Its certificates are TEST-ONLY.
"""

from ._market import Asset, SymbolInfo
from ._money import MoneyModel
from ._recording import ConnectionRecord, Record
from ._server import Simulator, SimulatorOptions, certs_dir

__all__ = ["Asset", "ConnectionRecord", "MoneyModel", "Record", "Simulator", "SimulatorOptions", "SymbolInfo",
           "certs_dir"]
