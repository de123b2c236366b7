"""The worker pool of one batch (:class:`_WorkerPool`): takes items from the input, calls the
function on each, and sends every outcome into an anyio memory object stream.
:mod:`freedompay_async.batch` owns the stream's other end and the pool's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from time import perf_counter
from typing import Any, Final, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from . import _pacing
from ._batch_results import BatchResult, BatchStats
from ._rate_limit import RateLimiter

ItemT = TypeVar("ItemT")
ValueT = TypeVar("ValueT")
ErrorT = TypeVar("ErrorT", bound=Exception)

#: With ``ordered=True``, results held back waiting for an earlier one: this many per worker.
_REORDER_WINDOW_PER_WORKER: Final = 2
#: The names of the batch's tasks (``asyncio.Task.get_name()``): the pool's host, its workers.
TASK_NAME: Final = "freedompay-batch"
WORKER_TASK_NAME: Final = "freedompay-batch-worker"


class _WorkerPool(Generic[ItemT, ValueT, ErrorT]):
    """The workers of one batch, run by :meth:`run` in a task that hosts their task group.

    :meth:`run` never raises an :class:`Exception`: what stops the batch is kept in
    :attr:`failure`, for the consumer to raise once it has taken every result. So a failure
    never cancels the task that hosts :meth:`run` (with ``async with``, the consumer's task
    group), only the workers. :meth:`stop` cancels the workers from any task; :attr:`done` is
    set once they have all ended.
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
        stats: BatchStats,
    ) -> None:
        self._func = func
        self._items = items
        self._concurrency = concurrency  # with "auto": the workers, max_concurrency
        self._pacing = stats._pacing
        self._gate = stats._pacing.limit
        self._limiter = RateLimiter(rate_limit) if rate_limit is not None else None
        #: ``ordered``: a permit per item taken from the input and not yet handed over.
        self._window_size = _REORDER_WINDOW_PER_WORKER * concurrency
        self._window = anyio.Semaphore(self._window_size) if ordered else None
        self._catch = catch
        self._stats = stats
        self._iterator: Iterator[ItemT] | None = None
        self._async_iterator: AsyncIterator[ItemT] | None = None
        self._pull_lock: anyio.Lock | None = None
        self._exhausted = False
        self._scope: anyio.CancelScope | None = None
        self._stopping = False
        #: The first exception that stopped the batch (raised to the consumer at the end).
        self.failure: BaseException | None = None
        #: Set once every worker has ended (and the send stream is closed).
        self.done = anyio.Event()

    @property
    def buffer_size(self) -> int:
        """Results the output stream holds; with ``ordered``, the window never overfills it."""
        return self._concurrency if self._window is None else self._window_size

    def release_window(self) -> None:
        """The consumer handed over one result in order: let one more item in."""
        assert self._window is not None
        self._window.release()

    def stop(self) -> None:
        """Cancel the workers (from any task of the loop); :attr:`done` says when they end."""
        self._stopping = True
        self._exhausted = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait(self) -> None:
        """Wait until every worker has ended, even if cancelled meanwhile (then re-raise): the
        workers are being cancelled and must be waited for before going on."""
        cancelled: BaseException | None = None
        while not self.done.is_set():
            try:
                with anyio.CancelScope(shield=True):
                    await self.done.wait()
            except anyio.get_cancelled_exc_class() as exc:  # a native task.cancel() got through
                cancelled = exc
        if cancelled is not None:
            raise cancelled

    def ended_outside(self) -> None:
        """The task running :meth:`run` ended before :meth:`run` could finish its clean-up
        (cancelled before its first step): do it here. Idempotent."""
        if not self._stopping and self.failure is None:
            self.failure = RuntimeError("the batch's workers were cancelled from outside")
        self.done.set()

    def run_in_task(self, send: MemoryObjectSendStream[Any]) -> asyncio.Task[None]:
        """:meth:`run` in a new task (plain ``async for``: the caller bounds its lifetime)."""
        task = asyncio.get_running_loop().create_task(self.run(send), name=TASK_NAME)

        def ended(task: asyncio.Task[None]) -> None:
            if task.cancelled():  # maybe before its first step: its own clean-up never ran
                send.close()
                self.ended_outside()

        task.add_done_callback(ended)
        return task

    async def run(
        self,
        send: MemoryObjectSendStream[Any],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the pool until the input is exhausted, the batch fails or :meth:`stop`; then
        close ``send`` (the consumer sees the end once it has taken what is buffered)."""
        _pacing.current.set(self._pacing)  # this task's context, copied into every worker
        try:
            with send:
                task_status.started()
                await self._run(send)
        except anyio.get_cancelled_exc_class():
            if self._stopping:
                raise
            # Not by us: some code cancelled this task. Raising here would cancel the task
            # group it belongs to, i.e. the consumer's loop body; the consumer raises this.
            self.ended_outside()
        finally:
            self.done.set()

    async def _run(self, send: MemoryObjectSendStream[Any]) -> None:
        if self._stopping:
            return
        # The whole pool at once (a sized input needs no more workers than items): a task
        # starts in the event loop's next round, so a pool that grew a worker per item taken
        # would run short-handed for its first `concurrency` rounds. A worker that finds the
        # input exhausted ends at once.
        workers = self._concurrency
        try:
            items = self._items
            if isinstance(items, Sized):
                workers = max(1, min(workers, len(items)))
            if isinstance(items, AsyncIterable):
                self._async_iterator = items.__aiter__()
                self._pull_lock = anyio.Lock()
            else:
                self._iterator = iter(items)
        except Exception as exc:
            self.failure = exc
            return
        async with anyio.create_task_group() as task_group:
            self._scope = task_group.cancel_scope
            for _ in range(workers):
                task_group.start_soon(self._work, send, name=WORKER_TASK_NAME)

    def _fail(self, exc: BaseException, *, cancel: bool = True) -> None:
        """Stop the batch with ``exc``: take no more items, and unless ``cancel`` is false
        (the input failed, the calls in flight are fine) cancel the calls in flight."""
        if self.failure is None:
            self.failure = exc
        self._exhausted = True
        if cancel:
            assert self._scope is not None
            self._scope.cancel()

    async def _pull_async(self) -> tuple[bool, Any]:
        """Take the next item of an async input (one worker at a time)."""
        lock = self._pull_lock
        assert lock is not None and self._async_iterator is not None
        try:
            lock.acquire_nowait()  # `acquire` costs an event-loop round even when free
        except anyio.WouldBlock:
            await lock.acquire()
        try:
            if self._exhausted:
                return False, None
            return True, await self._async_iterator.__anext__()
        except StopAsyncIteration:
            self._exhausted = True
            return False, None
        finally:
            lock.release()

    async def _work(self, send: MemoryObjectSendStream[Any]) -> None:
        func = self._func
        catch = self._catch
        stats = self._stats
        record = stats._latency.record
        window = self._window
        limiter = self._limiter
        iterator = self._iterator
        gate = self._gate
        brake = self._pacing.brake
        while True:
            if window is not None:
                try:
                    window.acquire_nowait()  # as for the pull lock
                except anyio.WouldBlock:
                    await window.acquire()
            if gate is not None:
                await gate.acquire()
            if self._exhausted:
                break
            try:
                if iterator is not None:
                    item = next(iterator)
                else:
                    more, item = await self._pull_async()
                    if not more:
                        break
                    # No await since the pull lock was released: the index is still in order.
            except StopIteration:
                self._exhausted = True
                break
            except Exception as exc:
                self._fail(exc, cancel=False)
                break
            index = stats.started
            stats.started = index + 1
            if limiter is not None:
                # After the pull, so that no worker sleeps for a slot once the input is done.
                await limiter.wait()
            if brake.until:  # a Retry-After holds every new call of the batch
                await brake.wait()

            started_at = perf_counter()
            try:
                value = await func(item)
            except catch as exc:
                result: BatchResult[ItemT, ValueT, ErrorT] = BatchResult(item, None, exc)
            except Exception as exc:
                self._fail(exc)
                return
            else:
                result = BatchResult(item, value, None)
            elapsed = perf_counter() - started_at
            record(elapsed)
            if gate is not None:
                error = result._error
                gate.release(elapsed, error is not None and _pacing.is_overload(error))
            payload = result if window is None else (index, result)
            try:
                # send_nowait first: `send` starts with a checkpoint, an event-loop round per
                # result (measured without: +4 % CPU per lookup; see benchmarks/README.md).
                try:
                    send.send_nowait(payload)
                except anyio.WouldBlock:
                    await send.send(payload)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the consumer has gone (the batch is being closed)
        if window is not None:
            window.release()  # the permit taken for an item that never came
        if gate is not None:
            gate.give_back()
