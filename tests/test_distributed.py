"""freedompay_async.distributed against a real redis-server and FakeFreedomPay.

The redis-server comes from the Debian package: ``.ci/run`` installs and starts one and passes
its URL in ``FREEDOMPAY_TEST_REDIS_URL``; otherwise the fixture starts one on a free loopback
port. Without redis-server these tests skip, except on CI where that is a failure. Each test
works in a namespace of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from freedompay_async import cli
from freedompay_async.distributed import (
    Producer,
    QueueConfig,
    Row,
    Run,
    WorkerStats,
    run_worker,
)
from freedompay_async.distributed._sink import BEGIN_DONE, BEGIN_GONE, RunStore
from freedompay_async.testing import FakeFreedomPay, RedisServer


@pytest.fixture
def config(redis_url: str) -> QueueConfig:
    # A namespace per test: tests never see each other's shards.
    return QueueConfig(redis_url, namespace=f"t-{uuid.uuid4().hex[:10]}", lease=1.0)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


def ids(count: int, prefix: str = "user-") -> list[str]:
    return [f"{prefix}{index}" for index in range(count)]


@contextlib.asynccontextmanager
async def workers(
    config: QueueConfig, fake: FakeFreedomPay, count: int, **options: Any
) -> AsyncIterator[list[asyncio.Task[WorkerStats]]]:
    """``count`` in-process workers, stopped (gracefully) and awaited on exit."""
    stop = asyncio.Event()
    options.setdefault("concurrency", 8)
    options.setdefault("check", False)  # no credential probe: tests count the requests
    tasks = [
        asyncio.create_task(run_worker(config, fake.client, stop=stop, name=f"w{index}", **options))
        for index in range(count)
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(run: Run) -> list[Row]:
    return [row async for row in run]


def assert_each_once(rows: list[Row], expected: list[str]) -> None:
    counts = Counter(row.identifier for row in rows)
    assert len(rows) == len(expected)
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1


async def shard_stream_is_empty(redis: Redis, config: QueueConfig) -> bool:
    keys = config.keys
    pending = await redis.xpending(keys.shards, keys.group)
    return await redis.xlen(keys.shards) == 0 and pending["pending"] == 0


# -- the whole path, in process --------------------------------------------------------------


async def test_two_workers_report_every_id_once(config: QueueConfig, redis: Redis) -> None:
    wanted = ids(1_030)  # the last 30 are unknown wallets
    async with FakeFreedomPay(wallets=1_000) as fake:
        async with workers(config, fake, 2) as tasks, Producer(config) as producer:
            async with producer.poll(wanted, shard_size=100, window=4) as run:
                rows = await collect(run)
        stats = [task.result() for task in tasks]
    assert_each_once(rows, wanted)
    assert run.stats.done == 1_030 and run.stats.ok == 1_000 and run.stats.failed == 30
    assert run.stats.failed_by == {"WalletNotFoundError": 30}
    assert run.stats.shards == run.stats.shards_done == 11
    assert run.stats.redelivered == 0
    assert sum(s.lookups for s in stats) == 1_030 and sum(s.shards for s in stats) == 11
    assert all(s.shards > 0 for s in stats), "both workers took shards"
    assert fake.stats.requests == 1_030
    unknown = next(row for row in rows if row.identifier == "user-1029")
    assert (unknown.ok, unknown.error, unknown.error_code) == (False, "WalletNotFoundError", "1004")
    known = next(row for row in rows if row.identifier == "user-7")
    assert known.ok and known.balance == fake.wallets["user-7"].balance
    # Nothing left behind: shards settled and deleted, the run's keys gone.
    assert await shard_stream_is_empty(redis, config)
    assert await redis.keys(f"{config.namespace}:run:*") == []


async def test_rows_cross_processes_as_exact_decimals(config: QueueConfig) -> None:
    async with FakeFreedomPay() as fake:
        fake.add_wallet("cents", balance="0.10")
        fake.add_wallet("big", balance="12345678901234567890.99")
        async with workers(config, fake, 1), Producer(config) as producer:
            async with producer.poll(["cents", "big"]) as run:
                rows = {row.identifier: row for row in await collect(run)}
    assert str(rows["cents"].balance) == "0.10"
    assert str(rows["big"].balance) == "12345678901234567890.99"


async def test_async_input_and_window_bound_what_is_queued(
    config: QueueConfig, redis: Redis
) -> None:
    queued_at_most = 0

    async def source() -> AsyncIterator[str]:
        nonlocal queued_at_most
        for identifier in ids(600):
            length = await redis.xlen(config.keys.shards)
            queued_at_most = max(queued_at_most, length)
            yield identifier

    async with FakeFreedomPay(wallets=600, latency=0.002) as fake:
        async with workers(config, fake, 1, shards=1), Producer(config) as producer:
            async with producer.poll(source(), shard_size=20, window=3) as run:
                rows = await collect(run)
    assert_each_once(rows, ids(600))
    # The window (3), plus the one shard the worker has stored but not yet settled: the
    # producer may read its rows and queue the next shard in between.
    assert queued_at_most <= 3 + 1


# -- exactly once, in the sink ---------------------------------------------------------------


async def test_sink_stores_a_shard_once_and_drops_work_of_a_closed_run(
    config: QueueConfig, redis: Redis
) -> None:
    store = RunStore(redis, config.keys)
    await store.open("r1", ttl=60, heartbeat=5)
    with pytest.raises(ValueError, match="already in use"):
        await store.open("r1", ttl=60, heartbeat=5)
    assert await store.begin("r1", 0) == 1
    assert await store.begin("r1", 0) == 2  # a redelivery counts as a second attempt
    first = [Row(identifier="a", ok=True), Row(identifier="b", ok=False, error="X")]
    assert await store.store("r1", 0, first) is True
    assert await store.store("r1", 0, [Row(identifier="a", ok=True)]) is False  # too late
    assert await store.begin("r1", 0) == BEGIN_DONE
    shards = await store.read("r1", b"0", block=0.01)
    assert [(s.shard, s.ok, s.failed, s.rows) for s in shards] == [(0, 1, 1, first)]
    assert await store.attempts("r1") == {0: 2}
    # Every key of the run carries the run's expiry; its own key lives 3 heartbeats.
    run_key, *others, _auth = config.keys.of_run("r1")
    assert 10_000 < await redis.pttl(run_key) <= 15_000
    for key in others:
        assert 0 < await redis.pttl(key) <= 60_000
    await store.close_run("r1")
    assert await store.begin("r1", 1) == BEGIN_GONE
    with pytest.raises(LookupError):
        await store.store("r1", 1, first)
    assert await redis.keys(f"{config.namespace}:*") == []


# -- stopping, killing, leases ---------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Until ``predicate()`` (a bool, or an awaitable of one) is true."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.005)


async def stop_mid_shard(config: QueueConfig, fake: FakeFreedomPay, grace: float) -> WorkerStats:
    """Run one worker (one shard at a time, 5 lookups at once) and stop it mid-shard."""
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(
            config, fake.client, concurrency=5, shards=1, grace=grace, stop=stop, check=False
        )
    )
    await wait_for(lambda: fake.stats.requests >= 10)
    stop.set()
    return await worker


async def test_stop_without_grace_hands_the_shard_back_at_once(
    config: QueueConfig, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    wanted = ids(200)
    async with FakeFreedomPay(wallets=200, latency=0.02) as fake, Producer(config) as producer:
        async with producer.poll(wanted, shard_size=50, window=4) as run:
            stopped = await stop_mid_shard(config, fake, grace=0)
            assert stopped.handed_back == 1 and stopped.shards == 0
            assert stopped.errors == {"CancelledError": 1}
            # A stop is no error: no traceback logged for the cancelled shard.
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            # Back on the stream at once (not after the lease): nobody holds it.
            pending = await redis.xpending(config.keys.shards, config.keys.group)
            assert pending["pending"] == 0
            assert await redis.xlen(config.keys.shards) == 4
            async with workers(config, fake, 1, concurrency=50):
                rows = await collect(run)
    assert_each_once(rows, wanted)
    assert run.stats.redelivered == 1


async def test_stop_with_grace_lets_the_shard_in_flight_finish(config: QueueConfig) -> None:
    wanted = ids(200)
    async with FakeFreedomPay(wallets=200, latency=0.02) as fake, Producer(config) as producer:
        async with producer.poll(wanted, shard_size=50, window=4) as run:
            stopped = await stop_mid_shard(config, fake, grace=30)
            assert (stopped.shards, stopped.lookups, stopped.handed_back) == (1, 50, 0)
            async with workers(config, fake, 1, concurrency=50):
                rows = await collect(run)
    assert_each_once(rows, wanted)
    assert run.stats.redelivered == 0
    assert fake.stats.requests == 200  # not one lookup done twice


async def test_leases_keep_a_slow_shard_with_its_worker(config: QueueConfig) -> None:
    """A shard that takes several leases is renewed, never taken over by an idle worker."""
    slow = QueueConfig(config.url, namespace=config.namespace, lease=0.3)
    wanted = ids(40)
    async with FakeFreedomPay(wallets=40, latency=0.1) as fake:
        # 20 ids, one at a time, 0.1 s each: about 2 s per shard, 6-7 leases.
        async with (
            workers(slow, fake, 3, concurrency=1, shards=1),
            Producer(slow) as producer,
            producer.poll(wanted, shard_size=20) as run,
        ):
            rows = await collect(run)
    assert_each_once(rows, wanted)
    assert run.stats.redelivered == 0
    assert fake.stats.requests == 40


async def test_leaving_the_run_early_drops_its_queued_shards(
    config: QueueConfig, redis: Redis
) -> None:
    async with FakeFreedomPay(wallets=100) as fake, Producer(config) as producer:
        async with producer.poll(ids(100), shard_size=10, window=10) as run:
            await wait_for(lambda: run.stats.shards == 10)
        # No worker ran; the run is over: its keys are gone, its shards still queued.
        assert await redis.keys(f"{config.namespace}:run:*") == []
        assert await redis.xlen(config.keys.shards) == 10
        async with workers(config, fake, 1) as tasks:
            await wait_for(lambda: shard_stream_is_empty(redis, config))
        stats = tasks[0].result()
    assert (stats.skipped, stats.shards, stats.lookups) == (10, 0, 0)
    assert fake.stats.requests == 0
    assert await shard_stream_is_empty(redis, config)


async def test_an_input_error_reports_the_queued_shards_then_raises(config: QueueConfig) -> None:
    def source() -> Iterator[str]:
        yield from ids(25)
        raise OSError("disk gone")

    async with FakeFreedomPay(wallets=25) as fake:
        async with workers(config, fake, 1), Producer(config) as producer:
            run = producer.poll(source(), shard_size=10)
            rows: list[Row] = []

            async def drain() -> None:
                async with run:
                    async for row in run:
                        rows.append(row)

            with pytest.raises(OSError, match="disk gone"):
                await drain()
    assert_each_once(rows, ids(20))  # two full shards were queued before the error


async def test_a_non_str_identifier_stops_the_intake_with_type_error(config: QueueConfig) -> None:
    async with FakeFreedomPay(wallets=5) as fake:
        async with workers(config, fake, 1), Producer(config) as producer:
            with pytest.raises(TypeError, match="identifiers must be str, not int"):
                async with producer.poll(["user-1", 2], shard_size=1) as run:  # type: ignore[list-item]
                    await collect(run)


# -- a worker process killed mid-run (the acceptance test of the issue) -----------------------


async def test_killed_worker_process_loses_nothing(
    config: QueueConfig, redis: Redis, tmp_path: Path
) -> None:
    """Two worker processes and the CLI producer poll 10^4 wallets; one worker is killed
    (SIGKILL) while it holds shards; its shards are taken over after the lease and the report
    has every id exactly once."""
    total = 10_000
    wanted = ids(total)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(wanted) + "\n")
    out = tmp_path / "out.jsonl"
    async with FakeFreedomPay(wallets=total, latency=0.005) as fake:
        env = {
            **os.environ,
            "FREEDOMPAY_AUTH_ID": fake.auth_id,
            "FREEDOMPAY_SECRET_KEY": "fake-secret-key",
            "FREEDOMPAY_BASE_URL": fake.url,
        }
        queue = [config.url, "--namespace", config.namespace]
        worker_args = [*queue, "--lease", "1", "-c", "16", "--shards", "2"]
        spawn = [sys.executable, "-m", "freedompay_async"]
        processes = [
            await asyncio.create_subprocess_exec(
                *spawn,
                "worker",
                *worker_args,
                "--name",
                f"proc{index}",
                "--log-level",
                "warning",
                env=env,
                stderr=asyncio.subprocess.PIPE,
            )
            for index in range(2)
        ]
        producer = await asyncio.create_subprocess_exec(
            *spawn, "poll", "--distributed", config.url, "--namespace", config.namespace,
            "--shard-size", "250", str(ids_file), "-o", str(out),
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(90):
                # Kill worker 0 once some lookups are done and it holds shards.
                while True:
                    await asyncio.sleep(0.01)
                    if fake.stats.requests < 2_000:
                        continue
                    held = await redis.xpending_range(
                        config.keys.shards, config.keys.group, "-", "+", 10, consumername="proc0"
                    )
                    if held:
                        break
                processes[0].send_signal(signal.SIGKILL)
                killed_holding = len(held)
                _, summary = await producer.communicate()
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            outputs = [await process.communicate() for process in processes]
    assert producer.returncode == 0, summary.decode()
    rows = [msgspec.json.decode(line, type=Row) for line in out.read_bytes().splitlines()]
    assert_each_once(rows, wanted)
    assert all(row.ok for row in rows)
    assert processes[0].returncode == -signal.SIGKILL
    assert processes[1].returncode == 0, outputs[1][1].decode()
    found = re.search(rb"(\d+) shard\(s\) redelivered", summary)
    redelivered = int(found.group(1)) if found else 0
    assert fake.stats.requests >= total + 2  # and each worker's credential check
    # Whatever the killed worker held was taken over (polled again; or only started, or
    # already stored, just before it died): nothing is left pending for the dead consumer.
    # (How soon: test_distributed_faults.py measures it.)
    assert killed_holding >= 1
    print(  # the figures of the closing note (pytest -s)
        f"\nkilled worker held {killed_holding} shard(s); {redelivered} redelivered; "
        f"{fake.stats.requests:,} requests for {total:,} ids; {len(rows):,} rows, all distinct"
    )
    assert await shard_stream_is_empty(redis, config)


# -- arguments and errors ---------------------------------------------------------------------


def test_queue_config_is_checked_and_hides_the_password() -> None:
    with pytest.raises(ValueError, match="redis://"):
        QueueConfig("http://localhost")
    with pytest.raises(ValueError, match="namespace"):
        QueueConfig("redis://localhost", namespace="a b")
    with pytest.raises(ValueError, match="lease"):
        QueueConfig("redis://localhost", lease=0.01)
    with pytest.raises(ValueError, match="lease"):
        QueueConfig("redis://localhost", lease=float("nan"))
    with pytest.raises(TypeError, match="lease"):
        QueueConfig("redis://localhost", lease="30")  # type: ignore[arg-type]
    config = QueueConfig("redis://user:s3cret@db:6379/0")
    assert "s3cret" not in repr(config) and "user:***@db" in repr(config)
    assert "s3cret" not in repr(Producer(config))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"shard_size": 0}, ValueError),
        ({"shard_size": 1.5}, TypeError),
        ({"window": 0}, ValueError),
        ({"run_id": "a:b"}, ValueError),
        ({"ttl": 1}, ValueError),
    ],
)
async def test_poll_arguments_are_checked_before_redis(
    options: dict[str, Any], error: type[Exception]
) -> None:
    # Nothing listens on port 1: a check that reached Redis would fail differently.
    producer = Producer(QueueConfig("redis://127.0.0.1:1/0"))
    try:
        with pytest.raises(error):
            producer.poll(["a"], **options)
    finally:
        await producer.aclose()


async def test_run_worker_arguments_are_checked(config: QueueConfig) -> None:
    async with FakeFreedomPay() as fake:
        for options in ({"concurrency": 0}, {"shards": 0}, {"grace": -1}, {"rate_limit": 0}):
            with pytest.raises(ValueError, match=r"concurrency|shards|grace|rate_limit"):
                await run_worker(config, fake.client, **options)


def test_cli_distributed_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("a\n")
    url = "redis://127.0.0.1:1/0"
    for extra, message in (
        (["--ordered"], "--ordered cannot be kept"),
        (["-c", "8"], "--concurrency is set on the workers"),
        (["--auth-id", "1"], "--auth-id is set on the workers"),
    ):
        assert cli.main(["poll", "--distributed", url, str(ids_file), *extra]) == cli.EXIT_USAGE
        assert message in capsys.readouterr().err
    assert cli.main(["poll", str(ids_file), "--shard-size", "5"]) == cli.EXIT_USAGE
    assert "--shard-size goes with --distributed" in capsys.readouterr().err
    assert cli.main(["poll", str(ids_file), "--redis-timeout", "5"]) == cli.EXIT_USAGE
    assert "--redis-timeout goes with --distributed" in capsys.readouterr().err


@pytest.fixture
def root_log_level() -> Iterator[None]:
    """``cli.main`` sets the root logger's level, as a command should: put it back after (a
    later test's caplog would miss warnings)."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.mark.usefixtures("root_log_level")
def test_cli_unreachable_redis_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("a\n")
    url = "redis://user:pw-secret@127.0.0.1:1/0"
    wait = ["--redis-timeout", "0.3"]
    assert cli.main(["poll", "--distributed", url, str(ids_file), *wait]) == cli.EXIT_ABORTED
    err = capsys.readouterr().err
    assert "ConnectionError" in err and "Traceback" not in err and "pw-secret" not in err
    monkeypatch.setenv("FREEDOMPAY_AUTH_ID", "1")
    monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", "k")
    assert cli.main(["worker", url, "--log-level", "error", *wait]) == cli.EXIT_ABORTED
    err = capsys.readouterr().err
    assert "ConnectionError" in err and "pw-secret" not in err


async def test_a_worker_survives_a_redis_restart(config: QueueConfig) -> None:
    with RedisServer() as server:
        own = QueueConfig(server.url, namespace=config.namespace, lease=1.0)
        async with FakeFreedomPay(wallets=20) as fake, workers(own, fake, 1) as tasks:
            await asyncio.sleep(0.3)  # listening
            await asyncio.to_thread(server.restart)  # empty: the group is gone too
            await asyncio.sleep(1.5)  # the worker notices, waits, declares the group again
            assert not tasks[0].done()
            async with Producer(own) as producer, producer.poll(ids(20), shard_size=5) as run:
                rows = await collect(run)
        stats = tasks[0].result()
    assert_each_once(rows, ids(20))
    assert stats.shards == 4


async def test_a_shard_that_always_fails_is_reported_not_redelivered_forever(
    config: QueueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freedompay_async.distributed import _worker

    async def broken(self: object, ids: list[str]) -> list[Row]:
        raise RuntimeError("a bug in the lookup")

    monkeypatch.setattr(_worker._Worker, "_lookup", broken)
    async with FakeFreedomPay(wallets=10) as fake:
        async with workers(config, fake, 1) as tasks, Producer(config) as producer:
            async with producer.poll(ids(10), shard_size=5) as run:
                rows = await collect(run)
        stats = tasks[0].result()
    assert_each_once(rows, ids(10))
    assert {(row.ok, row.error) for row in rows} == {(False, "RuntimeError")}
    assert rows[0].message is not None and "failed 5 times" in rows[0].message
    assert run.stats.redelivered == 2 * (_worker.MAX_ATTEMPTS - 1)
    assert stats.handed_back == 2 * (_worker.MAX_ATTEMPTS - 1)
    assert fake.stats.requests == 0


async def test_rate_limit_caps_the_whole_worker_not_each_shard(config: QueueConfig) -> None:
    # 30 requests/s for the process, 2 shards at once: 30 lookups cannot take much under a
    # second (each shard gets 15/s). A per-shard cap would let them through in half that.
    async with FakeFreedomPay(wallets=30) as fake:
        async with workers(config, fake, 1, shards=2, rate_limit=30) as tasks:
            async with Producer(config) as producer, producer.poll(ids(30), shard_size=15) as run:
                started = asyncio.get_running_loop().time()
                rows = await collect(run)
                elapsed = asyncio.get_running_loop().time() - started
    assert_each_once(rows, ids(30))
    assert elapsed >= 0.8
    assert tasks[0].result().shards == 2


async def test_an_empty_input_is_an_empty_run(config: QueueConfig, redis: Redis) -> None:
    async with Producer(config) as producer, producer.poll([]) as run:
        rows = await collect(run)
    assert rows == [] and run.stats.shards == 0 and run.stats.done == 0
    assert await redis.keys(f"{config.namespace}:run:*") == []
