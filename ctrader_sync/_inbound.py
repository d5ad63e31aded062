"""``Inbound``: routes every received frame: answers to their requests, errors to typed
exceptions (with the rate-limit retry), session events to the session, everything to the callbacks.

Called by whoever holds the read token (the reader thread or a caller reading its own answer),
through ``handle(link, frames)``.  It claims requests from the outbox's pending table, tells the
session what changed (``session_answered``/``session_events``), posts the frames to the event bus
(``post_events``) and ends the link when the server says so; each of those is a callable or object
handed to it when it was built.

Locks: a plain answer takes no lock (an atomic ``dict.pop`` on the pending table claims it; see
``_outbox``).  Error answers (which may be retried) and answers to session-changing requests take
the core lock, so the retry heap and the session state change with the request's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ._link import Link
from ._outbox import Outbox
from ._pending import ANSWER_TYPES, EXPECT_EXECUTION, Request
from ._reconnect import RateLimitRetry
from ._session import SESSION_EVENTS, SESSION_TYPES
from .errors import ConnectionLostError, ProtocolError, RateLimitError, server_error_from_message
from .messages.OpenApiCommonMessages_pb2 import ProtoErrorRes
from .messages.OpenApiMessages_pb2 import (
    ProtoOAClientDisconnectEvent,
    ProtoOAErrorRes,
    ProtoOAExecutionEvent,
    ProtoOAOrderErrorEvent,
)
from .protobuf import REGISTRY, TYPE_OF

__all__ = ["Inbound"]

log = logging.getLogger("ctrader_sync")

_EXECUTION_EVENT = TYPE_OF[ProtoOAExecutionEvent]
_CLIENT_DISCONNECT_EVENT = TYPE_OF[ProtoOAClientDisconnectEvent]
_ERROR_TYPES = frozenset({TYPE_OF[ProtoErrorRes], TYPE_OF[ProtoOAErrorRes], TYPE_OF[ProtoOAOrderErrorEvent]})
_SPECIAL_TYPES = SESSION_EVENTS | {_CLIENT_DISCONNECT_EVENT}


class Inbound:
    """Matching, error mapping, retries and routing of received frames for one client."""

    def __init__(self, outbox: Outbox, retry: RateLimitRetry,
                 session_answered: Callable[[int, Any, Any], None],
                 session_events: Callable[[list[Any]], None],
                 post_events: Callable[[list[Any]], None]) -> None:
        self._outbox = outbox
        self._pending = outbox.pending
        self._lock = outbox.lock
        self.retry = retry
        self._session_answered = session_answered
        self._session_events = session_events
        self._post_events = post_events

    def handle(self, link: Link, frames: list[Any]) -> None:
        """Match answers to their requests and hand every message to the callbacks.

        The common case (a plain answer) takes no client lock: the request is claimed by an atomic
        ``dict.pop`` on the pending table, which every other remover (cancel, timeout, loss, close)
        also uses with an identity check, so exactly one of them ends the request.  Error answers
        (which may be re-sent) and session-changing answers take the lock.
        """
        pending = self._pending
        answers = ANSWER_TYPES
        specials = []
        for frame in frames:
            pt, cid, message = frame
            if cid is not None:
                request = pending.get(cid)
                if request is not None and request._written:
                    try:  # (no cost unless raised: zero-cost exception handling)
                        if pt in _ERROR_TYPES or request.payloadType in SESSION_TYPES:
                            with self._lock:
                                if pending.get(cid) is request:
                                    self._match_locked(request, pt, message)
                        elif request.expect == EXPECT_EXECUTION and pt != _EXECUTION_EVENT:
                            pass  # not the answer this request waits for; it still reaches the callbacks
                        elif pending.pop(cid, None) is request:
                            if answers.get(request.payloadType, pt) == pt:
                                request._finish_claimed(message)
                            else:
                                request._finish(None, _wrong_answer(request, pt))
                    except BaseException as exc:
                        # Ctrl-C in a caller reading its own answer, after the request was claimed
                        # from the pending table and before it was ended: nothing else would end
                        # it (it is in no table any more), so it ends here (item 1).
                        if pending.get(cid) is not request:
                            request._settle_interrupted(exc)
                        raise
            if pt in _SPECIAL_TYPES:
                specials.append(frame)
        if specials:
            self._session_events(specials)
        self._post_events(frames)
        for pt, _, message in specials:
            if pt == _CLIENT_DISCONNECT_EVENT:
                reason = getattr(message, "reason", "") or "no reason given"
                link.lose(ConnectionLostError(f"the server ended the session: {reason}"))

    def _match_locked(self, request: Request, pt: int, message: Any) -> None:
        """Apply an error answer, or the answer to a session-changing request, to its request (under
        the lock; see :meth:`handle` for which answers come here)."""
        pending = self._pending
        if pt in _ERROR_TYPES:
            error = server_error_from_message(message)
            if isinstance(error, RateLimitError):
                delay = self.retry.delay(request.retries + 1, error.retry_after)
                if delay is not None and request._unclaim():
                    request.retries += 1
                    self._outbox.retry_later(request, delay)
                    log.info("ctrader_sync: %s refused (%s); retry %d in %.2f s", request.cid, error.error_code,
                             request.retries, delay)
                    return
            del pending[request.cid]
            request._fail(error)
        else:  # a session-changing request (subscribe, account auth...): all have a ...Res
            del pending[request.cid]
            if ANSWER_TYPES.get(request.payloadType, pt) != pt:
                request._fail(_wrong_answer(request, pt))
                return
            self._session_answered(request.payloadType, request.message, message)
            request._resolve(message)


def _wrong_answer(request: Request, pt: int) -> ProtocolError:
    """The error for an answer of the wrong payload type carrying the request's ``clientMsgId``."""
    got, sent = REGISTRY.get(pt), REGISTRY.get(request.payloadType)
    return ProtocolError(f"the server answered {sent.__name__ if sent else request.payloadType} {request.cid} "
                         f"with a {got.__name__ if got else pt} (payload type {pt}), not a "
                         f"{REGISTRY[ANSWER_TYPES[request.payloadType]].__name__}")
