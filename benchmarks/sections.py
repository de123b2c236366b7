"""The sections of ``python -m benchmarks run``: each measures into one :class:`Outcome`.

Contenders run in their own processes (``worker.py``), interleaved and rotated per repeat; the
paired and loops sections run in this process. ``report.py`` turns the outcome into markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from .common import (
    CANNED_BALANCE,
    ROOT,
    SDK_PATH_ENV,
    BenchError,
    WorkerResult,
    WorkerSpec,
    child_env,
    log,
    python,
)
from .contenders import CONTENDERS, LOOPS
from .servers import ServerInfo, serve, spawn, stop

DEFAULT_CONTENDERS: Final = ("sdk", "sdk-uvloop", "raw", "raw-uvloop", "naive", "httpx", "wrk")
SECTIONS: Final = (
    "throughput",
    "paired",
    "loops",
    "scaling",
    "latency",
    "decode",
    "adaptive",  # smoke runs only; the full one is `python -m benchmarks adaptive`
)


# -- contenders as run entries ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of the throughput table: a contender, its loop, and which SDK tree it imports."""

    key: str
    label: str
    contender: str  # a key of CONTENDERS, or "wrk"
    loop: str
    sdk_path: str | None = None


def available(name: str) -> str | None:
    """Why contender ``name`` cannot run here, or None when it can."""
    if name == "wrk":
        from .wrk import wrk_binary

        return None if wrk_binary() else "wrk not installed (apt-get install -y wrk)"
    contender = CONTENDERS.get(name)
    if contender is None:
        return f"unknown contender {name!r}; known: {', '.join([*CONTENDERS, 'wrk'])}"
    missing = [m for m in contender.requires if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed (pip install -e '.[bench]')" if missing else None


def entries(names: Sequence[str], compare: Sequence[str], skipped: list[str]) -> list[Entry]:
    result = []
    for name in names:
        why = available(name)
        if why is not None:
            if name not in CONTENDERS and name != "wrk":
                raise SystemExit(why)
            skipped.append(f"{name}: {why}")
            continue
        label = "wrk (C, context only)" if name == "wrk" else CONTENDERS[name].label
        loop = "C (epoll)" if name == "wrk" else LOOPS.get(name, "asyncio")
        result.append(Entry(name, label, name, loop))
    for label, path in compare_trees(compare).items():
        result.append(
            Entry(f"sdk[{label}]", f"freedompay_async [{label}]", "sdk", "asyncio", str(path))
        )
    return result


def run_worker(
    entry: Entry, server: ServerInfo, *, n: int, concurrency: int, warmup: int, wrk_duration: float
) -> WorkerResult:
    """Run one contender once, in its own process; raise BenchError unless all lookups worked."""
    if entry.contender == "wrk":
        from .wrk import run_wrk

        result = run_wrk(server.url, concurrency=concurrency, duration=wrk_duration)
    else:
        spec = WorkerSpec(
            entry.contender, server.url, n, concurrency, warmup, entry.loop, server.modulo
        )
        env = child_env()
        if entry.sdk_path:
            env[SDK_PATH_ENV] = entry.sdk_path
        process = spawn(
            [python(), "-m", "benchmarks.worker", json.dumps(dataclasses.asdict(spec))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        try:
            out, err = process.communicate(timeout=120 + n / 100)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{entry.key}: timed out after {120 + n / 100:.0f} s") from None
        finally:
            stop(process)
        if process.returncode != 0 or not out.strip():
            tail = err.decode(errors="replace").strip()[-1500:]
            raise BenchError(f"{entry.key}: worker exited {process.returncode}:\n{tail}")
        result = WorkerResult(**json.loads(out.decode().strip().splitlines()[-1]))
        result = dataclasses.replace(result, contender=entry.key)
    check(entry.key, result, server, expect_n=None if entry.contender == "wrk" else n)
    return result


def check(key: str, result: WorkerResult, server: ServerInfo, *, expect_n: int | None) -> None:
    """Every lookup must have succeeded and decoded the right balance."""
    if result.failed or (expect_n is not None and result.ok != expect_n):
        raise BenchError(
            f"{key}: {result.ok} ok, {result.failed} failed of {expect_n or result.n}"
            f" (first error: {result.first_error or 'none'})"
        )
    if expect_n is not None and server.kind == "nginx":
        expected = CANNED_BALANCE * expect_n
        if Decimal(result.checksum) != expected:
            raise BenchError(f"{key}: balance checksum {result.checksum} != {expected}")


def progress(stage: str, entry_key: str, result: WorkerResult) -> None:
    mmapped = "  (recv buffers mmapped)" if result.recv_buffer_mmapped else ""
    log(
        f"  {stage:<10} {entry_key:<22} {result.rate:>9,.0f}/s  "
        f"cpu {result.cpu_ms_per_1000:>7.1f} ms/1000  rss {result.rss_peak_mb:5.1f} MB{mmapped}"
    )


# -- the sections -------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """Everything one ``run`` measured, for the markdown and the JSON dump."""

    config: dict[str, Any]
    server: str = ""
    latency_server: str = ""
    skipped: list[str] = dataclasses.field(default_factory=list)
    throughput: dict[str, list[WorkerResult]] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    scaling: list[WorkerResult] = dataclasses.field(default_factory=list)
    latency: dict[str, list[WorkerResult]] = dataclasses.field(default_factory=dict)
    decode: list[Any] = dataclasses.field(default_factory=list)
    paired: list[Any] = dataclasses.field(default_factory=list)
    loops: list[Any] = dataclasses.field(default_factory=list)
    sdk_mode: str = ""


def run_throughput(
    args: argparse.Namespace, server: ServerInfo, runs: Sequence[Entry], outcome: Outcome
) -> None:
    log(f"throughput: N={args.n:,} concurrency={args.concurrency} repeats={args.repeats}")
    for entry in runs:
        outcome.throughput.setdefault(entry.key, [])
        outcome.labels[entry.key] = entry.label
    for repeat in range(args.repeats):
        # Interleaved, and rotated each repeat so that no contender always runs first or last.
        shift = repeat % len(runs)
        for entry in [*runs[shift:], *runs[:shift]]:
            result = run_worker(
                entry,
                server,
                n=args.n,
                concurrency=args.concurrency,
                warmup=args.warmup,
                wrk_duration=args.wrk_duration,
            )
            outcome.throughput[entry.key].append(result)
            if result.mode and entry.key == "sdk":
                outcome.sdk_mode = result.mode
            progress(f"run {repeat + 1}", entry.key, result)


def compare_trees(items: Sequence[str]) -> dict[str, Path]:
    trees: dict[str, Path] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label.isidentifier() or label in ("base", "raw"):
            raise SystemExit(
                f"--compare-sdk wants LABEL=DIR (LABEL a name, not base/raw): {item!r}"
            )
        if not Path(path, "freedompay_async").is_dir():
            raise SystemExit(f"--compare-sdk: {path}/freedompay_async does not exist")
        trees[label] = Path(path).resolve()
    return trees


def run_paired(args: argparse.Namespace, server: ServerInfo, outcome: Outcome) -> None:
    from .ab import run_ab

    log(
        f"paired: SDK and raw in one process, {args.paired_rounds} rounds x "
        f"{args.paired_n:,} lookups"
    )
    outcome.paired = run_ab(
        server.url,
        compare_trees(args.compare_sdk),
        rounds=args.paired_rounds,
        per_round=args.paired_n,
        concurrency=args.concurrency,
        modulo=server.modulo,
    )
    for result in outcome.paired:
        log(
            f"  paired     {result.label:<22} {result.cpu_us_median:6.1f} µs/lookup  x{result.ratio_median:.3f}"
        )


def run_loops_section(args: argparse.Namespace, server: ServerInfo, outcome: Outcome) -> None:
    from .loops import run_loops

    if importlib.util.find_spec("uvloop") is None:
        outcome.skipped.append("loops: uvloop not installed (pip install -e '.[bench]')")
        return
    log(
        f"loops: default loop vs uvloop in one process, {args.loops_rounds} rounds x "
        f"{args.loops_n:,} lookups"
    )
    outcome.loops = run_loops(
        server.url,
        rounds=args.loops_rounds,
        per_round=args.loops_n,
        concurrency=args.concurrency,
        modulo=server.modulo,
    )
    for result in outcome.loops:
        log(
            f"  loops      {result.key:<22} {result.asyncio_us:6.1f} -> {result.uvloop_us:6.1f}"
            f" µs/lookup  x{result.gain_median:.3f}"
        )


def run_scaling(args: argparse.Namespace, server: ServerInfo, outcome: Outcome) -> None:
    entry = Entry("sdk", CONTENDERS["sdk"].label, "sdk", "asyncio")
    log(f"scaling: peak RSS for {', '.join(f'{n:,}' for n in args.scaling)} ids (generator)")
    for n in args.scaling:
        result = run_worker(
            entry, server, n=n, concurrency=args.concurrency, warmup=args.warmup, wrk_duration=0
        )
        outcome.scaling.append(result)
        if result.mode:
            outcome.sdk_mode = result.mode
        progress("scaling", f"sdk n={n:,}", result)


def run_latency(args: argparse.Namespace, outcome: Outcome) -> None:
    names = [name for name in ("sdk", "raw", "wrk") if available(name) is None]
    runs = [
        Entry("wrk", "wrk (C: this server's own ceiling)", "wrk", "C (epoll)")
        if name == "wrk"
        else Entry(name, CONTENDERS[name].label, name, "asyncio")
        for name in names
    ]
    for entry in runs:
        outcome.labels.setdefault(f"latency:{entry.key}", entry.label)
    with serve(args.latency_server, latency=args.latency) as server:
        outcome.latency_server = server.description
        log(f"latency-bound: {server.description}")
        for repeat in range(args.repeats):
            for entry in runs[repeat % len(runs) :] + runs[: repeat % len(runs)]:
                result = run_worker(
                    entry,
                    server,
                    n=args.latency_n,
                    concurrency=args.concurrency,
                    warmup=min(args.warmup, args.concurrency * 2),
                    wrk_duration=args.wrk_duration,
                )
                outcome.latency.setdefault(entry.key, []).append(result)
                progress(f"run {repeat + 1}", entry.key, result)


def run_decode_section(args: argparse.Namespace, outcome: Outcome) -> None:
    from .decode import run_decode

    log("decode micro-benchmark")
    outcome.decode = run_decode(repeats=args.decode_repeats, min_time=args.decode_min_time)


def dump_json(path: Path, outcome: Outcome) -> None:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        raise TypeError(type(value).__name__)

    path.write_text(json.dumps(dataclasses.asdict(outcome), indent=2, default=plain))
