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

Layout (lower units never import higher ones; no cycle):

* ``_server`` (the public facade: options, accept loop, test control), ``_options`` (settings,
  credentials, the shared ``World``);
* transport: ``_transport`` (one I/O thread per connection: TLS, framing, timers, posted
  commands), ``_framing``, ``_faults``, ``_limits``, ``_bench`` (the benchmark path),
  ``_recording``;
* protocol: ``_session`` (one connection's protocol state, dispatch), ``_preamble`` (what handlers
  see, the authorization preamble written once), ``_handlers`` (the dispatch table) over
  ``_h_session``, ``_h_reference``, ``_h_market``, ``_h_trading``, ``_h_history``;
* the exchange: ``_exchange`` (quotes, market thread, subscriptions, fan-out), ``_trading``
  (validation, resting orders, triggers, expiry), ``_fills`` (positions, deals, closing),
  ``_money`` (conversion, P&L, commission, swap, margin), ``_accounts`` (state), ``_history``
  (the seeded price tree), ``_market`` (reference data, FX hours).
"""

from ._market import Asset, SymbolInfo
from ._money import MoneyModel
from ._recording import ConnectionRecord, Record
from ._server import Simulator, SimulatorOptions, certs_dir

__all__ = ["Asset", "ConnectionRecord", "MoneyModel", "Record", "Simulator", "SimulatorOptions", "SymbolInfo",
           "certs_dir"]
