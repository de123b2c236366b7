"""The live status line on a terminal (rate, progress, ETA) and the output's periodic flush."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import IO, Protocol

from ._output import Writer


class Tally(Protocol):
    """What the progress line reads: a local batch's or a distributed run's live stats."""

    @property
    def done(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def rate(self) -> float: ...
    @property
    def elapsed(self) -> float: ...


Fraction = Callable[[Tally], "float | None"]


class Progress:
    """Called by the batch every few tenths of a second: flushes the output (so ``tail -f``
    sees it) and, on a terminal, redraws one status line on stderr with rate and ETA."""

    def __init__(self, writer: Writer, fraction: Fraction, stream: IO[str] | None = None) -> None:
        self._writer = writer
        self._fraction = fraction
        self._stream = stream
        self._drawn = False

    def __call__(self, stats: Tally) -> None:
        self._writer.flush()
        if self._stream is not None:
            self._stream.write("\r\x1b[K" + self.line(stats))
            self._stream.flush()
            self._drawn = True

    def line(self, stats: Tally) -> str:
        rate = stats.rate
        parts = [f"{stats.done:,} done"]
        if stats.failed:
            parts.append(f"{stats.failed:,} failed")
        parts.append(f"{rate:,.0f}/s")
        limit = getattr(stats, "concurrency_limit", None)  # --concurrency auto
        if limit is not None:
            parts.append(f"limit {limit}")
        fraction = self._fraction(stats)
        if fraction is not None:
            bar_width = 20
            filled = int(fraction * bar_width)
            parts.insert(0, f"[{'#' * filled}{'.' * (bar_width - filled)}] {fraction:6.1%}")
            if 0 < fraction < 1:
                parts.append(f"ETA {_clock(stats.elapsed * (1 - fraction) / fraction)}")
        return "  ".join(parts)

    def clear(self) -> None:
        if self._stream is not None and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_stream() -> IO[str] | None:
    return sys.stderr if sys.stderr is not None and sys.stderr.isatty() else None
