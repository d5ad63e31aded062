"""The public surface: names importable as in the old SDK, every public name documented, light import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import ctrader_sync

PUBLIC_MODULES = ["ctrader_sync", "ctrader_sync.errors", "ctrader_sync.units", "ctrader_sync.auth",
                  "ctrader_sync.simulator", "ctrader_sync.timers", "ctrader_sync.aio"]


def test_old_sdk_names_import_from_the_package() -> None:
    from ctrader_sync import Auth, Client, EndPoints, Protobuf, TcpProtocol

    assert all((Auth, Client, EndPoints, Protobuf, TcpProtocol))
    assert EndPoints.PROTOBUF_PORT == 5035
    assert EndPoints.PROTOBUF_DEMO_HOST == "demo.ctraderapi.com"
    assert EndPoints.PROTOBUF_LIVE_HOST == "live.ctraderapi.com"
    assert EndPoints.TOKEN_URI == "https://openapi.ctrader.com/apps/token"
    for name in ctrader_sync.__all__:
        assert getattr(ctrader_sync, name) is not None


def _undocumented(obj: object, qualname: str) -> list[str]:
    missing = [] if inspect.getdoc(obj) else [qualname]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            if not inspect.getdoc(member):
                missing.append(f"{qualname}.{name}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    import importlib

    missing: list[str] = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert inspect.getdoc(module), f"{module_name} has no module docstring"
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                missing += _undocumented(obj, f"{module_name}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def test_import_is_light() -> None:
    """``import ctrader_sync`` must not load the client, ssl, threads or OAuth machinery."""
    code = ("import sys, ctrader_sync; "
            "print(sorted(m for m in ('ssl', 'urllib.request', 'ctrader_sync._client', 'ctrader_sync.auth', "
            "'concurrent.futures', 'ctrader_sync.simulator') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
