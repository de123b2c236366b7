"""Bounded, streaming, concurrent map over any coroutine function: :func:`amap`.

This module knows nothing of HTTP: ``client.wallets.info_many`` is ``amap`` over
``client.wallets.info``, and the same helper serves any other endpoint or your own coroutine::

    from freedompay_async.batch import amap

    async with amap(client.wallets.info, identifiers, concurrency=64, rate_limit=500) as results:
        async for result in results:
            if result.ok:
                print(result.identifier, result.value.wallet.balance)
            else:
                print(result.identifier, type(result.error).__name__)
    print(results.stats)          # 100000 done (99990 ok, 10 failed ...) in 21.3s, 4694/s, ...

How it works, and what it guarantees:

- **Streaming input.** ``items`` may be any iterable or async iterable (a generator over a
  10^7-line file is fine). It is never materialised: a fixed pool of at most ``concurrency``
  worker tasks pulls items one at a time, so at most ``concurrency`` calls are in flight and at
  most about ``2 * concurrency`` items are held between the input and your loop.
- **Every item reported exactly once**, success or failure, as a :class:`BatchResult`. An
  exception of the ``catch`` types (default: any :class:`Exception`) from one call becomes that
  item's ``error``; it never stops the batch. An exception outside ``catch`` is taken as a bug:
  the calls in flight are cancelled, the results already completed are still yielded, then the
  exception is raised from the ``async for``, unwrapped. An exception raised by the input
  iterator itself stops the intake only: the calls in flight complete and are yielded, then the
  exception is raised. An exception from ``on_progress`` stops the batch at once.
  ``BaseException`` (cancellation, ``KeyboardInterrupt``) is never caught.
- **Order.** Results come as they complete; with ``ordered=True`` they come in input order,
  through a reorder buffer bounded to ``2 * concurrency`` results (a slow item holds the
  others back rather than letting memory grow).
- **Rate.** ``rate_limit`` caps how many calls *start* per second, on top of the concurrency
  cap: a token bucket holding a single token (calls are evenly spaced; slots are reserved in
  advance, so timer jitter does not lower the average rate).
- **Pace.** ``concurrency="auto"`` replaces the fixed cap by a limit that follows the
  server (:mod:`freedompay_async._adaptive`), up to ``max_concurrency`` workers. Whatever the
  concurrency, the SDK's requests made by the calls share the batch's pacing
  (:mod:`freedompay_async._pacing`): one 429 / 503 with ``Retry-After`` pauses every new
  request of the batch until then, and retries are budgeted (``retry_budget``).
- **Clean stops.** Leaving ``async with`` (by ``break``, an exception or cancellation), calling
  :meth:`Batch.aclose`, or cancelling the task that iterates stops every call in flight and
  waits for the workers to finish: no task outlives the batch. Without ``async with``, plain
  ``async for`` cleans up the same way when the loop ends or is cancelled; after a ``break``
  the workers are cancelled as soon as the batch object is garbage-collected (immediately in
  CPython when nothing else refers to it), but not waited for: prefer ``async with`` when you
  may leave early. The input iterator is never closed by the batch; it stays yours.
- **Stats.** :attr:`Batch.stats` is a live :class:`BatchStats` (done, ok, failed by error
  class, elapsed, rate, latency percentiles from a fixed-size histogram, so memory stays flat
  over 10^7 items); ``on_progress(stats)`` is called at most every
  :data:`PROGRESS_INTERVAL` seconds and once when the batch completes.

The batch runs on asyncio (the SDK's transport is aiohttp); inside it uses anyio's task group,
memory object streams and cancel scopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
)
from time import perf_counter
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, overload

import anyio

from ._adaptive import AdaptiveLimit
from ._batch_results import BatchResult, BatchStats
from ._batch_runner import _Channel, _Runner
from ._config import DEFAULT_MAX_CONNECTIONS
from ._pacing import DEFAULT_RETRY_BUDGET, Pacing, RetryBudget

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RETRY_BUDGET",
    "PROGRESS_INTERVAL",
    "Batch",
    "BatchResult",
    "BatchStats",
    "amap",
]

#: Calls in flight at once unless ``concurrency=`` says otherwise.
DEFAULT_CONCURRENCY: Final = 64
#: ``on_progress`` is called at most this often (seconds), and once at the end.
PROGRESS_INTERVAL: Final = 0.2

ItemT = TypeVar("ItemT")
ValueT = TypeVar("ValueT")
ErrorT = TypeVar("ErrorT", bound=Exception)

#: Runner tasks still going, so that one whose batch was dropped is not garbage-collected.
_running: Final[set[asyncio.Task[None]]] = set()


class Batch(Generic[ItemT, ValueT, ErrorT]):
    """A running (or not yet started) batch: an async iterator of :class:`BatchResult`.

    Made by :func:`amap` (and ``client.wallets.info_many``). Iterate it with ``async for``,
    preferably inside ``async with`` so that leaving early always stops the work at once::

        async with amap(fetch, items) as results:
            async for result in results:
                ...
        results.stats        # the final BatchStats

    Nothing runs until the first ``async for`` step (or ``async with``). A batch runs once.
    """

    def __init__(
        self,
        func: Callable[[ItemT], Awaitable[ValueT]],
        items: Iterable[ItemT] | AsyncIterable[ItemT],
        *,
        concurrency: int,
        rate_limit: float | None,
        ordered: bool,
        catch: tuple[type[ErrorT], ...],
        on_progress: Callable[[BatchStats], object] | None,
        pacing: Pacing | None = None,
    ) -> None:
        #: Live counters; final once the batch has ended.
        self.stats = BatchStats()
        if pacing is not None:
            self.stats._pacing = pacing
        self._runner: _Runner[ItemT, ValueT, ErrorT] | None = _Runner(
            func,
            items,
            concurrency=concurrency,
            rate_limit=rate_limit,
            ordered=ordered,
            catch=catch,
            stats=self.stats,
        )
        self._ordered = ordered
        self._on_progress = on_progress
        self._next_progress = 0.0
        self._task: asyncio.Task[None] | None = None
        self._channel: _Channel | None = None
        #: ``__anext__`` may take its fast path: results unordered, no progress callback.
        self._fast = not ordered and on_progress is None
        self._reorder: dict[int, BatchResult[ItemT, ValueT, ErrorT]] = {}
        self._next_index = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._task is not None else "new"
        return f"<Batch {state} {self.stats}>"

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        runner = self._runner
        if self._task is not None or runner is None:
            return
        loop = asyncio.get_running_loop()
        channel = self._channel = _Channel(runner.buffer_size)
        self.stats._started_at = perf_counter()
        task = loop.create_task(runner.run(channel))
        _running.add(task)
        task.add_done_callback(_running.discard)
        # Also when the runner is cancelled before its first step (its finally never runs):
        # the consumer must see the end rather than wait for ever.
        task.add_done_callback(lambda _: channel.close_sender())
        self._task = task

    async def __aenter__(self) -> Batch[ItemT, ValueT, ErrorT]:
        if self._closed:
            raise RuntimeError("this batch has ended; a batch runs once")
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every call in flight and wait for the workers to end. Idempotent.

        Results not yet handed over are dropped; ``stats`` stays as it was.
        """
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await _wait_for(task)
        self._end()

    def _end(self) -> None:
        self._closed = True
        if self.stats._finished_at is None:
            self.stats._finished_at = perf_counter()
        self._close_streams()
        self._reorder.clear()
        self._runner = None

    def __del__(self) -> None:
        # Plain `async for` left by `break`: nothing else will stop the workers.
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the event loop is already closed
                task.cancel()
        self._close_streams()

    def _close_streams(self) -> None:
        if self._channel is not None:
            self._channel.close()

    # -- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> Batch[ItemT, ValueT, ErrorT]:
        return self

    async def __anext__(self) -> BatchResult[ItemT, ValueT, ErrorT]:
        # The common case first, inline: a successful result is waiting (results unordered, no
        # progress callback). Everything else takes the general path below.
        channel = self._channel
        if self._fast and channel is not None and not self._closed:
            queue = channel._items
            if queue and queue[0]._error is None:
                result: BatchResult[ItemT, ValueT, ErrorT] = queue.popleft()
                if channel._putters:
                    channel._wake_putter()
                stats = self.stats
                stats.done += 1
                stats.ok += 1
                return result
        if self._task is None:
            if self._closed:
                raise StopAsyncIteration
            self._start()
        receive = self._channel
        if self._closed or receive is None:
            raise StopAsyncIteration
        try:
            if not self._ordered:
                try:
                    result = receive.receive_nowait()
                except anyio.WouldBlock:
                    result = await receive.receive()
            else:
                result = await self._next_in_order(receive)
            self._count(result)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # Finished, or closed by aclose() from another task meanwhile. Finish outside the
            # except block, so that no exception context leaks into what _finish raises.
            pass
        except BaseException:
            await self.aclose()
            raise
        else:
            return result
        if not self._closed:
            await self._finish()
        raise StopAsyncIteration

    async def _next_in_order(self, receive: _Channel) -> BatchResult[ItemT, ValueT, ErrorT]:
        wanted = self._next_index
        result = self._reorder.pop(wanted, None)
        while result is None:
            try:
                index, received = receive.receive_nowait()
            except anyio.WouldBlock:
                index, received = await receive.receive()
            if index == wanted:
                result = received
            else:
                self._reorder[index] = received
        self._next_index = wanted + 1
        assert self._runner is not None
        self._runner.release_window()
        return result

    def _count(self, result: BatchResult[ItemT, ValueT, ErrorT]) -> None:
        stats = self.stats
        stats.done += 1
        error = result._error
        if error is None:
            stats.ok += 1
        else:
            stats.failed += 1
            name = type(error).__name__
            stats.failed_by_error[name] = stats.failed_by_error.get(name, 0) + 1
        on_progress = self._on_progress
        if on_progress is not None:
            now = perf_counter()
            if now >= self._next_progress:
                self._next_progress = now + PROGRESS_INTERVAL
                on_progress(stats)

    async def _finish(self) -> None:
        """The input is exhausted (or the batch failed) and every result was handed over."""
        task = self._task
        runner = self._runner
        assert task is not None and runner is not None
        await _wait_for(task)
        failure = runner.failure
        if failure is None:
            if task.cancelled():  # not by us: some code cancelled every task of the loop
                failure = RuntimeError("the batch's workers were cancelled from outside")
            else:
                failure = task.exception()
        leftover = len(self._reorder)
        self._end()
        if failure is not None:
            raise failure
        assert not leftover, "ordered batch ended with results still held back"
        if self._on_progress is not None:
            self._on_progress(self.stats)


async def _wait_for(task: asyncio.Task[None]) -> None:
    """Wait until ``task`` is done, even if we are cancelled meanwhile (then re-raise)."""
    cancelled: BaseException | None = None
    while not task.done():
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.wait((task,))
        except asyncio.CancelledError as exc:  # a native task.cancel() got through the shield
            cancelled = exc
    if cancelled is not None:
        raise cancelled


def _check_count(name: str, value: object, other: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int{other}, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value}")


def _check_catch(catch: object) -> tuple[type[Exception], ...]:
    types = catch if isinstance(catch, tuple) else (catch,)
    if not types:
        raise ValueError("catch must name at least one exception class")
    for cls in types:
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(
                "catch must be an Exception subclass or a tuple of them "
                f"(BaseException such as cancellation is never caught), not {cls!r}"
            )
    return types


@overload
def amap(
    func: Callable[[ItemT], Awaitable[ValueT]],
    items: Iterable[ItemT] | AsyncIterable[ItemT],
    *,
    concurrency: int | Literal["auto"] = ...,
    max_concurrency: int | None = ...,
    rate_limit: float | None = ...,
    retry_budget: float | None = ...,
    ordered: bool = ...,
    on_progress: Callable[[BatchStats], object] | None = ...,
) -> Batch[ItemT, ValueT, Exception]: ...


@overload
def amap(
    func: Callable[[ItemT], Awaitable[ValueT]],
    items: Iterable[ItemT] | AsyncIterable[ItemT],
    *,
    concurrency: int | Literal["auto"] = ...,
    max_concurrency: int | None = ...,
    rate_limit: float | None = ...,
    retry_budget: float | None = ...,
    ordered: bool = ...,
    catch: type[ErrorT] | tuple[type[ErrorT], ...],
    on_progress: Callable[[BatchStats], object] | None = ...,
) -> Batch[ItemT, ValueT, ErrorT]: ...


def amap(
    func: Callable[[ItemT], Awaitable[Any]],
    items: Iterable[ItemT] | AsyncIterable[ItemT],
    *,
    concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
    max_concurrency: int | None = None,
    rate_limit: float | None = None,
    retry_budget: float | None = DEFAULT_RETRY_BUDGET,
    ordered: bool = False,
    catch: type[Exception] | tuple[type[Exception], ...] = Exception,
    on_progress: Callable[[BatchStats], object] | None = None,
) -> Batch[ItemT, Any, Any]:
    """Call ``func(item)`` for every item, ``concurrency`` at a time; yield each outcome once.

    Args:
        func: an async function (or any callable returning an awaitable) of one item.
        items: any iterable or async iterable; read lazily, never materialised, never closed.
        concurrency: calls in flight at most (the size of the worker pool), or ``"auto"``:
            a limit that starts at 4 and follows the server's pace (grows while latency stays
            near its floor or throughput still grows, shrinks on 429 / 503 / timeouts or a
            rising latency), up to ``max_concurrency``. See ``BatchStats.concurrency_limit``.
        max_concurrency: with ``"auto"``, the most calls in flight (default
            :data:`~freedompay_async._config.DEFAULT_MAX_CONNECTIONS`, the SDK's pool size).
        rate_limit: calls started per second at most (``None``: no limit).
        retry_budget: the SDK's retries within this batch are at most this share of its
            requests over a sliding 10-second window (at least 10 per window); ``None``: no
            budget. Whatever the concurrency, one 429 or 503 with ``Retry-After`` pauses
            every new request of the batch until then (with jitter on resume).
        ordered: yield results in input order (bounded reorder buffer) instead of as they
            complete.
        catch: exception classes that become a per-item ``error`` (default: any
            :class:`Exception`); anything else stops the batch and is raised from the loop.
        on_progress: called with the live :class:`BatchStats` at most every
            :data:`PROGRESS_INTERVAL` seconds while results are handed over, and once at the
            end; it runs in the iterating task, so keep it quick.

    Returns:
        A :class:`Batch`: ``async with`` it and ``async for`` over it (see the module docs).

    Raises:
        TypeError / ValueError: for invalid arguments, at once (before anything runs).

    >>> async with amap(client.wallets.info, ["user-1", "user-2"]) as results:  # doctest: +SKIP
    ...     async for result in results:
    ...         print(result.identifier, result.ok)
    """
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    if isinstance(items, (str, bytes, bytearray)):
        raise TypeError("items must be an iterable of items, not a single str or bytes")
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(f"items must be an iterable or async iterable, not {type(items).__name__}")
    limit: AdaptiveLimit | None = None
    if concurrency == "auto":
        if max_concurrency is None:
            max_concurrency = DEFAULT_MAX_CONNECTIONS
        _check_count("max_concurrency", max_concurrency)
        limit = AdaptiveLimit(max_concurrency)
        concurrency = max_concurrency
    else:
        _check_count("concurrency", concurrency, ' or "auto"')
        if max_concurrency is not None:
            raise ValueError('max_concurrency goes with concurrency="auto"')
    if retry_budget is not None:
        if isinstance(retry_budget, bool) or not isinstance(retry_budget, (int, float)):
            raise TypeError("retry_budget must be a share of requests (e.g. 0.1), or None")
        if not 0 <= retry_budget <= 1:
            raise ValueError(f"retry_budget must be between 0 and 1, not {retry_budget}")
    if rate_limit is not None:
        if isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)):
            raise TypeError("rate_limit must be a number of calls per second, or None")
        if not math.isfinite(rate_limit) or rate_limit <= 0:
            raise ValueError(f"rate_limit must be a positive number, not {rate_limit}")
        rate_limit = float(rate_limit)
    if not isinstance(ordered, bool):
        raise TypeError("ordered must be a bool")
    if on_progress is not None and not callable(on_progress):
        raise TypeError("on_progress must be callable or None")
    return Batch(
        func,
        items,
        concurrency=concurrency,
        rate_limit=rate_limit,
        ordered=ordered,
        catch=_check_catch(catch),
        on_progress=on_progress,
        pacing=Pacing(
            limit=limit,
            budget=None if retry_budget is None else RetryBudget(float(retry_budget)),
        ),
    )
