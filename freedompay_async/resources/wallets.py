"""``client.wallets``: each method validates its arguments, then is one call into the table."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from uuid import UUID

import msgspec

from .. import _protocol
from .._config import (
    DEFAULT_MAX_CONNECTIONS,
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
    check_period,
    check_reason,
    check_request_id,
    check_seconds,
    invalid,
    request_id_or_new,
)
from ..batch import DEFAULT_CONCURRENCY, DEFAULT_RETRY_BUDGET, Batch, BatchStats, amap
from ..errors import FreedomPayError, WaitTimeoutError
from ..models import (
    AddRequest,
    BalanceRequest,
    BlockRequest,
    CloseRequest,
    InfoRequest,
    MutationResult,
    RequestStatus,
    RequestStatusRequest,
    RequestStatusResult,
    StatementRequest,
    WalletAdded,
    WalletBalance,
    WalletInfo,
    WalletStatement,
    owner_identification_request,
)

if TYPE_CHECKING:
    from .._client import Request
    from .._retry import RetryPolicy

__all__ = ["Wallets", "check_identifier"]

logger = logging.getLogger("freedompay_async")

MutationT = TypeVar("MutationT", bound=MutationResult)
RetireT = TypeVar("RetireT", bound=BlockRequest)  # Block's body, or Close's (the same shape)


class Wallets:
    """Wallet operations of the E-Money API.

    Reads (``info``, ``balance``, ``statement``, ``request_status``) may be retried safely.
    Mutations (``add``, ``block``, ``close``, ``identify_owner``) carry a ``request_id``; when a
    reply is lost they are resent with the same ``request_id`` and reconciled through Request
    status, so each returns its real outcome or raises ``MutationOutcomeUnknownError`` (see
    README, "Mutations"). The id is on the result and on every error.
    """

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

    async def info(self, identifier: str, *, timeout: float | Timeout | None = None) -> WalletInfo:
        """Look a wallet up by its partner-side identifier.

        >>> info = await client.wallets.info("user-42")  # doctest: +SKIP
        >>> info.wallet.balance, info.wallet.currency  # doctest: +SKIP
        (Decimal('15230.50'), 'KZT')

        Raises:
            WalletNotFoundError: no wallet has this identifier (1004).
            ValueError / TypeError: ``identifier`` is empty, not a str or too long (not sent).
        """
        check_identifier(identifier)
        return await self._request(
            _protocol.INFO,
            InfoRequest(identifier=identifier),
            identifier=identifier,
            timeout=timeout,
        )

    async def balance(
        self, identifier: str, *, timeout: float | Timeout | None = None
    ) -> WalletBalance:
        """A wallet's balance and currency (**provisional**: path and reply shape unverified).

        >>> result = await client.wallets.balance("user-42")  # doctest: +SKIP
        >>> result.balance, result.currency  # doctest: +SKIP
        (Decimal('15230.50'), 'KZT')

        ``balance`` / ``currency`` are ``None`` if the reply names them differently; the whole
        reply is in ``result.raw``. ``info`` returns the balance too, on a verified path.

        Raises:
            WalletNotFoundError: no wallet has this identifier (1004).
            ValueError / TypeError: bad ``identifier`` (not sent).
        """
        check_identifier(identifier)
        return await self._request(
            _protocol.BALANCE,
            BalanceRequest(identifier=identifier),
            identifier=identifier,
            timeout=timeout,
        )

    async def statement(
        self,
        identifier: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        timeout: float | Timeout | None = None,
    ) -> WalletStatement:
        """The wallet's operations, optionally between ``start`` and ``end``.

        ``start`` / ``end`` must be timezone-aware; they are sent as RFC 3339.

        >>> from datetime import datetime, timezone  # doctest: +SKIP
        >>> statement = await client.wallets.statement(  # doctest: +SKIP
        ...     "user-42", start=datetime(2024, 1, 1, tzinfo=timezone.utc)
        ... )
        >>> [(op.type, op.amount) for op in statement.operations]  # doctest: +SKIP
        [('emoney_transfer', Decimal('-1500.00'))]

        Raises:
            WalletNotFoundError: no wallet has this identifier (1004).
            ValueError: naive ``start``/``end``, or ``start`` after ``end`` (not sent).
        """
        check_identifier(identifier)
        start_at, end_at = check_period(start, end)
        return await self._request(
            _protocol.STATEMENT,
            StatementRequest(identifier=identifier, start_date=start_at, end_date=end_at),
            identifier=identifier,
            timeout=timeout,
        )

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
            _protocol.BLOCK,
            BlockRequest,
            identifier,
            reason,
            request_id,
            timeout,
            wait,
            wait_timeout,
            resume,
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
            _protocol.CLOSE,
            CloseRequest,
            identifier,
            reason,
            request_id,
            timeout,
            wait,
            wait_timeout,
            resume,
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
        request_type: type[RetireT],
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
        request = request_type(
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

    def info_many(
        self,
        identifiers: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        retry_budget: float | None = DEFAULT_RETRY_BUDGET,
        ordered: bool = False,
        on_progress: Callable[[BatchStats], object] | None = None,
        timeout: float | Timeout | None = None,
    ) -> Batch[str, WalletInfo, FreedomPayError]:
        """Look many wallets up, ``concurrency`` at a time: an async iterator of results.

        ``identifiers`` may be any iterable or async iterable (a generator over a huge file is
        fine: it is read lazily, never held in memory). Each wallet is reported exactly once as
        a :class:`~freedompay_async.batch.BatchResult`: ``.identifier``, and ``.value`` (the
        :class:`WalletInfo`) or ``.error`` (the typed :class:`FreedomPayError`); one failed
        wallet never stops the batch. Results come as they complete, or in input order with
        ``ordered=True``. Use ``async with`` so that leaving the loop early stops every request
        in flight at once::

            async with client.wallets.info_many(identifiers, concurrency=64) as results:
                async for result in results:
                    if result.error is None:  # the same test as result.ok
                        print(result.identifier, result.value.wallet.balance)
                    else:
                        print(result.identifier, result.error.error_code)
            print(results.stats)   # done, ok, failed by error class, rate, latency p50/p95/p99

        Args:
            identifiers: partner-side wallet identifiers.
            concurrency: requests in flight at most, or ``"auto"``: a limit that follows the
                server's pace (see :func:`~freedompay_async.batch.amap`), up to
                ``max_concurrency``. A number is capped at the transport's pool size
                (``max_connections`` for the default one), with one WARNING log line, since a
                request queued for a socket would spend its time limits waiting.
            max_concurrency: with ``"auto"``, the most requests in flight (default: the
                transport's pool size, ``max_connections`` for the default one).
            rate_limit: requests started per second at most (``None``: no limit).
            retry_budget: retries at most this share of the batch's requests (sliding
                10-second window); ``None``: no budget. One 429 / 503 with ``Retry-After``
                pauses every new request of the batch until then, whatever the concurrency.
            ordered: yield in input order (holding at most ``2 * concurrency`` results back).
            on_progress: called with the live :class:`~freedompay_async.batch.BatchStats`
                every :data:`~freedompay_async.batch.PROGRESS_INTERVAL` seconds and at the end.
            timeout: per request, as for :meth:`info`.

        Each identifier goes through :meth:`info` itself (same checks, errors and retries): one
        that could never be valid (empty, too long, control characters) is reported on its
        result as an :class:`~freedompay_async.errors.InvalidArgumentError`, an item that is
        not a ``str`` as an :class:`~freedompay_async.errors.ArgumentTypeError`; neither is
        sent. See :mod:`freedompay_async.batch` for the guarantees (memory, cancellation, rate).
        """
        Timeout.coerce(timeout)  # a bad timeout fails now, not once per wallet
        pool = self._pool_size
        if concurrency == "auto":
            # The limit grows up to the pool size (a borrowed session without a limit: the
            # SDK's default pool size); a larger max_concurrency is capped like a number.
            if max_concurrency is None:
                max_concurrency = pool or DEFAULT_MAX_CONNECTIONS
            else:
                max_concurrency = _within_pool(max_concurrency, pool, name="max_concurrency")
        else:
            concurrency = _within_pool(concurrency, pool)
        lookup: Callable[[str], Awaitable[WalletInfo]] = (
            self.info if timeout is None else functools.partial(self.info, timeout=timeout)
        )
        return amap(
            lookup,
            identifiers,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            retry_budget=retry_budget,
            ordered=ordered,
            catch=FreedomPayError,
            on_progress=on_progress,
        )


def _within_pool(concurrency: int, pool: int | None, *, name: str = "concurrency") -> int:
    """``concurrency``, capped at the connection pool: a request beyond the pool would only wait
    for a socket, with its time limits running (so a slow server would turn the wait into
    timeouts), and hold a task and its memory meanwhile. Said once, in a WARNING line."""
    if (
        pool is None
        or isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or concurrency <= pool
    ):
        return concurrency  # amap checks the value itself
    logger.warning(
        "info_many: %s=%d capped at the connection pool size %d (max_connections)",
        name,
        concurrency,
        pool,
        extra={name: concurrency, "pool_size": pool},
    )
    return pool


def _request_id(request_id: UUID | str | None, resume: bool) -> UUID:
    """The mutation's ``request_id``: the caller's, or a new UUID4 (not when resuming)."""
    if check_flag(resume, "resume") and request_id is None:
        invalid("resume=True needs the request_id of the call it resumes")
    return request_id_or_new(request_id)


def _finished(result: RequestStatusResult) -> bool:
    return result.request_status.is_final
