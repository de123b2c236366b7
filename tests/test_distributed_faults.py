"""The faults operators meet, on a real redis-server: a killed worker (takeover time), Redis
restarted mid-run (with and without persistence), an abandoned producer, bad credentials.

Fixtures and helpers come from ``tests/test_distributed.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from time import monotonic

import pytest
from redis.asyncio import Redis

from freedompay_async.distributed import (
    NoWorkerCanAuthenticateError,
    Producer,
    QueueConfig,
    WorkerAuthenticationError,
    WorkerStats,
    run_worker,
)
from freedompay_async.testing import FakeFreedomPay, RedisServer

from . import test_distributed as base
from .test_distributed import (
    assert_each_once,
    collect,
    ids,
    shard_stream_is_empty,
    wait_for,
    workers,
)

# The fixtures of tests/test_distributed.py (a redis-server, a namespace per test).
config = base.config
redis = base.redis

SPAWN = [sys.executable, "-m", "freedompay_async"]


def fake_env(fake: FakeFreedomPay, secret: str = "fake-secret-key") -> dict[str, str]:
    return {
        **os.environ,
        "FREEDOMPAY_AUTH_ID": fake.auth_id,
        "FREEDOMPAY_SECRET_KEY": secret,
        "FREEDOMPAY_BASE_URL": fake.url,
    }


async def consumers(redis: Redis, config: QueueConfig) -> set[str]:
    found = await redis.xinfo_consumers(config.keys.shards, config.keys.group)
    return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in found}


# -- a killed worker: prompt takeover, no false lease loss, the dead consumer removed --------


async def test_killed_worker_shards_are_taken_over_within_one_and_a_half_leases(
    config: QueueConfig, redis: Redis
) -> None:
    lease = 2.0
    total = 6_000
    wanted = ids(total)
    async with FakeFreedomPay(wallets=total, latency=0.01) as fake:
        worker_args = [config.url, "--namespace", config.namespace, "--lease", str(lease)]
        worker_args += ["-c", "10", "--shards", "2", "--log-level", "warning"]
        processes = [
            await asyncio.create_subprocess_exec(
                *SPAWN,
                "worker",
                *worker_args,
                "--name",
                f"proc{index}",
                env=fake_env(fake),
                stderr=asyncio.subprocess.PIPE,
            )
            for index in range(2)
        ]
        try:
            async with asyncio.timeout(120), Producer(config) as producer:
                # Many shards wait in the queue all along: takeover must not wait for them.
                async with producer.poll(wanted, shard_size=50, window=24) as run:
                    collecting = asyncio.create_task(collect(run))
                    while True:
                        await asyncio.sleep(0.01)
                        held = await redis.xpending_range(
                            config.keys.shards, config.keys.group, "-", "+", 10, "proc0"
                        )
                        if held and fake.stats.requests >= 300:
                            break
                    processes[0].send_signal(signal.SIGKILL)
                    killed = monotonic()
                    while await redis.xpending_range(
                        config.keys.shards, config.keys.group, "-", "+", 10, "proc0"
                    ):
                        await asyncio.sleep(0.01)
                    takeover = monotonic() - killed
                    queued_then = await redis.xlen(config.keys.shards)
                    rows = await collecting
                # The dead consumer leaves the group (the survivor removes it).
                await wait_for(lambda: _gone(redis, config, "proc0"), timeout=20)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            outputs = [await process.communicate() for process in processes]
    print(
        f"\ntakeover {takeover:.2f} s after SIGKILL with a {lease:g} s lease "
        f"({len(held)} shard(s) held, {queued_then} message(s) in the stream then)"
    )
    assert takeover <= 1.5 * lease
    assert_each_once(rows, wanted)
    assert processes[1].returncode == 0, outputs[1][1].decode()
    assert b"lost the lease" not in outputs[1][1], outputs[1][1].decode()
    # (proc0's pending list emptied while it was dead: only another consumer's claim does
    # that; how many of those shards were polled again depends on how far proc0 had got.)
    assert run.stats.shards_done == total // 50


async def _gone(redis: Redis, config: QueueConfig, name: str) -> bool:
    return name not in await consumers(redis, config)


async def test_no_lease_is_lost_at_the_end_of_long_shards(
    config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Shards of many leases, finishing while renewals run: no "lost the lease" warning."""
    short = QueueConfig(config.url, namespace=config.namespace, lease=0.3)
    wanted = ids(120)
    caplog.set_level(logging.INFO, "freedompay_async")
    async with FakeFreedomPay(wallets=120, latency=0.02) as fake:
        async with (
            workers(short, fake, 3, concurrency=1, shards=2),
            Producer(short) as producer,
            producer.poll(wanted, shard_size=20) as run,  # ~0.4 s a shard: over a lease
        ):
            rows = await collect(run)
    assert_each_once(rows, wanted)
    assert not [r for r in caplog.records if "lost the lease" in r.getMessage()]
    assert run.stats.redelivered == 0 and fake.stats.requests == 120


# -- Redis restarted mid-run ------------------------------------------------------------------


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
async def test_redis_restarted_mid_run_the_report_is_complete(
    config: QueueConfig, appendonly: bool, caplog: pytest.LogCaptureFixture
) -> None:
    total, shard_size = 3_000, 100
    wanted = ids(total)
    caplog.set_level(logging.WARNING, "freedompay_async")
    with RedisServer(appendonly=appendonly) as server:
        own = QueueConfig(server.url, namespace=config.namespace, lease=1.0)
        async with FakeFreedomPay(wallets=total, latency=0.005) as fake:
            async with workers(own, fake, 2, shards=2) as tasks, Producer(own) as producer:
                async with producer.poll(wanted, shard_size=shard_size, window=8) as run:
                    collecting = asyncio.create_task(collect(run))
                    await wait_for(lambda: fake.stats.requests >= 1_000, timeout=30)
                    await asyncio.to_thread(server.restart, down=0.5)
                    rows = await asyncio.wait_for(collecting, 60)
            stats: list[WorkerStats] = [task.result() for task in tasks]
    assert_each_once(rows, wanted)
    assert all(row.ok for row in rows)
    lost = [r for r in caplog.records if "Redis lost the run" in r.getMessage()]
    print(
        f"\nredis restarted ({'AOF' if appendonly else 'no persistence'}): "
        f"{fake.stats.requests:,} lookups for {total:,} ids; {len(rows):,} rows, all distinct; "
        f"run re-queued by the producer: {bool(lost)}"
    )
    in_flight = 2 * 2 * shard_size  # 2 workers x 2 shards at once
    if appendonly:
        # Nothing lost: only the shards in flight may have been polled twice.
        assert not lost
        assert fake.stats.requests <= total + in_flight
    else:
        assert lost, "the producer noticed and queued again what it had not received"
    assert sum(s.shards for s in stats) >= total // shard_size


# -- an abandoned producer ---------------------------------------------------------------------

_PRODUCER = """
import asyncio, sys
from freedompay_async.distributed import Producer, QueueConfig

async def main():
    config = QueueConfig(sys.argv[1], namespace=sys.argv[2], lease=1.0)
    ids = (f"user-{i}" for i in range(2_000))
    async with Producer(config) as producer:
        async with producer.poll(ids, shard_size=50, window=40, heartbeat=0.3) as run:
            async for _row in run:
                pass

asyncio.run(main())
"""


async def test_a_killed_producer_wastes_only_the_shards_in_flight(
    config: QueueConfig, redis: Redis
) -> None:
    async with FakeFreedomPay(wallets=2_000, latency=0.02) as fake:
        producer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PRODUCER, config.url, config.namespace
        )
        try:
            async with workers(config, fake, 1, shards=1, concurrency=5) as tasks:
                await wait_for(lambda: fake.stats.requests >= 200, timeout=30)
                producer.send_signal(signal.SIGKILL)
                at_kill = fake.stats.requests
                killed = monotonic()
                await wait_for(lambda: shard_stream_is_empty(redis, config), timeout=30)
                drained = monotonic() - killed
        finally:
            if producer.returncode is None:
                producer.kill()
            await producer.wait()
        stats = tasks[0].result()
    wasted = fake.stats.requests - at_kill
    print(
        f"\nproducer SIGKILLed after {at_kill} lookups; {wasted} more lookups, "
        f"{stats.skipped} shard(s) dropped; queue empty {drained:.1f} s later"
    )
    # One shard was in flight (50 ids, ~0.2 s); in the 3 heartbeats (0.9 s) before the run
    # counts as abandoned, about 5 more may start. Then the rest is dropped unpolled.
    assert wasted <= 50 * 8
    assert stats.skipped >= 20
    # The run's own key expired (its other keys follow after the run's ttl).
    run_keys = await redis.keys(f"{config.namespace}:run:*")
    assert run_keys and not [key for key in run_keys if key.count(b":") == 2]


async def test_cancelling_the_producer_deletes_the_run_keys(
    config: QueueConfig, redis: Redis
) -> None:
    async with FakeFreedomPay(wallets=500, latency=0.01) as fake, Producer(config) as producer:
        async with workers(config, fake, 1, shards=1, concurrency=2):

            async def consume() -> None:
                async with producer.poll(ids(500), shard_size=20, window=10) as run:
                    await collect(run)

            task = asyncio.create_task(consume())
            await wait_for(lambda: fake.stats.requests >= 20)
            assert await redis.keys(f"{config.namespace}:run:*") != []
            at_cancel = fake.stats.requests
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await redis.keys(f"{config.namespace}:run:*") == []
            # Workers drop the queued shards of the run, unpolled.
            await wait_for(lambda: shard_stream_is_empty(redis, config))
            requests = fake.stats.requests
    print(f"\nproducer cancelled after {at_cancel} lookups; {requests} in all (of 500 ids)")
    assert requests < 500


# -- bad credentials -----------------------------------------------------------------------------


async def test_one_bad_worker_among_three_does_not_sink_the_run(config: QueueConfig) -> None:
    wanted = ids(1_000)
    stop = asyncio.Event()
    async with FakeFreedomPay(wallets=1_000, latency=0.002) as fake:

        def start(name: str, secret: str) -> asyncio.Task[WorkerStats]:
            return asyncio.create_task(
                run_worker(
                    config,
                    lambda: fake.client(secret_key=secret),
                    concurrency=8,
                    stop=stop,
                    name=name,
                    check=False,  # meet the 401 in a shard, not at start
                )
            )

        bad = start("bad", "wrong-secret")
        good = [start(f"good{index}", fake.secret_key) for index in range(2)]
        try:
            async with Producer(config) as producer:
                async with producer.poll(wanted, shard_size=50, window=8) as run:
                    rows = await collect(run)
        finally:
            stop.set()
            results = await asyncio.gather(bad, *good, return_exceptions=True)
    print(
        f"\none bad worker among three: {len(rows):,} rows, all ok; the bad worker stopped "
        f"with {type(results[0]).__name__}"
    )
    assert_each_once(rows, wanted)
    assert all(row.ok for row in rows)
    error = results[0]
    assert isinstance(error, WorkerAuthenticationError), error
    assert "worker bad" in str(error) and "wrong-secret" not in str(error)
    assert all(isinstance(stats, WorkerStats) for stats in results[1:])
    assert sum(s.shards for s in results[1:] if isinstance(s, WorkerStats)) == 20


async def test_the_producer_stops_when_no_worker_can_authenticate(config: QueueConfig) -> None:
    stop = asyncio.Event()
    async with FakeFreedomPay(wallets=100) as fake:
        tasks = [
            asyncio.create_task(
                run_worker(
                    config,
                    lambda: fake.client(secret_key="wrong"),
                    stop=stop,
                    name=f"bad{index}",
                    check=False,
                )
            )
            for index in range(2)
        ]
        try:
            async with asyncio.timeout(20), Producer(config) as producer:
                with pytest.raises(NoWorkerCanAuthenticateError) as raised:
                    async with producer.poll(ids(100), shard_size=10) as run:
                        await collect(run)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert raised.value.workers == ["bad0", "bad1"]
    assert "bad0, bad1" in str(raised.value)
    assert run.stats.done == 0


async def test_worker_with_a_wrong_secret_exits_2_at_start(config: QueueConfig) -> None:
    async with FakeFreedomPay() as fake:
        process = await asyncio.create_subprocess_exec(
            *SPAWN, "worker", config.url, "--namespace", config.namespace,
            env=fake_env(fake, secret="not-the-secret"), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 30)
        requests = fake.stats.requests
    text = err.decode()
    assert process.returncode == 2, text
    assert "refused" in text and "credentials" in text and "Traceback" not in text
    assert "not-the-secret" not in text
    assert requests == 1  # one signed request, no shard taken
