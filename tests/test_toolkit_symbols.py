"""Toolkit I: ``client.account()``, the trader record, and symbols by name with their conversions."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal

import pytest

from ctrader_sync import InvalidRequestError, UnknownSymbolError
from ctrader_sync.messages.OpenApiMessages_pb2 import (
    ProtoOASymbolByIdReq,
    ProtoOASymbolChangedEvent,
    ProtoOASymbolsListReq,
)
from ctrader_sync.protobuf import Protobuf
from ctrader_sync.simulator import Simulator
from ctrader_sync.toolkit import Account, SymbolCatalog, SymbolInfo
from tests.clienttools import connected, wait_until


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=3, spot_interval=0) as s:
        yield s


@pytest.fixture
def account(sim: Simulator) -> Iterator[Account]:
    with connected(sim) as client:
        client.login(sim.client_id, sim.client_secret, sim.access_token, accounts=[sim.account_ids[0]])
        yield client.account()


def _count(sim: Simulator, message: type) -> int:
    pt = Protobuf.payload_type(message)
    return sum(1 for r in sim.connections[-1].requests() if r.payload_type == pt)


def _push(sim: Simulator, event: object) -> None:
    """Push an event on every live connection (the simulator has no public push yet)."""
    for conn in list(sim._live):
        conn.post(lambda c=conn: c.push(event))  # type: ignore[misc]


def test_account_is_the_only_authorized_one_and_cached(sim: Simulator) -> None:
    with connected(sim) as client:
        with pytest.raises(InvalidRequestError, match="login"):
            client.account()
        client.login(sim.client_id, sim.client_secret, sim.access_token)  # both accounts
        with pytest.raises(ValueError, match=str(sim.account_ids[1])):
            client.account()
        first = client.account(sim.account_ids[0])
        assert isinstance(first, Account) and first.id == sim.account_ids[0] and first.client is client
        assert client.account(sim.account_ids[0]) is first
        assert client.account(sim.account_ids[1]) is not first
        with pytest.raises(TypeError):
            client.account("40000001")  # type: ignore[arg-type]


def test_trader_has_money_in_decimal(account: Account) -> None:
    trader = account.trader(timeout=10)
    assert trader.account_id == account.id
    assert isinstance(trader.balance, Decimal) and trader.balance > 0
    assert trader.money_digits == 2
    assert trader.balance == Decimal(trader.raw.balance) / 100
    assert trader.deposit_currency == "USD"
    assert trader.leverage == Decimal(100)
    assert trader.account_type == "HEDGED"
    assert trader.brokerName == trader.broker  # falls through to the message
    assert copy.deepcopy(trader) == trader


def test_lookup_by_name_any_case_and_id(account: Account, sim: Simulator) -> None:
    catalog = account.symbols
    assert isinstance(catalog, SymbolCatalog)
    assert account.symbols is catalog
    eurusd = catalog["EURUSD"]
    assert isinstance(eurusd, SymbolInfo)
    assert catalog["eurusd"] is eurusd and catalog[" EurUsd "] is eurusd
    assert catalog[eurusd.id] is eurusd and catalog[eurusd] is eurusd and catalog.resolve("EURUSD") is eurusd
    assert (eurusd.name, eurusd.digits, eurusd.pip_position) == ("EURUSD", 5, 4)
    assert (eurusd.base_asset, eurusd.quote_asset) == ("EUR", "USD")
    assert eurusd.lot_size == Decimal(100_000)
    assert len(catalog) == len(sim.symbols) == len(list(catalog))
    assert {s.name for s in catalog} == {s.name for s in sim.symbols}
    assert "gbpusd" in catalog and 41 in catalog and "NOPE" not in catalog
    assert catalog.get("NOPE") is None
    # loaded once, with the fewest requests: list, assets, one details batch
    for name in ("GBPUSD", "USDJPY"):
        catalog[name]
    assert _count(sim, ProtoOASymbolsListReq) == 1
    assert _count(sim, ProtoOASymbolByIdReq) == 1


def test_unknown_symbol_names_close_matches(account: Account) -> None:
    with pytest.raises(UnknownSymbolError) as caught:
        account.symbols["EURUSX"]
    err = caught.value
    assert isinstance(err, KeyError)
    assert err.key == "EURUSX"
    assert err.suggestions[0] == "EURUSD"
    assert "EURUSD" in str(err)
    with pytest.raises(UnknownSymbolError):
        account.symbols[999_999]
    with pytest.raises(TypeError):
        account.symbols[1.5]  # type: ignore[index]


def test_search(account: Account) -> None:
    assert [s.name for s in account.symbols.search("eur")] == ["EURGBP", "EURUSD"]
    assert [s.name for s in account.symbols.search("usd")] == ["USDJPY", "EURUSD", "GBPUSD", "XAUUSD"]
    assert account.symbols.search("zzz") == []


def test_volume_normalisation_at_min_step_max(account: Account) -> None:
    eurusd = account.symbols["EURUSD"]  # min 1000 units, step 1000, max 100 000 000
    assert (eurusd.min_volume, eurusd.step_volume, eurusd.max_volume) == (1000, 1000, 100_000_000)
    assert eurusd.normalize_volume(1000) == 1000
    assert eurusd.normalize_volume(1999) == 1000  # rounded down to the step
    assert eurusd.normalize_volume("2500.5") == 2000
    assert eurusd.normalize_volume(100_000_000) == 100_000_000
    with pytest.raises(InvalidRequestError, match="minimum of 1000"):
        eurusd.normalize_volume(999)
    with pytest.raises(InvalidRequestError, match="maximum of 100000000"):
        eurusd.normalize_volume(100_000_001)
    with pytest.raises(InvalidRequestError):
        eurusd.normalize_volume(0)
    gold = account.symbols["XAUUSD"]  # min 1 unit, step 1
    assert gold.normalize_volume(Decimal("1.9")) == 1
    with pytest.raises(InvalidRequestError, match="minimum of 1"):
        gold.normalize_volume(Decimal("0.5"))


def test_symbol_info_is_frozen_with_exactly_the_fields_the_issue_lists(account: Account) -> None:
    import dataclasses
    import pickle

    assert [f.name for f in dataclasses.fields(SymbolInfo)] == [
        "id", "name", "description", "digits", "pip_position", "lot_size", "min_volume", "max_volume",
        "step_volume", "base_asset", "quote_asset"]
    eurusd = account.symbols["EURUSD"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        eurusd.digits = 3  # type: ignore[misc]
    assert eurusd.enabled and eurusd.details is not None and eurusd.details.symbolId == eurusd.id
    again = pickle.loads(pickle.dumps(eurusd))
    assert again == eurusd and again.details == eurusd.details
    bare = SymbolInfo(*dataclasses.astuple(eurusd))  # built from the eleven fields alone
    assert bare == eurusd and bare.enabled and bare.details is None


def test_conversions(account: Account) -> None:
    eurusd = account.symbols["EURUSD"]
    assert eurusd.lots_to_volume("0.01") == 100_000  # 1000 units in cents
    assert eurusd.lots_to_volume(1) == 10_000_000
    assert eurusd.volume_to_lots(100_000) == Decimal("0.01")
    assert eurusd.units_to_volume(1000) == 100_000 and eurusd.volume_to_units(100_000) == 1000
    assert eurusd.price(108_512) == 1.08512 and isinstance(eurusd.price(108_512), float)
    assert eurusd.raw_price(1.08512) == 108_512
    assert eurusd.pips_to_raw(10) == 100 and eurusd.pips_to_raw(1.5) == 15
    assert eurusd.raw_to_pips(100) == 10.0
    assert eurusd.pip == pytest.approx(0.0001)
    jpy = account.symbols["USDJPY"]
    assert jpy.price(15_150_123) == 151.501  # three digits
    assert jpy.pips_to_raw(10) == 10_000


def test_catalog_follows_symbol_changed_events(account: Account, sim: Simulator) -> None:
    catalog = account.symbols
    before = catalog["EURUSD"]
    lists = _count(sim, ProtoOASymbolsListReq)
    _push(sim, ProtoOASymbolChangedEvent(ctidTraderAccountId=account.id, symbolId=[before.id]))
    wait_until(lambda: _count(sim, ProtoOASymbolByIdReq) == 2, what="the changed symbol reloaded")
    wait_until(lambda: catalog["EURUSD"] is not before, what="a new SymbolInfo")
    assert catalog["EURUSD"] == before  # same facts, reloaded
    assert _count(sim, ProtoOASymbolsListReq) == lists + 1


def test_every_toolkit_name_has_a_docstring() -> None:
    import importlib
    import inspect

    from tests.test_public_api import _undocumented

    missing: list[str] = []
    for module_name in ("ctrader_sync.toolkit", "ctrader_sync.history"):
        module = importlib.import_module(module_name)
        assert inspect.getdoc(module), module_name
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                missing += _undocumented(obj, f"{module_name}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def test_every_toolkit_method_has_its_own_docstring() -> None:
    """Not only inherited ones (``inspect.getdoc`` would take a base class's): ``help(obj.method)``
    must describe that method, for every public class of the toolkit and the history CLI."""
    import importlib
    import inspect

    missing: list[str] = []
    for module_name in ("ctrader_sync.toolkit", "ctrader_sync.history"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.isclass(obj):
                continue
            for klass in obj.__mro__:
                if not klass.__module__.startswith("ctrader_sync"):
                    continue
                for member_name, member in vars(klass).items():
                    if member_name.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    doc = member.fget.__doc__ if isinstance(member, property) else getattr(member, "__doc__", None)
                    if (inspect.isfunction(member) or isinstance(member, property)) and not (doc or "").strip():
                        missing.append(f"{klass.__qualname__}.{member_name}")
    assert not missing, f"public methods without their own docstring: {sorted(set(missing))}"
