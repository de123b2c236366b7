"""``python -m benchmarks``: run the benchmarks, print markdown, optionally write RESULTS.md.

Subcommands (``run`` is the default): ``run``, ``profile``, ``decode``, ``server``.
See benchmarks/README.md for what each figure means and how to read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, Final

from .common import (
    CANNED_BALANCE,
    NO_MALLOC_PRIME_ENV,
    ROOT,
    SDK_PATH_ENV,
    BenchError,
    WorkerResult,
    WorkerSpec,
    child_env,
    prime_malloc,
    python,
)
from .contenders import CONTENDERS, LOOPS
from .report import Summary, machine_info, now_utc, ratio, summarise, table, throughput_table
from .servers import ServerError, ServerInfo, serve, spawn, stop

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
RESULTS_PATH: Final = ROOT / "benchmarks" / "RESULTS.md"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


# -- markdown -----------------------------------------------------------------------------------


def render(args: argparse.Namespace, outcome: Outcome, command: str) -> str:
    out: list[str] = ["# freedompay-async benchmarks", ""]
    if args.smoke:
        out += [
            "> **Smoke run**: a few hundred lookups to prove the harness works; the figures",
            "> mean nothing.",
            "",
        ]
    out += [
        f"- **date:** {now_utc()}",
        f"- **command:** `{command}`",
        *(f"- **{name}:** {value}" for name, value in machine_info_cached()),
        f"- **server:** {outcome.server}" if outcome.server else "",
        f"- **SDK path measured:** {outcome.sdk_mode}" if outcome.sdk_mode else "",
        *(f"- skipped: {why}" for why in outcome.skipped),
        "",
    ]
    summaries = {
        key: summarise(key, outcome.labels[key], results)
        for key, results in outcome.throughput.items()
        if results
    }
    sdk = summaries.get("sdk")
    if summaries:
        out += [
            f"## Throughput: {args.n:,} lookups, concurrency {args.concurrency}, "
            f"median of {args.repeats} interleaved runs",
            "",
            throughput_table(list(summaries.values()), sdk),
            "",
            "Client CPU is `ru_utime + ru_stime` of the contender's own process over the timed "
            "lookups; peak RSS is that process's `ru_maxrss` (interpreter and imports included). "
            "*spread* is ± half the min-max range of the rate over the repeats. "
            "`wrk` runs for a fixed duration with one thread and replays one pre-signed body: "
            "it is the HTTP limit of this machine, not a Python contender.",
            "",
            *allocator_note(outcome),
        ]
    out += paired_section(outcome, args)
    out += loops_section(outcome, args)
    out += targets_section(summaries, outcome, args)
    if outcome.scaling:
        rows = [
            [
                f"{r.n:,}",
                f"{r.rss_start_mb:.1f}",
                f"{r.rss_peak_mb:.1f}",
                f"{r.rss_peak_mb - r.rss_start_mb:+.1f}",
                f"{r.rate:,.0f}",
            ]
            for r in outcome.scaling
        ]
        out += [
            f"## Memory: ids streamed from a generator (SDK, default loop, concurrency {args.concurrency})",
            "",
            table(["ids", "RSS before lookups MB", "peak RSS MB", "growth MB", "lookups/s"], rows),
            "",
        ]
    if outcome.latency:
        ideal = args.concurrency / args.latency
        rows = []
        for key, results in outcome.latency.items():
            s = summarise(key, outcome.labels[f"latency:{key}"], results)
            rows.append(
                [
                    s.label,
                    f"{s.rate:,.0f}",
                    f"{ideal:,.0f}",
                    f"{s.rate / ideal:.3f}",
                    f"{s.cpu_ms_per_1000:,.1f}",
                ]
            )
        out += [
            f"## Latency-bound: {args.latency * 1000:g} ms server latency, concurrency "
            f"{args.concurrency}, {args.latency_n:,} lookups (median of {args.repeats})",
            "",
            f"Server: {outcome.latency_server}. Efficiency = achieved rate ÷ "
            f"({args.concurrency} / {args.latency:g} s). The ideal ignores the server's own "
            "overhead beyond the sleep; `wrk` (C) shows what this server allows at best.",
            "",
            table(["contender", "lookups/s", "ideal", "efficiency", "client CPU ms / 1000"], rows),
            "",
        ]
    if outcome.decode:
        base = outcome.decode[0].ns_per_op
        rows = [
            [d.name, f"{d.ns_per_op:,.0f}", ratio(d.ns_per_op, base), d.note]
            for d in outcome.decode
        ]
        out += [
            "## Decode: one Info reply body → `Decimal` balance (best of repeats, in-process)",
            "",
            table(["decoder", "ns / reply", "x msgspec Struct", "what you get"], rows, "lrrl"),
            "",
        ]
    out += [
        "## Reading these numbers",
        "",
        "- The machine has 2 cores shared by the client, the server and other jobs: absolute "
        "rates move by tens of percent between runs; ratios measured in the same run are what "
        "to compare. Each contender runs in its own process, interleaved and rotated per repeat.",
        "- Every contender does the same work per lookup: sign the exact body bytes "
        "(`X-JWS-Signature`), POST, read, decode into a typed object, add the `Decimal` balance "
        "to a checksum that the harness verifies.",
        "",
    ]
    return "\n".join(line for line in out if line is not None).replace("\n\n\n", "\n\n")


_MACHINE: list[tuple[str, str]] = []


def machine_info_cached() -> list[tuple[str, str]]:
    if not _MACHINE:
        _MACHINE.extend(machine_info())
    return _MACHINE


def paired_section(outcome: Outcome, args: argparse.Namespace) -> list[str]:
    if not outcome.paired:
        return []
    names = {"base": "freedompay_async (this tree)", "raw": "raw aiohttp + msgspec"}
    rows = [
        [
            names.get(r.label, f"freedompay_async [{r.label}]"),
            f"{r.cpu_us_median:.1f}",
            f"{r.cpu_us_best:.1f}",
            f"{r.ratio_median:.3f}",
            f"{r.ratio_q1:.3f} - {r.ratio_q3:.3f}",
        ]
        for r in outcome.paired
    ]
    return [
        f"## Paired in one process: CPU per lookup, {args.paired_rounds} rounds of "
        f"{args.paired_n:,} lookups (default loop)",
        "",
        "Separate processes see this machine's noise separately (see *spread* above). Here the "
        "SDK and the raw pool share one process and one warm event loop and take turns, round "
        "after round; each round's CPU per lookup is divided by the SDK's in the same round. "
        "When the client is the bottleneck, SDK speed ÷ raw speed = the raw row's ratio. "
        "(`python -m benchmarks ab` does the same for other trees.)",
        "",
        table(
            ["client", "CPU µs / lookup (median)", "best", "CPU x SDK (median)", "CPU x SDK (IQR)"],
            rows,
        ),
        "",
    ]


def allocator_note(outcome: Outcome) -> list[str]:
    """Which default-loop runs paid an mmap per socket read (see ``worker.recv_buffer_mmapped``)."""
    probed = [
        (key, index + 1, result.recv_buffer_mmapped)
        for key, results in outcome.throughput.items()
        for index, result in enumerate(results)
        if result.recv_buffer_mmapped is not None
    ]
    hit = [f"{key} run {number}" for key, number, mmapped in probed if mmapped]
    if not probed:
        return []
    primed = not outcome.config.get("no_malloc_prime")
    how = (
        "Every benchmark process first frees one 512 KiB block (`--no-malloc-prime` skips "
        "it), which settles glibc's dynamic mmap threshold so that asyncio's 256 KiB per-read "
        "receive buffers come from the heap, as in a long-running process"
        if primed
        else "Processes were not primed (`--no-malloc-prime`)"
    )
    return [
        f"**Allocator:** {how}. Default-loop runs whose read buffers were still served by "
        f"mmap / mremap / munmap (about 15 µs of CPU per lookup more; whether a process is "
        f"in that mode depends on its allocation history, not on the contender): {len(hit)} "
        f"of {len(probed)} ({', '.join(hit) if hit else 'none'}). uvloop reads into a buffer "
        "of its own.",
        "",
    ]


def loops_section(outcome: Outcome, args: argparse.Namespace) -> list[str]:
    if not outcome.loops:
        return []
    rows = [
        [
            r.label,
            f"{r.asyncio_us:.1f}",
            f"{r.uvloop_us:.1f}",
            f"{r.gain_median:.3f}x",
            f"{r.gain_q1:.3f} - {r.gain_q3:.3f}",
        ]
        for r in outcome.loops
    ]
    return [
        f"## uvloop, paired in one process: CPU per lookup, {args.loops_rounds} rounds of "
        f"{args.loops_n:,} lookups",
        "",
        "One process runs each client on a fresh default event loop (`asyncio.run`) and on a "
        "fresh uvloop (`uvloop.run`) in turn, round after round (pool opened and warmed, then "
        "timed); each round's default-loop CPU per lookup ÷ its uvloop CPU per lookup is that "
        "round's gain. The raw pool's gain is what uvloop can do for any aiohttp client here: "
        "uvloop replaces the event loop and the socket transports, not aiohttp's own "
        "request/response code, which is most of the CPU per lookup "
        "(`python -m benchmarks profile`).",
        "",
        table(
            ["client", "default loop µs", "uvloop µs", "gain (median)", "gain (IQR)"],
            rows,
        ),
        "",
    ]


def targets_section(
    summaries: dict[str, Summary], outcome: Outcome, args: argparse.Namespace
) -> list[str]:
    rows: list[list[str]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        rows.append([target, measured, "n/a" if ok is None else ("yes" if ok else "**no**")])

    sdk, raw = summaries.get("sdk"), summaries.get("raw")
    if sdk and raw:
        add(
            "SDK ≥ 0.95x raw aiohttp + msgspec (default loop)",
            ratio(sdk.rate, raw.rate),
            sdk.rate >= 0.95 * raw.rate,
        )
    raw_paired = next((r for r in outcome.paired if r.label == "raw"), None)
    if raw_paired is not None:
        add(
            "SDK ≥ 0.95x raw, paired in one process (CPU per lookup)",
            f"{raw_paired.ratio_median:.3f}x",
            raw_paired.ratio_median >= 0.95,
        )
    sdk_uv, raw_uv = summaries.get("sdk-uvloop"), summaries.get("raw-uvloop")
    if sdk_uv and raw_uv:
        add(
            "SDK ≥ 0.95x raw (both on uvloop)",
            ratio(sdk_uv.rate, raw_uv.rate),
            sdk_uv.rate >= 0.95 * raw_uv.rate,
        )
    httpx = summaries.get("httpx")
    if sdk and httpx:
        add("SDK ≥ 10x httpx + pydantic", ratio(sdk.rate, httpx.rate), sdk.rate >= 10 * httpx.rate)
    if sdk and sdk_uv:
        add(
            "SDK on uvloop ≥ 1.25x default loop",
            ratio(sdk_uv.rate, sdk.rate),
            sdk_uv.rate >= 1.25 * sdk.rate,
        )
    loops = {r.key: r for r in outcome.loops}
    if "sdk" in loops:
        gain = loops["sdk"].gain_median
        add(
            "SDK on uvloop ≥ 1.25x default loop, paired in one process (CPU per lookup)",
            f"{gain:.3f}x",
            gain >= 1.25,
        )
    if "raw" in loops:
        add(
            "context: raw aiohttp + msgspec on uvloop ÷ default loop, paired (the ceiling)",
            f"{loops['raw'].gain_median:.3f}x",
            None,
        )
    if len(outcome.scaling) >= 2:
        peaks = [r.rss_peak_mb for r in outcome.scaling]
        growth = max(peaks) - min(peaks)
        sizes = f"{outcome.scaling[0].n:,} → {outcome.scaling[-1].n:,} ids"
        add(f"peak RSS flat within 10 MB ({sizes})", f"{growth:+.1f} MB", growth <= 10)
        add("peak RSS < 80 MB", f"{max(peaks):.1f} MB", max(peaks) < 80)
    if "sdk" in outcome.latency:
        rate = statistics.median(r.rate for r in outcome.latency["sdk"])
        efficiency = rate / (args.concurrency / args.latency)
        add(
            f"latency-bound efficiency ≥ 0.95 ({args.latency * 1000:g} ms, c={args.concurrency})",
            f"{efficiency:.3f}",
            efficiency >= 0.95,
        )
    if not rows:
        return []
    note = " (smoke run: not meaningful)" if args.smoke else ""
    return [
        "## Targets (issue 7)" + note,
        "",
        table(["target", "measured", "met"], rows, "lrl"),
        "",
    ]


def dump_json(path: Path, outcome: Outcome) -> None:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        raise TypeError(type(value).__name__)

    path.write_text(json.dumps(dataclasses.asdict(outcome), indent=2, default=plain))


# -- commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    command = " ".join(["python -m benchmarks", *args.argv])
    apply_malloc_option(args)
    sections = set(args.only or SECTIONS)
    outcome = Outcome(config={k: v for k, v in vars(args).items() if k not in ("func", "argv")})
    names = list(args.contenders or DEFAULT_CONTENDERS)
    machine_info_cached()  # load average before we start loading the machine
    runs = entries(names, args.compare_sdk, outcome.skipped) if "throughput" in sections else []
    failure: BaseException | None = None
    try:
        if sections & {"throughput", "paired", "loops", "scaling"}:
            with serve(args.server) as server:
                outcome.server = server.description
                log(f"server: {server.description}")
                if runs:
                    run_throughput(args, server, runs, outcome)
                if "paired" in sections:
                    run_paired(args, server, outcome)
                if "loops" in sections:
                    run_loops_section(args, server, outcome)
                if "scaling" in sections:
                    run_scaling(args, server, outcome)
        if "latency" in sections:
            run_latency(args, outcome)
        if "decode" in sections:
            run_decode_section(args, outcome)
        if args.smoke and "adaptive" in sections:
            from .adaptive import smoke as adaptive_smoke

            adaptive_smoke(sys.stderr)
    except (BenchError, ServerError) as exc:
        failure = exc
    markdown = render(args, outcome, command)
    print(markdown)
    if args.json:
        dump_json(Path(args.json), outcome)
    if failure is not None:
        log(f"FAILED: {failure}")
        return 1
    if args.write_results:
        path = Path(args.write_results)
        from .adaptive import existing_section

        kept = existing_section(path)  # `python -m benchmarks adaptive` writes that part
        path.write_text(markdown + (f"\n{kept}\n" if kept else ""))
        log(f"wrote {path}")
    return 0


def cmd_adaptive(args: argparse.Namespace) -> int:
    from .adaptive import SCENARIOS, run

    unknown = [name for name in args.servers if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown server {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    markdown = run(
        scenarios=args.servers,
        seconds=args.seconds,
        command=" ".join(["python -m benchmarks", *args.argv]),
        smoke=False,
        write=Path(args.write_results) if args.write_results else None,
        log=sys.stderr,
    )
    print(markdown)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .profiling import profile_sdk, pyinstrument_sdk, time_steps

    if args.profiler in ("steps", "all"):
        steps = time_steps(min_time=0.05 if args.n < 5000 else 0.2)
        rows = [
            [
                s.step,
                f"{s.sdk_ns:,.0f}",
                f"{s.tuned_ns:,.0f}" if s.tuned_ns is not None else "-",
                s.note,
            ]
            for s in steps
        ]
        print("## SDK per-lookup pure steps (ns, best of 5)\n")
        print(table(["step", "SDK ns", "hand-tuned ns", "note"], rows, "lrrl"))
        print()
    if args.profiler == "steps":
        return 0
    with serve(args.server) as server:
        log(f"server: {server.description}")
        if args.profiler in ("cprofile", "all"):
            report = profile_sdk(
                server.url,
                n=args.n,
                concurrency=args.concurrency,
                modulo=server.modulo,
                top=args.top,
                contender=args.contender,
            )
            rows = [
                [
                    group,
                    f"{seconds:.3f}",
                    f"{seconds / report.total_s:.1%}",
                    f"{seconds / report.n * 1e6:.1f}",
                ]
                for group, seconds in report.groups
            ]
            print(f"## cProfile: {report.n:,} `{args.contender}` lookups, own time by package\n")
            print(table(["package", "own s", "share", "µs / lookup"], rows))
            print(f"\nTop {args.top} functions by own time:\n\n```\n{report.top}\n```\n")
        if args.profiler in ("pyinstrument", "all"):
            if importlib.util.find_spec("pyinstrument") is None:
                log("pyinstrument not installed (pip install -e '.[bench]'); skipped")
            else:
                text = pyinstrument_sdk(
                    server.url,
                    n=args.n,
                    concurrency=args.concurrency,
                    modulo=server.modulo,
                    contender=args.contender,
                )
                title = f"## pyinstrument: {args.n:,} `{args.contender}` lookups"
                print(f"{title}\n\n```\n{text.strip()}\n```\n")
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    from .ab import run_ab

    compare = compare_trees(args.compare_sdk)
    apply_malloc_option(args)
    with serve(args.server) as server:
        log(f"server: {server.description}")
        log(f"ab: {args.rounds} rounds x {args.per_round:,} lookups per tree, in one process")
        results = run_ab(
            server.url,
            compare,
            rounds=args.rounds,
            per_round=args.per_round,
            concurrency=args.concurrency,
            modulo=server.modulo,
        )
    rows = [
        [
            "this worktree" if r.label == "base" else r.label,
            f"{r.cpu_us_median:.1f}",
            f"{r.cpu_us_best:.1f}",
            f"{r.ratio_median:.3f}",
            f"{r.ratio_q1:.3f} - {r.ratio_q3:.3f}",
        ]
        for r in results
    ]
    print(
        f"## In-process A/B: CPU per lookup, {args.rounds} paired rounds of "
        f"{args.per_round:,} lookups, concurrency {args.concurrency}\n"
    )
    print(table(["tree", "µs / lookup (median)", "best", "x base (median)", "x base (IQR)"], rows))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    outcome = Outcome(config={})
    run_decode_section(args, outcome)
    base = outcome.decode[0].ns_per_op
    rows = [
        [d.name, f"{d.ns_per_op:,.0f}", ratio(d.ns_per_op, base), d.note] for d in outcome.decode
    ]
    print(table(["decoder", "ns / reply", "x msgspec Struct", "what you get"], rows, "lrrl"))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    with serve(args.server, latency=args.latency) as server:
        print(server.description, flush=True)
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


# -- argument parsing ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(float(text))  # accepts 1e6
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _sizes(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",") if part.strip()]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def malloc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-malloc-prime",
        action="store_true",
        help="do not free a 512 KiB block first in each benchmark process (then the default "
        "loop's 256 KiB read buffers may cost an mmap per read, by chance: see README)",
    )


def apply_malloc_option(args: argparse.Namespace) -> None:
    """Prime this process (the paired sections run here) and, through the environment, the
    workers; or ask the workers not to."""
    if args.no_malloc_prime:
        os.environ[NO_MALLOC_PRIME_ENV] = "1"
    else:
        prime_malloc()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="freedompay-async against raw aiohttp, naive aiohttp, httpx + pydantic and "
        "wrk, on a loopback server it starts and stops itself. Prints markdown.",
    )
    commands = root.add_subparsers(dest="command")

    def server_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--server",
            choices=("auto", "nginx", "fake"),
            default="auto",
            help="nginx (canned reply, tiny fixed cost) or FakeFreedomPay in a subprocess; "
            "auto = nginx when installed (default)",
        )

    run = commands.add_parser("run", help="the benchmarks (default)")
    server_option(run)
    run.add_argument(
        "--smoke", action="store_true", help="a few hundred lookups: does the harness work? (CI)"
    )
    run.add_argument("-n", type=_positive_int, help="lookups per contender run (20000; smoke 300)")
    run.add_argument(
        "--concurrency", "-c", type=_positive_int, default=64, help="requests in flight (64)"
    )
    run.add_argument(
        "--repeats", "-r", type=_positive_int, help="interleaved runs per contender (3)"
    )
    run.add_argument("--warmup", type=int, help="untimed lookups per run before timing (1000)")
    run.add_argument(
        "--contenders",
        type=_names,
        help=f"comma-separated subset of {','.join(DEFAULT_CONTENDERS)} (default: all available)",
    )
    run.add_argument(
        "--compare-sdk",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure the freedompay_async package in DIR (another worktree), interleaved",
    )
    run.add_argument("--only", type=_names, help=f"comma-separated subset of {','.join(SECTIONS)}")
    run.add_argument(
        "--scaling", type=_sizes, help="ids per memory run (1e4,1e5,1e6; smoke 200,600)"
    )
    run.add_argument(
        "--paired-rounds", type=_positive_int, help="rounds of the in-process SDK/raw pairing (20)"
    )
    run.add_argument("--paired-n", type=_positive_int, help="lookups per paired round (3000)")
    run.add_argument(
        "--loops-rounds",
        type=_positive_int,
        help="rounds of the in-process default loop / uvloop pairing (10)",
    )
    run.add_argument("--loops-n", type=_positive_int, help="lookups per loops turn (3000)")
    run.add_argument("--latency", type=float, default=0.05, help="added server latency, s (0.05)")
    run.add_argument(
        "--latency-n",
        type=_positive_int,
        help="lookups per latency run (12800 = 200 round trips per worker; smoke 128)",
    )
    run.add_argument(
        "--latency-server",
        choices=("auto", "nginx", "fake"),
        default="auto",
        help="nginx echo_sleep when available, else FakeFreedomPay(latency=...) (auto)",
    )
    run.add_argument("--wrk-duration", type=float, help="seconds per wrk run (5)")
    run.add_argument("--decode-repeats", type=_positive_int, help="best of this many (5)")
    run.add_argument("--decode-min-time", type=float, help="seconds per timing (0.2)")
    run.add_argument(
        "--write-results",
        nargs="?",
        const=str(RESULTS_PATH),
        metavar="PATH",
        help=f"write the markdown to PATH (default {RESULTS_PATH.relative_to(ROOT)})",
    )
    run.add_argument("--json", metavar="PATH", help="dump every raw measurement as JSON")
    malloc_option(run)
    run.set_defaults(func=cmd_run)

    profile = commands.add_parser("profile", help="profile the SDK lookup path")
    server_option(profile)
    profile.add_argument("-n", type=_positive_int, default=20_000)
    profile.add_argument("--concurrency", "-c", type=_positive_int, default=64)
    profile.add_argument(
        "--profiler", choices=("cprofile", "pyinstrument", "steps", "all"), default="all"
    )
    profile.add_argument("--top", type=_positive_int, default=25)
    profile.add_argument(
        "--contender",
        choices=[name for name in CONTENDERS if "uvloop" not in name],
        default="sdk",
        help="profile another contender instead (e.g. raw, to compare)",
    )
    profile.set_defaults(func=cmd_profile)

    ab = commands.add_parser(
        "ab", help="in-process A/B of SDK trees: CPU per lookup in paired rounds (precise)"
    )
    server_option(ab)
    ab.add_argument(
        "--compare-sdk",
        action="append",
        required=True,
        metavar="LABEL=DIR",
        help="a tree whose DIR/freedompay_async to compare with this worktree's (repeatable)",
    )
    ab.add_argument("--rounds", type=_positive_int, default=30, help="paired rounds (30)")
    ab.add_argument("--per-round", type=_positive_int, default=3000, help="lookups (3000)")
    ab.add_argument("--concurrency", "-c", type=_positive_int, default=64)
    malloc_option(ab)
    ab.set_defaults(func=cmd_ab)

    decode = commands.add_parser("decode", help="the decode micro-benchmark alone")
    decode.add_argument("--decode-repeats", type=_positive_int, help="best of this many (5)")
    decode.add_argument("--decode-min-time", type=float, help="seconds per timing (0.2)")
    decode.set_defaults(func=cmd_decode)

    adaptive = commands.add_parser(
        "adaptive",
        help='fixed concurrency 4 / 64 / 256 against concurrency="auto" on three shaped servers',
    )
    adaptive.add_argument(
        "--seconds",
        type=float,
        help="seconds per setting, every server (default: capacity 90, queue 20, unlimited 10)",
    )
    adaptive.add_argument(
        "--servers",
        type=_names,
        default=["capacity", "queue", "unlimited"],
        help="comma-separated subset of capacity,queue,unlimited (all)",
    )
    adaptive.add_argument(
        "--write-results",
        nargs="?",
        const=str(RESULTS_PATH),
        metavar="PATH",
        help="put the section into PATH (default benchmarks/RESULTS.md) and plot the limit "
        "to benchmarks/adaptive-limit.png",
    )
    adaptive.set_defaults(func=cmd_adaptive)

    server = commands.add_parser("server", help="start the benchmark server and wait (Ctrl-C)")
    server_option(server)
    server.add_argument("--latency", type=float, default=0.0)
    server.set_defaults(func=cmd_server)
    return root


#: Defaults of ``run`` that ``--smoke`` shrinks (an option given explicitly still wins).
DEFAULTS: Final[dict[str, Any]] = {
    "n": 20_000,
    "repeats": 3,
    "warmup": 1000,
    "scaling": [10_000, 100_000, 1_000_000],
    "latency_n": 12_800,
    "wrk_duration": 5.0,
    "decode_repeats": 5,
    "decode_min_time": 0.2,
    "paired_rounds": 20,
    "paired_n": 3000,
    "loops_rounds": 10,
    "loops_n": 3000,
}
SMOKE_DEFAULTS: Final[dict[str, Any]] = {
    "n": 300,
    "repeats": 1,
    "warmup": 50,
    "scaling": [200, 600],
    "latency_n": 128,
    "wrk_duration": 1.0,
    "decode_repeats": 1,
    "decode_min_time": 0.01,
    "paired_rounds": 2,
    "paired_n": 200,
    "loops_rounds": 1,
    "loops_n": 200,
}


def fill_defaults(args: argparse.Namespace) -> None:
    defaults = SMOKE_DEFAULTS if getattr(args, "smoke", False) else DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name, "absent") is None:
            setattr(args, name, value)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `with`: servers and workers stop


def main(argv: Sequence[str] | None = None) -> int:
    typed = list(sys.argv[1:] if argv is None else argv)
    implicit_run = not typed or (typed[0].startswith("-") and typed[0] not in ("-h", "--help"))
    args = parser().parse_args(["run", *typed] if implicit_run else typed)
    args.argv = typed
    fill_defaults(args)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        log("interrupted; servers and workers stopped")
        return 130
    except ServerError as exc:
        log(f"error: {exc}")
        return 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())
