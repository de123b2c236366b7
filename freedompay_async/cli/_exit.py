"""Exit statuses, the errors the commands report in one line, and the one-line reporter.

=====  ======================================================================================
code   meaning
=====  ======================================================================================
0      every wallet was read
1      the run went to the end, some wallets failed (their rows carry the error)
2      usage, input or output error (bad option, unreadable ids file, output refused or full)
3      run aborted: credentials refused, host (or Redis) unreachable, ``--max-errors`` reached
130    interrupted by SIGINT (Ctrl-C); 143 by SIGTERM; 129 by SIGHUP (128 + the signal number)
=====  ======================================================================================
"""

from __future__ import annotations

import sys
from typing import Final

PROG: Final = "freedompay-async"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_ABORTED: Final = 3
#: 128 + the signal's number, as shells report a process ended by it.
EXIT_INTERRUPTED: Final = 130  # SIGINT (2)
EXIT_TERMINATED: Final = 143  # SIGTERM (15)
EXIT_HANGUP: Final = 129  # SIGHUP (1; no such signal on Windows)

#: The exit-status table of every command's help.
EXIT_HELP: Final = """\
exit status:
  0    every wallet was read
  1    some wallets failed (their rows say why); the run went to the end
  2    usage, input or output error (nothing, or only complete rows, written)
  3    run aborted: credentials refused, host unreachable, --max-errors reached
  130  interrupted (Ctrl-C); 143 SIGTERM; 129 SIGHUP: complete rows kept, summary printed"""


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


class InputError(Exception):
    """The ids file could not be read to the end: exit status 2."""


class OutputError(Exception):
    """The output could not be written (disk full, closed pipe, ...): exit status 2."""


class AbortError(Exception):
    """The run cannot succeed (credentials refused, host or Redis unreachable): exit status 3."""


def say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)
