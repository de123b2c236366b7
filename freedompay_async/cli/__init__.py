"""The ``freedompay-async`` command line: ``info``, ``poll``, ``worker`` and ``demo``.

::

    freedompay-async info user-42                     # one wallet, as JSON
    freedompay-async poll ids.txt --out balances.csv  # many wallets, one line each
    freedompay-async demo                             # the above against a built-in fake server
    freedompay-async worker redis://host/0            # poll shards queued by ... (redis extra)
    freedompay-async poll --distributed redis://host/0 ids.txt --out balances.jsonl

Credentials and host come from ``--auth-id`` / ``--secret-key`` / ``--base-url`` (or
``--region``), else from ``FREEDOMPAY_AUTH_ID`` / ``FREEDOMPAY_SECRET_KEY`` /
``FREEDOMPAY_BASE_URL``.

Exit status: 0 every lookup succeeded; 1 some lookup failed (or the input could not be read);
2 bad usage (missing credential, unknown option, unreadable file); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from .._rows import COLUMNS, Row, to_row
from ._exit import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    InputError,
    UsageError,
    say,
)
from ._input import IdsFile
from ._output import CsvWriter, JsonlWriter, SampleWriter, Writer, open_writer
from ._parser import build_parser
from ._poll import BatchRows, RowSource, drain, poll
from ._progress import Progress, Tally

__all__ = [
    "COLUMNS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "BatchRows",
    "CsvWriter",
    "IdsFile",
    "InputError",
    "JsonlWriter",
    "Progress",
    "Row",
    "RowSource",
    "SampleWriter",
    "Tally",
    "UsageError",
    "Writer",
    "build_parser",
    "drain",
    "main",
    "open_writer",
    "poll",
    "to_row",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except UsageError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the poll loop
        say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`... | head`): stop quietly, like other tools.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return status
