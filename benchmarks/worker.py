"""``python -m benchmarks.worker SPEC_JSON``: run one contender in this process, print one JSON
result line. One process per contender and run, so that CPU time and peak RSS are its own
(``resource.getrusage(RUSAGE_SELF)``: ``ru_utime + ru_stime`` over the timed part only;
``ru_maxrss`` is the whole process's peak, interpreter and imports included).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import os
import resource
import sys
import time
from collections.abc import Coroutine
from typing import Any

from .common import (
    NO_MALLOC_PRIME_ENV,
    WorkerResult,
    WorkerSpec,
    cpu_seconds,
    identifiers,
    prime_malloc,
)
from .contenders import CONTENDERS


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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def recv_buffer_mmapped() -> bool | None:
    """Would asyncio's per-read receive buffer be mmapped in this process now?

    The default loop reads each socket with ``recv(256 KiB)``: a fresh 256 KiB bytes object per
    read, shrunk to the bytes received. glibc serves a block that size with mmap until some
    process-lifetime event raises its dynamic mmap threshold (freeing a large block that was
    never shrunk), then from the heap. Which of the two a process is in depends on its own
    allocation history, so it differs from process to process; with mmap every read costs an
    mmap, an mremap and a munmap (about 15 µs of CPU per lookup here); ``prime_malloc`` (on by
    default) settles it up front. Probe it once, at the end (freeing the probe may itself raise
    the threshold). ``None`` without glibc's mallinfo2.
    """
    from asyncio import selector_events

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    before = mallinfo2().hblkhd
    transport = getattr(selector_events, "_SelectorSocketTransport", None)
    probe = bytes(getattr(transport, "max_size", 256 * 1024))
    mmapped: bool = mallinfo2().hblkhd > before
    del probe
    return mmapped


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
    if not os.environ.get(NO_MALLOC_PRIME_ENV):
        prime_malloc()
    spec = WorkerSpec(**json.loads(argv[0]))
    result = run_on_loop(spec.loop, measure(spec))
    if spec.loop == "asyncio":
        result = dataclasses.replace(result, recv_buffer_mmapped=recv_buffer_mmapped())
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
