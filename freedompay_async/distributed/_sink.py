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

_BEGIN: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return n
"""

_STORE: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 0 then return -1 end
redis.call('XADD', KEYS[3], '*', 'shard', ARGV[1], 'ok', ARGV[2], 'failed', ARGV[3], 'rows', ARGV[4])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
"""

_rows_encoder = msgspec.json.Encoder(decimal_format="string")
_rows_decoder = msgspec.json.Decoder(list[Row])


class ShardRows(msgspec.Struct, frozen=True, gc=False):
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

    async def open(self, run: str, *, ttl: float) -> None:
        keys = self._keys
        created = await self._redis.set(keys.run(run), b"live", nx=True, px=_ms(ttl))
        if not created:
            raise ValueError(f"run id {run!r} is already in use")

    async def keep_alive(self, run: str, *, ttl: float) -> None:
        """Push the expiry of every key of ``run`` ``ttl`` seconds ahead (the producer is
        alive; a run whose producer died expires, and its queued shards are dropped)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.of_run(run):
                pipe.pexpire(key, _ms(ttl))
            await pipe.execute()

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


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
