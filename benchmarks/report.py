"""Markdown for the terminal and for ``benchmarks/RESULTS.md``: tables, sections, targets.

Pure rendering: every function here takes what was measured and returns text.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .common import WorkerResult
from .machine import machine_info_cached, now_utc
from .sections import Outcome

if TYPE_CHECKING:
    from .ab import ABResult
    from .decode import DecodeResult
    from .profiling import ProfileReport, StepTime


@dataclasses.dataclass(frozen=True)
class Summary:
    """The median of a contender's repeats."""

    key: str
    label: str
    loop: str
    mode: str
    runs: int
    n: int
    rate: float
    rate_min: float
    rate_max: float
    cpu_ms_per_1000: float
    rss_peak_mb: float

    @property
    def spread(self) -> float:
        """(max - min) / median of the rate over the repeats."""
        return (self.rate_max - self.rate_min) / self.rate if self.rate else 0.0


def summarise(key: str, label: str, results: Sequence[WorkerResult]) -> Summary:
    rates = [r.rate for r in results]
    return Summary(
        key=key,
        label=label,
        loop=results[0].loop,
        mode=results[0].mode,
        runs=len(results),
        n=int(statistics.median(r.n for r in results)),
        rate=statistics.median(rates),
        rate_min=min(rates),
        rate_max=max(rates),
        cpu_ms_per_1000=statistics.median(r.cpu_ms_per_1000 for r in results),
        rss_peak_mb=statistics.median(r.rss_peak_mb for r in results),
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table; ``align`` has one ``l``/``r`` per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def throughput_table(summaries: Sequence[Summary], baseline: Summary | None) -> str:
    rows = []
    for s in summaries:
        rows.append(
            [
                s.label,
                s.loop,
                f"{s.rate:,.0f}",
                f"{s.rate_max:,.0f}",
                f"±{s.spread * 50:.0f}%",
                f"{s.cpu_ms_per_1000:,.1f}",
                f"{s.rss_peak_mb:.1f}" if s.rss_peak_mb else "n/a",
                ratio(s.rate, baseline.rate) if baseline else "n/a",
                ratio(s.cpu_ms_per_1000, baseline.cpu_ms_per_1000) if baseline else "n/a",
            ]
        )
    return table(
        [
            "contender",
            "loop",
            "lookups/s (median)",
            "best",
            "spread",
            "client CPU ms / 1000",
            "peak RSS MB",
            "rate x SDK",
            "CPU x SDK",
        ],
        rows,
        "llrrrrrrr",
    )


# -- the report of `run` ---------------------------------------------------------------------


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
        out += [
            "## Decode: one Info reply body → `Decimal` balance (best of repeats, in-process)",
            "",
            decode_table(outcome.decode),
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


# -- the other commands' output -------------------------------------------------------------


def decode_table(decode: Sequence[DecodeResult]) -> str:
    """The decode micro-benchmark, relative to its first row (the msgspec Struct)."""
    base = decode[0].ns_per_op
    rows = [[d.name, f"{d.ns_per_op:,.0f}", ratio(d.ns_per_op, base), d.note] for d in decode]
    return table(["decoder", "ns / reply", "x msgspec Struct", "what you get"], rows, "lrrl")


def ab_report(results: Sequence[ABResult], *, rounds: int, per_round: int, concurrency: int) -> str:
    """``python -m benchmarks ab``: each tree's CPU per lookup and its paired ratio to the base."""
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
    return (
        f"## In-process A/B: CPU per lookup, {rounds} paired rounds of "
        f"{per_round:,} lookups, concurrency {concurrency}\n\n"
        + table(["tree", "µs / lookup (median)", "best", "x base (median)", "x base (IQR)"], rows)
    )


def steps_report(steps: Sequence[StepTime]) -> str:
    """``profile --profiler steps``: the SDK's pure per-lookup steps."""
    rows = [
        [
            s.step,
            f"{s.sdk_ns:,.0f}",
            f"{s.tuned_ns:,.0f}" if s.tuned_ns is not None else "-",
            s.note,
        ]
        for s in steps
    ]
    return (
        "## SDK per-lookup pure steps (ns, best of 5)\n\n"
        + table(["step", "SDK ns", "hand-tuned ns", "note"], rows, "lrrl")
        + "\n"
    )


def cprofile_report(report: ProfileReport, *, contender: str, top: int) -> str:
    """``profile --profiler cprofile``: own time by package, then the top functions."""
    rows = [
        [
            group,
            f"{seconds:.3f}",
            f"{seconds / report.total_s:.1%}",
            f"{seconds / report.n * 1e6:.1f}",
        ]
        for group, seconds in report.groups
    ]
    return (
        f"## cProfile: {report.n:,} `{contender}` lookups, own time by package\n\n"
        + table(["package", "own s", "share", "µs / lookup"], rows)
        + f"\n\nTop {top} functions by own time:\n\n```\n{report.top}\n```\n"
    )


def pyinstrument_report(text: str, *, n: int, contender: str) -> str:
    """``profile --profiler pyinstrument``: the call tree as pyinstrument prints it."""
    return f"## pyinstrument: {n:,} `{contender}` lookups\n\n```\n{text.strip()}\n```\n"
