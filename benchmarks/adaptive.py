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
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import aiohttp

from freedompay_async import FreedomPayClient

from .adaptive_report import ms, plot_history, render, write_section
from .common import AUTH_ID, ROOT, SECRET_KEY, BenchError, child_env, python
from .servers import ServerError, spawn, stop

SETTINGS: Final[tuple[int | str, ...]] = (4, 64, 256, "auto")
#: The pool is as large as the largest fixed setting; ``auto`` defaults to it as its maximum.
POOL: Final = 256
PLOT_PATH: Final = ROOT / "benchmarks" / "adaptive-limit.png"


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
        f"refused {row.refused_share:6.1%}  p50 {ms(row.p50)} p99 {ms(row.p99)}"
        + (f"  limit now {row.limit_end}" if row.limit_end is not None else ""),
        file=log,
        flush=True,
    )


def run(
    *,
    scenarios: Sequence[str],
    seconds: float | None,
    settings: Sequence[int | str] = SETTINGS,
    command: str,
    smoke: bool,
    write: Path | None,
    log: IO[str],
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
    if picture is not None and plot_history(outcome, picture, SCENARIOS):
        plot = str(picture)
    markdown = render(
        outcome, SCENARIOS, pool=POOL, seconds=seconds, command=command, smoke=smoke, plot=plot
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
