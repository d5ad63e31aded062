"""What the toolkit needs from a client: only the :class:`~ctrader_sync.Client`'s public API.

The toolkit never imports the client module (the client imports the toolkit lazily, and the
layers do not call up); this protocol names the part of the client it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

__all__ = ["ClientLike"]


class ClientLike(Protocol):
    """The public client methods the toolkit calls (``ctrader_sync.Client`` has them)."""

    def send(self, message: Any, clientMsgId: str | None = None, timeout: float | None = None,
             **fields: Any) -> Future[Any]:
        """Queue a request; a future for its answer."""

    def request(self, message: Any, timeout: float | None = None, **fields: Any) -> Any:
        """Send and wait for the answer."""

    def on(self, message_type: Any, callback: Callable[[Any], Any]) -> Any:
        """Call ``callback`` for each received message of a type; a handle with ``remove()``."""

    @property
    def authorized_accounts(self) -> list[int]:
        """Accounts authorized through ``login``."""
