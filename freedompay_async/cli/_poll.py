"""The poll loop: rows from a local batch or a distributed run, written as they come."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Final, Literal, Protocol

import anyio

from .._client import FreedomPayClient
from .._rows import Row, to_row
from ..batch import PROGRESS_INTERVAL, Batch, BatchStats
from ..errors import AuthenticationError, FreedomPayError, RequestTimeoutError, TransportError
from ..models import WalletInfo
from ._exit import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    InputError,
    OutputError,
    say,
)
from ._input import IdsFile
from ._output import Writer
from ._progress import Fraction, Progress, Tally

#: A row's ``error`` when the API refused the credentials: the run stops.
AUTHENTICATION_ERROR: Final = AuthenticationError.__name__
#: A row's ``error`` when the lookup could not reach the API (``--max-errors`` counts them).
UNREACHABLE: Final = frozenset({TransportError.__name__, RequestTimeoutError.__name__})
#: ``--max-errors`` by default: enough that a burst of failed connections in a healthy run
#: (one pool of 64 in flight) does not stop it; few enough that a dead host costs seconds.
DEFAULT_MAX_ERRORS: Final = 200


class _Interrupt:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP cancel the poll once, cleanly; a second signal
    has its default effect (a second Ctrl-C: KeyboardInterrupt; SIGTERM: the process ends)."""

    SIGNALS: Final = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
    )

    def __init__(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        self.signal = 0
        """The number of the signal that stopped the poll (0: none)."""
        self._loop = asyncio.get_running_loop()
        self._installed: list[int] = []
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only
        for number in self.SIGNALS:
            try:
                self._loop.add_signal_handler(number, self._fire, number)
            except NotImplementedError:  # Windows event loops
                if number != signal.SIGINT:
                    continue
                self._previous[number] = signal.signal(
                    number, lambda *_: self._loop.call_soon_threadsafe(self._fire, signal.SIGINT)
                )
            self._installed.append(number)

    def _fire(self, number: int) -> None:
        self.signal = number
        self._scope.cancel()
        self.remove()

    def remove(self) -> None:
        installed, self._installed = self._installed, []
        for number in installed:
            if number in self._previous:
                signal.signal(number, self._previous.pop(number))
            else:
                self._loop.remove_signal_handler(number)


class RowSource(Protocol):
    """What :func:`drain` reads: entered, it iterates rows; ``stats`` is live throughout."""

    @property
    def stats(self) -> Tally: ...

    async def __aenter__(self) -> AsyncIterator[Row]: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class BatchRows:
    """``info_many``'s batch as a :class:`RowSource`."""

    def __init__(self, batch: Batch[str, WalletInfo, FreedomPayError]) -> None:
        self._batch = batch

    @property
    def stats(self) -> BatchStats:
        return self._batch.stats

    async def __aenter__(self) -> BatchRows:
        await self._batch.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._batch.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> BatchRows:
        return self

    async def __anext__(self) -> Row:
        return to_row(await self._batch.__anext__())


class _Flusher:
    """Hands the buffered rows to the output every :data:`PROGRESS_INTERVAL` seconds, also
    while no result comes (ids trickling through a pipe, a stalled run): the batch's progress
    calls, which flush too, come only with results. A timer callback, not a task."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(PROGRESS_INTERVAL, self._tick)

    def _tick(self) -> None:
        # A failure is raised again, the same, by the next write or the final flush.
        with contextlib.suppress(OutputError, OSError):
            self._writer.flush()
        self._handle = self._loop.call_later(PROGRESS_INTERVAL, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


@dataclass
class Report:
    """Where and how a poll reports: the rows' writer, the progress line, the input (for the
    rows of undecodable lines and the count of resumed ids), and when to give up."""

    writer: Writer
    fraction: Fraction
    progress_stream: IO[str] | None
    ids: IdsFile | None = None
    out: str = "<stdout>"
    quiet: bool = False
    max_errors: int = DEFAULT_MAX_ERRORS
    """Stop (exit 3) after this many lookups in a row could not reach the API (0: never)."""


async def poll(
    client: FreedomPayClient,
    identifiers: Iterable[str] | AsyncGenerator[str, None],
    report: Report,
    *,
    concurrency: int | Literal["auto"],
    rate_limit: float | None,
    ordered: bool,
) -> int:
    """Look every identifier up, write one row per wallet as results arrive; the exit status."""

    def rows(progress: Progress) -> BatchRows:
        return BatchRows(
            client.wallets.info_many(
                identifiers,
                concurrency=concurrency,
                rate_limit=rate_limit,
                ordered=ordered,
                on_progress=progress,
            )
        )

    return await drain(client, rows, identifiers, report)


async def drain(
    owner: contextlib.AbstractAsyncContextManager[object],
    open_rows: Callable[[Progress], RowSource],
    identifiers: Iterable[str] | AsyncGenerator[str, None],
    report: Report,
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """Write every row of ``open_rows(progress)`` (entered inside ``owner``, the client or
    the producer); the exit status (see :mod:`._exit`). Summary and errors go to stderr.

    * SIGINT, SIGTERM and SIGHUP cancel the rows only, never ``owner``'s closing: every
      complete row is written, the summary printed, the status is 128 + the signal.
    * The run is aborted (exit 3) when the API refuses the credentials, when ``max_errors``
      lookups in a row could not reach it, or when every lookup of a finished run could not;
      those rows are not written, so ``--resume`` looks them up again. ``errors`` (beyond
      ``OSError``) abort it too (Redis unreachable), with a message instead of a traceback.
    * An input or output failure ends it with exit 2; the summary counts the rows written.
    """
    writer, ids = report.writer, report.ids
    progress = Progress(writer, report.fraction, None if report.quiet else report.progress_stream)
    source: RowSource | None = None
    failure: tuple[int, str] | None = None
    signum = 0
    held: list[Row] = []  # lookups in a row that could not reach the API: not written yet
    wrote_lookup = False

    def write_refused() -> None:
        if ids is not None:
            for row in ids.take_refused():
                writer.write(row)

    try:
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(identifiers, AsyncGenerator):
                await stack.enter_async_context(contextlib.aclosing(identifiers))
            await stack.enter_async_context(owner)
            source = open_rows(progress)
            finished = False
            with anyio.CancelScope() as scope:
                interrupt = _Interrupt(scope)
                flusher = _Flusher(writer)
                try:
                    async with source as rows:
                        async for row in rows:
                            if writer.interactive:
                                progress.clear()  # rows and the status line share the screen
                            if row.error == AUTHENTICATION_ERROR:
                                failure = (EXIT_ABORTED, _refused(row))
                                break
                            if report.max_errors and row.error in UNREACHABLE:
                                held.append(row)
                                if len(held) >= report.max_errors:
                                    failure = (EXIT_ABORTED, _unreachable(held, max_errors=True))
                                    break
                                continue
                            for earlier in held:
                                writer.write(earlier)
                            held.clear()
                            writer.write(row)
                            wrote_lookup = True
                            write_refused()
                        else:
                            finished = True
                finally:
                    flusher.stop()
                    interrupt.remove()
                    signum = interrupt.signal
            if failure is None:
                if finished and held and not wrote_lookup:
                    failure = (EXIT_ABORTED, _unreachable(held, max_errors=False))
                else:  # the streak was broken by the end, or a signal: complete rows, kept
                    for row in held:
                        writer.write(row)
                write_refused()
    except (InputError, OutputError) as exc:
        failure = (EXIT_USAGE, str(exc))
    except BrokenPipeError:
        raise
    except Exception as exc:
        if isinstance(exc, errors):
            failure = (EXIT_ABORTED, f"{type(exc).__name__}: {exc}")
        elif isinstance(exc, OSError):
            failure = (EXIT_USAGE, f"{type(exc).__name__}: {exc}")
        else:
            raise
    finally:
        progress.clear()
        try:
            writer.flush()
        except OutputError as exc:
            if failure is None:
                failure = (EXIT_USAGE, str(exc))
    if source is None:  # owner could not be entered: the error says why
        assert failure is not None
        say(f"error: {failure[1]}")
        return failure[0]
    summary = _summary(source.stats, report)
    if signum:
        say(f"interrupted: {summary}")
        return 128 + signum
    if failure is not None:
        say(summary)
        say(f"error: {failure[1]}")
        return failure[0]
    if not report.quiet:
        say(summary)
    refused = ids.refused if ids is not None else 0
    return EXIT_FAILED if source.stats.failed or refused else EXIT_OK


def _summary(stats: Tally, report: Report) -> str:
    """The last line: the lookups' figures, then what reached the output."""
    notes = [f"{_count(report.writer.written, 'row')} written to {report.out}"]
    ids = report.ids
    if ids is not None and ids.refused:
        notes.append(f"{_count(ids.refused, 'input line')} not UTF-8 (not sent)")
    if ids is not None and ids.skipped:
        notes.append(f"{_count(ids.skipped, 'identifier')} skipped (already in {report.out})")
    return f"{stats}; {', '.join(notes)}"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _refused(row: Row) -> str:
    return (
        f"the API refused the credentials (HTTP {row.http_status}); stopped. "
        "Check the auth id and secret key."
    )


def _unreachable(held: list[Row], *, max_errors: bool) -> str:
    last = held[-1]
    what = f"{len(held):,} lookups in a row" if max_errors else f"all {len(held):,} lookups"
    return (
        f"{what} could not reach the API (last: {last.error}: {last.message}); stopped, "
        "their rows are not written. Check the host (--base-url) and the network"
        + (" (--max-errors)." if max_errors else ".")
    )
