"""Exceptions raised by ctrader_sync.

Every exception the SDK raises on purpose derives from :class:`CTraderError`::

    CTraderError
    ├── ConnectError                 could not connect (refused, TLS handshake, timeout)
    │   └── ConnectTimeoutError      wait_connected() timed out (also a TimeoutError)
    ├── ConnectionLostError          the connection dropped while a request was written
    │   └── ClosedInFlightError      close() was called after the request was written
    ├── ClientClosedError            the client was closed (or never started and closed)
    ├── UnknownSymbolError           no symbol has that name or id on this account (KeyError)
    ├── RequestTimeoutError          no answer in time (also a built-in TimeoutError)
    ├── QueueFullError               the send queue is at its limit
    ├── InvalidRequestError          the message cannot be sent as given (also a ValueError)
    ├── UnknownPayloadTypeError      no message has that payload type or name (KeyError, IndexError, ValueError)
    ├── ProtocolError                the byte stream from the peer breaks the framing rules
    │   ├── FrameTooLargeError       a length prefix over the configured maximum
    │   ├── TruncatedStreamError     the stream ended inside a frame
    │   └── MessageDecodeError       a frame whose body or payload does not parse
    ├── ServerError                  the server answered with an error
    │   ├── RateLimitError           REQUEST_FREQUENCY_EXCEEDED, BLOCKED_PAYLOAD_TYPE
    │   ├── AuthenticationError      application/account auth refused, token invalid
    │   │   └── TokenRefreshError    the server refused to refresh the access token
    │   └── OrderError               ProtoOAOrderErrorEvent
    │       └── OrderNotPlacedError  an order whose answer was lost is not on the server
    ├── OrderOutcomeUnknownError     an order's answer was lost and its fate could not be learned
    └── AuthError                    the OAuth token endpoint refused a request

Texts of these exceptions never contain credentials.  Every one survives ``pickle`` (and so
``multiprocessing`` and ``concurrent.futures.ProcessPoolExecutor``) with its text and attributes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "AuthenticationError",
    "CTraderError",
    "ClientClosedError",
    "ClosedInFlightError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "FrameTooLargeError",
    "InvalidRequestError",
    "MessageDecodeError",
    "OrderError",
    "OrderNotPlacedError",
    "OrderOutcomeUnknownError",
    "ProtocolError",
    "QueueFullError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "TokenRefreshError",
    "TruncatedStreamError",
    "UnknownPayloadTypeError",
    "UnknownSymbolError",
    "server_error_from_message",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    """Unpickle an exception without calling its ``__init__`` (whose parameters differ from
    ``args``): the same ``args`` (so the same text) and the same attributes."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class CTraderError(Exception):
    """Base class of every exception ctrader_sync raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class ConnectError(CTraderError):
    """The client could not connect: refused, unreachable, TLS handshake or certificate failure, timeout."""


class ConnectTimeoutError(ConnectError, TimeoutError):
    """``wait_connected()`` timed out; the text says why the last attempt failed, if one did."""


class ConnectionLostError(CTraderError):
    """The connection was lost while the request was written but not answered.

    The request is never re-sent silently: a trading request may have executed.
    """


class ClosedInFlightError(ConnectionLostError):
    """``close()`` was called after the request was written and before its answer arrived.

    The request may have reached the server (an order may have executed); the answer will never
    be read.  Requests not yet written when ``close()`` is called end with
    :class:`ClientClosedError` instead.
    """


class ClientClosedError(CTraderError):
    """The client is closed: the request was not (and will not be) written."""


class RequestTimeoutError(CTraderError, TimeoutError):
    """No answer arrived within the response timeout, counted from the moment the request was written."""


class QueueFullError(CTraderError):
    """The client's send queue is full; the request was not queued."""


class InvalidRequestError(CTraderError, ValueError):
    """The message cannot be sent as given (wrong type, missing required fields, duplicate id, ...)."""


class UnknownPayloadTypeError(CTraderError, KeyError, IndexError, ValueError):
    """No message class has this payload type or name.

    Also an ``IndexError``, which the old SDK's ``Protobuf.get`` raised for an unknown key, so old
    ``except IndexError:`` blocks still catch it.

    Attributes:
        key: the payload type number or name that was looked up.
        suggestions: close matches among the known names.
    """

    def __init__(self, key: object, suggestions: list[str] | None = None) -> None:
        self.key = key
        self.suggestions = list(suggestions or [])
        text = f"unknown payload type or message name: {key!r}"
        if self.suggestions:
            text += " (did you mean " + ", ".join(self.suggestions) + "?)"
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSymbolError(CTraderError, KeyError):
    """No symbol of the account has this name or id (symbol ids and names differ between brokers).

    Attributes:
        key: the name or id that was looked up.
        suggestions: close matches among the account's symbol names, best first.
    """

    def __init__(self, key: object, suggestions: list[str] | None = None) -> None:
        self.key = key
        self.suggestions = list(suggestions or [])
        text = f"unknown symbol: {key!r}"
        if self.suggestions:
            text += " (did you mean " + ", ".join(self.suggestions) + "?)"
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])


class ProtocolError(CTraderError):
    """The bytes received from the peer break the protocol's framing or cannot be decoded."""


class FrameTooLargeError(ProtocolError):
    """A frame's length prefix exceeds the configured maximum; nothing of it was buffered.

    Attributes:
        length: the announced frame length in bytes.
        limit: the configured maximum.
    """

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(f"frame of {length} bytes exceeds the maximum of {limit} bytes")


class TruncatedStreamError(ProtocolError):
    """The stream ended in the middle of a frame."""


class MessageDecodeError(ProtocolError):
    """A frame's body is not a ``ProtoMessage``, or its payload does not parse.

    Attributes:
        payload_type: the payload type of the frame, or ``None`` if the envelope itself was bad.
    """

    def __init__(self, text: str, payload_type: int | None = None) -> None:
        self.payload_type = payload_type
        super().__init__(text)


class ServerError(CTraderError):
    """The server answered a request with an error.

    Attributes:
        error_code: the server's error code name, e.g. ``"CH_CLIENT_AUTH_FAILURE"``.
        description: the server's description, or ``""``.
        retry_after: seconds after which a retry may succeed, when the server says so, else ``None``.
        response: the error message itself (``ProtoOAErrorRes``, ``ProtoErrorRes`` or
            ``ProtoOAOrderErrorEvent``).
    """

    def __init__(
        self,
        error_code: str,
        description: str = "",
        *,
        retry_after: float | None = None,
        response: Any = None,
    ) -> None:
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.response = response
        text = error_code + (f": {description}" if description else "")
        if retry_after is not None:
            text += f" (retry after {retry_after:g} s)"
        super().__init__(text)


class RateLimitError(ServerError):
    """The server refused the request for its frequency (``REQUEST_FREQUENCY_EXCEEDED``,
    ``BLOCKED_PAYLOAD_TYPE``) and the client's bounded retries did not get it through."""


class AuthenticationError(ServerError):
    """The server refused authentication: wrong client id/secret, invalid or expired token,
    unknown account, or the request needs an authenticated session."""


class TokenRefreshError(AuthenticationError):
    """The server refused a ``ProtoOARefreshTokenReq`` (an unknown, used or revoked refresh token):
    the tokens in hand stay as they were and the user must authorize the application again once
    the access token expires.  Raised by ``Client.refresh_access_token()``; an automatic refresh
    (``login(..., refresh_token=...)``) reports it as a :class:`~ctrader_sync.TokenRefreshFailed`
    event."""


class OrderError(ServerError):
    """A trading request was refused (``ProtoOAOrderErrorEvent``).

    Attributes:
        order_id: the order's id when the event carries one, else ``None``.
        position_id: the position's id when the event carries one, else ``None``.
    """

    def __init__(self, error_code: str, description: str = "", *, order_id: int | None = None,
                 position_id: int | None = None, response: Any = None) -> None:
        self.order_id = order_id
        self.position_id = position_id
        super().__init__(error_code, description, response=response)


class OrderNotPlacedError(OrderError):
    """An order whose answer was lost is not on the server: it never reached it (or was refused).

    Raised by the toolkit's trading methods after they looked the order up by its
    ``clientOrderId`` once the session was back.  Nothing was executed, so sending the order again
    is safe.  ``error_code`` is ``"ORDER_NOT_PLACED"``.

    Attributes:
        client_order_id: the ``clientOrderId`` the order was sent with.
    """

    def __init__(self, client_order_id: str, description: str = "") -> None:
        self.client_order_id = client_order_id
        super().__init__("ORDER_NOT_PLACED", description or
                         f"the server has no order with clientOrderId {client_order_id!r}")


class OrderOutcomeUnknownError(CTraderError):
    """The answer to an order was lost and its fate could not be learned within the timeout.

    The order may or may not have executed: do **not** send it again blindly.  Ask later with
    ``Account.find_order(error.client_order_id)``.

    Attributes:
        client_order_id: the ``clientOrderId`` the order was sent with.
        order_id: the server's order id when it was learned before the answer was lost, else ``None``.
    """

    def __init__(self, client_order_id: str, description: str = "", *, order_id: int | None = None) -> None:
        self.client_order_id = client_order_id
        self.order_id = order_id
        super().__init__(description or f"the outcome of order {client_order_id!r} is unknown")


class AuthError(CTraderError):
    """The OAuth 2 token endpoint refused a request (see :class:`ctrader_sync.Auth`).

    Attributes:
        error_code: the server's ``errorCode`` (or an HTTP status description).
        description: the server's ``description``, or ``""``.
        status: the HTTP status code, or ``None`` for transport failures.
    """

    def __init__(self, error_code: str, description: str = "", status: int | None = None) -> None:
        self.error_code = error_code
        self.description = description
        self.status = status
        super().__init__(error_code + (f": {description}" if description else ""))


RATE_LIMIT_CODES = frozenset({"REQUEST_FREQUENCY_EXCEEDED", "BLOCKED_PAYLOAD_TYPE"})
"""Error codes that mean "too many requests": mapped to :class:`RateLimitError`."""

AUTH_CODES = frozenset({
    "OA_AUTH_TOKEN_EXPIRED", "ACCOUNT_NOT_AUTHORIZED", "RET_NO_SUCH_LOGIN", "ALREADY_LOGGED_IN",
    "RET_ACCOUNT_DISABLED", "CH_CLIENT_AUTH_FAILURE", "CH_CLIENT_NOT_AUTHENTICATED",
    "CH_CLIENT_ALREADY_AUTHENTICATED", "CH_ACCESS_TOKEN_INVALID", "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
    "CH_OA_CLIENT_NOT_FOUND",
})
"""Error codes mapped to :class:`AuthenticationError`."""


def server_error_from_message(message: Any) -> ServerError:
    """Build the matching :class:`ServerError` subclass from an error message.

    Accepts ``ProtoOAErrorRes``, ``ProtoErrorRes`` and ``ProtoOAOrderErrorEvent``.
    """
    code = str(getattr(message, "errorCode", "") or "UNKNOWN_ERROR")
    description = str(getattr(message, "description", "") or "")
    if type(message).__name__ == "ProtoOAOrderErrorEvent":
        return OrderError(
            code, description,
            order_id=message.orderId if message.HasField("orderId") else None,
            position_id=message.positionId if message.HasField("positionId") else None,
            response=message,
        )
    retry_after: float | None = None
    try:
        if message.HasField("retryAfter"):
            retry_after = float(message.retryAfter)
    except ValueError:  # ProtoErrorRes has no retryAfter field
        pass
    cls: type[ServerError] = ServerError
    if code in RATE_LIMIT_CODES:
        cls = RateLimitError
    elif code in AUTH_CODES:
        cls = AuthenticationError
    return cls(code, description, retry_after=retry_after, response=message)
