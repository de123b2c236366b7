"""Where ``poll`` writes its rows: JSON Lines, CSV, or a sample for ``demo``.

Rows are encoded into a buffer and written out in whole lines (at least every progress tick, a
few times a second), so the file only ever grows by complete rows; ``written`` counts the rows
that really reached it. A failed write (disk full, closed pipe) is an :class:`OutputError`; on a
regular file, a partly written tail is cut off again, so the file still ends in a whole row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import stat
from typing import IO, Any, Final, Protocol

import msgspec

from .._rows import COLUMNS, Row
from ._exit import OutputError

#: Rows are handed to the file when this many bytes are waiting (and on every progress tick).
_FLUSH_AT: Final = 64 * 1024
#: A CSV cell starting with one of these is written with a leading ``'`` (OWASP CSV injection:
#: a spreadsheet would run it as a formula); ``'`` itself too, so that the escape is reversible.
_FORMULA_START: Final = frozenset("=+-@\t\r'")
#: ...unless the cell is a plain number (a negative balance stays a number).
_NUMBER: Final = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


class Writer(Protocol):
    @property
    def interactive(self) -> bool:
        """True when rows go to a terminal (the progress line is cleared before each one)."""
        ...

    @property
    def written(self) -> int:
        """Rows that reached the output (not those still buffered, nor those lost)."""
        ...

    def write(self, row: Row) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Sink:
    """The bytes end of a writer: a file descriptor this run opened (written with ``os.write``)
    or a stream it borrows (stdout)."""

    def __init__(self, name: str, *, fd: int | None = None, stream: IO[bytes] | None = None):
        self.name = name
        self._fd = fd
        self._stream = stream
        self.interactive = _isatty(stream) if stream is not None else False
        self._regular = fd is not None and _is_regular(fd)
        self._failed: str | type[BrokenPipeError] | None = None
        """Why an earlier write failed: every later one fails the same way."""

    def put(self, data: bytes | bytearray) -> None:
        """Write all of ``data``, or raise :class:`OutputError` (and, on a regular file, cut
        off whatever part of ``data`` did reach it)."""
        if self._failed is not None:
            raise (
                BrokenPipeError() if self._failed is BrokenPipeError else OutputError(self._failed)
            )
        start = (
            os.lseek(self._fd, 0, os.SEEK_CUR) if self._regular and self._fd is not None else None
        )
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            else:
                assert self._stream is not None
                self._stream.write(data)
                self._stream.flush()
        except BrokenPipeError:
            self._failed = BrokenPipeError
            raise
        except (OSError, ValueError) as exc:
            if start is not None and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._failed = f"cannot write {self.name}: {reason}"
            raise OutputError(self._failed) from None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _BufferedWriter:
    """What both formats share: a byte buffer of whole rows and the count of rows written."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self._pending = 0
        self.written = 0

    @property
    def interactive(self) -> bool:
        return self._sink.interactive

    def _wrote_row(self) -> None:
        self._pending += 1
        if len(self._buffer) >= _FLUSH_AT or self._sink.interactive:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        data, pending = self._buffer, self._pending
        self._buffer, self._pending = bytearray(), 0
        self._sink.put(data)
        self.written += pending

    def close(self) -> None:
        """Write what is left and close the output. A failure here was already reported by
        the flush at the end of the run (which leaves rows buffered only when it failed)."""
        try:
            with contextlib.suppress(OutputError):
                self.flush()
        finally:
            self._sink.close()


class JsonlWriter(_BufferedWriter):
    """One JSON object per line; balances as decimal strings."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self._encoder = msgspec.json.Encoder(decimal_format="string")

    def write(self, row: Row) -> None:
        self._encoder.encode_into(row, self._buffer, -1)
        self._buffer.extend(b"\n")
        self._wrote_row()


class CsvWriter(_BufferedWriter):
    """A header line (unless appending to a file that has one), then one row per wallet; empty
    cells for what does not apply; cells a spreadsheet would run as formulas get a ``'``."""

    def __init__(self, sink: Sink, *, header: bool = True) -> None:
        super().__init__(sink)
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        if header:
            self._csv.writerow(COLUMNS)
            self._take()
            self.flush()

    def _take(self) -> None:
        self._buffer.extend(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()

    def write(self, row: Row) -> None:
        self._csv.writerow(
            [
                csv_cell(row.identifier),
                "true" if row.ok else "false",
                "" if row.balance is None else csv_cell(str(row.balance)),
                csv_cell(row.currency or ""),
                csv_cell(row.status or ""),
                "" if row.wallet_id is None else str(row.wallet_id),
                csv_cell(row.error or ""),
                "" if row.error_code is None else csv_cell(str(row.error_code)),
                "" if row.http_status is None else str(row.http_status),
                csv_cell(row.message or ""),
            ]
        )
        self._take()
        self._wrote_row()


def csv_cell(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet runs as a formula (see :data:`_FORMULA_START`)."""
    if text and text[0] in _FORMULA_START and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_uncell(cell: str) -> str:
    """The text of a cell written by :func:`csv_cell` (for ``--resume``)."""
    if len(cell) > 1 and cell[0] == "'" and cell[1] in _FORMULA_START:
        return cell[1:]
    return cell


class SampleWriter:
    """``demo`` without ``--out``: print the first few rows as JSON, drop the rest."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._inner = JsonlWriter(Sink("<stdout>", stream=stream))
        self._left = limit
        self.seen = 0
        """Rows given to the writer (shown or not)."""

    @property
    def interactive(self) -> bool:
        return self._left > 0 and self._inner.interactive

    @property
    def written(self) -> int:
        return self._inner.written

    def write(self, row: Row) -> None:
        self.seen += 1
        if self._left > 0:
            self._left -= 1
            self._inner.write(row)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.flush()


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)
