"""The report of ``python -m benchmarks adaptive``: targets, markdown section, plot.

The section sits between two markers in RESULTS.md, so that the main run and this one can each
rewrite their own part of the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .machine import machine_info, now_utc
from .report import table

if TYPE_CHECKING:
    from .adaptive import Row, Scenario

BEGIN: Final = "<!-- adaptive:begin -->"
END: Final = "<!-- adaptive:end -->"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


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
                ms(auto.p99),
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
    scenarios: Mapping[str, Scenario],
    *,
    pool: int,
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
        + f", pool {pool} connections (auto's maximum), default retry policy and retry budget",
        "",
        "Goodput: successful lookups per second. Refused: the server's 429s ÷ the requests it "
        "received. Latency: per lookup as the caller sees it (retries and Retry-After pauses "
        "included). Ideal: (a) the token rate, (b) 32 / 20 ms, (c) the best fixed setting.",
        "",
    ]
    for key, rows in outcome.items():
        scenario = scenarios[key]
        best = max((row.goodput for row in rows if row.setting != "auto"), default=0.0)
        ideal = scenario.ideal or best
        body = [
            [
                row.setting,
                f"{row.goodput:,.0f}",
                f"{row.goodput / ideal:.3f}" if ideal else "-",
                f"{row.refused_share:.2%}",
                ms(row.p50),
                ms(row.p99),
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


def plot_history(
    outcome: dict[str, list[Row]], path: Path, scenarios: Mapping[str, Scenario]
) -> bool:
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
                axes.step(times, limits, where="post", label=scenarios[key].title.split(":")[0])
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
