"""The poll loop: rows from a local batch or a distributed run, written as they come."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import IO, Any, Final, Protocol

import anyio

from .._client import FreedomPayClient
from .._rows import Row, to_row
from ..batch import Batch, BatchStats
from ..errors import AuthenticationError, FreedomPayError
from ..models import WalletInfo
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, InputError, say
from ._output import Writer
from ._progress import Fraction, Progress, Tally

#: A row's ``error`` when the API refused the credentials: the run stops.
AUTHENTICATION_ERROR: Final = AuthenticationError.__name__


class _Interrupt:
    """Ctrl-C (SIGINT) cancels the poll once, cleanly; a second Ctrl-C is the default one."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        self.fired = False
        self._loop = asyncio.get_running_loop()
        self._installed = False
        self._previous: Any = None
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only
        try:
            self._loop.add_signal_handler(signal.SIGINT, self._fire)
        except NotImplementedError:  # Windows event loops
            self._previous = signal.signal(
                signal.SIGINT, lambda *_: self._loop.call_soon_threadsafe(self._fire)
            )
        self._installed = True

    def _fire(self) -> None:
        self.fired = True
        self._scope.cancel()
        self.remove()

    def remove(self) -> None:
        if not self._installed:
            return
        self._installed = False
        if self._previous is None:
            self._loop.remove_signal_handler(signal.SIGINT)
        else:
            signal.signal(signal.SIGINT, self._previous)


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


async def poll(
    client: FreedomPayClient,
    identifiers: Iterable[str] | AsyncGenerator[str, None],
    writer: Writer,
    *,
    concurrency: int,
    rate_limit: float | None,
    ordered: bool,
    fraction: Fraction,
    progress_stream: IO[str] | None,
) -> int:
    """Look every identifier up, write one row per wallet as results arrive; the exit status.

    The summary goes to stderr. An :class:`AuthenticationError` stops the run (every other
    lookup would fail the same way).
    """

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

    return await drain(client, rows, identifiers, writer, fraction, progress_stream)


async def drain(
    owner: contextlib.AbstractAsyncContextManager[object],
    open_rows: Callable[[Progress], RowSource],
    identifiers: Iterable[str] | AsyncGenerator[str, None],
    writer: Writer,
    fraction: Fraction,
    progress_stream: IO[str] | None,
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """Write every row of ``open_rows(progress)`` (entered inside ``owner``, the client or
    the producer); the exit status. Ctrl-C cancels the rows only, never ``owner``'s closing;
    the summary goes to stderr; an :class:`AuthenticationError` row stops the run (every other
    lookup would fail the same way). ``errors`` (beyond ``OSError``) end the run with a message
    and exit status 1 instead of a traceback."""
    progress = Progress(writer, fraction, progress_stream)
    source: RowSource | None = None
    problem: str | None = None
    interrupted = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(identifiers, AsyncGenerator):
                await stack.enter_async_context(contextlib.aclosing(identifiers))
            await stack.enter_async_context(owner)
            source = open_rows(progress)
            with anyio.CancelScope() as scope:
                interrupt = _Interrupt(scope)
                try:
                    async with source as rows:
                        async for row in rows:
                            if writer.interactive:
                                progress.clear()  # rows and the status line share the screen
                            writer.write(row)
                            if row.error == AUTHENTICATION_ERROR:
                                problem = (
                                    f"the API refused the credentials (HTTP {row.http_status}); "
                                    "stopped. Check the auth id and secret key."
                                )
                                break
                finally:
                    interrupt.remove()
                    interrupted = interrupt.fired
    except InputError as exc:
        problem = str(exc)
    except BrokenPipeError:
        raise
    except Exception as exc:
        if not isinstance(exc, (OSError, *errors)):
            raise
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        progress.clear()
        with contextlib.suppress(OSError):
            writer.flush()
    if source is None:  # owner could not be entered: the OSError above says why
        say(f"error: {problem}")
        return EXIT_FAILED
    stats = source.stats
    if interrupted:
        say(f"interrupted: {stats}")
        return EXIT_INTERRUPTED
    say(str(stats))
    if problem is not None:
        say(f"error: {problem}")
        return EXIT_FAILED
    return EXIT_FAILED if stats.failed else EXIT_OK
