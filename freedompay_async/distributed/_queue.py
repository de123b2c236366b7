"""The shard queue: one Redis stream read through one consumer group, with leases.

Plain Redis stream commands (redis-py's public API), nothing else:

- **Delivery.** ``XREADGROUP`` gives a message to one consumer (worker) and puts it in the
  group's pending list under that consumer's name.
- **Leases.** A live worker renews its pending messages every third of the lease (``XCLAIM``
  to itself, which resets their idle time); a killed one stops renewing. Every worker with a
  free slot looks for messages idle for a whole lease (``XAUTOCLAIM``, atomic) every quarter of
  a lease, whether or not new messages are waiting, so a killed worker's shards are taken over
  within about 1.25 leases of its death.
- **Settlement belongs to the task.** A finished shard is settled (``XACK`` + ``XDEL``: Redis
  keeps only the work still to do); a failed or cancelled one is handed back: a fresh copy at
  the end of the stream and the old entry settled, in one script, only if this worker still
  owns it.
- **Dead consumers are removed** from the group once they own nothing and have been silent for
  a while (one script: a consumer is deleted only with no pending message, never losing one).
"""

from __future__ import annotations

from typing import Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ._keys import Keys
from ._sink import StreamEntry, stream_entries

__all__ = ["ShardMessage", "ShardQueue"]


class ShardMessage(msgspec.Struct, frozen=True, array_like=True):
    """One shard: the ids to poll and where its rows go."""

    run: str
    shard: int
    ids: list[str]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ShardMessage).decode

# Renew only what this consumer still owns: a message another worker claimed (because this one
# stalled for a whole lease) stays with that worker. Returns the ids renewed.
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

# Delete the consumers that own no message and have not read for ARGV[2] ms.
_REMOVE_DEAD: Final = """
local removed = {}
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed[#removed + 1] = fields['name']
  end
end
return removed
"""


class ShardQueue:
    """The stream ``keys.shards`` and its group ``keys.group``, over one Redis client."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.stream = keys.shards
        self.group = keys.group

    async def ensure_group(self) -> None:
        """Create the stream and its group unless they exist. The group starts at the
        beginning of the stream: shards queued before any worker started are delivered too."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(self, message: ShardMessage) -> None:
        await self.redis.xadd(self.stream, {"data": _encode(message)})

    async def read(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        """New messages for ``consumer``, waiting up to ``block_ms``. A group that vanished
        (Redis restarted without its data) is created again."""
        try:
            reply = await self.redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        return stream_entries(reply)

    async def claim_abandoned(
        self, consumer: str, count: int, min_idle_ms: int
    ) -> list[StreamEntry]:
        """Messages no consumer renewed for ``min_idle_ms``, now ``consumer``'s."""
        try:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, consumer, min_idle_time=min_idle_ms, count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        # Entries deleted meanwhile come back without fields.
        return [(message_id, fields) for message_id, fields in reply[1] if fields]

    async def renew(self, consumer: str, message_ids: list[bytes]) -> set[bytes]:
        """Reset the idle time of the messages ``consumer`` still owns; those ids."""
        kept = await self.redis.eval(_RENEW, 1, self.stream, self.group, consumer, *message_ids)
        return {bytes(message_id) for message_id in kept}

    async def settle(self, message_id: bytes) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, message_id)
                pipe.xdel(self.stream, message_id)
                await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):  # Redis lost the stream: nothing left to settle
                raise

    async def hand_back(self, consumer: str, message_id: bytes, data: bytes) -> bool:
        """Requeue the message now if ``consumer`` still owns it; True if it did."""
        try:
            done = await self.redis.eval(
                _HAND_BACK, 1, self.stream, self.group, message_id, consumer, data
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):  # Redis lost the stream: the producer requeues
                raise
            return False
        return bool(done)

    async def remove_dead_consumers(self, min_idle_ms: int) -> list[str]:
        try:
            removed = await self.redis.eval(_REMOVE_DEAD, 1, self.stream, self.group, min_idle_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        return [name.decode() if isinstance(name, bytes) else str(name) for name in removed]


def decode_message(data: bytes) -> ShardMessage:
    return _decode(data)
