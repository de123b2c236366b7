"""The durable sink: a Redis stream per run with one entry per finished shard.

Exactly once is decided here, in Redis, atomically: a shard's rows are appended only by the
first worker to finish it (``HSETNX`` on the run's ``done`` hash, in the same script as the
``XADD``). A shard redelivered after its rows were stored (the worker died between storing and
acknowledging) is skipped at start; two workers racing on one shard (one stalled past its
lease) both finish, and only the first result is kept. The producer reads the stream once, so
every id of the input appears once in its report.
"""

from __future__ import annotations

from typing import Any, Final, cast

import msgspec
from redis.asyncio import Redis

from .._rows import Row
from ._keys import Keys

__all__ = ["BEGIN_DONE", "BEGIN_GONE", "RunStore", "ShardRows", "StreamEntry", "stream_entries"]

#: One stream entry as redis-py returns it (bytes, no decoding): id and fields.
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def stream_entries(reply: Any) -> list[StreamEntry]:
    """The entries of an ``XREAD`` / ``XREADGROUP`` reply, over all its streams (redis-py types
    these replies loosely)."""
    entries: list[StreamEntry] = []
    for _stream, items in reply or ():
        entries.extend(cast("list[StreamEntry]", items))
    return entries


#: :meth:`RunStore.begin`: the shard is already stored; settle the message, do nothing.
BEGIN_DONE: Final = -1
#: :meth:`RunStore.begin`: the run is over (finished, stopped or expired); drop the shard.
BEGIN_GONE: Final = -2

# The run's key holds the TTL (ms) of its other keys; it is missing once the run is over
# (finished, stopped, or its producer silent for 3 heartbeats).
_BEGIN: Final = """
local ttl = redis.call('GET', KEYS[1])
if not ttl then return -2 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[3], ttl)
return n
"""

_STORE: Final = """
local ttl = redis.call('GET', KEYS[1])
if not ttl then return -2 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 0 then return -1 end
redis.call('XADD', KEYS[3], '*', 'shard', ARGV[1], 'ok', ARGV[2], 'failed', ARGV[3], 'rows', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
"""

# The producer's heartbeat: the run's key lives 3 heartbeats more, the others ttl more. 0 if
# the run's key was gone (Redis lost its data, or the producer was silent too long): it is
# created again, and the producer queues again what it has not received.
_HEARTBEAT: Final = """
local alive = redis.call('SET', KEYS[1], ARGV[2], 'XX', 'PX', ARGV[1])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
if alive then return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return 0
"""

# A worker says it is alive for ARGV[2] ms more; the ones past their time are dropped.
_ALIVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_rows_encoder = msgspec.json.Encoder(decimal_format="string")
_rows_decoder = msgspec.json.Decoder(list[Row])


class ShardRows(msgspec.Struct, frozen=True):
    """One finished shard, as read back by the producer."""

    entry_id: bytes
    shard: int
    ok: int
    failed: int
    rows: list[Row]


def encode_rows(rows: list[Row]) -> bytes:
    return _rows_encoder.encode(rows)


class RunStore:
    """The Redis side of one deployment's runs (``keys``), over one connection pool."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    # -- workers ----------------------------------------------------------------------------

    async def begin(self, run: str, shard: int) -> int:
        """Count an attempt at ``shard``: the attempt number (1 the first time), or
        :data:`BEGIN_DONE` / :data:`BEGIN_GONE`."""
        keys = self._keys
        result = await self._redis.eval(
            _BEGIN, 3, keys.run(run), keys.done(run), keys.attempts(run), shard
        )
        return int(result)

    async def store(self, run: str, shard: int, rows: list[Row]) -> bool:
        """Append ``shard``'s rows unless they are there already; True if this call stored
        them. Raises ``LookupError`` if the run is over."""
        ok = sum(1 for row in rows if row.ok)
        keys = self._keys
        result = int(
            await self._redis.eval(
                _STORE,
                3,
                keys.run(run),
                keys.done(run),
                keys.results(run),
                shard,
                ok,
                len(rows) - ok,
                encode_rows(rows),
            )
        )
        if result == BEGIN_GONE:
            raise LookupError(f"run {run} is over")
        return result == 1

    # -- producer ---------------------------------------------------------------------------

    async def open(self, run: str, *, ttl: float, heartbeat: float) -> None:
        keys = self._keys
        created = await self._redis.set(keys.run(run), _ms(ttl), nx=True, px=_ms(3 * heartbeat))
        if not created:
            raise ValueError(f"run id {run!r} is already in use")

    async def heartbeat(self, run: str, *, ttl: float, heartbeat: float) -> bool:
        """The producer is alive: ``run``'s key lives 3 heartbeats more, its other keys
        ``ttl`` seconds more. False if the run's key had been lost (it is created again)."""
        alive = await self._redis.eval(
            _HEARTBEAT, 5, *self._keys.of_run(run), _ms(3 * heartbeat), _ms(ttl)
        )
        return bool(alive)

    async def cannot_authenticate(self, run: str, worker: str, why: str) -> None:
        """Worker ``worker`` met an authentication error in a shard of ``run``."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.auth(run), worker, why)
            pipe.pexpire(self._keys.auth(run), 86_400_000)
            await pipe.execute()

    async def auth_failures(self, run: str) -> dict[str, str]:
        raw = await self._redis.hgetall(self._keys.auth(run))
        return {_text(name): _text(why) for name, why in raw.items()}

    async def alive(self, worker: str = "", *, lease: float = 0.0) -> list[str]:
        """The live workers (after saying ``worker`` is alive for 3 ``lease`` more)."""
        names = await self._redis.eval(_ALIVE, 1, self._keys.workers, worker, _ms(3 * lease))
        return [_text(name) for name in names]

    async def gone(self, worker: str) -> None:
        await self._redis.zrem(self._keys.workers, worker)

    async def read(self, run: str, after: bytes, *, block: float) -> list[ShardRows]:
        """Shards stored after entry ``after`` (``b"0"``: from the start), waiting up to
        ``block`` seconds for one."""
        reply = await self._redis.xread(
            {self._keys.results(run): after}, count=16, block=max(1, _ms(block))
        )
        return [
            ShardRows(
                entry_id=entry_id,
                shard=int(fields[b"shard"]),
                ok=int(fields[b"ok"]),
                failed=int(fields[b"failed"]),
                rows=_rows_decoder.decode(fields[b"rows"]),
            )
            for entry_id, fields in stream_entries(reply)
        ]

    async def forget(self, run: str, *entry_ids: bytes) -> None:
        """Delete entries the producer has written out (Redis keeps only what is unread)."""
        if entry_ids:
            await self._redis.xdel(self._keys.results(run), *entry_ids)

    async def attempts(self, run: str) -> dict[int, int]:
        raw = await self._redis.hgetall(self._keys.attempts(run))
        return {int(shard): int(count) for shard, count in raw.items()}

    async def close_run(self, run: str) -> None:
        """Delete every key of ``run``: shards of it still queued are dropped by the workers."""
        await self._redis.delete(*self._keys.of_run(run))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
