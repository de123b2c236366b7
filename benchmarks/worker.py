"""``python -m benchmarks.worker SPEC_JSON``: run one contender in this process, print one JSON
result line. One process per contender and run, so that CPU time and peak RSS are its own
(``resource.getrusage(RUSAGE_SELF)``: ``ru_utime + ru_stime`` over the timed part only;
``ru_maxrss`` is the whole process's peak, interpreter and imports included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Coroutine
from typing import Any

from .common import WorkerResult, WorkerSpec, identifiers
from .contenders import CONTENDERS


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def maxrss_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


async def measure(spec: WorkerSpec) -> WorkerResult:
    contender = CONTENDERS[spec.contender]
    async with contender.factory(spec.url, spec.concurrency) as run:
        rss_start = maxrss_mb()
        if spec.warmup:
            await run(identifiers(spec.warmup, start=spec.n, modulo=spec.modulo))
        ids = identifiers(spec.n, modulo=spec.modulo)
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        tally = await run(ids)
        wall, cpu = time.perf_counter() - wall_before, cpu_seconds() - cpu_before
    return WorkerResult(
        contender=spec.contender,
        loop=spec.loop,
        n=spec.n,
        ok=tally.ok,
        failed=tally.failed,
        wall_s=wall,
        cpu_s=cpu,
        rss_start_mb=rss_start,
        rss_peak_mb=maxrss_mb(),
        checksum=str(tally.checksum),
        mode=contender.describe() if contender.describe else "",
        first_error=tally.first_error[:300],
        sdk_file=_sdk_file(),
    )


def _sdk_file() -> str:
    import freedompay_async

    return str(freedompay_async.__file__)


def run_on_loop(loop: str, coroutine: Coroutine[Any, Any, WorkerResult]) -> WorkerResult:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    if loop != "asyncio":
        coroutine.close()
        raise ValueError(f"unknown loop {loop!r}")
    return asyncio.run(coroutine)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = WorkerSpec(**json.loads(argv[0]))
    result = run_on_loop(spec.loop, measure(spec))
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
