"""Exit statuses, the two errors the commands report in one line, and the one-line reporter."""

from __future__ import annotations

import sys
from typing import Final

PROG: Final = "freedompay-async"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


class InputError(Exception):
    """The ids file could not be read to the end: exit status 1."""


def say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)
