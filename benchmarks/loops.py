"""What uvloop buys, paired in one process: the default loop and uvloop take turns.

The throughput table runs ``sdk`` and ``sdk-uvloop`` in separate processes, each seeing this
machine's noise (and its own allocator state) on its own. Here one process runs every
(contender, loop) pair in turn, round after round: each turn starts a fresh event loop of that
kind (``asyncio.run`` or ``uvloop.run``), opens the contender's pool and warms it with untimed
lookups, then times ``per_round`` lookups (CPU of this process). Each round's default-loop CPU
per lookup divided by its uvloop CPU per lookup is that round's uvloop gain; the median (and
quartiles) over rounds is reported, for the SDK and for the hand-tuned raw pool, whose gain is
the most any aiohttp client can expect from uvloop on this machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections.abc import Callable, Coroutine
from typing import Any

from .common import BenchError, cpu_seconds, identifiers
from .contenders import CONTENDERS

#: (contender key, its label in the table)
CLIENTS: tuple[tuple[str, str], ...] = (
    ("sdk", "freedompay_async"),
    ("raw", "raw aiohttp + msgspec (tuned pool)"),
)
LOOPS: tuple[str, ...] = ("asyncio", "uvloop")


@dataclasses.dataclass(frozen=True)
class LoopGain:
    key: str
    label: str
    asyncio_us: float  # median CPU µs per lookup on the default loop
    uvloop_us: float  # ... on uvloop
    #: median over rounds of (default-loop CPU / uvloop CPU, same round): > 1 means uvloop helps
    gain_median: float
    gain_q1: float
    gain_q3: float


async def _turn(key: str, url: str, *, n: int, warmup: int, concurrency: int, modulo: int) -> float:
    """CPU seconds of ``n`` lookups by ``key`` on the running loop (after a warm-up)."""
    async with CONTENDERS[key].factory(url, concurrency) as run:
        await run(identifiers(warmup, start=10**7, modulo=modulo))
        before = cpu_seconds()
        tally = await run(identifiers(n, modulo=modulo))
        spent = cpu_seconds() - before
    if tally.failed or tally.ok != n:
        raise BenchError(f"loops {key}: {tally.failed} failed: {tally.first_error}")
    return spent


def _runner(loop: str) -> Callable[[Coroutine[Any, Any, float]], float]:
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def run_loops(
    url: str, *, rounds: int, per_round: int, concurrency: int, modulo: int
) -> list[LoopGain]:
    """Every (client, loop) pair ``rounds`` times, rotated each round; the gains by client."""
    pairs = [(key, loop) for key, _ in CLIENTS for loop in LOOPS]
    cpu: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    warmup = min(1000, per_round)
    for round_ in range(rounds):
        shift = round_ % len(pairs)
        for key, loop in pairs[shift:] + pairs[:shift]:
            coroutine = _turn(
                key, url, n=per_round, warmup=warmup, concurrency=concurrency, modulo=modulo
            )
            cpu[key, loop].append(_runner(loop)(coroutine) / per_round * 1e6)
    results = []
    for key, label in CLIENTS:
        default, uv = cpu[key, "asyncio"], cpu[key, "uvloop"]
        gains = [a / b for a, b in zip(default, uv, strict=True)]
        q1, _, q3 = statistics.quantiles(gains, n=4) if len(gains) > 1 else (gains[0],) * 3
        results.append(
            LoopGain(
                key=key,
                label=label,
                asyncio_us=statistics.median(default),
                uvloop_us=statistics.median(uv),
                gain_median=statistics.median(gains),
                gain_q1=q1,
                gain_q3=q3,
            )
        )
    return results
