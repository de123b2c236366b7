"""The argument parser of every command."""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable
from typing import Literal, TypeVar

from .. import _config
from .._version import __version__
from ..batch import DEFAULT_CONCURRENCY
from . import _help
from ._commands import DEMO_SAMPLE, demo_command, info_command, poll_command
from ._distributed import worker_command
from ._exit import PROG
from ._poll import DEFAULT_MAX_ERRORS
from ._session import DEFAULT_LOG_LEVEL, LOG_LEVELS

NumberT = TypeVar("NumberT", int, float)


def _number(kind: type[NumberT], *, zero_ok: bool) -> Callable[[str], NumberT]:
    """An argparse ``type=``: a finite ``kind`` above zero (or at least zero, if ``zero_ok``)."""
    what = "a whole number" if kind is int else "a number"
    bound = "zero or more" if zero_ok else "more than zero"

    def parse(text: str) -> NumberT:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value

    return parse


_positive_int = _number(int, zero_ok=False)
_non_negative_int = _number(int, zero_ok=True)
_positive_float = _number(float, zero_ok=False)
_non_negative_float = _number(float, zero_ok=True)


def _concurrency(text: str) -> int | Literal["auto"]:
    """``--concurrency``: a positive int, or ``auto`` (the limit follows the server)."""
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def _wrap(text: str) -> str:
    """A paragraph wrapped as argparse would (the commands' formatter keeps texts as written,
    for the examples and tables of their epilogs)."""
    return textwrap.fill(text, 88)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_wrap("Freedom Pay E-Money wallets from the command line."),
        epilog=_help.TOP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--auth-id", help=f"partner id (default: ${_config.ENV_AUTH_ID})")
    group.add_argument(
        "--secret-key",
        help=f"signing key (default: ${_config.ENV_SECRET_KEY}; prefer the variable, "
        "arguments are visible to other users of the machine)",
    )
    group.add_argument(
        "--base-url",
        help=f"API origin (default: ${_config.ENV_BASE_URL}, else the region's host)",
    )
    group.add_argument("--region", choices=sorted(_config.REGIONS), help="instead of --base-url")

    verbosity = argparse.ArgumentParser(add_help=False)
    group = verbosity.add_argument_group("messages")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress line and no summary: only errors on stderr",
    )
    group.add_argument(
        "--log-level",
        default=DEFAULT_LOG_LEVEL,
        choices=LOG_LEVELS,
        help=f"log level on stderr (default: {DEFAULT_LOG_LEVEL})",
    )

    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument(
        "--timeout", type=_positive_float, help="seconds per request (default: 30)"
    )

    batch = argparse.ArgumentParser(add_help=False)
    group = batch.add_argument_group("lookups")
    group.add_argument(
        "-c",
        "--concurrency",
        type=_concurrency,
        help=f"requests in flight at most, or 'auto': a limit that follows the server's pace, "
        f"up to the pool size (default: {DEFAULT_CONCURRENCY})",
    )
    group.add_argument(
        "-r", "--rate", type=_positive_float, help="requests per second at most (default: no cap)"
    )
    output = argparse.ArgumentParser(add_help=False)
    group = output.add_argument_group("output")
    group.add_argument(
        "--ordered", action="store_true", help="write rows in input order (default: as they come)"
    )
    group.add_argument(
        "--format", choices=("jsonl", "csv"), help="output format (default: by --out's extension)"
    )

    info = commands.add_parser(
        "info",
        parents=[connection, timeout, verbosity],
        help="print one wallet as JSON",
        description=_wrap("Look one wallet up and print the reply as JSON."),
        epilog=_help.INFO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("identifier", help="the wallet's identifier in your system")
    info.set_defaults(command_parser=info, handler=info_command)

    poll_parser = commands.add_parser(
        "poll",
        parents=[connection, timeout, batch, output, verbosity],
        help="look up every wallet in a file, one output line each",
        epilog=_help.POLL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_wrap(
            "Read identifiers (one per line) from IDS_FILE or stdin, look them all up "
            "and write one line per wallet as results arrive: balance, currency and status, or the "
            "error. Progress (rate, ETA) is shown on a terminal; a summary is printed at the end."
        ),
    )
    poll_parser.add_argument("ids", metavar="IDS_FILE", help="file of identifiers, or - for stdin")
    poll_parser.add_argument(
        "-o", "--out", default="-", help="results file, .jsonl or .csv (default: stdout, JSONL)"
    )
    existing = poll_parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="--out exists: skip the identifiers it has, append the rest",
    )
    existing.add_argument("--overwrite", action="store_true", help="--out exists: replace it")
    poll_parser.add_argument(
        "--max-errors",
        type=_non_negative_int,
        default=DEFAULT_MAX_ERRORS,
        metavar="N",
        help="stop (exit 3) when N lookups in a row cannot reach the API "
        f"(default: {DEFAULT_MAX_ERRORS}; 0: never)",
    )
    group = poll_parser.add_argument_group(
        "distributed",
        _wrap(
            "Queue the ids in shards on Redis for `freedompay-async worker` processes (on any "
            "number of machines) and write the rows they store; credentials and lookup options "
            "belong to the workers. Needs the redis extra."
        ),
    )
    group.add_argument("--distributed", metavar="URL", help="Redis URL, e.g. redis://host:6379/0")
    group.add_argument(
        "--namespace", help="Redis key prefix, as the workers' (default: freedompay)"
    )
    group.add_argument(
        "--shard-size", type=_positive_int, help="identifiers per shard (default: 1000)"
    )
    group.add_argument(
        "--window", type=_positive_int, help="shards queued or running at once (default: 64)"
    )
    group.add_argument("--run-id", help="name of the run's Redis keys (default: random)")
    group.add_argument(
        "--redis-timeout",
        type=_non_negative_float,
        default=None,
        help="seconds of Redis outage waited out before giving up (default: 60)",
    )
    poll_parser.set_defaults(command_parser=poll_parser, handler=poll_command)

    worker = commands.add_parser(
        "worker",
        parents=[connection, timeout, batch],
        help="poll shards queued by poll --distributed, until stopped",
        description=_wrap(
            "Take shards from the Redis queue, look their wallets up with one client "
            "for the whole process, store the rows and acknowledge the shard. SIGTERM or Ctrl-C "
            "stops taking shards and lets those in flight finish (--grace); a second one stops at "
            "once. Shards not finished go back to the queue; a killed worker's shards are taken "
            "over by another worker after --lease seconds. Needs the redis extra."
        ),
        epilog=_help.WORKER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("url", metavar="URL", help="Redis URL, e.g. redis://host:6379/0")
    group = worker.add_argument_group("queue")
    group.add_argument("--namespace", help="Redis key prefix (default: freedompay)")
    group.add_argument(
        "--lease",
        type=_positive_float,
        help="seconds before a dead worker's shard is taken over (default: 30)",
    )
    group.add_argument(
        "--shards", type=_positive_int, default=2, help="shards polled at once (default: 2)"
    )
    group.add_argument(
        "--grace",
        type=_non_negative_float,
        default=30.0,
        help="seconds in-flight shards get to finish when stopping (default: 30)",
    )
    group.add_argument("--name", help="consumer name in Redis (default: host-pid-random)")
    group.add_argument(
        "--redis-timeout",
        type=_non_negative_float,
        default=60.0,
        help="seconds of Redis outage waited out before giving up (default: 60)",
    )
    group.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (default: info)",
    )
    worker.set_defaults(command_parser=worker, handler=worker_command)

    demo = commands.add_parser(
        "demo",
        parents=[timeout, batch, output, verbosity],
        help="run poll against a built-in fake server",
        epilog=_help.DEMO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_wrap(
            "Start the bundled FakeFreedomPay on 127.0.0.1 with N wallets and run the "
            "same lookups as poll against it: the whole product, no account needed."
        ),
    )
    demo.add_argument(
        "--wallets", type=_positive_int, default=10_000, help="wallets to seed (default: 10000)"
    )
    demo.add_argument(
        "--missing",
        type=_non_negative_int,
        default=0,
        help="also look up this many unknown identifiers, to see errors (default: 0)",
    )
    demo.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        help="seconds the fake server waits before each reply (default: 0)",
    )
    demo.add_argument(
        "-o", "--out", help=f"results file, .jsonl or .csv (default: print {DEMO_SAMPLE} rows)"
    )
    demo.add_argument("--overwrite", action="store_true", help="--out exists: replace it")
    demo.set_defaults(command_parser=demo, handler=demo_command)
    return parser
