"""The machinery of one batch: the worker pool (:class:`_Runner`), the bounded channel to the
iterating task (:class:`_Channel`) and the rate limiter. :mod:`freedompay_async.batch` wraps it
in :class:`~freedompay_async.batch.Batch`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
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
from anyio.abc import TaskGroup

from . import _pacing
from ._batch_results import BatchResult, BatchStats, _LatencyHistogram

ItemT = TypeVar("ItemT")
ValueT = TypeVar("ValueT")
ErrorT = TypeVar("ErrorT", bound=Exception)

#: With ``ordered=True``, results held back waiting for an earlier one: this many per worker.
_REORDER_WINDOW_PER_WORKER: Final = 2


class _RateLimiter:
    """A token bucket holding one token: starts are spaced ``1 / rate`` seconds apart.

    Each caller reserves the next free slot before sleeping, so many waiters are served in
    order and a late wake-up does not shift the slots after it.
    """

    __slots__ = ("_interval", "_next_slot")

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next_slot = -math.inf

    async def wait(self) -> None:
        now = anyio.current_time()
        slot = self._next_slot if self._next_slot > now else now
        self._next_slot = slot + self._interval
        if slot > now:
            await anyio.sleep(slot - now)


class _Channel:
    """The bounded queue from the workers to the iterating task (one consumer).

    It behaves like an anyio memory object stream pair (same exceptions: ``WouldBlock``,
    ``EndOfStream``, ``BrokenResourceError``, ``ClosedResourceError``) but costs a deque
    operation per item, and waiting for an empty queue takes no extra event-loop round
    (anyio's ``receive`` starts with a checkpoint): this is on the path of every result.
    """

    __slots__ = (
        "_getter",
        "_items",
        "_max_size",
        "_putters",
        "_receiver_closed",
        "_sender_closed",
        "open",
    )

    def __init__(self, max_size: int) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._max_size = max_size
        self._getter: asyncio.Future[None] | None = None
        self._putters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sender_closed = False
        self._receiver_closed = False
        #: Neither side has closed: one flag for the workers' inline fast path (``_Runner._work``).
        self.open = True

    # -- the workers' side ----------------------------------------------------------------

    def send_nowait(self, item: Any) -> None:
        if self._receiver_closed:
            raise anyio.BrokenResourceError
        if self._sender_closed:
            raise anyio.ClosedResourceError
        if len(self._items) >= self._max_size:
            raise anyio.WouldBlock
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def send(self, item: Any) -> None:
        while True:
            try:
                self.send_nowait(item)
            except anyio.WouldBlock:
                pass
            else:
                return
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                if putter.done() and not putter.cancelled():
                    self._wake_putter()  # we were woken for a free slot: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        self._putters.remove(putter)
                raise

    def close_sender(self) -> None:
        self._sender_closed = True
        self.open = False
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    # -- the consumer's side --------------------------------------------------------------

    def receive_nowait(self) -> Any:
        if self._receiver_closed:
            raise anyio.ClosedResourceError
        if self._items:
            item = self._items.popleft()
            if self._putters:
                self._wake_putter()
            return item
        if self._sender_closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> Any:
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                self._getter = None

    def close_receiver(self) -> None:
        """The consumer has gone: drop what is queued and fail every sender."""
        self._receiver_closed = True
        self.open = False
        self._items.clear()
        while self._putters:
            self._wake_putter()

    def close(self) -> None:
        self.close_sender()
        self.close_receiver()

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return


class _Runner(Generic[ItemT, ValueT, ErrorT]):
    """The worker pool of one batch. Holds no reference to the :class:`Batch` itself, so a
    batch dropped after ``break`` can be garbage-collected (and then cancels this)."""

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
        self._limiter = _RateLimiter(rate_limit) if rate_limit is not None else None
        #: ``ordered``: a permit per item taken from the input and not yet handed over.
        self._window_size = _REORDER_WINDOW_PER_WORKER * concurrency
        self._window = anyio.Semaphore(self._window_size) if ordered else None
        self._catch = catch
        self._stats = stats
        self._iterator: Iterator[ItemT] | None = None
        self._async_iterator: AsyncIterator[ItemT] | None = None
        self._pull_lock: anyio.Lock | None = None
        self._exhausted = False
        self._task_group: TaskGroup | None = None
        self._send: _Channel | None = None
        #: The first exception that stopped the batch (raised to the consumer at the end).
        self.failure: BaseException | None = None

    @property
    def buffer_size(self) -> int:
        """Results the output stream holds; with ``ordered``, the window never overfills it."""
        return self._concurrency if self._window is None else self._window_size

    def release_window(self) -> None:
        """The consumer handed over one result in order: let one more item in."""
        assert self._window is not None
        self._window.release()

    async def run(self, send: _Channel) -> None:
        self._send = send
        _pacing.current.set(self._pacing)  # this task's context, copied into every worker
        try:
            # The whole pool at once (a sized input needs no more workers than items): a task
            # starts in the event loop's next round, so a pool that grew a worker per item
            # taken would run short-handed for its first `concurrency` rounds. A worker that
            # finds the input exhausted ends at once.
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
                self._task_group = task_group
                for _ in range(workers):
                    self._spawn()
        finally:
            send.close_sender()  # the consumer sees the end once the queue is drained

    def _spawn(self) -> None:
        assert self._task_group is not None
        self._task_group.start_soon(self._work)

    def _fail(self, exc: BaseException, *, cancel: bool = True) -> None:
        """Stop the batch with ``exc``: take no more items, and unless ``cancel`` is false
        (the input failed, the calls in flight are fine) cancel the calls in flight."""
        if self.failure is None:
            self.failure = exc
        self._exhausted = True
        if cancel:
            assert self._task_group is not None
            self._task_group.cancel_scope.cancel()

    async def _pull_async(self) -> tuple[bool, Any]:
        """Take the next item of an async input (one worker at a time)."""
        lock = self._pull_lock
        assert lock is not None and self._async_iterator is not None
        try:
            lock.acquire_nowait()
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

    async def _work(self) -> None:
        # The hot loop: everything it touches is a local.
        func = self._func
        catch = self._catch
        stats = self._stats
        latency = stats._latency
        counts = latency.counts
        log = math.log
        lowest = _LatencyHistogram._LOWEST
        scale = _LatencyHistogram._SCALE
        last_bin = _LatencyHistogram._BINS - 1
        send = self._send
        assert send is not None
        # _Channel.send_nowait, inline: a deque append, and a wake-up if the consumer waits.
        queue = send._items
        max_size = send._max_size
        window = self._window
        limiter = self._limiter
        iterator = self._iterator
        gate = self._gate
        brake = self._pacing.brake
        while True:
            if window is not None:
                try:
                    window.acquire_nowait()
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
            # _LatencyHistogram.record, inline: this runs once per item.
            elapsed = perf_counter() - started_at
            if gate is not None:
                error = result._error
                gate.release(elapsed, error is not None and _pacing.is_overload(error))
            latency.total += elapsed
            if elapsed > lowest:
                bin_index = int(log(elapsed / lowest) * scale) + 1
                counts[bin_index if bin_index < last_bin else last_bin] += 1
            else:
                counts[0] += 1

            payload = result if window is None else (index, result)
            if send.open and len(queue) < max_size:
                queue.append(payload)
                getter = send._getter
                if getter is not None and not getter.done():
                    getter.set_result(None)
                continue
            try:
                await send.send(payload)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the consumer has gone (the batch is being dropped)
        if window is not None:
            window.release()  # the permit taken for an item that never came
        if gate is not None:
            gate.give_back()
