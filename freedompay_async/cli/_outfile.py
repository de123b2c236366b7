"""``--out``: choose the format, never destroy an existing file, lock it, and resume it.

* An existing non-empty file is refused unless ``--overwrite`` (replace it) or ``--resume``
  (read the identifiers it has, cut off a partial last row, append the rest).
* A regular output file is locked (``flock``) for the whole run: a second run on the same file
  is refused while the first is alive. The kernel drops the lock when the process dies, even by
  SIGKILL, so ``--resume`` after a crash is never refused.
* Devices (``/dev/null``, ``/dev/full``) and FIFOs are written as they are: no check, no lock.
"""

from __future__ import annotations

import csv
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .._rows import COLUMNS
from ._exit import UsageError
from ._output import CsvWriter, JsonlWriter, Sink, Writer, csv_uncell

if sys.platform != "win32":
    import fcntl

#: Extensions that name a format when ``--format`` is not given.
_JSONL: Final = (".jsonl", ".ndjson", ".json")
_CSV: Final = (".csv",)
_READ_CHUNK: Final = 1 << 20


class _Identifier(msgspec.Struct):
    identifier: str


@dataclass
class Output:
    """An opened ``--out``: its writer, and with ``--resume`` what the file already holds."""

    writer: Writer
    name: str
    done: set[str] = field(default_factory=set)
    """Identifiers already in the file (``--resume``): not looked up again."""
    dropped: int = 0
    """Bytes of a partial last row cut off (``--resume``)."""


def output_format(path: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffix = os.path.splitext(path)[1].lower()
    if path == "-" or suffix in _JSONL:
        return "jsonl"
    if suffix in _CSV:
        return "csv"
    raise UsageError(
        f"cannot tell the output format of {path!r}: name it .jsonl or .csv, or pass --format"
    )


def open_writer(path: str, fmt: str | None) -> Writer:
    """The writer of a new ``--out`` (``-`` is stdout): what ``demo`` uses."""
    return open_output(path, fmt).writer


def open_output(
    path: str, fmt: str | None, *, resume: bool = False, overwrite: bool = False
) -> Output:
    """Open ``--out`` for a run (see the module's docstring); :class:`UsageError` if refused."""
    fmt = output_format(path, fmt)
    if path == "-":
        if resume or overwrite:
            raise UsageError("--resume and --overwrite need --out FILE")
        if sys.stdout is None:
            raise UsageError("stdout is closed: pass --out FILE")
        sink = Sink("<stdout>", stream=sys.stdout.buffer)
        writer: Writer = CsvWriter(sink) if fmt == "csv" else JsonlWriter(sink)
        return Output(writer, "<stdout>")
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        if stat.S_ISDIR(existing.st_mode):
            raise UsageError(f"cannot write {path}: it is a directory")
        if resume:
            raise UsageError(f"--resume needs a regular file; {path} is not one")
        fd = _open(path, os.O_WRONLY)
        sink = Sink(path, fd=fd)
        return Output(CsvWriter(sink) if fmt == "csv" else JsonlWriter(sink), path)
    fd = _open_regular(path)
    try:
        _lock(fd, path)
        size = os.fstat(fd).st_size
        if size and not (resume or overwrite):
            raise UsageError(
                f"{path} exists ({size:,} bytes) and is left as it is: pass --resume to "
                "complete it, or --overwrite to replace it"
            )
        done: set[str] = set()
        keep = 0
        if overwrite:
            os.ftruncate(fd, 0)
        elif size:
            keep = (_read_csv if fmt == "csv" else _read_jsonl)(fd, path, done)
            if keep < size:
                os.ftruncate(fd, keep)  # a partial last row: its identifier is polled again
        os.lseek(fd, 0, os.SEEK_END)
        sink = Sink(path, fd=fd)
        writer = CsvWriter(sink, header=keep == 0) if fmt == "csv" else JsonlWriter(sink)
        return Output(writer, path, done, size - keep if size and not overwrite else 0)
    except BaseException:
        os.close(fd)
        raise


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _open_regular(path: str) -> int:
    """``path`` opened for reading and writing, created if needed, never truncated."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return os.open(path, flags)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _lock(fd: int, path: str) -> None:
    if sys.platform == "win32":
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            f"{path} is being written by another run (it is locked); wait for that run to "
            "end, or choose another --out"
        ) from None
    except OSError:
        pass  # a file system without locks: go on unlocked


class _Records:
    """The complete records of an output file, streamed: iterate for (line number, bytes);
    then ``end`` is the offset just after the last complete one.

    A record ends at a newline; in CSV only at one outside quotes (an even count of ``"`` so
    far in the record: the csv module doubles quotes inside a quoted cell)."""

    def __init__(self, fd: int, *, csv_quotes: bool) -> None:
        self._fd = fd
        self._csv = csv_quotes
        self.end = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        os.lseek(self._fd, 0, os.SEEK_SET)
        pending = bytearray()
        quotes = offset = line = 0
        start_line = 1
        while chunk := os.read(self._fd, _READ_CHUNK):
            for piece in chunk.splitlines(keepends=True):
                pending += piece
                offset += len(piece)
                if not piece.endswith(b"\n"):
                    continue
                line += 1
                if self._csv:
                    quotes += piece.count(b'"')
                    if quotes % 2:
                        continue
                    quotes = 0
                yield start_line, bytes(pending)
                pending.clear()
                self.end = offset
                start_line = line + 1


def _read_jsonl(fd: int, path: str, done: set[str]) -> int:
    records = _Records(fd, csv_quotes=False)
    decode = msgspec.json.Decoder(_Identifier).decode
    for line, record in records:
        if not record.strip():
            continue
        try:
            done.add(decode(record).identifier)
        except msgspec.DecodeError:
            raise UsageError(
                f"cannot resume {path}: line {line:,} is not a row of this program "
                "(is it the right file, and JSON Lines?)"
            ) from None
    return records.end


def _read_csv(fd: int, path: str, done: set[str]) -> int:
    records = _Records(fd, csv_quotes=True)
    for line, record in records:
        try:
            cells = next(csv.reader([record.decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error):
            cells = []
        if line == 1 and cells[:1] != [COLUMNS[0]]:
            raise UsageError(
                f"cannot resume {path}: its first line is not this program's CSV header"
            )
        if line == 1:
            continue
        if len(cells) != len(COLUMNS):
            raise UsageError(f"cannot resume {path}: line {line:,} is not a row of this program")
        done.add(csv_uncell(cells[0]))
    return records.end  # 0 without even a whole header line: it is written again
