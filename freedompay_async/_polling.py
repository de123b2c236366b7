"""Polling with capped exponential backoff inside an overall time budget. Knows nothing of HTTP.

``wallets.wait`` uses it to follow a long-running operation through Request status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


@dataclasses.dataclass
class PollOutcome(Generic[T]):
    """How polling ended: the last value fetched, how many fetches, whether it was final."""

    last: T | None = None
    polls: int = 0
    done: bool = False


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    budget: float | None,
    interval: float,
    max_interval: float,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> PollOutcome[T]:
    """Call ``fetch`` until ``done(value)``; pause ``interval`` seconds, doubling up to
    ``max_interval``, between calls. Gives up after ``budget`` seconds (``None``: never),
    abandoning a fetch in flight. Errors raised by ``fetch`` propagate unchanged.
    ``sleep`` is injectable for tests.
    """
    outcome: PollOutcome[T] = PollOutcome()
    delay = interval
    with anyio.move_on_after(budget):
        while True:
            value = await fetch()
            outcome.last = value
            outcome.polls += 1
            if done(value):
                outcome.done = True
                return outcome
            await sleep(delay)
            delay = min(delay * 2, max_interval)
    return outcome
