"""What ``poll`` (local or ``--distributed``) sets up around the loop: the input, the output
(refused, overwritten or resumed), and logging on stderr."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import Final

from ._exit import say
from ._input import IdsFile
from ._outfile import Output, open_output

#: ``--log-level`` choices, and the level of ``info`` and ``poll`` by default: errors only
#: (``warning`` shows every retry, one line each: noise in a long run).
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL: Final = "error"


@contextlib.contextmanager
def poll_files(args: argparse.Namespace) -> Iterator[tuple[IdsFile, Output]]:
    """The ids file and ``--out`` of a poll, closed at the end. The input is opened first: a
    missing ids file leaves no new output file behind."""
    ids = IdsFile(args.ids)
    try:
        output = open_output(args.out, args.format, resume=args.resume, overwrite=args.overwrite)
        try:
            ids.skip(output.done)
            if output.done and not args.quiet:
                say(
                    f"resuming {output.name}: {len(output.done):,} identifiers already there "
                    "are skipped"
                    + (
                        f"; a partial last row ({output.dropped:,} bytes) was cut off"
                        if output.dropped
                        else ""
                    )
                )
            yield ids, output
        finally:
            output.writer.close()
    finally:
        ids.close()


def configure_logging(level: str, *, quiet: bool = False) -> None:
    """Log records of this package (and its dependencies) at ``level`` or above on stderr."""
    if quiet:
        level = "error"
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
