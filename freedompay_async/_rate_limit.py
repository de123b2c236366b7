"""The batch's rate limiter: :class:`RateLimiter`, a token bucket holding a single token.

Used by :func:`freedompay_async.batch.amap` when ``rate_limit=`` is given: each worker waits
for its slot just before it starts a call, so calls *start* at most ``rate`` times a second.
"""

from __future__ import annotations

import math

import anyio


class RateLimiter:
    """A token bucket holding one token: starts are spaced ``1 / rate`` seconds apart.

    Each caller reserves the next free slot before sleeping, so many waiters are served in
    order and a late wake-up does not shift the slots after it (timer jitter does not lower
    the average rate). A caller cancelled while it sleeps leaves its slot unused.
    """

    __slots__ = ("_interval", "_next_slot")

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next_slot = -math.inf

    async def wait(self) -> None:
        """Return at this caller's slot: at once if the previous slot is ``1 / rate`` ago."""
        now = anyio.current_time()
        slot = self._next_slot if self._next_slot > now else now
        self._next_slot = slot + self._interval
        if slot > now:
            await anyio.sleep(slot - now)
