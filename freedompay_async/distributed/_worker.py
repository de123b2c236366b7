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
from time import monotonic
from typing import Final

import anyio
import msgspec
from anyio.abc import TaskGroup
from redis.asyncio import Redis

from .._client import FreedomPayClient
from .._rows import Row, to_row
from .._validate import check_int, check_positive_number, check_seconds
from ..batch import DEFAULT_CONCURRENCY
from ..errors import AuthenticationError, FreedomPayError
from ._keys import QueueConfig, redact_url
from ._patience import DEFAULT_REDIS_TIMEOUT, Patience, check_redis_timeout
from ._queue import ShardMessage, ShardQueue, decode_message
from ._sink import BEGIN_DONE, BEGIN_GONE, RunStore

__all__ = ["TASK_NAME", "WorkerStats", "run_worker"]

log = logging.getLogger("freedompay_async.distributed")

#: The name shards were queued under by earlier releases (kept for imports; unused).
TASK_NAME: Final = "freedompay_async.poll_shard"
#: Seconds in-flight shards get to finish after a stop was asked for, unless ``grace=``.
DEFAULT_GRACE: Final = 30.0
#: Attempts at one shard before its ids are reported as failed instead of redelivered again.
MAX_ATTEMPTS: Final = 5
#: The longest a failed or cancelled shard may take to be put back on the queue (past that it
#: is redelivered after the lease instead).
_HAND_BACK_TIMEOUT: Final = 5.0
#: Longest one read blocks on an empty stream (a stop is noticed within this).
_MAX_BLOCK: Final = 1.0
#: An identifier no wallet has: the credential check looks it up (a 1004 answer means the
#: request was signed right).
_PROBE_ID: Final = "freedompay-async-credential-check"


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
    taken_over: int = 0
    """Shards taken over from a worker that stopped renewing them."""


class WorkerAuthenticationError(AuthenticationError):
    """This worker's credentials are refused (HTTP 401): it stopped taking shards."""


class _Delivery:
    """One message this worker holds until it is settled or handed back."""

    __slots__ = ("data", "message_id", "settled")

    def __init__(self, message_id: bytes, data: bytes) -> None:
        self.message_id = message_id
        self.data = data
        self.settled = False


class _Worker:
    def __init__(
        self,
        config: QueueConfig,
        client: FreedomPayClient,
        redis: Redis,
        patience: Patience,
        name: str,
        *,
        shards: int,
        concurrency: int,
        rate_limit: float | None,
    ) -> None:
        self.config = config
        self.client = client
        self.queue = ShardQueue(redis, config.keys)
        self.store = RunStore(redis, config.keys)
        self.patience = patience
        self.name = name
        self.shards = shards
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.stats = WorkerStats()
        self.held: dict[bytes, _Delivery] = {}
        self.slots = anyio.Semaphore(shards)
        self.auth_error: AuthenticationError | None = None
        #: Set to stop taking shards (a stop was asked for, or the credentials were refused).
        self.halt = anyio.Event()
        #: Set when, halted, the last shard in flight is done.
        self.drained = anyio.Event()
        self.lease_ms = max(1, int(config.lease * 1000))
        self._next_claim = 0.0

    # -- taking shards ----------------------------------------------------------------------

    async def take(self, group: TaskGroup) -> None:
        """Fill free slots with shards (abandoned ones first) until :attr:`halt` is set (a
        stop, or an authentication failure)."""
        block_ms = max(1, int(min(_MAX_BLOCK, self.config.lease / 4) * 1000))
        while not self.halt.is_set():
            free = await self._free_slots()
            if self.halt.is_set():
                for _ in range(free):
                    self.slots.release()
                return
            try:
                entries = await self._next(free, block_ms)
            except BaseException:
                for _ in range(free):
                    self.slots.release()
                raise
            deliveries = [self._hold(message_id, fields) for message_id, fields in entries]
            if self.halt.is_set():  # read after all: back at once
                for delivery in deliveries:
                    await self._hand_back(delivery)
                deliveries = []
            for delivery in deliveries:
                free -= 1
                group.start_soon(self._run, delivery)
            for _ in range(free):
                self.slots.release()

    async def _free_slots(self) -> int:
        """Wait for a free slot, then take every free one: how many (0 if halted first)."""
        async with anyio.create_task_group() as waiting:

            async def on_halt() -> None:
                await self.halt.wait()
                waiting.cancel_scope.cancel()

            waiting.start_soon(on_halt)
            await self.slots.acquire()
            waiting.cancel_scope.cancel()
            free = 1
            while self.slots.value:
                self.slots.acquire_nowait()
                free += 1
            return free
        return 0

    async def _next(self, count: int, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        now = monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.config.lease / 4
            claimed = await self.patience.call(
                lambda: self.queue.claim_abandoned(self.name, count, self.lease_ms)
            )
            if claimed:
                self._next_claim = now  # maybe more: look again at the next free slot
                for message_id, _ in claimed:
                    log.info("worker %s took over shard message %s", self.name, message_id)
                self.stats.taken_over += len(claimed)
                return claimed
        return await self.patience.call(lambda: self.queue.read(self.name, count, block_ms))

    def _hold(self, message_id: bytes, fields: dict[bytes, bytes]) -> _Delivery:
        delivery = _Delivery(message_id, fields.get(b"data", b""))
        self.held[message_id] = delivery
        return delivery

    # -- one shard --------------------------------------------------------------------------

    async def _run(self, delivery: _Delivery) -> None:
        try:
            await self._shard(delivery)
        finally:
            self.slots.release()
            if self.halt.is_set() and self.slots.value == self.shards:
                self.drained.set()

    async def _shard(self, delivery: _Delivery) -> None:
        try:
            message = decode_message(delivery.data)
        except msgspec.DecodeError as exc:
            log.error("dropped shard message %s: not a shard (%s)", delivery.message_id, exc)
            await self._settle(delivery)
            return
        run, shard = message.run, message.shard
        attempt = 0
        try:
            attempt = await self.patience.call(lambda: self.store.begin(run, shard))
            if attempt in (BEGIN_DONE, BEGIN_GONE):
                self.stats.skipped += 1
                log.debug("shard %s of run %s skipped (%s)", shard, run, attempt)
                await self._settle(delivery)
                return
            if attempt > 1:
                log.info("shard %s of run %s: attempt %d", shard, run, attempt)
            rows = await self._lookup(message.ids)
            if self._refused(rows) is not None:
                await self._cannot_authenticate(delivery, message, rows)
                return
            await self._store_rows(run, shard, rows)
            await self._settle(delivery)
        except Exception as exc:
            if attempt >= MAX_ATTEMPTS and await self._give_up(message, exc):
                await self._settle(delivery)
                return
            self._count(exc)
            log.warning(
                "shard %s of run %s failed (%s: %s); handed back",
                shard,
                run,
                type(exc).__name__,
                exc,
            )
            await self._hand_back(delivery)
        except BaseException as exc:  # cancelled: the worker is stopping
            self._count(exc)
            await self._hand_back(delivery)
            raise

    async def _lookup(self, ids: list[str]) -> list[Row]:
        rows: list[Row] = []
        async with self.client.wallets.info_many(
            ids, concurrency=self.concurrency, rate_limit=self.rate_limit
        ) as results:
            async for result in results:
                rows.append(to_row(result))
        return rows

    @staticmethod
    def _refused(rows: list[Row]) -> Row | None:
        return next((row for row in rows if row.error == AuthenticationError.__name__), None)

    async def _cannot_authenticate(
        self, delivery: _Delivery, message: ShardMessage, rows: list[Row]
    ) -> None:
        """The API refused this worker's credentials: give the shard back, tell the producer,
        stop taking work. Healthy workers finish the run."""
        refused = self._refused(rows)
        why = (refused.message if refused is not None else None) or "HTTP 401"
        self.auth_error = self.auth_error or WorkerAuthenticationError(
            f"worker {self.name}: the API refused its credentials ({why}); it stopped taking shards",
            http_status=401,
        )
        self.halt.set()
        log.error("%s; shard %s handed back", self.auth_error.message, message.shard)
        self._count(self.auth_error)
        await self._hand_back(delivery)
        with contextlib.suppress(Exception):
            await self.patience.call(
                lambda: self.store.cannot_authenticate(message.run, self.name, why[:200])
            )
            await self.patience.call(lambda: self.store.gone(self.name))

    async def _store_rows(self, run: str, shard: int, rows: list[Row]) -> None:
        try:
            await self.patience.call(lambda: self.store.store(run, shard, rows))
        except LookupError:  # the producer went away meanwhile: nobody wants these rows
            self.stats.skipped += 1
            return
        self.stats.shards += 1
        self.stats.lookups += len(rows)

    async def _give_up(self, message: ShardMessage, exc: Exception) -> bool:
        """A shard that failed :data:`MAX_ATTEMPTS` times (a bug, not bad luck) is reported:
        every id as failed with the error, rather than redelivered forever. True if stored."""
        name = type(exc).__name__
        message_text = f"shard failed {MAX_ATTEMPTS} times, last with {name}: {exc}"[:500]
        log.error(
            "shard %s of run %s: %s; its ids are reported as failed",
            message.shard,
            message.run,
            message_text,
        )
        rows = [Row(identifier=i, ok=False, error=name, message=message_text) for i in message.ids]
        try:
            await self._store_rows(message.run, message.shard, rows)
        except Exception:
            return False
        return True

    def _count(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        self.stats.handed_back += 1

    # -- settlement -------------------------------------------------------------------------

    async def _settle(self, delivery: _Delivery) -> None:
        if delivery.settled:
            return
        delivery.settled = True
        self.held.pop(delivery.message_id, None)  # before the ack: renewals leave it alone
        with anyio.CancelScope(shield=True):
            await self.patience.call(lambda: self.queue.settle(delivery.message_id))

    async def _hand_back(self, delivery: _Delivery) -> None:
        if delivery.settled:
            return
        delivery.settled = True  # whatever happens next, never acknowledge it
        self.held.pop(delivery.message_id, None)
        with anyio.move_on_after(_HAND_BACK_TIMEOUT, shield=True):
            try:
                await self.queue.hand_back(self.name, delivery.message_id, delivery.data)
                return
            except Exception as exc:
                log.warning(
                    "could not hand shard message %s back (%s); it is taken over after the lease",
                    delivery.message_id,
                    type(exc).__name__,
                )

    # -- leases -----------------------------------------------------------------------------

    async def renew_forever(self) -> None:
        """Every third of a lease: renew what this worker holds, say it is alive, and remove
        consumers of the group that are gone."""
        lease = self.config.lease
        next_sweep = monotonic() + lease
        # A live consumer reads at least every second, or holds messages.
        idle_ms = int(max(3 * lease, 5.0) * 1000)
        while True:
            await anyio.sleep(lease / 3)
            call = self.patience.call
            try:
                await self._renew()
                if self.auth_error is None:
                    await call(lambda: self.store.alive(self.name, lease=lease))
                if monotonic() >= next_sweep:
                    next_sweep = monotonic() + lease
                    for name in await call(lambda: self.queue.remove_dead_consumers(idle_ms)):
                        log.info("removed consumer %s from the group (gone)", name)
            except Exception as exc:  # Redis away: the takers wait it out; try again later
                log.warning("worker %s: could not renew leases: %s", self.name, type(exc).__name__)

    async def _renew(self) -> None:
        held = list(self.held)
        if not held:
            return
        kept = await self.patience.call(lambda: self.queue.renew(self.name, held))
        for message_id in held:
            delivery = self.held.get(message_id)
            if message_id in kept or delivery is None or delivery.settled:
                continue  # renewed, or settled meanwhile (no lease to lose any more)
            # Another worker took it over (this one stalled for a whole lease, or Redis lost
            # it): both carry on; the shard's rows are stored once, by whoever finishes first.
            log.warning("worker %s lost the lease of shard message %s", self.name, message_id)
            self.held.pop(message_id, None)


async def _shielded_drain(patience: Patience) -> None:
    with anyio.CancelScope(shield=True):
        await patience.drain()


async def _halt_on(stop: asyncio.Event, halt: anyio.Event) -> None:
    await stop.wait()
    halt.set()


async def check_credentials(client: FreedomPayClient, name: str) -> None:
    """One signed request: raises :class:`WorkerAuthenticationError` if the API refuses the
    credentials. Any other answer (the probe id is unknown, the API is slow) passes."""
    try:
        await client.wallets.info(_PROBE_ID)
    except AuthenticationError as exc:
        raise WorkerAuthenticationError(
            f"worker {name}: the API refused its credentials ({exc.message}); it takes no shard",
            http_status=exc.http_status,
            endpoint=exc.endpoint,
        ) from exc
    except FreedomPayError:
        pass


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
    redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
    check: bool = True,
) -> WorkerStats:
    """Poll shards from the queue until ``stop`` is set; the worker's :class:`WorkerStats`.

    One client (``client_factory()``, entered here and closed on return) serves every shard of
    this process. ``shards`` shards run at once, each with ``info_many(concurrency=...)``, so up
    to ``shards * concurrency`` requests are in flight. ``rate_limit`` (requests per second) caps
    the whole process: each of the ``shards`` slots gets an equal part of it.

    Credentials: with ``check`` (the default) one signed request is made first; if the API
    refuses it, :class:`AuthenticationError` is raised before any shard is taken. If a shard
    still meets an authentication error, the worker hands it back, tells the producer, stops
    taking work and raises :class:`WorkerAuthenticationError` once its other shards are done.

    Redis outages are waited out for up to ``redis_timeout`` seconds (then
    :class:`RedisUnavailableError`).

    Stopping: once ``stop`` is set the worker takes no new shard, lets the shards in flight
    finish for up to ``grace`` seconds, then cancels the rest. A cancelled or failed shard is
    put back on the queue at once (its partial rows are dropped; it is polled again in full by
    whichever worker takes it). Killed outright, the worker's shards are taken over by another
    worker after the lease (:attr:`QueueConfig.lease`). Cancelling the task that runs this
    function stops at once, in the same way, with no grace.
    """
    check_int(concurrency, "concurrency", 1)
    check_int(shards, "shards", 1)
    check_seconds(grace, "grace", allow_zero=True)
    if rate_limit is not None:
        check_positive_number(rate_limit, "rate_limit", "a number of requests per second, or None")
    redis_timeout = check_redis_timeout(redis_timeout)
    stop = stop if stop is not None else asyncio.Event()
    consumer = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(client_factory())
        redis = Redis.from_url(config.url)
        stack.push_async_callback(redis.aclose)
        patience = Patience(redis_timeout, f"worker {consumer}")
        stack.push_async_callback(_shielded_drain, patience)
        worker = _Worker(
            config,
            client,
            redis,
            patience,
            consumer,
            shards=shards,
            concurrency=concurrency,
            rate_limit=None if rate_limit is None else rate_limit / shards,
        )
        await patience.call(worker.queue.ensure_group)
        if check:
            await check_credentials(client, consumer)
        await patience.call(lambda: worker.store.alive(consumer, lease=config.lease))
        log.info(
            "worker %s listening on %s (%s), %d shards x %d lookups at once",
            consumer,
            redact_url(config.url),
            config.keys.shards,
            shards,
            concurrency,
        )
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(worker.renew_forever)
                outer.start_soon(_halt_on, stop, worker.halt)
                async with anyio.create_task_group() as running:
                    await worker.take(running)
                    # Stopping: the shards in flight get ``grace`` seconds, then are cancelled
                    # (and hand themselves back).
                    if worker.slots.value < shards:
                        with anyio.move_on_after(grace):
                            await worker.drained.wait()
                    running.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await redis.zrem(config.keys.workers, consumer)
    if worker.auth_error is not None:
        raise worker.auth_error
    return worker.stats
