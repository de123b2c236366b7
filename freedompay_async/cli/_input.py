"""Where ``poll`` reads its identifiers: a file or stdin, one per line.

Regular files are read directly (fast). Pipes, sockets and terminals are read through the
event loop, so waiting for input never blocks it. Anything else (``/dev/null``, other devices)
cannot be watched by the event loop: it is read in a worker thread, a batch of lines at a time.

A line that is not valid UTF-8 is not sent: it becomes an error row naming the line number.
With ``--resume``, identifiers already in the output are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import sys
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import IO, Final

import anyio

from .._rows import Row
from ._exit import InputError, UsageError
from ._progress import Tally

#: Lines longer than this in an ids file are an input error (identifiers are <= 256 chars).
_MAX_LINE: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"
#: Lines read per call of the worker thread that reads devices.
_THREAD_BATCH: Final = 4096
#: ``Row.error`` of an input line that could not be sent (as ``info_many`` names identifiers
#: refused before sending).
REFUSED: Final = "InvalidArgumentError"


class IdsFile:
    """Identifiers from a file or stdin, one per line, surrounding blanks and empty lines
    skipped. Counts the bytes read, for the ETA of a file of known size; collects the rows of
    lines that are not UTF-8 (:meth:`take_refused`); skips the identifiers given to
    :meth:`skip`."""

    def __init__(self, path: str) -> None:
        self.name = "<stdin>" if path == "-" else path
        if path == "-":
            if sys.stdin is None:
                raise UsageError("stdin is closed: pass a file of identifiers")
            self._file: IO[bytes] = sys.stdin.buffer
            self._owned = False
        else:
            try:
                self._file = open(path, "rb", buffering=1 << 20)  # noqa: SIM115
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
            self._owned = True
        self.size: int | None = None
        self._fd: int | None = None
        self._threaded = False
        try:
            fd = self._file.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            fd = None  # not a real file (tests): read it directly
        if fd is not None:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                self.size = os.fstat(fd).st_size
            elif stat.S_ISDIR(mode):
                self.close()
                raise UsageError(f"{path} is a directory")
            elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
                self._fd = fd  # the event loop can watch it
            else:
                self._threaded = True  # /dev/null and other devices: epoll refuses them
        self.bytes_read = 0
        self._line = 0
        self._first = True
        self._skip: set[str] = set()
        self.skipped = 0
        """Identifiers not looked up because the output already has their row."""
        self.refused = 0
        """Lines that were not UTF-8 (each has an error row)."""
        self._refused_rows: list[Row] = []

    def skip(self, identifiers: set[str]) -> None:
        """Do not yield these identifiers (their rows are already in the output)."""
        self._skip = identifiers

    def identifiers(self) -> Iterable[str] | AsyncGenerator[str, None]:
        if self._fd is not None:
            return self._read_pipe(self._fd)
        if self._threaded:
            return self._read_in_thread()
        return self._read_file()

    def fraction(self, stats: Tally) -> float | None:
        if not self.size:
            return None
        return min(1.0, self.bytes_read / self.size)

    def take_refused(self) -> list[Row]:
        """The error rows of undecodable lines read since the last call."""
        rows, self._refused_rows = self._refused_rows, []
        return rows

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def _identifier(self, raw: bytes) -> str | None:
        """The identifier of one line as read (with its end of line), or None to skip it."""
        self._line += 1
        self.bytes_read += len(raw)
        if self._first:
            raw, self._first = raw.removeprefix(_BOM), False
        if len(raw) > _MAX_LINE:
            raise InputError(f"{self.name}: line {self._line:,} is longer than {_MAX_LINE} bytes")
        line = raw.strip()
        if not line:
            return None
        try:
            identifier = line.decode("utf-8")
        except UnicodeDecodeError:
            shown = line.decode("utf-8", "backslashreplace")
            if shown in self._skip:
                self.skipped += 1
                return None
            self.refused += 1
            self._refused_rows.append(
                Row(
                    identifier=shown,
                    ok=False,
                    error=REFUSED,
                    message=f"line {self._line:,} of {self.name} is not valid UTF-8; not sent",
                )
            )
            return None
        if identifier in self._skip:
            self.skipped += 1
            return None
        return identifier

    def _read_file(self) -> Iterator[str]:
        for raw in self._file:
            identifier = self._identifier(raw)
            if identifier is not None:
                yield identifier

    def _read_lines(self) -> list[bytes]:
        """Up to :data:`_THREAD_BATCH` lines (an empty list at the end): the thread's part."""
        lines = []
        for _ in range(_THREAD_BATCH):
            raw = self._file.readline(_MAX_LINE + 2)
            if not raw:
                break
            lines.append(raw)
            if len(raw) > _MAX_LINE:
                break  # too long: reported by _identifier
        return lines

    async def _read_in_thread(self) -> AsyncGenerator[str, None]:
        while lines := await anyio.to_thread.run_sync(self._read_lines):
            for raw in lines:
                identifier = self._identifier(raw)
                if identifier is not None:
                    yield identifier

    async def _read_pipe(self, fd: int) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE, loop=loop)
        # A duplicate descriptor: the transport closes it, stdin itself stays open.
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
        )
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:
                    raise InputError(
                        f"{self.name}: line {self._line + 1:,} is longer than {_MAX_LINE} bytes"
                    ) from None
                if not raw:
                    return
                identifier = self._identifier(raw)
                if identifier is not None:
                    yield identifier
        finally:
            transport.close()
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)  # the pipe transport made it non-blocking
