"""``poll --distributed`` as an operator runs it, the CLI side: real redis-server, worker and
producer processes, FakeFreedomPay. SIGTERM / SIGHUP to the producer behave like Ctrl-C (rows
kept, run keys deleted, 143 / 129); ``--out`` is refused, locked and resumed as in local poll."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from freedompay_async import cli
from freedompay_async.testing import FakeFreedomPay

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


def environment(fake: FakeFreedomPay) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FREEDOMPAY_AUTH_ID": fake.auth_id,
        "FREEDOMPAY_SECRET_KEY": fake.secret_key,
        "FREEDOMPAY_BASE_URL": fake.url,
    }


async def spawn(*argv: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "freedompay_async", *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def identifiers_in(path: Path) -> list[str]:
    return [json.loads(line)["identifier"] for line in path.read_text().splitlines()]


async def wait_for_rows(path: Path, rows: int, process: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if lines(path) >= rows:
            return
        assert process.returncode is None, "the producer ended before it could be stopped"
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never had {rows} lines")


async def end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@pytest.fixture
async def worker(redis_url: str, namespace: str) -> AsyncIterator[tuple[FakeFreedomPay, list[str]]]:
    """A slow fake (1,000 wallets, 20 ms a reply) and one worker process polling it; yields
    the fake and the queue options for the producer."""
    async with FakeFreedomPay(wallets=1000, latency=0.02) as fake:
        queue = [redis_url, "--namespace", namespace]
        process = await spawn(
            "worker", *queue, "--lease", "1", "-c", "4", "--shards", "1",
            "--log-level", "error", env=environment(fake),
        )  # fmt: skip
        try:
            async with asyncio.timeout(20):  # the worker's credential check: one request
                while not fake.stats.requests:
                    await asyncio.sleep(0.01)
            yield fake, ["--distributed", *queue, "--shard-size", "20"]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 20)
                finally:
                    await end(process)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
async def test_a_signal_to_the_producer_is_ctrl_c(
    signum: int,
    status: int,
    worker: tuple[FakeFreedomPay, list[str]],
    redis: Redis,
    namespace: str,
    tmp_path: Path,
) -> None:
    fake, queue = worker
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"user-{i}\n" for i in range(1000)))
    out = tmp_path / "out.jsonl"
    producer = await spawn("poll", *queue, str(ids), "-o", str(out), env=environment(fake))
    try:
        await wait_for_rows(out, 40, producer)
        producer.send_signal(signum)
        _, err_bytes = await asyncio.wait_for(producer.communicate(), 20)
    finally:
        await end(producer)
    err = err_bytes.decode()
    assert producer.returncode == status, err
    assert "interrupted:" in err and "Traceback" not in err
    assert out.read_bytes().endswith(b"\n")
    written = identifiers_in(out)
    assert 40 <= len(written) < 1000 and len(set(written)) == len(written)
    assert f"{len(written):,} rows written" in err
    # Cleaned up as on Ctrl-C: the run's keys are gone, so workers drop its queued shards.
    assert await redis.keys(f"{namespace}:run:*") == []


async def test_existing_output_is_refused_untouched_with_distributed(
    worker: tuple[FakeFreedomPay, list[str]], tmp_path: Path
) -> None:
    fake, queue = worker
    ids = tmp_path / "ids.txt"
    ids.write_text("user-1\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"identifier":"earlier"}\n')
    producer = await spawn("poll", *queue, str(ids), "-o", str(out), env=environment(fake))
    try:
        _, err = await asyncio.wait_for(producer.communicate(), 20)
    finally:
        await end(producer)
    assert producer.returncode == cli.EXIT_USAGE, err.decode()
    assert b"--resume" in err
    assert out.read_bytes() == b'{"identifier":"earlier"}\n'
    assert fake.stats.requests == 1  # the worker's credential check, no lookup


async def test_producer_sigkilled_then_resumed_has_every_id_once(
    worker: tuple[FakeFreedomPay, list[str]], tmp_path: Path
) -> None:
    fake, queue = worker
    wanted = [f"user-{i}" for i in range(600)]
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{identifier}\n" for identifier in wanted))
    out = tmp_path / "out.jsonl"
    env = environment(fake)
    producer = await spawn("poll", *queue, str(ids), "-o", str(out), env=env)
    try:
        await wait_for_rows(out, 40, producer)
    finally:
        with contextlib.suppress(ProcessLookupError):  # (ended already: nothing to kill)
            producer.kill()  # SIGKILL: no clean-up at all
        await producer.wait()
    before = out.read_bytes()
    # A second run while nobody holds the file: without --resume it is refused, untouched.
    again = await spawn("poll", *queue, str(ids), "-o", str(out), env=env)
    _, err = await asyncio.wait_for(again.communicate(), 20)
    assert again.returncode == cli.EXIT_USAGE, err.decode()
    assert out.read_bytes() == before
    resumed = await spawn("poll", *queue, str(ids), "-o", str(out), "--resume", env=env)
    try:
        _, err = await asyncio.wait_for(resumed.communicate(), 90)
    finally:
        await end(resumed)
    assert resumed.returncode == 0, err.decode()
    assert out.read_bytes().startswith(before)
    got = identifiers_in(out)
    assert sorted(got) == sorted(wanted)  # every id exactly once
