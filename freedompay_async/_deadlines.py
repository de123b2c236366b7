"""Long total time limits of requests in flight, checked by one shared timer: a speed trick.

A per-request timer (aiohttp's ``total``) costs a timer handle, a heap push and a cancellation
for every request, and the cancelled handles pile up in the event loop's heap until it is
rebuilt. :class:`Deadlines` replaces them, for limits of :data:`COARSE_TIMEOUT` seconds or more,
with one tick every :data:`DEADLINE_TICK` seconds. Kept because it pays: without it (aiohttp's
``total`` on every request) ``python -m benchmarks ab`` measured 7.9 % more CPU per lookup
(median of 40 paired rounds). The default transport uses it, nothing else.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Final

#: ``Task.uncancel()``, which telling the deadline's cancellation from the caller's needs,
#: is 3.11+; on 3.10 every limit gets aiohttp's precise timer.
SUPPORTED: Final = sys.version_info >= (3, 11)
#: Total limits this long or longer are checked by the shared tick, every ``DEADLINE_TICK``
#: seconds (so they fire up to a tick late; aiohttp itself rounds such limits up to whole
#: seconds); shorter ones get a precise timer of their own.
COARSE_TIMEOUT = 5.0
DEADLINE_TICK = 0.5


class Deadlines:
    """Total time limits of the requests in flight, checked by one timer for all of them.

    Limits of :data:`COARSE_TIMEOUT` seconds or more (which aiohttp rounds up to whole seconds
    anyway) are registered here under the request's task; one shared tick every
    :data:`DEADLINE_TICK` seconds cancels the tasks whose time has come. Entering and leaving
    follow :class:`asyncio.Timeout` (3.11) step for step: the task's ``cancelling()`` count is
    noted on entry; on exit an expired request calls ``uncancel()``, and only when no other
    cancellation is pending and the request ended in ``CancelledError`` does it become a
    timeout, so a cancellation from outside stays a cancellation and none is left behind.
    Shorter limits, and a request nested in another one of the same task (a trace callback
    calling the client), get aiohttp's precise per-request ``total`` instead.

    It needs ``Task.uncancel()``: on Python 3.10,
    :data:`SUPPORTED` is false and every limit is aiohttp's ``total``.
    """

    __slots__ = ("_active", "_expired", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: task -> (its deadline on the loop clock, its ``cancelling()`` count on entry)
        self._active: dict[asyncio.Task[Any], tuple[float, int]] = {}
        #: task -> its ``cancelling()`` count on entry, for tasks the tick has cancelled
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._handle: asyncio.TimerHandle | None = None

    def enter(self, total: float | None) -> asyncio.Task[Any] | None:
        """Register the current task's request for ``total`` seconds; return the task.

        Call it from a task running on this registry's event loop. ``None`` means "not here"
        (no limit, a short one, or a nested request): the caller then uses a precise timer of
        its own. Nothing may run between this call and the caller's ``try`` (no ``await``),
        and the caller must call :meth:`leave` when its request ends, however it ends.
        """
        if total is None or total < COARSE_TIMEOUT:
            return None
        task = asyncio.current_task(self._loop)
        if task is None or task in self._active or task in self._expired:
            return None
        loop = self._loop
        untyped: Any = task  # Task.cancelling() and uncancel() are 3.11+, where this is used
        self._active[task] = (loop.time() + total, untyped.cancelling())
        if self._handle is None:
            self._handle = loop.call_later(DEADLINE_TICK, self._tick)
        return task

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """The request of ``task`` has ended. True when its deadline expired and the
        cancellation that ended it was the deadline's alone (``asyncio.Timeout.__aexit__``)."""
        if self._active.pop(task, None) is not None:
            return False
        cancelling = self._expired.pop(task, None)
        if cancelling is None:  # closed meanwhile
            return False
        untyped: Any = task
        pending: int = untyped.uncancel()
        return pending <= cancelling

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        active = self._active
        expired = [task for task, (when, _) in active.items() if when <= now]
        for task in expired:
            _, cancelling = active.pop(task)
            self._expired[task] = cancelling
            task.cancel()  # asyncio.Timeout._on_timeout
        if active:
            self._handle = self._loop.call_later(DEADLINE_TICK, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._active.clear()
        self._expired.clear()
