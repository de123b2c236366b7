"""Retry policy: which failures are retried, and how long to wait. Pure math, no I/O.

Sleep and randomness are injectable so the policy can be tested without waiting.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Final

from ._validate import check_flag, check_int, check_seconds
from .errors import (
    FreedomPayError,
    HTTPStatusError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    TransportError,
)

#: Statuses worth another try of a read (a 500 on a read cannot have changed anything).
#: Mutations are never retried here: ``_mutations`` resends them with their ``request_id``.
READ_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    Reads are retried after connection errors, timeouts, truncated or malformed replies, HTTP
    429, 502, 503, 504 and 500. A mutation whose outcome is unknown (the same failures, any
    5xx) is resent with the same bytes and the same ``request_id``, then reconciled through
    Request status (see ``freedompay_async._mutations``); ``resend_mutations=False`` sends each
    mutation once instead. Both count ``max_attempts`` sends. The wait before attempt ``n + 1``
    is drawn uniformly from ``[0, min(max_backoff, backoff * 2 ** (n - 1))]`` ("full jitter");
    a ``Retry-After`` header (seconds or an HTTP date) replaces it, capped at
    ``max_retry_after``. Neither ever runs past the call's total timeout: a wait that would is
    not taken, and the error is raised.

    >>> RetryPolicy(max_attempts=5, backoff=0.1)  # doctest: +ELLIPSIS
    RetryPolicy(max_attempts=5, backoff=0.1, max_backoff=5.0, max_retry_after=30.0, ...)
    >>> RetryPolicy.disabled().max_attempts
    1
    """

    #: Attempts in total, the first one included (1 = never retry).
    max_attempts: int = 3
    #: Base of the exponential backoff, in seconds.
    backoff: float = 0.25
    #: Longest jittered backoff, in seconds.
    max_backoff: float = 5.0
    #: Longest wait a ``Retry-After`` header can impose, in seconds.
    max_retry_after: float = 30.0
    #: Resend a mutation whose outcome is unknown (same bytes, same ``request_id``) and
    #: reconcile it through Request status; ``False``: send every mutation once.
    resend_mutations: bool = True

    def __post_init__(self) -> None:
        check_flag(self.resend_mutations, "resend_mutations")
        check_int(self.max_attempts, "max_attempts (1 means no retries)", 1)
        for name in ("backoff", "max_backoff", "max_retry_after"):
            check_seconds(getattr(self, name), name, allow_zero=True)

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def should_retry(self, error: FreedomPayError, *, attempt: int, read: bool) -> bool:
        """Whether ``error`` on attempt number ``attempt`` (1-based) deserves another try."""
        if attempt >= self.max_attempts or not read:
            return False
        return is_transient(error)

    def delay(
        self,
        attempt: int,
        retry_after: str | None = None,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
        now: Callable[[], float] = time.time,
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            seconds = parse_retry_after(retry_after, now=now)
            if seconds is not None:
                return min(seconds, self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return uniform(0.0, ceiling)


def is_transient(error: FreedomPayError) -> bool:
    """Whether a read that failed with ``error`` may succeed if sent again (never true of API
    errors, other 4xx, or a reply over the size cap)."""
    if isinstance(error, HTTPStatusError):
        return error.http_status in READ_RETRY_STATUSES
    if isinstance(error, ResponseTooLargeError):
        return False  # the same request will get the same huge reply
    return isinstance(error, (TransportError, RequestTimeoutError, ResponseDecodeError))


def parse_retry_after(value: str, *, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` if invalid."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²": str.isdigit() takes any Unicode digit
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now())
