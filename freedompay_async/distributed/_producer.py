"""The producer side: split an id source into shards, queue them, and stream the rows back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from time import perf_counter
from types import TracebackType
from typing import Final

import anyio
from anyio.abc import TaskGroup
from redis.asyncio import Redis

from .._rows import Row
from .._validate import check_instance, check_int, check_number, invalid
from ..errors import AuthenticationError
from ._keys import QueueConfig, check_run_id, redact_url
from ._patience import DEFAULT_REDIS_TIMEOUT, Patience, check_redis_timeout
from ._queue import ShardMessage, ShardQueue
from ._sink import RunStore, ShardRows

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "DEFAULT_WINDOW",
    "NoWorkerCanAuthenticateError",
    "Producer",
    "Run",
    "RunStats",
]

log = logging.getLogger("freedompay_async.distributed")

#: Identifiers per shard unless ``shard_size=`` says otherwise: large enough that queue
#: overhead is noise, small enough that a redelivered shard costs little.
DEFAULT_SHARD_SIZE: Final = 1000
#: Shards queued or running at once, unless ``window=``: bounds what waits in Redis (and the
#: producer's memory) whatever the size of the input.
DEFAULT_WINDOW: Final = 64
#: Seconds the keys of a run live after the producer last touched them.
DEFAULT_RUN_TTL: Final = 600.0
#: Seconds between the producer's heartbeats, unless ``heartbeat=``: workers drop the shards
#: of a run whose producer has been silent for 3 heartbeats.
DEFAULT_HEARTBEAT: Final = 5.0
#: Seconds between looks at which workers could not authenticate (when no shard comes back).
_AUTH_CHECK: Final = 1.0
#: Longest the producer blocks on Redis waiting for a result (also its progress tick).
_READ_BLOCK: Final = 0.2
#: Say so when no shard has finished for this long (are any workers running?).
_STALL_WARNING: Final = 30.0


class NoWorkerCanAuthenticateError(AuthenticationError):
    """Every live worker had its credentials refused: the run cannot progress."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.workers = sorted(failures)
        names = ", ".join(self.workers)
        super().__init__(
            f"no worker can authenticate; the API refused the credentials of: {names}",
            http_status=401,
        )


class RunStats:
    """Live counters of one distributed run (read them any time; final after the loop)."""

    __slots__ = (
        "_started",
        "_stopped",
        "done",
        "failed",
        "failed_by",
        "ids",
        "ok",
        "redelivered",
        "run_id",
        "shards",
        "shards_done",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.ids = 0
        """Identifiers queued so far."""
        self.shards = 0
        """Shards queued so far."""
        self.shards_done = 0
        """Shards whose rows came back."""
        self.done = 0
        """Rows received (one per identifier)."""
        self.ok = 0
        self.failed = 0
        self.failed_by: dict[str, int] = {}
        """Failed rows by error class name."""
        self.redelivered = 0
        """Extra attempts at shards (a worker died or stopped mid-shard), known at the end."""
        self._started = perf_counter()
        self._stopped: float | None = None

    @property
    def elapsed(self) -> float:
        end = self._stopped if self._stopped is not None else perf_counter()
        return end - self._started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def __str__(self) -> str:
        text = (
            f"{self.done:,} done ({self.ok:,} ok, {self.failed:,} failed) in "
            f"{self.shards_done:,}/{self.shards:,} shards, {self.elapsed:.1f}s, "
            f"{self.rate:,.0f}/s"
        )
        if self.failed_by:
            text += " [" + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.failed_by.items())) + "]"
        if self.redelivered:
            text += f", {self.redelivered:,} shard(s) redelivered"
        return text

    def __repr__(self) -> str:
        return f"<RunStats {self.run_id} {self}>"


class Producer:
    """Queues shards for ``freedompay-async worker`` processes and reads their rows back::

        config = QueueConfig("redis://localhost:6379/0")
        async with Producer(config) as producer:
            async with producer.poll(identifiers, shard_size=1000) as run:
                async for row in run:
                    print(row.identifier, row.balance if row.ok else row.error)
            print(run.stats)

    One producer can run several polls, one after the other or at once.
    """

    def __init__(
        self, config: QueueConfig, *, redis_timeout: float = DEFAULT_REDIS_TIMEOUT
    ) -> None:
        check_instance(config, QueueConfig, "config", "a QueueConfig")
        self.config = config
        self._redis = Redis.from_url(config.url)
        self._queue = ShardQueue(self._redis, config.keys)
        self._store = RunStore(self._redis, config.keys)
        self._patience = Patience(check_redis_timeout(redis_timeout), "producer")
        self._started = False
        self._closed = False

    async def __aenter__(self) -> Producer:
        if self._closed:
            raise RuntimeError("this Producer is closed")
        if not self._started:
            await self._patience.call(self._queue.ensure_group)
            self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._patience.drain()
            await self._redis.aclose()

    def poll(
        self,
        identifiers: Iterable[str] | AsyncIterable[str],
        *,
        shard_size: int = DEFAULT_SHARD_SIZE,
        window: int = DEFAULT_WINDOW,
        run_id: str | None = None,
        ttl: float = DEFAULT_RUN_TTL,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_progress: Callable[[RunStats], object] | None = None,
    ) -> Run:
        """A run over ``identifiers``: enter it, then iterate it for one :class:`Row` per id.

        Args:
            identifiers: any iterable or async iterable of str, read lazily (a generator over
                a 10^7-line file is fine).
            shard_size: identifiers per shard (one queue message, polled by one worker).
            window: shards queued or running at once; the producer reads ahead no further.
            run_id: a name for the run's Redis keys (default: random).
            ttl: seconds the run's keys outlive a producer that stopped touching them.
            heartbeat: seconds between the producer's signs of life; workers drop the
                shards of a run whose producer has been silent for 3 of them.
            on_progress: called with the live :class:`RunStats` as shards come back.
        """
        check_int(shard_size, "shard_size", 1, 100_000)
        check_int(window, "window", 1, 100_000)
        check_number(ttl, "ttl", 10, 604_800, "a number of seconds (10 to a week)")
        check_number(heartbeat, "heartbeat", 0.1, 86_400, "a number of seconds")
        if heartbeat > ttl / 3:
            invalid("heartbeat must be between 0.1 seconds and a third of ttl")
        run = check_run_id(run_id) if run_id is not None else uuid.uuid4().hex[:16]
        if self._closed:
            raise RuntimeError("this Producer is closed")
        return Run(
            self, identifiers, run, shard_size, window, float(ttl), float(heartbeat), on_progress
        )

    def __repr__(self) -> str:
        return f"<Producer {redact_url(self.config.url)} namespace={self.config.namespace!r}>"


class Run:
    """One distributed poll: an async context manager, then an async iterator of rows.

    Rows come shard by shard as workers finish them. Every identifier of the input is reported
    exactly once. An exception from the input stops the queueing; the shards already queued
    are still reported, then the exception is raised from the ``async for``. Leaving the
    ``async with`` early (``break``, an exception, cancellation) deletes the run's keys, so
    workers drop its shards still queued.
    """

    def __init__(
        self,
        producer: Producer,
        identifiers: Iterable[str] | AsyncIterable[str],
        run_id: str,
        shard_size: int,
        window: int,
        ttl: float,
        heartbeat: float,
        on_progress: Callable[[RunStats], object] | None,
    ) -> None:
        self._producer = producer
        self._store = producer._store
        self._queue_ = producer._queue
        self._patience = producer._patience
        self._heartbeat = heartbeat
        self._beating = anyio.Lock()
        #: Shards queued and not received yet: queued again if Redis loses them.
        self._outstanding: dict[int, list[str]] = {}
        self._auth_seen_at = 0.0
        self._auth_strikes = 0
        self._identifiers = identifiers
        self.run_id = run_id
        self._shard_size = shard_size
        self._slots = anyio.Semaphore(window)
        self._ttl = ttl
        self._on_progress = on_progress
        self.stats = RunStats(run_id)
        self._group: TaskGroup | None = None
        self._rows: deque[Row] = deque()
        self._seen: set[int] = set()
        self._fed = False  # every shard is queued
        self._input_error: BaseException | None = None
        self._after = b"0"
        self._entered = False
        self._finished = False
        self._last_result = perf_counter()
        self._warned = False

    async def __aenter__(self) -> Run:
        if self._entered:
            raise RuntimeError("a Run can be entered once")
        self._entered = True
        await self._patience.call(
            lambda: self._store.open(self.run_id, ttl=self._ttl, heartbeat=self._heartbeat)
        )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._feed)
        group.start_soon(self._keep_alive)
        log.info("run %s started", self.run_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group = self._group
        self._group = None
        self.stats._stopped = perf_counter()
        try:
            if group is not None:
                # The body's own exception (an input error, a break, a cancellation) goes on
                # as it is; the group only ends its two helpers, which never fail.
                group.cancel_scope.cancel()
                await group.__aexit__(None, None, None)
            return None
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._store.close_run(self.run_id)

    def __aiter__(self) -> AsyncIterator[Row]:
        return self

    async def __anext__(self) -> Row:
        if self._group is None:
            raise RuntimeError("enter the run first: async with producer.poll(...) as run")
        rows = self._rows
        while not rows:
            if self._finished:
                raise StopAsyncIteration
            if self._fed and len(self._seen) == self.stats.shards:
                await self._finish()
                continue
            await self._collect()
        return rows.popleft()

    async def _finish(self) -> None:
        self._finished = True
        stats = self.stats
        attempts = await self._patience.call(lambda: self._store.attempts(self.run_id))
        stats.redelivered = sum(max(0, count - 1) for count in attempts.values())
        stats._stopped = perf_counter()
        self._progress()
        log.info("run %s finished: %s", self.run_id, stats)
        if self._input_error is not None:
            raise self._input_error

    async def _collect(self) -> None:
        outages = self._patience.outages
        after = self._after
        shards = await self._patience.call(
            lambda: self._store.read(self.run_id, after, block=_READ_BLOCK)
        )
        if self._patience.outages != outages:  # Redis was away: did it lose the run?
            await self._beat()
        now = perf_counter()
        if not shards:
            await self._check_workers(now)
            if not self._warned and now - self._last_result > _STALL_WARNING and self.stats.shards:
                self._warned = True
                log.warning(
                    "run %s: no shard came back for %.0f s; are workers running "
                    "(freedompay-async worker URL)?",
                    self.run_id,
                    _STALL_WARNING,
                )
            return
        self._last_result = now
        self._warned = False
        for shard in shards:
            self._take(shard)
        self._after = shards[-1].entry_id
        entry_ids = [shard.entry_id for shard in shards]
        await self._patience.call(lambda: self._store.forget(self.run_id, *entry_ids))
        self._progress()

    async def _check_workers(self, now: float) -> None:
        """Stop the run when workers failed to authenticate and no other worker is alive."""
        if now - self._auth_seen_at < _AUTH_CHECK:
            return
        self._auth_seen_at = now
        store = self._store
        failures = await self._patience.call(lambda: store.auth_failures(self.run_id))
        if not failures:
            self._auth_strikes = 0
            return
        healthy = set(await self._patience.call(store.alive)).difference(failures)
        self._auth_strikes = 0 if healthy else self._auth_strikes + 1
        if self._auth_strikes >= 2:  # twice in a row, a second apart
            raise NoWorkerCanAuthenticateError(failures)

    def _take(self, shard: ShardRows) -> None:
        if shard.shard in self._seen:  # read again after Redis came back: seen already
            log.debug("run %s: shard %d came back twice; ignored", self.run_id, shard.shard)
            return
        self._seen.add(shard.shard)
        self._outstanding.pop(shard.shard, None)
        self._slots.release()
        stats = self.stats
        stats.shards_done += 1
        stats.done += len(shard.rows)
        stats.ok += shard.ok
        stats.failed += shard.failed
        if shard.failed:
            failed_by = stats.failed_by
            for row in shard.rows:
                if not row.ok and row.error is not None:
                    failed_by[row.error] = failed_by.get(row.error, 0) + 1
        self._rows.extend(shard.rows)

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.stats)

    async def _feed(self) -> None:
        shard: list[str] = []
        try:
            async for identifier in _aiter(self._identifiers):
                if not isinstance(identifier, str):
                    raise TypeError(
                        f"identifiers must be str, not {type(identifier).__name__} "
                        f"(after {self.stats.ids:,} identifiers)"
                    )
                shard.append(identifier)
                if len(shard) == self._shard_size:
                    await self._queue(shard)
                    shard = []
            if shard:
                await self._queue(shard)
        except Exception as exc:  # the input failed: report what was queued, then raise it
            self._input_error = exc
        finally:
            self._fed = True

    async def _queue(self, ids: list[str]) -> None:
        await self._slots.acquire()
        stats = self.stats
        message = ShardMessage(self.run_id, stats.shards, ids)
        self._outstanding[message.shard] = ids
        await self._patience.call(lambda: self._queue_.add(message))
        stats.shards += 1
        stats.ids += len(ids)

    async def _keep_alive(self) -> None:
        while True:
            await anyio.sleep(self._heartbeat)
            try:
                await self._beat()
            except Exception as exc:  # Redis away too long: the reads say so
                log.warning("run %s: no heartbeat: %s", self.run_id, exc)

    async def _beat(self) -> None:
        """Say the run is alive; if Redis lost it (restarted without its data, or this
        producer was silent for 3 heartbeats), queue again every shard not received."""
        async with self._beating:
            alive = await self._patience.call(
                lambda: self._store.heartbeat(self.run_id, ttl=self._ttl, heartbeat=self._heartbeat)
            )
            if alive:
                return
            lost = sorted(self._outstanding.items())
            log.warning(
                "run %s: Redis lost the run (restarted without persistence?); "
                "queueing its %d outstanding shard(s) again",
                self.run_id,
                len(lost),
            )
            await self._patience.call(self._queue_.ensure_group)
            self._after = b"0"
            for shard, ids in lost:
                if shard in self._outstanding:
                    await self._requeue(ShardMessage(self.run_id, shard, ids))

    async def _requeue(self, message: ShardMessage) -> None:
        await self._patience.call(lambda: self._queue_.add(message))


async def _aiter(items: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for index, item in enumerate(items):
            yield item
            if index % 1024 == 1023:
                await asyncio.sleep(0)  # a long sync input must not starve the loop
