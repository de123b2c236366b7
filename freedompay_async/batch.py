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
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, overload

import anyio
from anyio.abc import TaskGroup

from . import _pacing
from ._adaptive import AdaptiveLimit
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
#: With ``ordered=True``, results held back waiting for an earlier one: this many per worker.
_REORDER_WINDOW_PER_WORKER: Final = 2

ItemT = TypeVar("ItemT")
ValueT = TypeVar("ValueT")
ErrorT = TypeVar("ErrorT", bound=Exception)
# Covariant twins for the read-only result record.
_ItemT_co = TypeVar("_ItemT_co", covariant=True)
_ValueT_co = TypeVar("_ValueT_co", covariant=True)
_ErrorT_co = TypeVar("_ErrorT_co", bound=Exception, covariant=True)

#: Runner tasks still going, so that one whose batch was dropped is not garbage-collected.
_running: Final[set[asyncio.Task[None]]] = set()


class BatchResult(Generic[_ItemT_co, _ValueT_co, _ErrorT_co]):
    """The outcome of one item: ``identifier`` and either a ``value`` or an ``error``.

    Read-only. ``ok`` is true when the call succeeded. ``value`` returns what the call returned,
    or *raises* ``error`` when it failed, so it is typed without ``Optional``::

        if result.ok:
            balance = result.value.wallet.balance
        else:
            log.warning("%s: %s", result.identifier, result.error)
    """

    __slots__ = ("_error", "_identifier", "_value")

    def __init__(
        self,
        identifier: _ItemT_co,
        value: _ValueT_co | None = None,
        error: _ErrorT_co | None = None,
    ) -> None:
        self._identifier = identifier
        self._value = value
        self._error = error

    @property
    def identifier(self) -> _ItemT_co:
        """The input item this result is for (for ``info_many``: the wallet identifier)."""
        return self._identifier

    @property
    def error(self) -> _ErrorT_co | None:
        """The exception the call raised, or ``None`` when it succeeded."""
        return self._error

    @property
    def ok(self) -> bool:
        """True when the call succeeded (``error`` is ``None``)."""
        return self._error is None

    @property
    def value(self) -> _ValueT_co:
        """What the call returned; raises :attr:`error` if the call failed."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __repr__(self) -> str:
        outcome = f"value={self._value!r}" if self._error is None else f"error={self._error!r}"
        return f"BatchResult(identifier={self._identifier!r}, {outcome})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchResult):
            return NotImplemented
        return (self._identifier, self._value, self._error) == (
            other._identifier,
            other._value,
            other._error,
        )

    def __hash__(self) -> int:
        return hash((self._identifier, self._value, self._error))

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchResult, (self._identifier, self._value, self._error))


class _LatencyHistogram:
    """Call latencies in log-spaced bins: fixed memory, quantiles within about 1%.

    Kept to two fields so that the batch's hot loop can update it inline (see ``_work``):
    ``counts[bin_of(seconds)] += 1`` and ``total += seconds``.
    """

    __slots__ = ("counts", "total")

    _LOWEST: Final = 1e-6  # seconds; anything faster lands in bin 0
    _GROWTH: Final = 1.02  # each bin is 2% wider than the previous one
    _SCALE: Final = 1.0 / math.log(_GROWTH)
    _BINS: Final = int(math.log(3600.0 / _LOWEST) * _SCALE) + 2  # up to an hour, ~1100 bins

    def __init__(self) -> None:
        self.counts = [0] * self._BINS
        self.total = 0.0

    @classmethod
    def bin_of(cls, seconds: float) -> int:
        if seconds <= cls._LOWEST:
            return 0
        index = int(math.log(seconds / cls._LOWEST) * cls._SCALE) + 1
        return index if index < cls._BINS else cls._BINS - 1

    def record(self, seconds: float) -> None:
        self.counts[self.bin_of(seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, not {q}")
        count = self.count
        if not count:
            return None
        rank = max(1, math.ceil(q * count))
        seen = 0
        index = 0
        for index, bin_count in enumerate(self.counts):  # noqa: B007 (index is used below)
            seen += bin_count
            if seen >= rank:
                break
        # The bin's geometric middle: within 1% of any value in the bin.
        return self._LOWEST * self._GROWTH ** (index - 0.5) if index else self._LOWEST


class BatchStats:
    """Live counters of one batch; read them at any time, e.g. from ``on_progress``.

    ``done`` counts results handed to you (``ok + failed``); ``started`` counts items taken
    from the input, so ``in_flight`` is what is being worked on or waiting for you. Latency is
    per call, successes and failures alike, from a fixed-size histogram (about 1% precision).
    """

    __slots__ = (
        "_finished_at",
        "_latency",
        "_pacing",
        "_started_at",
        "done",
        "failed",
        "failed_by_error",
        "ok",
        "started",
    )

    def __init__(self) -> None:
        #: Results handed to the consumer.
        self.done = 0
        #: ... of which succeeded.
        self.ok = 0
        #: ... of which failed.
        self.failed = 0
        #: Failures by error class name, e.g. ``{"WalletNotFoundError": 3}``.
        self.failed_by_error: dict[str, int] = {}
        #: Items taken from the input so far.
        self.started = 0
        self._latency = _LatencyHistogram()
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._pacing = Pacing()

    # -- pacing (brake, retry budget, adaptive limit): see freedompay_async._pacing ----------

    @property
    def concurrency_limit(self) -> int | None:
        """With ``concurrency="auto"``: the calls allowed in flight now; else ``None``."""
        limit = self._pacing.limit
        return None if limit is None else limit.limit

    @property
    def limit_history(self) -> list[tuple[float, int]]:
        """With ``concurrency="auto"``: ``(seconds since start, limit)`` at each change
        (downsampled to at most 2048 points); else empty."""
        limit = self._pacing.limit
        return [] if limit is None else list(limit.history)

    @property
    def refused(self) -> int:
        """Replies 429 / 503 the batch's requests got (retried ones included)."""
        return self._pacing.refused

    @property
    def brake_pauses(self) -> int:
        """Times a ``Retry-After`` paused every new send of the batch."""
        return self._pacing.brake.pauses

    @property
    def retries(self) -> int:
        """Retries the retry budget allowed."""
        budget = self._pacing.budget
        return 0 if budget is None else budget.retried

    @property
    def retries_denied(self) -> int:
        """Retries refused because the batch's retry budget was spent."""
        budget = self._pacing.budget
        return 0 if budget is None else budget.denied

    @property
    def in_flight(self) -> int:
        """Items taken from the input whose result has not been handed over yet."""
        return self.started - self.done

    @property
    def finished(self) -> bool:
        """True once the batch has ended (completed, failed or stopped)."""
        return self._finished_at is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started (until it ended, once it has)."""
        if self._started_at is None:
            return 0.0
        end = self._finished_at if self._finished_at is not None else perf_counter()
        return end - self._started_at

    @property
    def rate(self) -> float:
        """Results per second so far (``done / elapsed``)."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of call latency in seconds; ``None`` before any call."""
        return self._latency.quantile(q)

    @property
    def latency_p50(self) -> float | None:
        """Median call latency, seconds."""
        return self._latency.quantile(0.50)

    @property
    def latency_p95(self) -> float | None:
        """95th percentile of call latency, seconds."""
        return self._latency.quantile(0.95)

    @property
    def latency_p99(self) -> float | None:
        """99th percentile of call latency, seconds."""
        return self._latency.quantile(0.99)

    @property
    def latency_mean(self) -> float | None:
        """Mean call latency, seconds."""
        latency = self._latency
        count = latency.count
        return latency.total / count if count else None

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (for JSON logs and dashboards)."""
        return {
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "failed_by_error": dict(self.failed_by_error),
            "elapsed": self.elapsed,
            "rate": self.rate,
            "latency_p50": self.latency_p50,
            "latency_p95": self.latency_p95,
            "latency_p99": self.latency_p99,
            "concurrency_limit": self.concurrency_limit,
            "refused": self.refused,
            "brake_pauses": self.brake_pauses,
            "retries": self.retries,
            "retries_denied": self.retries_denied,
        }

    def __str__(self) -> str:
        failures = ""
        if self.failed_by_error:
            by_class = sorted(self.failed_by_error.items(), key=lambda kv: (-kv[1], kv[0]))
            failures = ": " + ", ".join(f"{name} {count:,}" for name, count in by_class)
        text = (
            f"{self.done:,} done ({self.ok:,} ok, {self.failed:,} failed{failures}) "
            f"in {self.elapsed:.2f}s, {self.rate:,.0f}/s"
        )
        if self._latency.count:
            text += ", latency " + " ".join(
                f"{name} {_milliseconds(self._latency.quantile(q))}"
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            )
        if self._pacing.limit is not None:
            text += f", concurrency limit {self.concurrency_limit}"
        return text

    def __repr__(self) -> str:
        return f"<BatchStats {self}>"


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


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
