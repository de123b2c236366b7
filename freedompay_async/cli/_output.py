"""Where ``poll`` writes its rows: JSON Lines, CSV, or a sample for ``demo``."""

from __future__ import annotations

import csv
import io
import os
import sys
from typing import IO, Any, Protocol

import msgspec

from .._rows import COLUMNS, Row
from ._exit import UsageError


class Writer(Protocol):
    @property
    def interactive(self) -> bool:
        """True when rows go to a terminal (the progress line is cleared before each one)."""
        ...

    def write(self, row: Row) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """One JSON object per line; balances as decimal strings."""

    def __init__(self, stream: IO[bytes], *, owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        self.interactive = _isatty(stream)
        self._encoder = msgspec.json.Encoder(decimal_format="string")
        self._buffer = bytearray()

    def write(self, row: Row) -> None:
        buffer = self._buffer
        self._encoder.encode_into(row, buffer)
        buffer.extend(b"\n")
        self._stream.write(buffer)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()


class CsvWriter:
    """A header line, then one row per wallet; empty cells for what does not apply."""

    def __init__(self, stream: IO[bytes], *, owned: bool) -> None:
        self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        self._owned = owned
        self.interactive = _isatty(stream)
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._csv.writerow(COLUMNS)

    def write(self, row: Row) -> None:
        self._csv.writerow(
            [
                row.identifier,
                "true" if row.ok else "false",
                "" if row.balance is None else str(row.balance),
                row.currency or "",
                row.status or "",
                "" if row.wallet_id is None else str(row.wallet_id),
                row.error or "",
                row.error_code or "",
                "" if row.http_status is None else str(row.http_status),
                row.message or "",
            ]
        )

    def flush(self) -> None:
        self._text.flush()

    def close(self) -> None:
        if self._owned:
            self._text.close()
        else:
            self._text.flush()
            self._text.detach()  # leave stdout open


class SampleWriter:
    """``demo`` without ``--out``: print the first few rows as JSON, drop the rest."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._inner = JsonlWriter(stream, owned=False)
        self._left = limit
        self.written = 0

    @property
    def interactive(self) -> bool:
        return self._left > 0 and self._inner.interactive

    def write(self, row: Row) -> None:
        self.written += 1
        if self._left > 0:
            self._left -= 1
            self._inner.write(row)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def open_writer(path: str, fmt: str | None) -> Writer:
    """The writer for ``--out`` (``-`` is stdout) in ``--format``, else by file extension."""
    if fmt is None:
        suffix = os.path.splitext(path)[1].lower()
        if path == "-" or suffix in (".jsonl", ".ndjson", ".json"):
            fmt = "jsonl"
        elif suffix == ".csv":
            fmt = "csv"
        else:
            raise UsageError(
                f"cannot tell the output format of {path!r}: name it .jsonl or .csv, "
                "or pass --format"
            )
    if path == "-":
        stream: IO[bytes] = sys.stdout.buffer
        owned = False
    else:
        try:
            stream = open(path, "wb")  # noqa: SIM115 (closed by the writer)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        owned = True
    return CsvWriter(stream, owned=owned) if fmt == "csv" else JsonlWriter(stream, owned=owned)
