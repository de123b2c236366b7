"""Retry policy: which failures are retried, and how long to wait. Pure math, no I/O.

Sleep and randomness are injectable so the policy can be tested without waiting.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Final

from .errors import (
    FreedomPayError,
    HTTPStatusError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    TransportError,
)

#: Statuses worth another try for any endpoint marked safe to retry.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: Also retried for reads: a 500 on a read cannot have changed anything.
READ_RETRY_STATUSES: Final = RETRY_STATUSES | {500}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried. Only endpoints marked safe (reads) are ever retried.

    Retried: connection errors, timeouts, truncated or malformed replies, HTTP 429, 502, 503,
    504 and 500. The wait before attempt ``n + 1`` is drawn uniformly from
    ``[0, min(max_backoff, backoff * 2 ** (n - 1))]`` ("full jitter"); a ``Retry-After`` header
    (seconds or an HTTP date) replaces it, capped at ``max_retry_after``. Neither ever runs
    past the call's total timeout: a wait that would is not taken, and the error is raised.

    >>> RetryPolicy(max_attempts=5, backoff=0.1)
    RetryPolicy(max_attempts=5, backoff=0.1, max_backoff=5.0, max_retry_after=30.0)
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

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (1 means no retries)")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def should_retry(self, error: FreedomPayError, *, attempt: int, read: bool) -> bool:
        """Whether ``error`` on attempt number ``attempt`` (1-based) deserves another try."""
        if attempt >= self.max_attempts or not read:
            return False
        return is_transient(error, read=read)

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


def is_transient(error: FreedomPayError, *, read: bool) -> bool:
    """Whether ``error`` may go away on its own (never true of API errors or bad input)."""
    if isinstance(error, HTTPStatusError):
        statuses = READ_RETRY_STATUSES if read else RETRY_STATUSES
        return error.http_status in statuses
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
