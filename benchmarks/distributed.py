"""``python -m benchmarks.distributed``: how the distributed poll grows with worker processes.

One run, on this machine: a throwaway redis-server and the benchmark server (nginx when
installed, else FakeFreedomPay in its own process), then for each worker count (default 1, 2
and 4) that many ``freedompay-async worker`` processes and an in-process producer polling the
same ids; each count is measured ``--repeat`` times, interleaved, and the median reported. For
reference, the same ids through one in-process ``info_many`` (no queue at all).

Figures: lookups/s, and CPU ms per 1000 lookups summed over the worker processes and the
producer (from ``/proc``), so that what the queue costs is visible next to what the extra
processes buy. Everything listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from redis.asyncio import Redis

from freedompay_async import FreedomPayClient
from freedompay_async.distributed import Producer, QueueConfig
from freedompay_async.testing import RedisServer

from .common import AUTH_ID, SECRET_KEY, child_env, cpu_seconds, identifiers, python
from .servers import ServerInfo, serve

DEFAULT_WORKERS: Final = (1, 2, 4)
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Sample:
    workers: int  # 0: in-process info_many, no queue
    seconds: float
    lookups: int
    cpu: float  # seconds, workers + producer

    @property
    def rate(self) -> float:
        return self.lookups / self.seconds

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu * 1000 / self.lookups * 1000


def _child_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@contextlib.contextmanager
def _workers(
    count: int, redis_url: str, namespace: str, server: ServerInfo, concurrency: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = child_env()
    env.update(
        FREEDOMPAY_AUTH_ID=AUTH_ID,
        FREEDOMPAY_SECRET_KEY=SECRET_KEY,
        FREEDOMPAY_BASE_URL=server.url,
    )
    command = [python(), "-m", "freedompay_async", "worker", redis_url]
    command += ["--namespace", namespace, "-c", str(concurrency), "--log-level", "error"]
    processes = [
        subprocess.Popen([*command, "--name", f"bench-{index}"], env=env, stderr=subprocess.DEVNULL)
        for index in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _wait_listening(config: QueueConfig, count: int) -> None:
    """Until ``count`` workers block on the queue (Redis lists a consumer only once it got a
    message, so count the connections waiting in XREADGROUP instead)."""
    redis = Redis.from_url(config.url)
    try:
        async with asyncio.timeout(60):
            while True:
                clients = await redis.client_list()
                if sum(1 for c in clients if c.get("cmd") == "xreadgroup") >= count:
                    return
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def _distributed_sample(
    config: QueueConfig, count: int, workers: list[subprocess.Popen[bytes]], args: argparse.Namespace,
    server: ServerInfo,
) -> Sample:  # fmt: skip
    cpu_before = sum(_child_cpu_seconds(p.pid) for p in workers) + cpu_seconds()
    started = time.perf_counter()
    lookups = 0
    async with Producer(config) as producer:
        ids = identifiers(args.lookups, modulo=server.modulo)
        async with producer.poll(ids, shard_size=args.shard_size) as run:
            async for row in run:
                if not row.ok:
                    raise RuntimeError(f"lookup failed: {row}")
                lookups += 1
    seconds = time.perf_counter() - started
    cpu = sum(_child_cpu_seconds(p.pid) for p in workers) + cpu_seconds() - cpu_before
    return Sample(count, seconds, lookups, cpu)


async def _local_sample(args: argparse.Namespace, server: ServerInfo) -> Sample:
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    lookups = 0
    async with FreedomPayClient(auth_id=AUTH_ID, secret_key=SECRET_KEY, base_url=server.url) as c:
        ids = identifiers(args.lookups, modulo=server.modulo)
        async with c.wallets.info_many(ids, concurrency=args.concurrency) as results:
            async for result in results:
                if not result.ok:
                    raise RuntimeError(f"lookup failed: {result}")
                lookups += 1
    return Sample(0, time.perf_counter() - started, lookups, cpu_seconds() - cpu_before)


async def _measure(args: argparse.Namespace, redis_url: str, server: ServerInfo) -> list[Sample]:
    samples: list[Sample] = []
    for _round in range(args.repeat):
        samples.append(await _local_sample(args, server))
        for count in args.workers:
            config = QueueConfig(redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
            with _workers(count, redis_url, config.namespace, server, args.concurrency) as procs:
                await _wait_listening(config, count)
                samples.append(await _distributed_sample(config, count, procs, args, server))
            print(f"  round {_round + 1}: {samples[-1].workers} workers done", file=sys.stderr)
    return samples


def _table(samples: list[Sample]) -> str:
    by_count: dict[int, list[Sample]] = {}
    for sample in samples:
        by_count.setdefault(sample.workers, []).append(sample)
    base = statistics.median(s.rate for s in by_count[0])
    one = statistics.median(s.rate for s in by_count[1]) if 1 in by_count else base
    lines = [
        "| setup | lookups/s (median) | vs 1 worker | vs in-process | CPU ms / 1000 lookups |",
        "|---|---:|---:|---:|---:|",
    ]
    for count in sorted(by_count):
        group = by_count[count]
        rate = statistics.median(s.rate for s in group)
        cpu = statistics.median(s.cpu_ms_per_1000 for s in group)
        label = "in-process `info_many` (no queue)" if count == 0 else f"{count} worker process(es)"
        lines.append(
            f"| {label} | {rate:,.0f} | {rate / one:.2f} | {rate / base:.2f} | {cpu:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__)
    parser.add_argument("--lookups", type=int, default=40_000, help="ids per run (default 40000)")
    parser.add_argument("--workers", type=int, nargs="+", default=list(DEFAULT_WORKERS))
    parser.add_argument("--repeat", type=int, default=3, help="rounds, interleaved (default 3)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="per shard")
    parser.add_argument("--server", choices=("auto", "nginx", "fake"), default="auto")
    args = parser.parse_args(argv)
    with RedisServer() as redis, serve(args.server) as server:
        print(f"server: {server.description}", file=sys.stderr)
        samples = asyncio.run(_measure(args, redis.url, server))
    cores = os.cpu_count()
    print(
        f"\n{args.lookups:,} lookups per run, shards of {args.shard_size}, concurrency "
        f"{args.concurrency} per shard, 2 shards per worker; median of {args.repeat}; "
        f"{platform.python_version()}, {cores} cores shared by the server, redis-server, the "
        f"producer and the workers; server: {server.description}\n"
    )
    print(_table(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
