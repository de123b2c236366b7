"""The taskiq broker for shards: taskiq-redis's stream broker, with the settlement rules the
distributed poll needs.

taskiq-redis's :class:`~taskiq_redis.RedisStreamBroker` delivers each message through a
consumer group and acknowledges it when the task returns. Three of its behaviours do not fit a
job where a shard must never be lost, so this subclass changes them:

- **Settlement belongs to the task, not to the receiver.** taskiq acknowledges a message after
  the task ran *whatever happened*, a failed or cancelled task included. Here the receiver's
  acknowledgement settles a message only if the task did not :meth:`hand_back` it first; a
  shard whose poll failed or was cancelled (worker shutting down) is put back on the stream at
  once (a fresh copy, and the old entry acknowledged, in one transaction).
- **Leases.** A message delivered to a worker stays in the group's pending list until it is
  settled. While a worker lives it renews its pending messages every third of the lease; a
  worker that was killed stops renewing, and an idle worker claims the message once it has been
  idle for a whole lease. taskiq-redis reclaims only right after new messages arrived, and
  with a lock that a killed worker can leave held; here reclaiming runs on every idle poll,
  throttled, without a lock (``XAUTOCLAIM`` with a minimum idle time is atomic).
- **Settled entries are deleted** (``XACK`` + ``XDEL``), so the stream holds only the shards
  still to do: memory in Redis stays proportional to the work outstanding, not to history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator
from time import monotonic
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from ._keys import QueueConfig
from ._sink import StreamEntry, stream_entries

__all__ = ["ShardBroker"]

log = logging.getLogger("freedompay_async.distributed")

#: Longest a worker blocks on an empty stream before it looks for abandoned shards again.
_MAX_BLOCK_MS: Final = 1000

# Renew only what this consumer still owns: a message another worker claimed (because this one
# stalled for a whole lease) stays with that worker.
_RENEW: Final = """
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if entry[1] then claim[#claim + 1] = ARGV[i] end
end
if #claim == 5 then return {} end
claim[#claim + 1] = 'JUSTID'
return redis.call(unpack(claim))
"""

# Put a message back: a fresh copy at the end of the stream, the old entry settled; only if
# this consumer still owns it (else whoever claimed it carries on with it).
_HAND_BACK: Final = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if not entry[1] then return 0 end
redis.call('XADD', KEYS[1], '*', 'data', ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""


class _Delivery:
    """One message this worker holds: its stream id, its bytes, whether it is settled."""

    __slots__ = ("data", "message_id", "settled")

    def __init__(self, message_id: bytes, data: bytes) -> None:
        self.message_id = message_id
        self.data = data
        self.settled = False


class ShardBroker(RedisStreamBroker):
    """A :class:`~taskiq_redis.RedisStreamBroker` on ``config``'s keys with leases and
    task-owned settlement (see the module's docstring). ``prefetch`` is how many messages one
    read takes: keep it at the number of shards the worker runs at once, so that an idle
    worker never waits behind shards another one hoards."""

    def __init__(
        self,
        config: QueueConfig,
        *,
        prefetch: int = 1,
        consumer_name: str | None = None,
        **connection_kwargs: Any,
    ) -> None:
        keys = config.keys
        lease_ms = max(1, int(config.lease * 1000))
        super().__init__(
            config.url,
            queue_name=keys.shards,
            consumer_group_name=keys.group,
            consumer_name=consumer_name or f"worker-{uuid.uuid4().hex[:12]}",
            # The group starts at the beginning of the stream: shards queued before the first
            # worker ever started are delivered too.
            consumer_id="0",
            idle_timeout=lease_ms,
            xread_block=min(_MAX_BLOCK_MS, max(1, lease_ms // 3)),
            xread_count=prefetch,
            unacknowledged_batch_size=prefetch,
            **connection_kwargs,
        )
        self.config = config
        self._lease = config.lease
        self._held: dict[str, _Delivery] = {}  # task id -> delivery, until settled
        self._by_message: dict[bytes, _Delivery] = {}
        self._renewer: asyncio.Task[None] | None = None
        #: A client over the broker's pool, for the producer's and workers' other commands.
        self.redis: Redis = Redis(connection_pool=self.connection_pool)
        self._rounds: list[asyncio.Future[list[StreamEntry]]] = []
        self._next_reclaim = 0.0

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        await super().startup()
        if self.is_worker_process and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="shard-lease-renewer")

    async def shutdown(self) -> None:
        try:
            if self._renewer is not None:
                self._renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._renewer
                self._renewer = None
            # Deliveries read but never run (the receiver stopped first): back on the stream
            # now, rather than after a lease.
            rounds, self._rounds = self._rounds, []
            for done in rounds:
                with contextlib.suppress(RedisError, OSError):
                    for message_id, fields in await done:
                        self._by_message[message_id] = _Delivery(message_id, fields[b"data"])
            for delivery in list(self._by_message.values()):
                await self._hand_back(delivery)
        finally:
            await self.redis.aclose()
            await super().shutdown()

    # -- delivery ---------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        # Each Redis round runs in a task of its own, awaited through a shield: when the
        # receiver stops, it cancels this generator while it waits, and a blocking XREADGROUP
        # must not be what receives that cancellation (redis-py can turn a cancellation that
        # races with its read timeout into an empty reply, and the generator would then never
        # stop). A round cut short this way completes in the background; what it read is
        # handed back at shutdown, or delivered by the next listen().
        while True:
            rounds, self._rounds = self._rounds, []
            for done in rounds:
                try:
                    entries = await done
                except (RedisError, OSError):
                    continue  # that round read nothing
                for message_id, fields in entries:
                    yield self._deliver(message_id, fields)
            read = asyncio.ensure_future(self._read_round())
            try:
                entries = await asyncio.shield(read)
            except asyncio.CancelledError:
                self._rounds.append(read)
                raise
            for message_id, fields in entries:
                yield self._deliver(message_id, fields)

    async def _read_round(self) -> list[StreamEntry]:
        """New messages (waiting up to the block time), else, every third of a lease, those
        whose worker stopped renewing them."""
        redis = self.redis
        fetched = await redis.xreadgroup(
            self.consumer_group_name,
            self.consumer_name,
            {self.queue_name: ">"},
            count=self.count,
            block=self.block,
        )
        entries = stream_entries(fetched)
        now = monotonic()
        if entries or now < self._next_reclaim:
            return entries
        self._next_reclaim = now + self._lease / 3
        claimed = await redis.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            count=self.unacknowledged_batch_size,
        )
        taken = [(message_id, fields) for message_id, fields in claimed[1] if fields]
        for message_id, _fields in taken:  # fields None: deleted meanwhile
            log.info("took over shard message %s (its worker stopped)", message_id)
        return taken

    def _deliver(self, message_id: bytes, fields: dict[bytes, bytes]) -> AckableMessage:
        data = fields[b"data"]
        delivery = _Delivery(message_id, data)
        try:
            task_id = self.formatter.loads(data).task_id
        except Exception:  # not ours to judge: the receiver reports and settles it
            task_id = None
        if task_id is not None:
            self._held[task_id] = delivery
        self._by_message[message_id] = delivery

        async def ack() -> None:
            if task_id is not None:
                self._held.pop(task_id, None)
            await self._settle(delivery)

        return AckableMessage(data=data, ack=ack)

    # -- settlement -------------------------------------------------------------------------

    async def _settle(self, delivery: _Delivery) -> None:
        if delivery.settled:
            return
        delivery.settled = True
        self._by_message.pop(delivery.message_id, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.queue_name, self.consumer_group_name, delivery.message_id)
            pipe.xdel(self.queue_name, delivery.message_id)
            await pipe.execute()

    async def hand_back(self, task_id: str) -> None:
        """Put the message of task ``task_id`` back on the stream for any worker, now.

        If Redis cannot be reached the message stays pending: this worker stops renewing it and
        another one takes it over after the lease. Either way the receiver's acknowledgement
        that follows does nothing.
        """
        delivery = self._held.pop(task_id, None)
        if delivery is not None:
            await self._hand_back(delivery)

    async def _hand_back(self, delivery: _Delivery) -> None:
        if delivery.settled:
            return
        delivery.settled = True  # whatever happens next, never acknowledge it
        self._by_message.pop(delivery.message_id, None)
        try:
            await self.redis.eval(
                _HAND_BACK,
                1,
                self.queue_name,
                self.consumer_group_name,
                delivery.message_id,
                self.consumer_name,
                delivery.data,
            )
        except (RedisError, OSError) as exc:
            log.warning(
                "could not hand shard message %s back (%s); it is redelivered after the lease",
                delivery.message_id,
                type(exc).__name__,
            )

    # -- leases -----------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        interval = self._lease / 3
        while True:
            await asyncio.sleep(interval)
            held = [d.message_id for d in list(self._by_message.values()) if not d.settled]
            if not held:
                continue
            try:
                kept = await self.redis.eval(
                    _RENEW,
                    1,
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    *held,
                )
            except (RedisError, OSError) as exc:
                log.warning("could not renew shard leases: %s", type(exc).__name__)
                continue
            for message_id in set(held).difference(kept):
                # Another worker took it over (this one stalled for a whole lease): stop
                # renewing it. Both carry on; the shard's rows are stored once, by whoever
                # finishes first, and either acknowledgement settles it.
                log.warning("lost the lease of shard message %s", message_id)
                self._by_message.pop(message_id, None)
