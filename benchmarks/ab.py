"""In-process A/B of SDK trees: the precise way to judge a 1-5 % optimisation on a noisy box.

Separate processes (``--compare-sdk`` in ``run``) see the machine's noise independently, which
on 2 shared cores is ±10 % per run. Here every tree's ``freedompay_async`` is loaded into one
process under an alias (``fpa_ab_<label>``; the package uses relative imports only), and the
trees plus the hand-tuned raw pool take turns, round after round, on the same connection-warm
event loop against the same server. Each round's CPU time per lookup is divided by the base
tree's in the same round; the median of those ratios (with its quartiles) is the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import shutil
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .common import AUTH_ID, ROOT, SECRET_KEY, BenchError, cpu_seconds, identifiers
from .contenders import Tally, raw_aiohttp, sdk_run


@dataclasses.dataclass(frozen=True)
class ABResult:
    label: str
    cpu_us_median: float
    cpu_us_best: float
    #: median over rounds of (this CPU per lookup / the base tree's in the same round)
    ratio_median: float
    ratio_q1: float
    ratio_q3: float


def load_alias(label: str, tree: Path, into: Path) -> ModuleType:
    """Import ``tree/freedompay_async`` as ``fpa_ab_<label>`` (a copy under ``into``)."""
    name = f"fpa_ab_{label}"
    if not name.isidentifier():
        raise ValueError(f"label {label!r} must be usable in a module name")
    source = tree / "freedompay_async"
    if not source.is_dir():
        raise ValueError(f"{tree} has no freedompay_async package")
    shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    return importlib.import_module(name)


Run = Callable[[Iterator[str]], Awaitable[Tally]]


async def _ab(
    url: str, trees: dict[str, Path], *, rounds: int, per_round: int, concurrency: int, modulo: int
) -> list[ABResult]:
    with tempfile.TemporaryDirectory(prefix="freedompay-bench-ab-") as tmp:
        sys.path.insert(0, tmp)
        clients: list[Any] = []
        try:
            runs: dict[str, Run] = {}
            for label, tree in trees.items():
                module = load_alias(label, tree, Path(tmp))
                client = module.FreedomPayClient(
                    auth_id=AUTH_ID, secret_key=SECRET_KEY, base_url=url
                )
                clients.append(client)
                runs[label] = sdk_run(client, concurrency, module.FreedomPayError)
            async with raw_aiohttp(url, concurrency) as raw:
                runs["raw"] = raw
                for run in runs.values():  # warm every pool
                    await run(identifiers(min(1000, per_round), start=10**7, modulo=modulo))
                cpu: dict[str, list[float]] = {label: [] for label in runs}
                labels = list(runs)
                for round_ in range(rounds):
                    shift = round_ % len(labels)
                    for label in labels[shift:] + labels[:shift]:
                        before = cpu_seconds()
                        tally = await runs[label](identifiers(per_round, modulo=modulo))
                        cpu[label].append((cpu_seconds() - before) / per_round * 1e6)
                        if tally.failed or tally.ok != per_round:
                            raise BenchError(
                                f"ab {label}: {tally.failed} failed: {tally.first_error}"
                            )
        finally:
            for client in clients:
                await client.aclose()
            sys.path.remove(tmp)
            for name in [m for m in sys.modules if m.startswith("fpa_ab_")]:
                del sys.modules[name]
    base = cpu["base"]
    results = []
    for label, values in cpu.items():
        ratios = [value / reference for value, reference in zip(values, base, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        results.append(
            ABResult(
                label=label,
                cpu_us_median=statistics.median(values),
                cpu_us_best=min(values),
                ratio_median=statistics.median(ratios),
                ratio_q1=q1,
                ratio_q3=q3,
            )
        )
    return results


def run_ab(
    url: str,
    compare: dict[str, Path],
    *,
    rounds: int,
    per_round: int,
    concurrency: int,
    modulo: int,
) -> list[ABResult]:
    """``base`` (this worktree) against each ``compare`` tree, plus the raw pool, in-process."""
    trees = {"base": ROOT, **compare}
    return asyncio.run(
        _ab(url, trees, rounds=rounds, per_round=per_round, concurrency=concurrency, modulo=modulo)
    )
