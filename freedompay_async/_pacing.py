"""Batch-wide pacing: the brake on 429/503, the retry budget, and the hook into ``_request``.

A batch (:func:`freedompay_async.batch.amap`) makes one :class:`Pacing` and sets it in
:data:`current` for its workers (a context variable: each worker task inherits it, nothing
outside the batch sees it). The client's request loop consults it, when there is one:

- before every send, :meth:`Pacing.ready` waits while the brake is on;
- on a failed attempt, :meth:`Pacing.failed` is told the error and the ``Retry-After`` header:
  a 429 or 503 with ``Retry-After`` puts the brake on for the *whole* batch, and 429, 503 and
  timeouts tell the adaptive limit (if any) to shrink;
- before a retry, :meth:`Pacing.allow_retry` asks the retry budget.

Calls outside a batch see ``current.get() is None`` and are untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._retry import parse_retry_after

if TYPE_CHECKING:
    from ._adaptive import AdaptiveLimit

__all__ = ["DEFAULT_RETRY_BUDGET", "Brake", "Pacing", "RetryBudget", "current", "is_overload"]

#: Retries allowed, as a share of the requests sent over the budget's window.
DEFAULT_RETRY_BUDGET: Final = 0.2
#: Statuses that mean "too much load": they shrink the adaptive limit, and with
#: ``Retry-After`` they put the brake on.
OVERLOAD_STATUSES: Final = frozenset({429, 503})
#: On resume, each waiter adds a random delay of up to this share of the pause (at most
#: :data:`MAX_JITTER` seconds), so that the whole batch does not resend in one burst.
JITTER_SHARE: Final = 0.1
MAX_JITTER: Final = 1.0

#: The pacing of the batch the current task works for (``None`` outside a batch).
current: contextvars.ContextVar[Pacing | None] = contextvars.ContextVar(
    "freedompay_async_pacing", default=None
)


def is_overload(error: BaseException) -> bool:
    """Whether ``error`` says the server is overloaded: HTTP 429 / 503, or a timeout."""
    if isinstance(error, TimeoutError):
        return True
    return getattr(error, "http_status", None) in OVERLOAD_STATUSES


class Brake:
    """Holds every new send of a batch until a ``Retry-After`` moment has passed.

    :meth:`engage` moves the moment later (never earlier); :meth:`wait` returns at once when the
    brake is off, else sleeps until the moment plus a random jitter.
    """

    __slots__ = ("_clock", "_uniform", "paused_seconds", "pauses", "until")

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._clock = clock
        self._uniform = uniform
        #: The moment (``clock`` time) new sends may resume; 0.0 when the brake is off.
        self.until = 0.0
        #: Times the brake went on while it was off.
        self.pauses = 0
        #: Seconds of pause imposed so far (overlapping ``Retry-After`` counted once).
        self.paused_seconds = 0.0

    def engage(self, seconds: float) -> None:
        now = self._clock()
        until = now + seconds
        if until <= self.until:
            return
        if self.until <= now:
            self.pauses += 1
            self.paused_seconds += seconds
        else:
            self.paused_seconds += until - self.until
        self.until = until

    @property
    def engaged(self) -> bool:
        return self.until > self._clock()

    def remaining(self) -> float:
        """Seconds until new sends may resume (0.0 when the brake is off)."""
        return max(0.0, self.until - self._clock()) if self.until else 0.0

    async def wait(self) -> None:
        """Sleep while the brake is on (then a jitter of up to 10% of the pause, at most 1 s)."""
        while True:
            until = self.until
            if not until:
                return
            remaining = until - self._clock()
            if remaining <= 0:
                self.until = 0.0
                return
            jitter = self._uniform(0.0, min(MAX_JITTER, JITTER_SHARE * remaining))
            await asyncio.sleep(remaining + jitter)
            if self.until <= until:  # not moved later meanwhile
                return


class RetryBudget:
    """Retries may be at most ``ratio`` of the requests sent over the last ``window`` seconds
    (and ``minimum`` per window whatever the traffic), like gRPC and Envoy retry budgets.

    Counts live in ``buckets`` slices of the window, so memory is fixed.
    """

    __slots__ = (
        "_bucket_seconds",
        "_clock",
        "_current",
        "_requests",
        "_retries",
        "_started",
        "denied",
        "minimum",
        "ratio",
        "retried",
    )

    def __init__(
        self,
        ratio: float = DEFAULT_RETRY_BUDGET,
        *,
        window: float = 10.0,
        buckets: int = 10,
        minimum: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self._clock = clock
        self._bucket_seconds = window / buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._current = 0  # index of the bucket counts go to now
        self._started = math.floor(clock() / self._bucket_seconds)  # that bucket's number
        #: Retries allowed so far, and retries refused by the budget.
        self.retried = 0
        self.denied = 0

    def _bucket(self) -> int:
        number = math.floor(self._clock() / self._bucket_seconds)
        passed = number - self._started
        if passed > 0:
            size = len(self._requests)
            for step in range(1, min(passed, size) + 1):
                index = (self._current + step) % size
                self._requests[index] = 0
                self._retries[index] = 0
            self._current = (self._current + passed) % size
            self._started = number
        return self._current

    def sent(self) -> None:
        """One request (first attempt or retry) goes out."""
        self._requests[self._bucket()] += 1

    def allow(self) -> bool:
        """May one more retry go out? Counts it when it may."""
        index = self._bucket()
        allowed = max(self.minimum, self.ratio * sum(self._requests))
        if sum(self._retries) + 1 > allowed:
            self.denied += 1
            return False
        self._retries[index] += 1
        self.retried += 1
        return True


class Pacing:
    """What one batch shares across its workers: the brake, the retry budget, the limit."""

    __slots__ = ("brake", "budget", "limit", "refused", "timeouts")

    def __init__(
        self,
        *,
        limit: AdaptiveLimit | None = None,
        budget: RetryBudget | None = None,
        brake: Brake | None = None,
    ) -> None:
        self.limit = limit
        self.budget = budget
        self.brake = brake if brake is not None else Brake()
        #: Replies 429 / 503 seen by the batch's requests, and timeouts.
        self.refused = 0
        self.timeouts = 0

    async def ready(self) -> None:
        """Before a send: wait while the brake is on; count the request for the budget."""
        if self.brake.until:
            await self.brake.wait()
        if self.budget is not None:
            self.budget.sent()

    def failed(self, error: BaseException, retry_after: str | None, cap: float) -> None:
        """An attempt failed with ``error`` (``retry_after``: the reply's header, if any)."""
        status = getattr(error, "http_status", None)
        pause = 0.0
        if status in OVERLOAD_STATUSES:
            self.refused += 1
            if retry_after is not None:
                seconds = parse_retry_after(retry_after)
                if seconds is not None and seconds > 0:
                    pause = min(seconds, cap)
                    self.brake.engage(pause)
        elif isinstance(error, TimeoutError):
            self.timeouts += 1
        else:
            return
        if self.limit is not None:
            self.limit.overloaded(pause)

    def allow_retry(self) -> bool:
        """May the request that just failed be resent (the retry budget has room)?"""
        return self.budget is None or self.budget.allow()
