"""Redis outages are waited out: every Redis call of the producer and the workers goes through
:class:`Patience`, which retries a call that could not reach Redis, with backoff, for up to
``redis_timeout`` seconds of continuous outage, then raises :class:`RedisUnavailableError`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any, Final, TypeVar

from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from .._validate import check_number

__all__ = ["DEFAULT_REDIS_TIMEOUT", "Patience", "RedisUnavailableError", "check_redis_timeout"]

log = logging.getLogger("freedompay_async.distributed")

T = TypeVar("T")

#: Seconds of Redis outage waited out before giving up, unless ``redis_timeout=`` says otherwise.
DEFAULT_REDIS_TIMEOUT: Final = 60.0
_FIRST_DELAY: Final = 0.05
_MAX_DELAY: Final = 2.0

#: What "Redis cannot be reached (now)" looks like through redis-py; a Redis that is loading
#: its append-only file answers ``LOADING`` (BusyLoadingError) for a while.
TRANSIENT: Final = (ConnectionError, TimeoutError, BusyLoadingError, OSError)


class RedisUnavailableError(ConnectionError):
    """Redis could not be reached for ``redis_timeout`` seconds in a row."""


def check_redis_timeout(value: float) -> float:
    check_number(value, "redis_timeout", 0, 86_400, "a number of seconds")
    return float(value)


class Patience:
    """Retries Redis calls through outages, shared by every task of one producer or worker.

    :attr:`outages` counts the outages that ended (a caller compares it before and after a
    call to learn that Redis was away meanwhile, maybe restarted without its data).

    Each command runs in a task of its own, awaited through a shield: redis-py can lose a
    cancellation that lands inside a command (measured: 3-4 in 400 cancellations of a task
    reading in a loop, blocking or not), and the task would then never stop. A command cut
    short this way finishes in the background; :meth:`drain` waits for those before the
    Redis client is closed.
    """

    def __init__(self, timeout: float, who: str) -> None:
        self.timeout = timeout
        self.who = who
        self.outages = 0
        self._down_since: float | None = None
        self._orphans: set[asyncio.Future[Any]] = set()

    async def drain(self) -> None:
        """Wait for the commands whose callers were cancelled (call before closing Redis)."""
        if self._orphans:
            await asyncio.gather(*self._orphans, return_exceptions=True)

    async def _shielded(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        inner = asyncio.ensure_future(make())
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            self._orphans.add(inner)
            inner.add_done_callback(self._forget)
            raise

    def _forget(self, future: asyncio.Future[Any]) -> None:
        self._orphans.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: its caller is gone

    async def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``await make()``, again and again while Redis cannot be reached (at most
        ``timeout`` seconds since the outage began)."""
        delay = _FIRST_DELAY
        while True:
            try:
                result = await self._shielded(make)
            except TRANSIENT as exc:
                now = monotonic()
                if self._down_since is None:
                    self._down_since = now
                    log.warning(
                        "%s: lost Redis (%s: %s); retrying for up to %g s",
                        self.who,
                        type(exc).__name__,
                        exc,
                        self.timeout,
                    )
                if now - self._down_since >= self.timeout:
                    raise RedisUnavailableError(
                        f"Redis unreachable for {self.timeout:g} s ({type(exc).__name__}: {exc})"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(_MAX_DELAY, delay * 2)
                continue
            if self._down_since is not None:
                log.warning(
                    "%s: Redis is back after %.1f s", self.who, monotonic() - self._down_since
                )
                self._down_since = None
                self.outages += 1
            return result
