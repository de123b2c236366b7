"""``python -m benchmarks``: the command line. Each subcommand is one ``cmd_*`` function.

Subcommands (``run`` is the default): ``run``, ``profile``, ``ab``, ``decode``, ``adaptive``,
``server``. The sections of ``run`` are in sections.py, the markdown in report.py.
See benchmarks/README.md for what each figure means and how to read it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from .common import NO_MALLOC_PRIME_ENV, ROOT, BenchError, log, prime_malloc
from .contenders import CONTENDERS
from .machine import machine_info_cached
from .report import (
    ab_report,
    cprofile_report,
    decode_table,
    pyinstrument_report,
    render,
    steps_report,
)
from .sections import (
    DEFAULT_CONTENDERS,
    SECTIONS,
    Outcome,
    compare_trees,
    dump_json,
    entries,
    run_decode_section,
    run_latency,
    run_loops_section,
    run_paired,
    run_scaling,
    run_throughput,
)
from .servers import ServerError, serve

RESULTS_PATH: Final = ROOT / "benchmarks" / "RESULTS.md"


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
        from .adaptive_report import existing_section

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
        print(steps_report(time_steps(min_time=0.05 if args.n < 5000 else 0.2)))
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
            print(cprofile_report(report, contender=args.contender, top=args.top))
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
                print(pyinstrument_report(text, n=args.n, contender=args.contender))
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    from .ab import run_ab

    compare = compare_trees(args.compare_sdk)
    if args.control:
        if "control" in compare:
            raise SystemExit("--control: the label control is taken by a --compare-sdk tree")
        compare = {"control": ROOT, **compare}
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
    print(
        ab_report(
            results, rounds=args.rounds, per_round=args.per_round, concurrency=args.concurrency
        )
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    outcome = Outcome(config={})
    run_decode_section(args, outcome)
    print(decode_table(outcome.decode))
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
        default=[],
        metavar="LABEL=DIR",
        help="a tree whose DIR/freedompay_async to compare with this worktree's (repeatable; "
        "none: this worktree against the raw pool alone)",
    )
    ab.add_argument(
        "--control",
        action="store_true",
        help="also load an identical copy of this worktree's package (label control): how far "
        "its ratio is from 1 is this run's own error",
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
