"""``python -m benchmarks adaptive``: fixed concurrency against ``concurrency="auto"``.

Three loopback servers (``benchmarks/adaptive_server.py``, each in its own process):

* (a) ``capacity``: a 2,000 req/s token bucket (burst 50), 20 ms per reply, ``429`` with
  ``Retry-After: 1`` above it;
* (b) ``queue``: 32 requests served at once, 20 ms each, a FIFO queue past that (the knee), no
  ``429``: latency grows with the requests in flight;
* (c) ``unlimited``: the canned reply at once (the client's own CPU is the limit).

For each, ``client.wallets.info_many`` runs for a fixed time with concurrency 4, 64, 256 and
``"auto"`` over an endless stream of ids (for (a) also fixed 40, capacity x latency: what this
machine delivers with the limit exactly right; (c) rotates the settings three times and adds
the runs up, as its settings are close and the shared machine's load drifts), and the table
shows goodput (successful lookups per second), goodput ÷ ideal, the share of requests the server refused (its own counts), and the
p50 / p99 latency of a lookup as the caller sees it (retries and pauses included). The limit
``auto`` chose over time is plotted to a PNG when matplotlib is installed (``.[bench]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import aiohttp

from freedompay_async import FreedomPayClient

from .common import AUTH_ID, ROOT, SECRET_KEY, BenchError, child_env, python
from .report import machine_info, now_utc, table
from .servers import ServerError, spawn, stop

SETTINGS: Final[tuple[int | str, ...]] = (4, 64, 256, "auto")
#: The pool is as large as the largest fixed setting; ``auto`` defaults to it as its maximum.
POOL: Final = 256
RESULTS_PATH: Final = ROOT / "benchmarks" / "RESULTS.md"
PLOT_PATH: Final = ROOT / "benchmarks" / "adaptive-limit.png"
BEGIN: Final = "<!-- adaptive:begin -->"
END: Final = "<!-- adaptive:end -->"


@dataclasses.dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    args: tuple[str, ...]
    #: Goodput the server allows at best (``None``: the best fixed setting measured).
    ideal: float | None
    #: Lookup latency with nothing queued (what the targets compare p99 with).
    unloaded: float
    #: Seconds per setting by default (a: long enough for auto's rare probes to average out).
    seconds: float
    #: A fixed setting added to this server's table: (a) capacity x latency, what this machine
    #: really delivers when the limit is exactly right (auto is also compared with it).
    reference: int | None = None
    #: Rotations of all settings (each ``seconds`` long; the rows add them up), so that a burst
    #: of load from other jobs on the machine does not decide a close comparison (c).
    repeats: int = 1


SCENARIOS: Final = {
    "capacity": Scenario(
        "capacity",
        "(a) capacity-limited: 2,000 req/s token bucket (burst 50), 20 ms per reply, "
        "429 + Retry-After: 1 above it",
        ("capacity", "--rate", "2000", "--burst", "50", "--latency", "0.02"),
        2000.0,
        0.02,
        90.0,
        reference=40,
    ),
    "queue": Scenario(
        "queue",
        "(b) queueing: 32 served at once, 20 ms each, FIFO queue past that, no 429",
        ("queue", "--servers", "32", "--latency", "0.02"),
        32 / 0.02,
        0.02,
        20.0,
    ),
    "unlimited": Scenario(
        "unlimited",
        "(c) unlimited: canned reply at once",
        ("unlimited",),
        None,
        0.0,
        8.0,
        repeats=3,
    ),
}


@dataclasses.dataclass
class Row:
    setting: str
    seconds: float
    ok: int
    failed: int
    served: int
    refused: int
    p50: float | None
    p99: float | None
    limit_end: int | None = None
    history: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    brake_pauses: int = 0

    @property
    def goodput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def refused_share(self) -> float:
        sent = self.served + self.refused
        return self.refused / sent if sent else 0.0


class AdaptiveServer:
    """``python -m benchmarks.adaptive_server`` in a child process (stopped on exit)."""

    def __init__(self, args: Sequence[str]) -> None:
        self._args = list(args)
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> AdaptiveServer:
        process = self._process = spawn(
            [python(), "-m", "benchmarks.adaptive_server", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(),
            cwd=str(ROOT),
        )
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.__exit__(None, None, None)
            raise ServerError(f"the adaptive benchmark server did not start (said {line!r})")
        self.url = line
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2)
            stop(process)


def _ids() -> Iterator[str]:
    index = 0
    while True:
        yield f"user-{index}"
        index += 1


async def _server_counts(session: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    async with session.get(f"{url}/stats") as response:
        counts = await response.json(content_type=None)
    return int(counts["served"]), int(counts["refused"])


async def run_setting(url: str, setting: int | str, seconds: float) -> Row:
    """``info_many`` with ``setting`` for ``seconds`` over endless ids; the server's counts."""
    async with aiohttp.ClientSession() as session:
        served0, refused0 = await _server_counts(session, url)
        async with FreedomPayClient(
            auth_id=AUTH_ID, secret_key=SECRET_KEY, base_url=url, max_connections=POOL
        ) as client:
            ok = failed = 0
            started = time.perf_counter()
            deadline = started + seconds
            concurrency: Any = setting
            async with client.wallets.info_many(_ids(), concurrency=concurrency) as results:
                async for result in results:
                    if result.error is None:
                        ok += 1
                    else:
                        failed += 1
                    if time.perf_counter() >= deadline:
                        break
            elapsed = time.perf_counter() - started
            stats = results.stats
        await asyncio.sleep(0.1)  # the requests cut short reach the server's counts
        served1, refused1 = await _server_counts(session, url)
    return Row(
        setting=str(setting),
        seconds=elapsed,
        ok=ok,
        failed=failed,
        served=served1 - served0,
        refused=refused1 - refused0,
        p50=stats.latency_p50,
        p99=stats.latency_p99,
        limit_end=stats.concurrency_limit,
        history=stats.limit_history,
        brake_pauses=stats.brake_pauses,
    )


def _settings(scenario: Scenario, settings: Sequence[int | str]) -> list[int | str]:
    """``settings`` with the scenario's reference setting among the fixed ones."""
    out = list(settings)
    if scenario.reference is not None and scenario.reference not in out:
        fixed = [setting for setting in out if isinstance(setting, int)]
        at = sum(1 for setting in fixed if setting < scenario.reference)
        out.insert(at, scenario.reference)
    return out


def _merge(runs: list[Row]) -> Row:
    """One row for the repeats of a setting: counts and seconds added up, the median p50,
    the worst p99, the last run's limit."""
    if len(runs) == 1:
        return runs[0]
    p50s = sorted(run.p50 for run in runs if run.p50 is not None)
    p99s = [run.p99 for run in runs if run.p99 is not None]
    return Row(
        setting=runs[0].setting,
        seconds=sum(run.seconds for run in runs),
        ok=sum(run.ok for run in runs),
        failed=sum(run.failed for run in runs),
        served=sum(run.served for run in runs),
        refused=sum(run.refused for run in runs),
        p50=p50s[len(p50s) // 2] if p50s else None,
        p99=max(p99s) if p99s else None,
        limit_end=runs[-1].limit_end,
        history=runs[-1].history,
        brake_pauses=sum(run.brake_pauses for run in runs),
    )


def run_scenario(
    scenario: Scenario, settings: Sequence[int | str], seconds: float, log: IO[str]
) -> list[Row]:
    order = _settings(scenario, settings)
    runs: dict[str, list[Row]] = {str(setting): [] for setting in order}
    with AdaptiveServer(scenario.args) as server:
        for repeat in range(scenario.repeats):
            # Rotated per repeat: no setting always runs right after the same one.
            shift = repeat % len(order)
            for setting in order[shift:] + order[:shift]:
                row = asyncio.run(run_setting(server.url, setting, seconds))
                runs[row.setting].append(row)
                _log_row(scenario, row, log)
                time.sleep(1.0)  # the server's bucket refills, its queue drains
    return [_merge(rows) for rows in runs.values()]


def _log_row(scenario: Scenario, row: Row, log: IO[str]) -> None:
    print(
        f"  {scenario.key:<10} {row.setting:>5}: {row.goodput:8,.0f}/s ok  "
        f"refused {row.refused_share:6.1%}  p50 {_ms(row.p50)} p99 {_ms(row.p99)}"
        + (f"  limit now {row.limit_end}" if row.limit_end is not None else ""),
        file=log,
        flush=True,
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


# -- the report ---------------------------------------------------------------------------------


def targets(scenario: Scenario, rows: list[Row]) -> list[list[str]]:
    """The issue's targets for this scenario: [target, measured, met]."""
    by = {row.setting: row for row in rows}
    auto = by.get("auto")
    fixed = [row for row in rows if row.setting != "auto"]
    if auto is None or not fixed:
        return []
    best = max(fixed, key=lambda row: row.goodput)
    out = []
    if scenario.key == "capacity" and scenario.ideal:
        share = auto.goodput / scenario.ideal
        out.append(["(a) auto goodput ≥ 0.9 x capacity", f"{share:.3f}", _yes(share >= 0.9)])
        out.append(
            ["(a) auto refused < 2 %", f"{auto.refused_share:.2%}", _yes(auto.refused_share < 0.02)]
        )
        reference = by.get(str(scenario.reference))
        if reference is not None and reference.goodput:
            share = auto.goodput / reference.goodput
            out.append(
                [
                    f"(a) context: auto ÷ fixed {reference.setting} (capacity x latency: "
                    "what this machine delivers at the right limit)",
                    f"{share:.3f}",
                    "",
                ]
            )
        if "256" in by:
            out.append(
                ["(a) context: fixed 256 refused (the storm)", f"{by['256'].refused_share:.1%}", ""]
            )
    elif scenario.key == "queue":
        # Unloaded: the median lookup at concurrency 4 (no queue) on this machine now; the
        # server's own 20 ms when that setting did not run.
        quiet = by.get("4")
        unloaded = quiet.p50 if quiet is not None and quiet.p50 else scenario.unloaded
        limit = 2 * unloaded
        p99 = auto.p99 or 0.0
        out.append(
            [
                f"(b) auto p99 ≤ 2 x unloaded (2 x {unloaded * 1000:.1f} ms)",
                _ms(auto.p99),
                _yes(p99 <= limit),
            ]
        )
        share = auto.goodput / best.goodput if best.goodput else 0.0
        out.append(
            [
                f"(b) auto goodput ≥ 0.9 x best fixed ({best.setting})",
                f"{share:.3f}",
                _yes(share >= 0.9),
            ]
        )
    else:
        share = auto.goodput / best.goodput if best.goodput else 0.0
        out.append(
            [
                f"(c) auto goodput ≥ 0.95 x best fixed ({best.setting})",
                f"{share:.3f}",
                _yes(share >= 0.95),
            ]
        )
    return out


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def render(
    outcome: dict[str, list[Row]],
    *,
    seconds: float | None,
    command: str,
    smoke: bool,
    plot: str | None,
) -> str:
    out = [BEGIN, "## Adaptive concurrency (issue 16): fixed 4 / 64 / 256 against `auto`", ""]
    if smoke:
        out += [
            "> **Smoke run**: a second per setting to prove the harness works; the figures",
            "> mean nothing.",
            "",
        ]
    info = dict(machine_info())
    out += [
        f"- **date:** {now_utc()}",
        f"- **command:** `{command}`",
        f"- **load average when written:** {info.get('load average at start', '?')}",
        "- **each setting:** `client.wallets.info_many` over endless ids for "
        + (f"{seconds:g} s" if seconds else "the time in the server's heading")
        + f", pool {POOL} connections (auto's maximum), default retry policy and retry budget",
        "",
        "Goodput: successful lookups per second. Refused: the server's 429s ÷ the requests it "
        "received. Latency: per lookup as the caller sees it (retries and Retry-After pauses "
        "included). Ideal: (a) the token rate, (b) 32 / 20 ms, (c) the best fixed setting.",
        "",
    ]
    for key, rows in outcome.items():
        scenario = SCENARIOS[key]
        best = max((row.goodput for row in rows if row.setting != "auto"), default=0.0)
        ideal = scenario.ideal or best
        body = [
            [
                row.setting,
                f"{row.goodput:,.0f}",
                f"{row.goodput / ideal:.3f}" if ideal else "-",
                f"{row.refused_share:.2%}",
                _ms(row.p50),
                _ms(row.p99),
                f"{row.limit_end}" if row.limit_end is not None else "",
            ]
            for row in rows
        ]
        took = rows[0].seconds if rows else 0.0
        rotations = f", {scenario.repeats} rotations added up" if scenario.repeats > 1 else ""
        out += [
            f"### {scenario.title} ({took:.0f} s per setting{rotations})",
            "",
            table(
                [
                    "concurrency",
                    "goodput /s",
                    "÷ ideal",
                    "refused",
                    "p50",
                    "p99",
                    "auto limit at end",
                ],
                body,
                "lrrrrrr",
            ),
            "",
        ]
        checks = targets(scenario, rows)
        if checks:
            out += [table(["target", "measured", "met"], checks, "lrl"), ""]
    if plot:
        out += [f"The limit `auto` chose over time: [{Path(plot).name}]({Path(plot).name})", ""]
    out.append(END)
    return "\n".join(out)


def plot_history(outcome: dict[str, list[Row]], path: Path) -> bool:
    """A PNG of ``auto``'s limit over time, one line per server; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for key, rows in outcome.items():
        for row in rows:
            if row.setting == "auto" and row.history:
                times = [t for t, _ in row.history] + [row.seconds]
                limits = [limit for _, limit in row.history] + [row.history[-1][1]]
                axes.step(times, limits, where="post", label=SCENARIOS[key].title.split(":")[0])
    axes.set_xlabel("seconds")
    axes.set_ylabel("concurrency limit")
    axes.set_title('concurrency="auto": the limit over time')
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_section(path: Path, section: str) -> None:
    """Put ``section`` into ``path`` between the markers (replacing an older one), atomically."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def existing_section(path: Path) -> str | None:
    """The adaptive section already in ``path`` (kept when the main run rewrites the file)."""
    if not path.exists():
        return None
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return None
    return BEGIN + text.partition(BEGIN)[2].partition(END)[0] + END


def run(
    *,
    scenarios: Sequence[str],
    seconds: float | None,
    settings: Sequence[int | str] = SETTINGS,
    command: str,
    smoke: bool,
    write: Path | None,
    log: IO[str],
    json_path: Path | None = None,
) -> str:
    outcome: dict[str, list[Row]] = {}
    for key in scenarios:
        scenario = SCENARIOS[key]
        print(f"adaptive: {scenario.title}", file=log, flush=True)
        outcome[key] = run_scenario(scenario, settings, seconds or scenario.seconds, log)
    for rows in outcome.values():
        for row in rows:
            if row.ok == 0 and row.setting != "auto" and not smoke:
                print(f"  warning: {row.setting} made no successful lookup", file=log)
    plot: str | None = None
    picture = None if write is None else write.parent / PLOT_PATH.name  # next to the results
    if picture is not None and plot_history(outcome, picture):
        plot = str(picture)
    markdown = render(outcome, seconds=seconds, command=command, smoke=smoke, plot=plot)
    if json_path is not None:
        json_path.write_text(
            json.dumps({k: [dataclasses.asdict(r) for r in v] for k, v in outcome.items()})
        )
    if write is not None:
        write_section(write, markdown)
        print(f"wrote {write}" + (f" and {plot}" if plot else ""), file=log)
    return markdown


def smoke(log: IO[str]) -> None:
    """Half a second of fixed 4 and ``auto`` per server: the harness works (CI).

    Checks results, never speed: every setting got successful lookups, and ``auto`` reported
    its limit.
    """
    print("adaptive smoke: fixed 4 and auto, 0.5 s each per server", file=log, flush=True)
    for key, scenario in SCENARIOS.items():
        with AdaptiveServer(scenario.args) as server:
            for setting in (4, "auto"):
                row = asyncio.run(run_setting(server.url, setting, 0.5))
                print(
                    f"  {key:<10} {row.setting:>5}: {row.ok:,} ok, {row.failed:,} failed, "
                    f"{row.served + row.refused:,} requests at the server"
                    + (f", limit {row.limit_end}" if row.limit_end is not None else ""),
                    file=log,
                    flush=True,
                )
                if row.ok == 0 or row.served == 0:
                    raise BenchError(f"adaptive smoke: {key} {setting}: no successful lookup")
                if setting == "auto" and (row.limit_end is None or not row.history):
                    raise BenchError(f"adaptive smoke: {key}: auto reported no limit")
