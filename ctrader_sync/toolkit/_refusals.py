"""Orders the toolkit refuses itself, before anything is written, with the server's error code.

A volume outside the symbol's limits and an unknown symbol never reach the server (the toolkit
checks them first), yet a trading program handles them like the server's refusals.  So they are
both kinds at once: :class:`OrderArgumentError` is an ``InvalidRequestError`` (a ``ValueError``)
and an ``OrderError`` with ``error_code`` ``"TRADING_BAD_VOLUME"``; :class:`UnknownOrderSymbolError`
is an ``UnknownSymbolError`` (a ``KeyError``) and an ``OrderError`` with ``"SYMBOL_NOT_FOUND"``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError, OrderError, UnknownSymbolError

__all__ = ["OrderArgumentError", "UnknownOrderSymbolError", "bad_volume", "resolve_for_order"]


class OrderArgumentError(InvalidRequestError, OrderError):
    """An order refused before it was sent (nothing was written), with the code the server uses for
    it (``error_code``: ``"TRADING_BAD_VOLUME"`` for a volume outside the symbol's limits)."""

    def __init__(self, error_code: str, description: str = "", *, position_id: int | None = None) -> None:
        OrderError.__init__(self, error_code, description, position_id=position_id)


class UnknownOrderSymbolError(UnknownSymbolError, OrderError):
    """An order for a symbol the account does not have (nothing was written): an
    ``UnknownSymbolError`` naming close matches, and an ``OrderError`` with ``error_code``
    ``"SYMBOL_NOT_FOUND"``."""

    def __init__(self, key: object, suggestions: list[str] | None = None) -> None:
        self.key = key
        self.suggestions = list(suggestions or [])
        self.error_code = "SYMBOL_NOT_FOUND"
        self.retry_after = None
        self.response = None
        self.order_id = None
        self.position_id = None
        text = f"unknown symbol: {key!r}"
        if self.suggestions:
            text += " (did you mean " + ", ".join(self.suggestions) + "?)"
        self.description = text
        Exception.__init__(self, text)


def resolve_for_order(catalog: Any, symbol: Any) -> Any:
    """``catalog.resolve(symbol)`` for an order: an unknown symbol raises :class:`UnknownOrderSymbolError`."""
    try:
        return catalog.resolve(symbol)
    except UnknownSymbolError as exc:
        raise UnknownOrderSymbolError(exc.key, exc.suggestions) from None


def bad_volume(exc: InvalidRequestError, position_id: int | None = None) -> OrderArgumentError:
    """The :class:`OrderArgumentError` for a volume the symbol's limits refused."""
    return OrderArgumentError("TRADING_BAD_VOLUME", str(exc), position_id=position_id)
