"""``client.wallets``: the reads (``info``, ``balance``, ``statement``) and the batch of Info
lookups (``info_many``). The mutations and Request status come from
:class:`~freedompay_async.resources.wallet_mutations.WalletMutations`, its base. Each method
validates its arguments, then is one call into the endpoint table."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Literal

from .. import _protocol
from .._config import DEFAULT_MAX_CONNECTIONS, Timeout
from .._validate import check_identifier, check_period
from ..batch import DEFAULT_CONCURRENCY, DEFAULT_RETRY_BUDGET, Batch, BatchStats, amap
from ..errors import FreedomPayError
from ..models import (
    BalanceRequest,
    InfoRequest,
    StatementRequest,
    WalletBalance,
    WalletInfo,
    WalletStatement,
)
from .wallet_mutations import WalletMutations

__all__ = ["Wallets", "check_identifier"]

logger = logging.getLogger("freedompay_async")


class Wallets(WalletMutations):
    """Wallet operations of the E-Money API.

    Reads (``info``, ``balance``, ``statement``, ``request_status``) may be retried safely.
    Mutations (``add``, ``block``, ``close``, ``identify_owner``) carry a ``request_id``; when a
    reply is lost they are resent with the same ``request_id`` and reconciled through Request
    status, so each returns its real outcome or raises ``MutationOutcomeUnknownError`` (see
    README, "Mutations"). The id is on the result and on every error.
    """

    __slots__ = ()

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
        # Checked and built once (a bad timeout fails now, not once per wallet); None: the
        # client's own limits.
        limits = None if timeout is None else Timeout.coerce(timeout)
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
            self.info if limits is None else functools.partial(self.info, timeout=limits)
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
