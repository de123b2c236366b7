"""The worker side: one :class:`FreedomPayClient` per process, shards from the queue, rows to
the sink, and a graceful stop that loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
from redis.exceptions import RedisError
from taskiq import Context, TaskiqDepends
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from .._client import FreedomPayClient
from .._rows import Row, to_row
from .._validate import check_int
from ..batch import DEFAULT_CONCURRENCY
from ._broker import ShardBroker
from ._keys import QueueConfig, check_run_id, redact_url
from ._sink import BEGIN_DONE, BEGIN_GONE, RunStore

__all__ = ["TASK_NAME", "WorkerStats", "run_worker"]

log = logging.getLogger("freedompay_async.distributed")

#: The taskiq task name of a shard (producer and workers must agree on it).
TASK_NAME: Final = "freedompay_async.poll_shard"
#: Seconds in-flight shards get to finish after a stop was asked for, unless ``grace=``.
DEFAULT_GRACE: Final = 30.0
#: Seconds to wait before listening again after Redis could not be reached.
_RECONNECT_DELAY: Final = 1.0
#: Attempts at one shard before its ids are reported as failed instead of redelivered again.
MAX_ATTEMPTS: Final = 5
#: The longest a failed or cancelled shard may take to be put back on the queue (past that it
#: is redelivered after the lease instead).
_HAND_BACK_TIMEOUT: Final = 5.0
#: taskiq injects the task's context where the default is this marker.
_CONTEXT: Final[Context] = TaskiqDepends()


@dataclass
class WorkerStats:
    """What one worker did (returned by :func:`run_worker` when it stops)."""

    shards: int = 0
    """Shards polled and stored by this worker."""
    lookups: int = 0
    """Wallet lookups in those shards."""
    skipped: int = 0
    """Shards dropped without polling: already stored, or their run was over."""
    handed_back: int = 0
    """Shards put back on the queue (failure, or stopped before they finished)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Why shards were handed back, by exception class."""


class _ShardTask:
    """The taskiq task, bound to this worker's client, sink and broker."""

    def __init__(
        self,
        client: FreedomPayClient,
        store: RunStore,
        broker: ShardBroker,
        *,
        concurrency: int,
        rate_limit: float | None,
    ) -> None:
        self._client = client
        self._store = store
        self._broker = broker
        self._concurrency = concurrency
        self._rate_limit = rate_limit
        self.running: set[asyncio.Task[object]] = set()
        self.stats = WorkerStats()

    async def poll_shard(
        self, run: str, shard: int, ids: list[str], context: Context = _CONTEXT
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        attempt = 0
        try:
            check_run_id(run)
            attempt = await self._store.begin(run, shard)
            if attempt in (BEGIN_DONE, BEGIN_GONE):
                self.stats.skipped += 1
                log.debug("shard %s of run %s skipped (%s)", shard, run, attempt)
                return
            if attempt > 1:
                log.info("shard %s of run %s: attempt %d", shard, run, attempt)
            await self._store_rows(run, shard, await self._lookup(ids))
        except Exception as exc:
            if attempt >= MAX_ATTEMPTS and await self._give_up(run, shard, ids, exc):
                return
            await self._hand_back(run, shard, exc, context)
            raise
        except BaseException as exc:  # cancelled: the worker is stopping
            await self._hand_back(run, shard, exc, context)
            raise
        finally:
            self.running.discard(task)

    async def _lookup(self, ids: list[str]) -> list[Row]:
        rows: list[Row] = []
        async with self._client.wallets.info_many(
            ids, concurrency=self._concurrency, rate_limit=self._rate_limit
        ) as results:
            async for result in results:
                rows.append(to_row(result))
        return rows

    async def _store_rows(self, run: str, shard: int, rows: list[Row]) -> None:
        try:
            await self._store.store(run, shard, rows)
        except LookupError:  # the producer went away meanwhile: nobody wants these rows
            self.stats.skipped += 1
            return
        self.stats.shards += 1
        self.stats.lookups += len(rows)

    async def _hand_back(self, run: str, shard: int, exc: BaseException, context: Context) -> None:
        """taskiq acknowledges a message whatever the task did: put it back on the queue first."""
        name = type(exc).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        self.stats.handed_back += 1
        if not isinstance(exc, asyncio.CancelledError):
            log.warning("shard %s of run %s failed (%s: %s); handed back", shard, run, name, exc)
        with anyio.move_on_after(_HAND_BACK_TIMEOUT, shield=True):
            await self._broker.hand_back(context.message.task_id)

    async def _give_up(self, run: str, shard: int, ids: list[str], exc: Exception) -> bool:
        """A shard that failed :data:`MAX_ATTEMPTS` times (a bug, not bad luck) is reported:
        every id as failed with the error, rather than redelivered forever. True if stored."""
        name = type(exc).__name__
        message = f"shard failed {MAX_ATTEMPTS} times, last with {name}: {exc}"[:500]
        log.error("shard %s of run %s: %s; its ids are reported as failed", shard, run, message)
        rows = [Row(identifier=i, ok=False, error=name, message=message) for i in ids]
        try:
            await self._store_rows(run, shard, rows)
        except Exception:
            return False
        return True


async def run_worker(
    config: QueueConfig,
    client_factory: Callable[[], FreedomPayClient],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    shards: int = 2,
    rate_limit: float | None = None,
    grace: float = DEFAULT_GRACE,
    stop: asyncio.Event | None = None,
    name: str | None = None,
) -> WorkerStats:
    """Poll shards from the queue until ``stop`` is set; the worker's :class:`WorkerStats`.

    One client (``client_factory()``, entered here and closed on return) serves every shard of
    this process. ``shards`` shards run at once, each with ``info_many(concurrency=...)``, so up
    to ``shards * concurrency`` requests are in flight. ``rate_limit`` (requests per second) caps
    the whole process: each of the ``shards`` slots gets an equal part of it.

    Stopping: once ``stop`` is set the worker takes no new shard, lets the shards in flight
    finish for up to ``grace`` seconds, then cancels the rest. A cancelled or failed shard is
    put back on the queue at once (its partial rows are dropped; it is polled again in full by
    whichever worker takes it). Killed outright, the worker's shards are taken over by another
    worker after the lease (:attr:`QueueConfig.lease`). Cancelling the task that runs this
    function stops at once, in the same way, with no grace.
    """
    check_int(concurrency, "concurrency", 1)
    check_int(shards, "shards", 1)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise ValueError("grace must be a number of seconds, 0 or more")
    if rate_limit is not None and (
        isinstance(rate_limit, bool)
        or not isinstance(rate_limit, (int, float))
        or not 0 < rate_limit < float("inf")
    ):
        raise ValueError("rate_limit must be a positive number of requests per second, or None")
    stop = stop if stop is not None else asyncio.Event()
    consumer = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    broker = ShardBroker(config, prefetch=1, consumer_name=consumer)
    broker.is_worker_process = True
    async with contextlib.AsyncExitStack() as stack:
        receiver_log = logging.getLogger("taskiq.receiver.receiver")
        quiet = _QuietCancellation()
        receiver_log.addFilter(quiet)
        stack.callback(receiver_log.removeFilter, quiet)
        client = await stack.enter_async_context(client_factory())
        task = _ShardTask(
            client,
            RunStore(broker.redis, config.keys),
            broker,
            concurrency=concurrency,
            rate_limit=None if rate_limit is None else rate_limit / shards,
        )

        # taskiq wants a plain function (it renames it): one per worker, bound to this task.
        async def poll_shard(
            run: str, shard: int, ids: list[str], context: Context = _CONTEXT
        ) -> None:
            await task.poll_shard(run, shard, ids, context)

        broker.register_task(poll_shard, task_name=TASK_NAME)
        await broker.startup()
        stack.push_async_callback(broker.shutdown)
        log.info(
            "worker %s listening on %s (%s), %d shards x %d lookups at once",
            consumer,
            redact_url(config.url),
            config.keys.shards,
            shards,
            concurrency,
        )
        try:
            while not stop.is_set():
                receiver = Receiver(
                    broker,
                    run_startup=False,
                    max_async_tasks=shards,
                    ack_type=AcknowledgeType.WHEN_EXECUTED,
                    wait_tasks_timeout=grace,
                    propagate_exceptions=False,
                )
                try:
                    await receiver.listen(stop)
                except Exception as exc:
                    if not _connection_trouble(exc):
                        raise
                    # A Redis restarted without persistence lost the group: declare it again.
                    with contextlib.suppress(RedisError, OSError):
                        await broker._declare_consumer_group()
                    log.warning(
                        "lost Redis (%s); listening again in %.0f s",
                        _describe(exc),
                        _RECONNECT_DELAY,
                    )
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), _RECONNECT_DELAY)
        finally:
            await _cancel_all(task.running)
    return task.stats


class _QuietCancellation(logging.Filter):
    """taskiq's receiver logs a task that was cancelled as an error, with a traceback; a shard
    cancelled because its worker stops is no error (the worker has said it put it back)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def _connection_trouble(exc: BaseException) -> bool:
    """A Redis or network error, alone or in an exception group (taskiq's receiver runs on an
    anyio task group, which wraps what its listener raised)."""
    if isinstance(exc, (RedisError, OSError)):
        return True
    inner = getattr(exc, "exceptions", None)  # BaseExceptionGroup, also on 3.10's backport
    if not inner:
        return False
    return all(_connection_trouble(e) for e in inner)


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    return _describe(inner[0]) if inner else f"{type(exc).__name__}: {exc}"


async def _cancel_all(tasks: set[asyncio.Task[object]]) -> None:
    """Cancel the shards still running after the grace period (they hand themselves back)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        log.info("cancelled %d shards still running after the grace period", len(pending))
        await asyncio.gather(*pending, return_exceptions=True)
