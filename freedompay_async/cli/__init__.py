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

Exit status: 0 every wallet was read; 1 some wallets failed; 2 usage, input or output error;
3 run aborted (credentials refused, host or Redis unreachable, ``--max-errors`` reached);
130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (see :mod:`._exit`).

The package, by concern: ``_parser`` and ``_help`` (arguments, help texts), ``_commands``
(info, poll, demo), ``_distributed`` (poll --distributed, worker), ``_poll`` (the loop:
signals, aborts, summary), ``_input`` (ids sources), ``_outfile`` (``--out``: refuse, lock,
resume) and ``_output`` (row writers), ``_progress``, ``_session``, ``_connection``, ``_exit``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from .._rows import COLUMNS, Row, to_row
from ._exit import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    InputError,
    OutputError,
    UsageError,
    say,
)
from ._input import IdsFile
from ._outfile import Output, open_output, open_writer
from ._output import CsvWriter, JsonlWriter, SampleWriter, Sink, Writer, csv_cell, csv_uncell
from ._parser import build_parser
from ._poll import DEFAULT_MAX_ERRORS, BatchRows, Report, RowSource, drain, poll
from ._progress import Progress, Tally

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_ERRORS",
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_HANGUP",
    "EXIT_TERMINATED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "BatchRows",
    "CsvWriter",
    "IdsFile",
    "InputError",
    "JsonlWriter",
    "Output",
    "OutputError",
    "Progress",
    "Report",
    "Row",
    "RowSource",
    "SampleWriter",
    "Sink",
    "Tally",
    "UsageError",
    "Writer",
    "build_parser",
    "csv_cell",
    "csv_uncell",
    "drain",
    "main",
    "open_output",
    "open_writer",
    "poll",
    "to_row",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own usage, not the top-level one
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status: int = args.handler(args)
    except (UsageError, InputError, OutputError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the poll loop
        say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`... | head`): stop quietly, like other tools; an
        # output error all the same.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE
    return status
