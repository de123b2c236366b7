"""The ``freedompay-async`` command line: ``info``, ``poll``, ``worker`` and ``demo``.

::

    freedompay-async info user-42                     # one wallet, as JSON
    freedompay-async poll ids.txt --out balances.csv  # many wallets, one line each
    freedompay-async demo                             # the above against a built-in fake server
    freedompay-async worker redis://host/0            # poll shards queued by ... (redis extra)
    freedompay-async poll --distributed redis://host/0 ids.txt --out balances.jsonl

Credentials and host come from ``--auth-id`` / ``--secret-key`` / ``--base-url`` (or
``--region``), else from ``FREEDOMPAY_AUTH_ID`` / ``FREEDOMPAY_SECRET_KEY`` /
``FREEDOMPAY_BASE_URL``.

Exit status: 0 every lookup succeeded; 1 some lookup failed (or the input could not be read);
2 bad usage (missing credential, unknown option, unreadable file); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import logging
import math
import os
import signal
import stat
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from types import ModuleType, TracebackType
from typing import IO, Any, Final, Literal, Protocol, TypeVar

import anyio
import msgspec

from . import _config
from ._client import FreedomPayClient
from ._rows import COLUMNS, Row, to_row
from ._version import __version__
from .batch import DEFAULT_CONCURRENCY, Batch, BatchStats
from .errors import AuthenticationError, FreedomPayError
from .models import WalletInfo

__all__ = ["main"]

PROG: Final = "freedompay-async"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: Lines longer than this in an ids file are an input error (identifiers are <= 256 chars).
_MAX_LINE: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"
#: ``demo`` without ``--out`` prints this many rows as a sample.
_DEMO_SAMPLE: Final = 3


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
#: A row's ``error`` when the API refused the credentials: the run stops.
AUTHENTICATION_ERROR: Final = AuthenticationError.__name__


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


class InputError(Exception):
    """The ids file could not be read to the end: exit status 1."""


# -- output ------------------------------------------------------------------------------------


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


# -- input -----------------------------------------------------------------------------------


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


# -- progress --------------------------------------------------------------------------------


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


# -- the poll loop ---------------------------------------------------------------------------


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
    concurrency: int | Literal["auto"],
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
        _say(f"error: {problem}")
        return EXIT_FAILED
    stats = source.stats
    if interrupted:
        _say(f"interrupted: {stats}")
        return EXIT_INTERRUPTED
    _say(str(stats))
    if problem is not None:
        _say(f"error: {problem}")
        return EXIT_FAILED
    return EXIT_FAILED if stats.failed else EXIT_OK


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _progress_stream() -> IO[str] | None:
    return sys.stderr if sys.stderr is not None and sys.stderr.isatty() else None


# -- commands --------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> FreedomPayClient:
    auth_id = args.auth_id or os.environ.get(_config.ENV_AUTH_ID)
    secret_key = args.secret_key or os.environ.get(_config.ENV_SECRET_KEY)
    if not auth_id:
        raise UsageError(f"no auth id: pass --auth-id or set {_config.ENV_AUTH_ID}")
    if not secret_key:
        raise UsageError(f"no secret key: set {_config.ENV_SECRET_KEY} (or pass --secret-key)")
    try:
        return FreedomPayClient(
            auth_id=auth_id,
            secret_key=secret_key,
            base_url=args.base_url,
            region=args.region,
            timeout=args.timeout,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _info_command(args: argparse.Namespace) -> int:
    client = _client(args)

    async def lookup() -> WalletInfo:
        async with client:
            return await client.wallets.info(args.identifier)

    try:
        info = asyncio.run(lookup())
    except FreedomPayError as exc:
        _say(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except ValueError as exc:  # an identifier that cannot be valid; nothing was sent
        raise UsageError(str(exc)) from None
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _poll_command(args: argparse.Namespace) -> int:
    if args.distributed is not None:
        return _poll_distributed(args)
    for option in ("shard_size", "window", "run_id", "namespace"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} goes with --distributed")
    client = _client(args)
    ids = IdsFile(args.ids)
    try:
        writer = open_writer(args.out, args.format)
        try:
            return asyncio.run(
                poll(
                    client,
                    ids.identifiers(),
                    writer,
                    concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                    rate_limit=args.rate,
                    ordered=args.ordered,
                    fraction=ids.fraction,
                    progress_stream=_progress_stream(),
                )
            )
        finally:
            writer.close()
    finally:
        ids.close()


# -- distributed: poll --distributed, worker -------------------------------------------------


def _distributed() -> ModuleType:
    try:
        from . import distributed
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    return distributed


def _queue_config(args: argparse.Namespace, url: str) -> Any:
    distributed = _distributed()
    try:
        return distributed.QueueConfig(
            url,
            namespace=args.namespace or distributed.DEFAULT_NAMESPACE,
            lease=getattr(args, "lease", None) or distributed.DEFAULT_LEASE,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _poll_distributed(args: argparse.Namespace) -> int:
    """``poll --distributed URL``: queue the ids in shards; write the rows the workers store."""
    for option, value in (
        ("--concurrency", args.concurrency),
        ("--rate", args.rate),
        ("--timeout", args.timeout),
        ("--auth-id", args.auth_id),
        ("--secret-key", args.secret_key),
        ("--base-url", args.base_url),
        ("--region", args.region),
    ):
        if value is not None:
            raise UsageError(f"{option} is set on the workers (freedompay-async worker), not here")
    if args.ordered:
        raise UsageError("--ordered cannot be kept with --distributed: rows come shard by shard")
    distributed = _distributed()
    from redis.exceptions import RedisError
    from taskiq.exceptions import SendTaskError

    config = _queue_config(args, args.distributed)
    shard_size = args.shard_size or distributed.DEFAULT_SHARD_SIZE
    window = args.window or distributed.DEFAULT_WINDOW
    ids = IdsFile(args.ids)
    try:
        writer = open_writer(args.out, args.format)
        try:
            identifiers = ids.identifiers()

            async def run() -> int:
                producer = distributed.Producer(config)

                def rows(progress: Progress) -> RowSource:
                    run: RowSource = producer.poll(
                        identifiers,
                        shard_size=shard_size,
                        window=window,
                        run_id=args.run_id,
                        on_progress=progress,
                    )
                    return run

                def fraction(stats: Tally) -> float | None:
                    # The input is read up to --window shards ahead of the rows: scale what
                    # was read by how much of what was queued has come back.
                    read = ids.fraction(stats)
                    queued = getattr(stats, "ids", 0)
                    return None if read is None or not queued else read * stats.done / queued

                return await drain(
                    producer,
                    rows,
                    identifiers,
                    writer,
                    fraction,
                    _progress_stream(),
                    errors=(RedisError, SendTaskError),
                )

            try:
                return asyncio.run(run())
            except ValueError as exc:  # run id already in use
                raise UsageError(str(exc)) from None
        finally:
            writer.close()
    finally:
        ids.close()


def _worker_command(args: argparse.Namespace) -> int:
    """``worker URL``: poll shards until SIGTERM / Ctrl-C (graceful), or a second one (at once)."""
    distributed = _distributed()
    from redis.exceptions import RedisError

    if args.concurrency == "auto":
        raise UsageError("--concurrency auto goes with poll and demo; give workers a number")
    config = _queue_config(args, args.url)
    client = _client(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("taskiq").setLevel(max(logging.WARNING, logging.getLogger().level))
        logging.getLogger("freedompay_async").setLevel(max(logging.INFO, logging.getLogger().level))

    async def work() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None

        def on_signal() -> None:
            if stop.is_set():
                _say("stopping now: shards in flight go back to the queue")
                main.cancel()
            else:
                _say(f"stopping: shards in flight get {args.grace:g} s to finish (again: now)")
                stop.set()

        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):  # Windows event loops
                    loop.add_signal_handler(sig, on_signal)
                    handled.append(sig)
        try:
            return await distributed.run_worker(
                config,
                lambda: client,
                concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                shards=args.shards,
                rate_limit=args.rate,
                grace=args.grace,
                stop=stop,
                name=args.name,
            )
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    try:
        stats = asyncio.run(work())
    except asyncio.CancelledError:
        _say("worker stopped at once; its unfinished shards are back on the queue")
        return EXIT_INTERRUPTED
    except RedisError as exc:
        _say(f"error: Redis at {config!r}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    _say(
        f"worker stopped: {stats.shards:,} shards ({stats.lookups:,} lookups) polled, "
        f"{stats.skipped:,} skipped, {stats.handed_back:,} handed back"
    )
    return EXIT_OK


def _demo_ids(wallets: int, missing: int) -> Iterator[str]:
    """``user-0 ... user-<wallets-1>`` with ``missing`` unknown ids spread among them."""
    every = wallets // missing if missing else 0
    unknown = 0
    for index in range(wallets):
        yield f"user-{index}"
        if every and unknown < missing and (index + 1) % every == 0:
            yield f"unknown-{unknown}"
            unknown += 1
    for extra in range(unknown, missing):
        yield f"unknown-{extra}"


def _demo_command(args: argparse.Namespace) -> int:
    from .testing import FakeFreedomPay  # only the demo needs the server

    total = args.wallets + args.missing
    sample = SampleWriter(sys.stdout.buffer, _DEMO_SAMPLE) if args.out is None else None
    writer: Writer = sample if sample is not None else open_writer(args.out, args.format)

    async def demo() -> int:
        _say(
            f"demo: a fake Freedom Pay server with {args.wallets:,} wallets on 127.0.0.1; "
            f"looking up {total:,} identifiers ({args.missing:,} unknown), "
            f"concurrency {args.concurrency or DEFAULT_CONCURRENCY}"
        )
        # Requests cut short (Ctrl-C) make aiohttp's server log a traceback per connection:
        # noise in a demo, where the server is ours and the client is about to exit anyway.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        async with FakeFreedomPay(wallets=args.wallets, latency=args.latency) as fake:
            return await poll(
                fake.client(timeout=args.timeout),
                _demo_ids(args.wallets, args.missing),
                writer,
                concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                rate_limit=args.rate,
                ordered=args.ordered,
                fraction=lambda stats: stats.done / total if total else None,
                progress_stream=_progress_stream(),
            )

    try:
        status = asyncio.run(demo())
    finally:
        writer.close()
    if sample is not None and sample.written > _DEMO_SAMPLE:
        _say(
            f"demo: showed {_DEMO_SAMPLE} of {sample.written:,} rows; "
            "pass --out results.jsonl (or .csv) to keep them all"
        )
    return status


# -- argument parsing ------------------------------------------------------------------------


NumberT = TypeVar("NumberT", int, float)


def _number(kind: type[NumberT], *, zero_ok: bool) -> Callable[[str], NumberT]:
    """An argparse ``type=``: a finite ``kind`` above zero (or at least zero, if ``zero_ok``)."""
    what = "a whole number" if kind is int else "a number"
    bound = "zero or more" if zero_ok else "more than zero"

    def parse(text: str) -> NumberT:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value

    return parse


_positive_int = _number(int, zero_ok=False)
_non_negative_int = _number(int, zero_ok=True)
_positive_float = _number(float, zero_ok=False)
_non_negative_float = _number(float, zero_ok=True)


def _concurrency(text: str) -> int | Literal["auto"]:
    """``--concurrency``: a positive int, or ``auto`` (the limit follows the server)."""
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Freedom Pay E-Money wallets from the command line.",
        epilog="Exit status: 0 all ok, 1 some lookup failed, 2 bad usage, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--auth-id", help=f"partner id (default: ${_config.ENV_AUTH_ID})")
    group.add_argument(
        "--secret-key",
        help=f"signing key (default: ${_config.ENV_SECRET_KEY}; prefer the variable, "
        "arguments are visible to other users of the machine)",
    )
    group.add_argument(
        "--base-url",
        help=f"API origin (default: ${_config.ENV_BASE_URL}, else the region's host)",
    )
    group.add_argument("--region", choices=sorted(_config.REGIONS), help="instead of --base-url")

    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument(
        "--timeout", type=_positive_float, help="seconds per request (default: 30)"
    )

    batch = argparse.ArgumentParser(add_help=False)
    group = batch.add_argument_group("lookups")
    group.add_argument(
        "-c",
        "--concurrency",
        type=_concurrency,
        help=f"requests in flight at most, or 'auto': a limit that follows the server's pace, "
        f"up to the pool size (default: {DEFAULT_CONCURRENCY})",
    )
    group.add_argument(
        "-r", "--rate", type=_positive_float, help="requests per second at most (default: no cap)"
    )
    output = argparse.ArgumentParser(add_help=False)
    group = output.add_argument_group("output")
    group.add_argument(
        "--ordered", action="store_true", help="write rows in input order (default: as they come)"
    )
    group.add_argument(
        "--format", choices=("jsonl", "csv"), help="output format (default: by --out's extension)"
    )

    info = commands.add_parser(
        "info", parents=[connection, timeout], help="print one wallet as JSON"
    )
    info.add_argument("identifier", help="the wallet's identifier in your system")
    info.set_defaults(handler=_info_command)

    poll_parser = commands.add_parser(
        "poll",
        parents=[connection, timeout, batch, output],
        help="look up every wallet in a file, one output line each",
        description="Read identifiers (one per line) from IDS_FILE or stdin, look them all up "
        "and write one line per wallet as results arrive: balance, currency and status, or the "
        "error. Progress (rate, ETA) is shown on a terminal; a summary is printed at the end.",
    )
    poll_parser.add_argument("ids", metavar="IDS_FILE", help="file of identifiers, or - for stdin")
    poll_parser.add_argument(
        "-o", "--out", default="-", help="results file, .jsonl or .csv (default: stdout, JSONL)"
    )
    group = poll_parser.add_argument_group(
        "distributed",
        "Queue the ids in shards on Redis for `freedompay-async worker` processes (on any "
        "number of machines) and write the rows they store; credentials and lookup options "
        "belong to the workers. Needs the redis extra.",
    )
    group.add_argument("--distributed", metavar="URL", help="Redis URL, e.g. redis://host:6379/0")
    group.add_argument(
        "--namespace", help="Redis key prefix, as the workers' (default: freedompay)"
    )
    group.add_argument(
        "--shard-size", type=_positive_int, help="identifiers per shard (default: 1000)"
    )
    group.add_argument(
        "--window", type=_positive_int, help="shards queued or running at once (default: 64)"
    )
    group.add_argument("--run-id", help="name of the run's Redis keys (default: random)")
    poll_parser.set_defaults(handler=_poll_command)

    worker = commands.add_parser(
        "worker",
        parents=[connection, timeout, batch],
        help="poll shards queued by poll --distributed, until stopped",
        description="Take shards from the Redis queue, look their wallets up with one client "
        "for the whole process, store the rows and acknowledge the shard. SIGTERM or Ctrl-C "
        "stops taking shards and lets those in flight finish (--grace); a second one stops at "
        "once. Shards not finished go back to the queue; a killed worker's shards are taken "
        "over by another worker after --lease seconds. Needs the redis extra.",
    )
    worker.add_argument("url", metavar="URL", help="Redis URL, e.g. redis://host:6379/0")
    group = worker.add_argument_group("queue")
    group.add_argument("--namespace", help="Redis key prefix (default: freedompay)")
    group.add_argument(
        "--lease",
        type=_positive_float,
        help="seconds before a dead worker's shard is taken over (default: 30)",
    )
    group.add_argument(
        "--shards", type=_positive_int, default=2, help="shards polled at once (default: 2)"
    )
    group.add_argument(
        "--grace",
        type=_non_negative_float,
        default=30.0,
        help="seconds in-flight shards get to finish when stopping (default: 30)",
    )
    group.add_argument("--name", help="consumer name in Redis (default: host-pid-random)")
    group.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (default: info)",
    )
    worker.set_defaults(handler=_worker_command)

    demo = commands.add_parser(
        "demo",
        parents=[timeout, batch, output],
        help="run poll against a built-in fake server",
        description="Start the bundled FakeFreedomPay on 127.0.0.1 with N wallets and run the "
        "same lookups as poll against it: the whole product, no account needed.",
    )
    demo.add_argument(
        "--wallets", type=_positive_int, default=10_000, help="wallets to seed (default: 10000)"
    )
    demo.add_argument(
        "--missing",
        type=_non_negative_int,
        default=0,
        help="also look up this many unknown identifiers, to see errors (default: 0)",
    )
    demo.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        help="seconds the fake server waits before each reply (default: 0)",
    )
    demo.add_argument(
        "-o", "--out", help=f"results file, .jsonl or .csv (default: print {_DEMO_SAMPLE} rows)"
    )
    demo.set_defaults(handler=_demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except UsageError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the poll loop
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`... | head`): stop quietly, like other tools.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return status
