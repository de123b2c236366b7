"""Where ``poll`` reads its identifiers: a file or stdin, one per line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import sys
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import IO, Final

from ._exit import InputError, UsageError
from ._progress import Tally

#: Lines longer than this in an ids file are an input error (identifiers are <= 256 chars).
_MAX_LINE: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"


class IdsFile:
    """Identifiers from a file or stdin, one per line, surrounding blanks and empty lines
    skipped. Regular files are read directly (fast); pipes and terminals without blocking the
    event loop. Counts the bytes read, for the ETA of a file of known size."""

    def __init__(self, path: str) -> None:
        self.name = "<stdin>" if path == "-" else path
        if path == "-":
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
        try:
            fd = self._file.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            fd = None  # not a real file (tests): read it directly
        if fd is not None:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                self.size = os.fstat(fd).st_size
            elif stat.S_ISDIR(mode):
                raise UsageError(f"{path} is a directory")
            else:
                self._fd = fd
        self.bytes_read = 0

    def identifiers(self) -> Iterable[str] | AsyncGenerator[str, None]:
        return self._read_pipe(self._fd) if self._fd is not None else self._read_file()

    def fraction(self, stats: Tally) -> float | None:
        if not self.size:
            return None
        return min(1.0, self.bytes_read / self.size)

    def close(self) -> None:
        if self._owned:
            self._file.close()

    @staticmethod
    def _identifier(raw: bytes) -> str | None:
        line = raw.strip()
        return line.decode("utf-8", "replace") if line else None

    def _read_file(self) -> Iterator[str]:
        first = True
        for raw in self._file:
            self.bytes_read += len(raw)
            if first:
                raw, first = raw.removeprefix(_BOM), False
            if len(raw) > _MAX_LINE:
                raise InputError(f"{self.name}: a line is longer than {_MAX_LINE} bytes")
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
        first = True
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:
                    raise InputError(
                        f"{self.name}: a line is longer than {_MAX_LINE} bytes"
                    ) from None
                if not raw:
                    return
                self.bytes_read += len(raw)
                if first:
                    raw, first = raw.removeprefix(_BOM), False
                identifier = self._identifier(raw)
                if identifier is not None:
                    yield identifier
        finally:
            transport.close()
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)  # the pipe transport made it non-blocking
