"""The mutations of ``client.wallets`` (Add, Block, Close, owner identification) and the way
to follow them up (Request status, ``wait``): :class:`WalletMutations`, the base of
:class:`~freedompay_async.resources.wallets.Wallets`.

Each method validates its arguments, then sends through the client's request path with
:func:`~freedompay_async._mutations.send_mutation` (resent with the same ``request_id`` when a
reply is lost, reconciled through Request status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec

from .. import _protocol
from .._config import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Timeout,
)
from .._mutations import send_mutation
from .._polling import poll_until
from .._protocol import Endpoint, RequestT
from .._validate import (
    check_country,
    check_currency,
    check_flag,
    check_identifier,
    check_optional_seconds,
    check_owner_fields,
    check_reason,
    check_request_id,
    check_seconds,
    invalid,
    request_id_or_new,
)
from ..errors import WaitTimeoutError
from ..models import (
    AddRequest,
    BlockRequest,
    MutationResult,
    RequestStatus,
    RequestStatusRequest,
    RequestStatusResult,
    WalletAdded,
    owner_identification_request,
)

if TYPE_CHECKING:
    from .._client import Request
    from .._retry import RetryPolicy

__all__ = ["WalletMutations"]

MutationT = TypeVar("MutationT", bound=MutationResult)
RetireT = TypeVar("RetireT", bound=BlockRequest)  # Block's body, or Close's (the same shape)


class WalletMutations:
    """Mutations carry a ``request_id``; when a reply is lost they are resent with the same
    ``request_id`` and reconciled through Request status, so each returns its real outcome or
    raises ``MutationOutcomeUnknownError`` (see README, "Mutations"). The id is on the result
    and on every error. Use it through ``client.wallets`` (a :class:`Wallets`)."""

    __slots__ = ("_pool_size", "_request", "_retry", "_timeout")

    def __init__(
        self, request: Request, *, retry: RetryPolicy, timeout: Timeout, pool_size: int | None
    ) -> None:
        #: The client's request path, bound to it (or to a ``with_options`` view of it), and
        #: that client's retry policy and time limits, which mutations apply themselves.
        self._request = request
        self._retry = retry
        self._timeout = timeout
        #: Requests the transport can carry at once (``None``: no cap), for ``info_many``.
        self._pool_size = pool_size

    async def add(
        self,
        *,
        country: str,
        currency: str,
        identifier: str | None = None,
        request_id: UUID | str | None = None,
        timeout: float | Timeout | None = None,
        wait: bool = False,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        resume: bool = False,
    ) -> WalletAdded:
        """Open a wallet in ``currency`` for a customer in ``country``.

        ``request_id`` is generated (UUID4) when not given; it is on the result and on any
        error. With ``wait=True`` a "processing" answer is followed up with :meth:`wait`.
        ``resume=True`` repeats a call that raised ``MutationOutcomeUnknownError`` (same
        arguments, same ``request_id``): if an earlier send of it landed meanwhile, its outcome
        is returned instead of ``DuplicateRequestError``. The other mutations take it too.

        >>> added = await client.wallets.add(  # doctest: +SKIP
        ...     country="KAZ", currency="KZT", identifier="user-42"
        ... )
        >>> added.request_id, added.wallet.wallet_id  # doctest: +SKIP

        The ``identifier`` field and the reply's ``wallet`` are unverified (provisional).

        Raises:
            WalletExistsError: a wallet with this identifier exists (1003).
            DuplicateRequestError: this ``request_id`` was used before this call (1002).
            MutationOutcomeUnknownError: whether it happened cannot be known (resend it later
                with the same ``request_id``).
            ValueError / TypeError: bad arguments (not sent).
        """
        country = check_country(country)
        currency = check_currency(currency)
        if identifier is not None:
            check_identifier(identifier)
        rid = _request_id(request_id, resume)
        request = AddRequest(
            request_id=rid, country=country, currency=currency, identifier=identifier
        )
        return await self._mutate(
            _protocol.ADD,
            request,
            identifier,
            rid,
            timeout,
            wait=wait,
            wait_timeout=wait_timeout,
            resume=resume,
        )

    async def block(
        self,
        identifier: str,
        reason: str,
        *,
        request_id: UUID | str | None = None,
        timeout: float | Timeout | None = None,
        wait: bool = False,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        resume: bool = False,
    ) -> MutationResult:
        """Block a wallet; ``reason`` is sent as its ``description``.

        >>> done = await client.wallets.block("user-42", reason="card reported stolen")  # doctest: +SKIP
        >>> done.request_id, done.request_status  # doctest: +SKIP

        Raises:
            WalletNotFoundError (1004), WalletClosedError (1007), WalletBlockError (1008),
            DuplicateRequestError (1002), MutationOutcomeUnknownError; ValueError / TypeError for
            bad arguments (not sent).
        """
        return await self._retire(
            _protocol.BLOCK, identifier, reason, request_id, timeout, wait, wait_timeout, resume
        )

    async def close(
        self,
        identifier: str,
        reason: str,
        *,
        request_id: UUID | str | None = None,
        timeout: float | Timeout | None = None,
        wait: bool = False,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        resume: bool = False,
    ) -> MutationResult:
        """Close a wallet for good; ``reason`` is sent as its ``description`` (path unverified).

        >>> done = await client.wallets.close("user-42", reason="customer left")  # doctest: +SKIP

        Raises:
            WalletNotFoundError (1004), WalletClosedError (1007), WalletCloseError (1005),
            DuplicateRequestError (1002), MutationOutcomeUnknownError; ValueError / TypeError for
            bad arguments (not sent).
        """
        return await self._retire(
            _protocol.CLOSE, identifier, reason, request_id, timeout, wait, wait_timeout, resume
        )

    async def identify_owner(
        self,
        identifier: str,
        *,
        request_id: UUID | str | None = None,
        timeout: float | Timeout | None = None,
        wait: bool = False,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        resume: bool = False,
        **owner: Any,
    ) -> MutationResult:
        """Link an identified owner (KYC data) to a wallet (**provisional**).

        The docs do not show this endpoint: its path is a guess, and the owner's fields are
        passed as keyword arguments and sent flat beside ``request_id`` and ``identifier``,
        named exactly as you name them.

        >>> await client.wallets.identify_owner(  # doctest: +SKIP
        ...     "user-42", iin="900101300123", first_name="Aigerim", last_name="Serikova",
        ...     birth_date=date(1990, 1, 1),
        ... )

        Values: ``str``, ``int``, ``bool``, ``Decimal``, ``date``, aware ``datetime`` and
        dicts / lists of these; never ``float`` or ``None``. Names must look like
        ``first_name``; ``request_id``, ``timeout``, ``wait``, ``wait_timeout`` and ``resume``
        are this method's own options, so they cannot be owner fields.

        Raises:
            WalletNotFoundError (1004), WalletClosedError (1007), DuplicateRequestError (1002),
            MutationOutcomeUnknownError; ValueError / TypeError for bad arguments (not sent).
        """
        check_identifier(identifier)
        fields = check_owner_fields(owner)
        rid = _request_id(request_id, resume)
        request = owner_identification_request(rid, identifier, fields)
        return await self._mutate(
            _protocol.IDENTIFY_OWNER,
            request,
            identifier,
            rid,
            timeout,
            wait=wait,
            wait_timeout=wait_timeout,
            resume=resume,
        )

    async def request_status(
        self, request_id: UUID | str, *, timeout: float | Timeout | None = None
    ) -> RequestStatusResult:
        """The state of an earlier mutation, by its ``request_id`` (**provisional**).

        Returns whatever state it is in (see ``result.request_status``); use :meth:`wait` to
        wait for the end. The path and the reply shape are unverified.

        Raises:
            RequestNotFoundError: no request has this ``request_id`` (1006).
            ValueError / TypeError: ``request_id`` is not a UUID (not sent).
        """
        rid = check_request_id(request_id)
        return await self._request(
            _protocol.REQUEST_STATUS,
            RequestStatusRequest(request_id=rid),
            request_id=rid,
            timeout=timeout,
        )

    async def wait(
        self,
        request_id: UUID | str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
    ) -> RequestStatusResult:
        """Poll Request status until the operation has finished; return its final status.

        Polls at once, then after ``poll_interval`` seconds, doubling the pause up to
        ``max_poll_interval``. ``timeout`` bounds the whole wait (``None``: no limit); an
        in-flight poll is abandoned when it runs out.

        >>> added = await client.wallets.add(country="KAZ", currency="KZT")  # doctest: +SKIP
        >>> if not added.request_status.is_final:  # doctest: +SKIP
        ...     final = await client.wallets.wait(added.request_id, timeout=30)

        Raises:
            WaitTimeoutError: still not finished after ``timeout`` seconds (it may still
                finish; wait again later, never resend the mutation).
            APIError: the operation failed; the subclass matches its ``error_code`` (e.g.
                ``WalletClosedError``) and ``request_id`` is set.
            RequestNotFoundError: no request has this ``request_id`` (1006).
        """
        rid = check_request_id(request_id)
        budget = check_optional_seconds(timeout, "timeout")
        delay = check_seconds(poll_interval, "poll_interval")
        cap = check_seconds(max_poll_interval, "max_poll_interval")
        if cap < delay:
            invalid("max_poll_interval must not be smaller than poll_interval")

        outcome = await poll_until(
            lambda: self.request_status(rid),
            _finished,
            budget=budget,
            interval=delay,
            max_interval=cap,
        )
        last = outcome.last
        if outcome.done and last is not None:
            if last.request_status is RequestStatus.ERROR:
                raise _protocol.operation_error(last, rid)
            return last
        seen = "no reply" if last is None else f"request_status={last.request_status_raw!r}"
        raise WaitTimeoutError(
            f"operation still not finished after {budget}s ({outcome.polls} polls, last {seen});"
            " it may still finish: wait again later and do not resend it",
            endpoint=_protocol.REQUEST_STATUS.name,
            request_id=rid,
            request_status=None if last is None else last.request_status,
            attempts=max(outcome.polls, 1),
        )

    async def _retire(
        self,
        endpoint: Endpoint[RetireT, MutationResult],
        identifier: str,
        reason: str,
        request_id: UUID | str | None,
        timeout: float | Timeout | None,
        wait: bool,
        wait_timeout: float | None,
        resume: bool,
    ) -> MutationResult:
        """Block and Close: the same body (``request_id``, ``identifier``, ``description``)."""
        check_identifier(identifier)
        rid = _request_id(request_id, resume)
        request = endpoint.request_type(
            request_id=rid, identifier=identifier, description=check_reason(reason)
        )
        return await self._mutate(
            endpoint,
            request,
            identifier,
            rid,
            timeout,
            wait=wait,
            wait_timeout=wait_timeout,
            resume=resume,
        )

    async def _mutate(
        self,
        endpoint: Endpoint[RequestT, MutationT],
        request: RequestT,
        identifier: str | None,
        request_id: UUID,
        timeout: float | Timeout | None,
        *,
        wait: bool,
        wait_timeout: float | None,
        resume: bool,
    ) -> MutationT:
        """Send a mutation, resending and reconciling it when its reply is lost (see
        :mod:`freedompay_async._mutations`); with ``wait``, follow "processing" to the end."""
        check_flag(wait, "wait")
        if wait:
            check_optional_seconds(wait_timeout, "wait_timeout")
        result = await send_mutation(
            self._request,
            self._retry,
            endpoint,
            request,
            identifier=identifier,
            request_id=request_id,
            limits=self._timeout if timeout is None else Timeout.coerce(timeout),
            resume=resume,
        )
        state = result.request_status
        if not wait or state.is_final:
            return result
        final = await self.wait(request_id, timeout=wait_timeout)
        changes: dict[str, Any] = {"request_status_raw": final.request_status_raw, "dt": final.dt}
        if isinstance(result, WalletAdded) and final.wallet is not None:
            changes["wallet"] = final.wallet
        return msgspec.structs.replace(result, **changes)


def _request_id(request_id: UUID | str | None, resume: bool) -> UUID:
    """The mutation's ``request_id``: the caller's, or a new UUID4 (not when resuming)."""
    if check_flag(resume, "resume") and request_id is None:
        invalid("resume=True needs the request_id of the call it resumes")
    return request_id_or_new(request_id)


def _finished(result: RequestStatusResult) -> bool:
    return result.request_status.is_final
