"""The simulator's settings and the state its connections share (credentials, accounts, exchange)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from .._codec import DEFAULT_MAX_FRAME_SIZE
from ._accounts import Account
from ._exchange import Exchange
from ._market import SymbolInfo

__all__ = ["DEFAULT_LIST_CHUNK", "DEFAULT_TICK_CHUNK", "DEFAULT_TRENDBAR_CHUNK", "Credentials", "SimulatorOptions",
           "World"]

DEFAULT_TRENDBAR_CHUNK = 4000
"""Trendbars in one ``ProtoOAGetTrendbarsRes`` at most (a simulator choice: the real one is undocumented)."""
DEFAULT_TICK_CHUNK = 1000
"""Ticks in one ``ProtoOAGetTickDataRes`` at most (a simulator choice)."""
DEFAULT_LIST_CHUNK = 1000
"""Deals or orders in one deal-list or order-list answer at most (a simulator choice)."""


@dataclass(frozen=True)
class SimulatorOptions:
    """The simulator's settings (see :class:`Simulator` for their meaning)."""

    seed: int = 1
    spot_interval: float = 0.1
    heartbeat_interval: float = 10.0
    idle_timeout: float = 30.0
    request_limit: int = 50
    historical_limit: int = 5
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    benchmark: bool = False
    record: bool = True
    flood_count: int = 100_000
    host: str = "127.0.0.1"
    port: int = 0
    market_hours: str = "always"
    trendbar_chunk: int = DEFAULT_TRENDBAR_CHUNK
    tick_chunk: int = DEFAULT_TICK_CHUNK
    list_chunk: int = DEFAULT_LIST_CHUNK
    history_windows: bool = True


class Credentials:
    """The application's id and secret and the tokens the simulator accepts (thread-safe)."""

    def __init__(self, seed: int) -> None:
        self.client_id = f"{1000 + seed}_simulatorClientId"
        self.client_secret = "sim-secret-" + secrets.token_hex(8)
        self.access_token = "sim-access-" + secrets.token_hex(12)
        self.refresh_token = "sim-refresh-" + secrets.token_hex(12)
        self._lock = threading.Lock()
        self._access = {self.access_token}
        self._refresh = {self.refresh_token: self.access_token}  # refresh token -> its access token

    def token_valid(self, token: str) -> bool:
        """True if ``token`` is an access token the simulator issued."""
        with self._lock:
            return token in self._access

    def refresh(self, refresh_token: str) -> tuple[str, str] | None:
        """A new ``(access, refresh)`` pair for a known refresh token, else None.  As on the real
        server, both tokens rotate: the old pair is no longer accepted."""
        with self._lock:
            old_access = self._refresh.pop(refresh_token, None)
            if old_access is None:
                return None
            self._access.discard(old_access)
            access = "sim-access-" + secrets.token_hex(12)
            refresh = "sim-refresh-" + secrets.token_hex(12)
            self._access.add(access)
            self._refresh[refresh] = access
            return access, refresh

    def revoke(self, access_token: str) -> None:
        """Stop accepting ``access_token``."""
        with self._lock:
            self._access.discard(access_token)


@dataclass
class World:
    """What every connection's request handlers share."""

    options: SimulatorOptions
    version: str
    credentials: Credentials
    accounts: dict[int, Account]
    exchange: Exchange
    symbols: tuple[SymbolInfo, ...]
    user_id: int = 7_000_001
    extra: dict[str, object] = field(default_factory=dict)
