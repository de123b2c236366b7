"""Exactly-once mutations: resend the same request safely, and reconcile through Request status.

A mutation (add, block, close, identify_owner) carries a ``request_id`` chosen by the partner,
and the server refuses a ``request_id`` it has seen with **1002** without carrying it out again
(spec, "Safe retries"). That makes a resend of the *same* request safe, so :func:`send_mutation`
turns "the reply was lost" into the real outcome:

1. Send the request. A failure that leaves the outcome unknown (connection error, timeout,
   5xx, 429, an undecodable reply) is followed, after the policy's backoff (or a 429's
   ``Retry-After``, capped at ``max_retry_after``), by a resend of the
   same bytes with the same ``request_id`` (never a new one), up to ``max_attempts`` sends.
2. A 1002 on a *resend* means an earlier send reached the server: Request status for the
   ``request_id`` gives the original outcome, returned as if its reply had arrived (success or
   "processing"), or raised as its typed error (``WalletClosedError``, ...). A 1002 on the
   *first* send is the caller's reused id: ``DuplicateRequestError``, as always, unless the
   call says it resumes one that ended in ``MutationOutcomeUnknownError`` (``resume=True``).
3. When every send failed (or a resend was refused without an API answer, e.g. 403), one
   last Request status look may still tell the outcome.
4. Otherwise :class:`~freedompay_async.errors.MutationOutcomeUnknownError`, with the
   ``request_id`` and the last cause: never a bare transport error.

Everything is bounded by the call's total time limit (``Timeout.total``): no send, backoff or
Request status call runs past it. The one assumption is the server's documented behaviour: a
``request_id`` it has seen is refused with 1002, never carried out twice, and Request status
reports the outcome of every request it accepted. (A caller who reuses a ``request_id`` for a
different operation breaks it: the reconciled outcome would be the other operation's.)

``RetryPolicy(resend_mutations=False)`` sends each mutation once (no resend, no reconciliation).
This module calls the client's request path (which sends a mutation once per call: it retries
reads only) through the bound function the client gives its resources.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import anyio
import msgspec

from . import _protocol
from ._config import Timeout
from ._protocol import Endpoint, RequestT
from .errors import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    DuplicateRequestError,
    FreedomPayError,
    HTTPStatusError,
    MutationOutcomeUnknownError,
    RateLimitError,
    RequestNotFoundError,
    RequestTimeoutError,
    ResponseDecodeError,
    TransportError,
)
from .models import (
    InfoRequest,
    MutationResult,
    PartialWallet,
    RequestStatus,
    RequestStatusRequest,
    WalletAdded,
)

if TYPE_CHECKING:
    from ._client import Request
    from ._retry import RetryPolicy

logger = logging.getLogger("freedompay_async")

MutationT = TypeVar("MutationT", bound=MutationResult)


def outcome_unknown(error: FreedomPayError) -> bool:
    """Whether a mutation that failed with ``error`` may or may not have been carried out.

    True for failures on the way (connection errors, timeouts), 5xx and 429 replies, and
    replies that could not be read; false for answers that say what happened (API errors,
    401/403 and other 4xx).
    """
    if isinstance(error, AuthenticationError):
        return False
    if isinstance(error, HTTPStatusError):
        status = error.http_status
        return status is not None and (status == 429 or 500 <= status <= 599)
    return isinstance(error, (TransportError, RequestTimeoutError, ResponseDecodeError))


class _Deadline:
    """The call's total time limit, shared by its sends, backoffs and Request status calls."""

    def __init__(self, total: float | None) -> None:
        self._end = None if total is None else time.monotonic() + total

    def left(self) -> float:
        """Seconds left (``inf`` without a limit)."""
        return math.inf if self._end is None else self._end - time.monotonic()

    def scope(self) -> AbstractContextManager[anyio.CancelScope]:
        """A scope that raises ``TimeoutError`` when the limit runs out."""
        return anyio.fail_after(None if self._end is None else self._end - time.monotonic())


async def send_mutation(
    send: Request,
    policy: RetryPolicy,
    endpoint: Endpoint[RequestT, MutationT],
    request: RequestT,
    *,
    identifier: str | None,
    request_id: UUID,
    limits: Timeout,
    resume: bool = False,
) -> MutationT:
    """Send one mutation and return its definite outcome (see the module docstring).

    ``send`` is the client's request path, ``policy`` its retry policy (resends, backoff);
    ``limits`` are the call's time limits: ``limits.total`` bounds the whole call.
    ``resume``: this call repeats one whose outcome was unknown, so even a 1002 on its first
    send means an earlier send landed, and is reconciled.
    Raises the mutation's own errors (``WalletClosedError``, ``DuplicateRequestError`` for a
    reused id, ...), or ``MutationOutcomeUnknownError`` when the outcome cannot be known.
    """
    deadline = _Deadline(limits.total)
    sends = 0
    while True:
        sends += 1
        try:
            with deadline.scope():
                return await send(
                    endpoint, request, identifier=identifier, request_id=request_id, timeout=limits
                )
        except DuplicateRequestError as error:
            error.attempts = sends
            if sends == 1 and not resume:
                raise  # the caller's request_id was used before this call
            # An earlier send of this very request reached the server: learn what it did.
            return await _reconcile(
                send, endpoint, identifier, request_id, limits, deadline, sends, error
            )
        except FreedomPayError as error:
            error.attempts = sends
            last = error
            if not outcome_unknown(error):
                if sends == 1 or isinstance(error, (APIError, ClientClosedError)):
                    raise  # what this request did (an API error), or nothing was sent
                break  # a refused resend (401, 4xx) says nothing of the earlier sends
        except TimeoutError as exc:  # the call's time limit ran out while a send was in flight
            last = _out_of_time(endpoint, identifier, request_id, limits, exc)
            last.attempts = sends
            break
        if not policy.resend_mutations or sends >= policy.max_attempts:
            break
        delay = policy.delay(sends)
        if isinstance(last, RateLimitError) and last.retry_after is not None:
            delay = min(last.retry_after, policy.max_retry_after)  # the wait the server asked
        if delay >= deadline.left():
            break
        _log_resend(endpoint, identifier, request_id, sends, policy.max_attempts, last, delay)
        await asyncio.sleep(delay)
    if not policy.resend_mutations:
        raise _unknown(endpoint, identifier, request_id, sends, last)
    # Every send failed: Request status may still know (an earlier send may have got through).
    return await _reconcile(send, endpoint, identifier, request_id, limits, deadline, sends, last)


async def _reconcile(
    send: Request,
    endpoint: Endpoint[Any, MutationT],
    identifier: str | None,
    request_id: UUID,
    limits: Timeout,
    deadline: _Deadline,
    sends: int,
    cause: FreedomPayError,
) -> MutationT:
    """The outcome of ``request_id`` according to Request status, as the mutation's own result
    or error; ``MutationOutcomeUnknownError`` (caused by ``cause``) when it cannot tell."""
    if deadline.left() <= 0:
        raise _unknown(endpoint, identifier, request_id, sends, cause)
    try:
        with deadline.scope():
            status = await send(
                _protocol.REQUEST_STATUS,
                RequestStatusRequest(request_id=request_id),
                request_id=request_id,
                timeout=limits,
            )
    except RequestNotFoundError:
        # Not there (yet): a send still on its way may land later, so this proves nothing.
        why = "Request status does not know it yet (1006), and a send may still land"
        raise _unknown(endpoint, identifier, request_id, sends, cause, why) from cause
    except (FreedomPayError, TimeoutError) as error:
        why = f"Request status failed too ({type(error).__name__})"
        raise _unknown(endpoint, identifier, request_id, sends, cause, why) from cause
    state = status.request_status
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "%s %r: outcome of request %s learned from Request status after %d sends: %s",
            endpoint.name,
            identifier,
            request_id,
            sends,
            status.request_status_raw,
            extra={"endpoint": endpoint.name, "identifier": identifier, "attempts": sends},
        )
    if state is RequestStatus.ERROR:
        failure = _protocol.api_error(
            endpoint, status, None, identifier=identifier, request_id=request_id
        )
        if isinstance(failure, FreedomPayError):
            failure.attempts = sends
            failure.message += " (outcome from Request status: the reply had been lost)"
        raise failure
    if state is not RequestStatus.SUCCESS and state is not RequestStatus.PROCESSING:
        why = f"Request status answered request_status={status.request_status_raw!r}"
        raise _unknown(endpoint, identifier, request_id, sends, cause, why)
    result = endpoint.response_type(
        status="ok",
        request_status_raw=status.request_status_raw,
        dt=status.dt,
        raw=status.raw,
        request_id=request_id,
    )
    if isinstance(result, WalletAdded):
        wallet = status.wallet
        if wallet is None and identifier is not None and state is RequestStatus.SUCCESS:
            wallet = await _wallet_of(send, identifier, limits, deadline)
        if wallet is not None:
            result = msgspec.structs.replace(result, wallet=wallet)
    return result


async def _wallet_of(
    send: Request, identifier: str, limits: Timeout, deadline: _Deadline
) -> PartialWallet | None:
    """The wallet an Add created, by its identifier; ``None`` if it cannot be fetched in time
    (the Add is known to have succeeded all the same)."""
    if deadline.left() <= 0:
        return None
    try:
        with deadline.scope():
            info = await send(
                _protocol.INFO,
                InfoRequest(identifier=identifier),
                identifier=identifier,
                timeout=limits,
            )
    except (FreedomPayError, TimeoutError) as error:
        logger.warning(
            "add %r succeeded, but its wallet could not be fetched: %s", identifier, error
        )
        return None
    return msgspec.convert(msgspec.to_builtins(info.wallet), PartialWallet)


def _out_of_time(
    endpoint: Endpoint[Any, Any],
    identifier: str | None,
    request_id: UUID,
    limits: Timeout,
    exc: TimeoutError,
) -> RequestTimeoutError:
    error = RequestTimeoutError(
        f"the call's time limit ({limits.total}s) ran out while a send was in flight",
        endpoint=endpoint.name,
        identifier=identifier,
        request_id=request_id,
    )
    error.__cause__ = exc
    return error


def _unknown(
    endpoint: Endpoint[Any, Any],
    identifier: str | None,
    request_id: UUID,
    sends: int,
    cause: FreedomPayError,
    why: str | None = None,
) -> MutationOutcomeUnknownError:
    if why is None:
        status = f" (HTTP {cause.http_status})" if cause.http_status else ""
        why = f"the last send failed with {type(cause).__name__}{status}"
    error = MutationOutcomeUnknownError(
        f"{endpoint.name}: outcome unknown after {sends} send{'s' if sends > 1 else ''} ({why});"
        " send it again later with the same request_id, never with a new one",
        cause=cause,
        endpoint=endpoint.name,
        identifier=identifier,
        request_id=request_id,
        http_status=cause.http_status,
        body=cause.body,
        attempts=sends,
    )
    error.__cause__ = cause
    return error


def _log_resend(
    endpoint: Endpoint[Any, Any],
    identifier: str | None,
    request_id: UUID,
    sends: int,
    max_sends: int,
    error: FreedomPayError,
    delay: float,
) -> None:
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "%s %r: send %d of %d failed (%s, HTTP %s); resending request %s in %.2fs",
            endpoint.name,
            identifier,
            sends,
            max_sends,
            type(error).__name__,
            error.http_status,
            request_id,
            delay,
            extra={
                "endpoint": endpoint.name,
                "identifier": identifier,
                "attempt": sends,
                "http_status": error.http_status,
                "delay": delay,
            },
        )
