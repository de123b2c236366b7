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
  exception is raised from the ``async for``, unwrapped (never an exception group), and it
  never interrupts your loop body meanwhile. An exception raised by the input iterator itself
  stops the intake only: the calls in flight complete and are yielded, then the exception is
  raised. An exception from ``on_progress`` stops the batch at once. ``BaseException``
  (cancellation, ``KeyboardInterrupt``) is never caught.
- **Order.** Results come as they complete; with ``ordered=True`` they come in input order,
  through a reorder buffer bounded to ``2 * concurrency`` results (a slow item holds the
  others back rather than letting memory grow).
- **Rate.** ``rate_limit`` caps how many calls *start* per second, on top of the concurrency
  cap (:mod:`freedompay_async._rate_limit`).
- **Pace.** ``concurrency="auto"`` replaces the fixed cap by a limit that follows the
  server (:mod:`freedompay_async._adaptive`), up to ``max_concurrency`` workers. Whatever the
  concurrency, the SDK's requests made by the calls share the batch's pacing
  (:mod:`freedompay_async._pacing`): one 429 / 503 with ``Retry-After`` pauses every new
  request of the batch until then, and retries are budgeted (``retry_budget``).
- **Stats.** :attr:`Batch.stats` is a live :class:`BatchStats` (done, ok, failed by error
  class, elapsed, rate, latency percentiles from a fixed-size histogram, so memory stays flat
  over 10^7 items); ``on_progress(stats)`` is called at most every
  :data:`PROGRESS_INTERVAL` seconds and once when the batch completes.

Lifetime: no task outlives the code that consumes the results.

- ``async with amap(...) as results:`` is the structured form. Entering the block starts the
  batch in an anyio task group of *your* task: one task that hosts the workers' own task group
  (named ``freedompay-batch``; the workers ``freedompay-batch-worker``). Leaving the block, by
  the loop's end, ``break``, an exception or cancellation, cancels the calls in flight and waits
  for every worker before the next statement runs. Within the block you may ``break`` and
  iterate again later, or call ``await results.__anext__()`` yourself.
- A plain ``async for result in amap(...):`` (no ``async with``) works too: ``__aiter__`` then
  returns an async generator that starts the same host task and, in its ``finally``, stops it
  and waits for it. When the loop ends, or your task is cancelled while it waits for a result,
  that happens before the loop statement finishes. After a ``break`` or an exception in the
  loop body, Python drops the generator at once and asyncio's async-generator hook closes it in
  a task of its own: the workers are cancelled within a few event-loop rounds. Such a batch is
  iterated once: a later ``async for`` over it finds it ended. Use ``async with`` to stop
  before the next statement, or to break and resume.
- A batch held in a variable and stepped with ``await batch.__anext__()`` outside
  ``async with`` is closed by ``await batch.aclose()`` (or, failing that, when it is
  garbage-collected, through the same asyncio hook).
- :meth:`Batch.aclose` works in every form and from any task: it cancels the calls in flight,
  ends the consumer's loop, and waits for the workers.

The input iterator is never closed by the batch; it stays yours. The batch runs on asyncio
(the SDK's transport is aiohttp); inside it uses anyio's task groups, cancel scopes and a
memory object stream from the workers to your loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from time import perf_counter
from types import AsyncGeneratorType, TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, cast, overload

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._adaptive import AdaptiveLimit
from ._batch_results import BatchResult, BatchStats
from ._batch_runner import TASK_NAME, _WorkerPool
from ._config import DEFAULT_MAX_CONNECTIONS
from ._pacing import DEFAULT_RETRY_BUDGET, Pacing, RetryBudget
from ._validate import (
    check_callable,
    check_exception_types,
    check_flag,
    check_int,
    check_items,
    check_number,
    check_positive_number,
    invalid,
)

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


class Batch(Generic[ItemT, ValueT, ErrorT]):
    """A running (or not yet started) batch: an async iterable of :class:`BatchResult`.

    Made by :func:`amap` (and ``client.wallets.info_many``). Iterate it with ``async for``,
    inside ``async with`` so that leaving early stops the work before the next statement::

        async with amap(fetch, items) as results:
            async for result in results:
                ...
        results.stats        # the final BatchStats

    Nothing runs until ``async with`` or the first ``async for`` step. A batch runs once. See
    the module docs for what each form (``async with``, plain ``async for``, a batch held in a
    variable) does when the loop is left early.
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
        self._pool: _WorkerPool[ItemT, ValueT, ErrorT] = _WorkerPool(
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
        self._send: MemoryObjectSendStream[Any] | None = None
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        #: ``async with``: the task group in the consumer's task that hosts the pool.
        self._task_group: TaskGroup | None = None
        #: Plain ``async for``: the task that hosts the pool, bounded by the generator below
        #: (held here: asyncio keeps only weak references to tasks).
        self._host: asyncio.Task[None] | None = None
        #: ``await batch.__anext__()`` outside ``async with``: the generator it steps.
        self._iterator: AsyncGeneratorType[BatchResult[ItemT, ValueT, ErrorT], None] | None = None
        self._reorder: dict[int, BatchResult[ItemT, ValueT, ErrorT]] = {}
        self._next_index = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._receive is not None else "new"
        return f"<Batch {state} {self.stats}>"

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> MemoryObjectSendStream[Any]:
        """The stream from the workers to the consumer; the send end goes to the pool."""
        send, self._receive = anyio.create_memory_object_stream[Any](self._pool.buffer_size)
        self._send = send
        self.stats._started_at = perf_counter()
        return send

    async def __aenter__(self) -> Batch[ItemT, ValueT, ErrorT]:
        if self._closed:
            raise RuntimeError("this batch has ended; a batch runs once")
        if self._receive is not None:
            return self  # already started by a plain step: leaving the block closes it
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            # `start`, not `start_soon`: once it returns, the host task is in its `try`, so
            # whatever ends it, its `finally` closes the stream and says it is done.
            await task_group.start(self._pool.run, self._open(), name=TASK_NAME)
        except BaseException:  # the host task ended before it started (cancelled)
            self._task_group = None
            self._pool.ended_outside()
            self._end()
            await task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        self._task_group = None
        try:
            await self.aclose()
        finally:
            if task_group is not None:
                # The pool has ended and its host task never raises an Exception, so this only
                # waits for that task's last step. Not given `exc`: the task group would wrap
                # an exception of the loop body in an exception group.
                await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop every call in flight, end the consumer's loop and wait for the workers to end.

        Idempotent; callable from any task. Results not yet handed over are dropped;
        ``stats`` stays as it was.
        """
        started = self._receive is not None
        if not self._closed:
            self._closed = True
            self._pool.stop()
            if self._receive is not None:
                self._receive.close()  # wakes a consumer waiting for a result
        if started:
            await self._pool.wait()
        self._end()
        iterator = self._iterator
        if iterator is not None and not iterator.ag_running:
            self._iterator = None
            await iterator.aclose()

    def _end(self) -> None:
        self._closed = True
        if self.stats._finished_at is None:
            self.stats._finished_at = perf_counter()
        if self._receive is not None:
            self._receive.close()
        if self._send is not None:
            self._send.close()  # its host task may have been cancelled before it started
        self._reorder.clear()

    # -- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[BatchResult[ItemT, ValueT, ErrorT]]:
        if self._receive is None and not self._closed:
            return self._iterate()
        return self

    async def __anext__(self) -> BatchResult[ItemT, ValueT, ErrorT]:
        if self._task_group is None and not self._closed:
            # Outside `async with`: step a generator, so that the pool ends with it.
            if self._iterator is None:
                if self._receive is not None:
                    raise StopAsyncIteration  # a plain `async for` ran it: it ended with it
                self._iterator = cast("AsyncGeneratorType[Any, None]", self._iterate())
            return await self._iterator.__anext__()
        return await self._next()

    async def _iterate(self) -> AsyncGenerator[BatchResult[ItemT, ValueT, ErrorT], None]:
        """Plain ``async for``: the pool's host task lives no longer than this generator."""
        if self._receive is not None or self._closed:
            return
        self._host = self._pool.run_in_task(self._open())
        try:
            while True:
                try:
                    result = await self._next()
                except StopAsyncIteration:
                    return
                yield result
        finally:
            await self.aclose()

    async def _next(self) -> BatchResult[ItemT, ValueT, ErrorT]:
        receive = self._receive
        if self._closed or receive is None:
            raise StopAsyncIteration
        try:
            if self._ordered:
                result = await self._next_in_order(receive)
            else:
                # receive_nowait first: `receive` starts with a checkpoint, an event-loop round
                # per result (measured without: 1.5x the CPU per lookup; benchmarks/README.md).
                try:
                    result = receive.receive_nowait()
                except anyio.WouldBlock:
                    result = await receive.receive()
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

    async def _next_in_order(
        self, receive: MemoryObjectReceiveStream[Any]
    ) -> BatchResult[ItemT, ValueT, ErrorT]:
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
        self._pool.release_window()
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
        pool = self._pool
        await pool.wait()
        failure = pool.failure
        leftover = len(self._reorder)
        self._end()
        if failure is not None:
            raise failure
        assert not leftover, "ordered batch ended with results still held back"
        if self._on_progress is not None:
            self._on_progress(self.stats)


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
    check_callable(func, "func")
    check_items(items)
    limit: AdaptiveLimit | None = None
    if concurrency == "auto":
        if max_concurrency is None:
            max_concurrency = DEFAULT_MAX_CONNECTIONS
        check_int(max_concurrency, "max_concurrency", 1)
        limit = AdaptiveLimit(max_concurrency)
        concurrency = max_concurrency
    else:
        check_int(concurrency, "concurrency", 1, expected='an int or "auto"')
        if max_concurrency is not None:
            invalid('max_concurrency goes with concurrency="auto"')
    if retry_budget is not None:
        check_number(retry_budget, "retry_budget", 0, 1, "a share of requests (e.g. 0.1), or None")
    if rate_limit is not None:
        rate_limit = check_positive_number(
            rate_limit, "rate_limit", "a number of calls per second, or None"
        )
    check_flag(ordered, "ordered")
    if on_progress is not None:
        check_callable(on_progress, "on_progress")
    return Batch(
        func,
        items,
        concurrency=concurrency,
        rate_limit=rate_limit,
        ordered=ordered,
        catch=check_exception_types(catch),
        on_progress=on_progress,
        pacing=Pacing(
            limit=limit,
            budget=None if retry_budget is None else RetryBudget(float(retry_budget)),
        ),
    )
