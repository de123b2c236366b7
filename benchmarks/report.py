"""Markdown for the terminal and for ``benchmarks/RESULTS.md``: machine, tables, targets."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Sequence

from .common import WorkerResult


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


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    versions = []
    for package in (
        "freedompay-async",
        "aiohttp",
        "msgspec",
        "yarl",
        "multidict",
        "uvloop",
        "httpx",
        "httpcore",
        "pydantic",
    ):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    tools = []
    for tool, flag in (("nginx", "-v"), ("wrk", "-v")):
        path = shutil.which(tool)
        if path is None:
            tools.append(f"{tool} (not installed)")
            continue
        try:
            out = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
            text = (out.stderr or out.stdout).strip().splitlines()[0]
            tools.append(text.replace("nginx version: ", ""))
        except (OSError, subprocess.SubprocessError, IndexError):
            tools.append(tool)
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores (shared: client, server and other jobs)"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("load average at start", load),
        ("packages", ", ".join(versions)),
        ("tools", ", ".join(tools)),
    ]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
