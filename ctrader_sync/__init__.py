"""ctrader_sync: a synchronous, thread-based client for the cTrader Open API.

The names of the old SDK (``Client``, ``Protobuf``, ``TcpProtocol``, ``Auth``, ``EndPoints``) are
importable from here, so a script ports by changing its imports::

    from ctrader_sync import Client, Protobuf, TcpProtocol, Auth, EndPoints

Everything beyond the exceptions and endpoints (protobuf and the message classes, the codec, the
client and its threads, TLS, OAuth) loads on first use of its name, so ``import ctrader_sync``
stays light.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .endpoints import EndPoints
from .errors import (
    AuthenticationError,
    AuthError,
    ClientClosedError,
    ClosedInFlightError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    CTraderError,
    FrameTooLargeError,
    InvalidRequestError,
    MessageDecodeError,
    OrderError,
    OrderNotPlacedError,
    OrderOutcomeUnknownError,
    ProtocolError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TokenRefreshError,
    TruncatedStreamError,
    UnknownPayloadTypeError,
    UnknownSymbolError,
)

__version__ = "0.1.0"

logging.getLogger("ctrader_sync").addHandler(logging.NullHandler())

# name -> module holding it; imported on first attribute access (PEP 562).
_LAZY = {
    "DEFAULT_MAX_FRAME_SIZE": "._codec",
    "Frame": "._codec",
    "TcpProtocol": "._codec",
    "Protobuf": ".protobuf",
    "Client": "._client",
    "ClientState": "._supervisor",
    "RateLimitRetry": "._reconnect",
    "ReconnectPolicy": "._reconnect",
    "Auth": ".auth",
    "EventStream": "._events",
    "TokenRefreshFailed": "._keepalive",
    "every": ".timers",
    "Every": ".timers",
}

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client
    from ._codec import DEFAULT_MAX_FRAME_SIZE, Frame, TcpProtocol
    from ._events import EventStream
    from ._keepalive import TokenRefreshFailed
    from ._reconnect import RateLimitRetry, ReconnectPolicy
    from ._supervisor import ClientState
    from .auth import Auth
    from .protobuf import Protobuf
    from .timers import Every, every


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctrader_sync' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Auth",
    "AuthError",
    "AuthenticationError",
    "CTraderError",
    "Client",
    "ClientClosedError",
    "ClientState",
    "ClosedInFlightError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "EndPoints",
    "EventStream",
    "Every",
    "Frame",
    "FrameTooLargeError",
    "InvalidRequestError",
    "MessageDecodeError",
    "OrderError",
    "OrderNotPlacedError",
    "OrderOutcomeUnknownError",
    "Protobuf",
    "ProtocolError",
    "QueueFullError",
    "RateLimitError",
    "RateLimitRetry",
    "ReconnectPolicy",
    "RequestTimeoutError",
    "ServerError",
    "TcpProtocol",
    "TokenRefreshError",
    "TokenRefreshFailed",
    "TruncatedStreamError",
    "UnknownPayloadTypeError",
    "UnknownSymbolError",
    "__version__",
    "every",
]
