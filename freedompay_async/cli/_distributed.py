"""``poll --distributed URL`` (the producer) and ``worker URL``: the redis extra's commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
from types import ModuleType
from typing import Any

from ..batch import DEFAULT_CONCURRENCY
from ..errors import AuthenticationError
from ._connection import client_from
from ._exit import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, say
from ._poll import Report, RowSource, drain
from ._progress import Progress, Tally, progress_stream
from ._session import configure_logging, poll_files


def _distributed() -> ModuleType:
    try:
        from .. import distributed
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


def poll_distributed(args: argparse.Namespace) -> int:
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

    config = _queue_config(args, args.distributed)
    shard_size = args.shard_size or distributed.DEFAULT_SHARD_SIZE
    window = args.window or distributed.DEFAULT_WINDOW
    configure_logging(args.log_level, quiet=args.quiet)
    with poll_files(args) as (ids, output):
        identifiers = ids.identifiers()

        async def run() -> int:
            producer = distributed.Producer(
                config,
                redis_timeout=(
                    distributed.DEFAULT_REDIS_TIMEOUT
                    if args.redis_timeout is None
                    else args.redis_timeout
                ),
            )

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

            report = Report(
                output.writer,
                fraction,
                progress_stream(),
                ids=ids,
                out=output.name,
                quiet=args.quiet,
                max_errors=args.max_errors,
            )
            return await drain(
                producer,
                rows,
                identifiers,
                report,
                errors=(RedisError, distributed.NoWorkerCanAuthenticateError),
            )

        try:
            return asyncio.run(run())
        except ValueError as exc:  # run id already in use
            raise UsageError(str(exc)) from None


def worker_command(args: argparse.Namespace) -> int:
    """``worker URL``: poll shards until SIGTERM / Ctrl-C (graceful), or a second one (at once)."""
    distributed = _distributed()
    from redis.exceptions import RedisError

    if args.concurrency == "auto":
        raise UsageError("--concurrency auto goes with poll and demo; give workers a number")
    config = _queue_config(args, args.url)
    client = client_from(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("freedompay_async").setLevel(max(logging.INFO, logging.getLogger().level))

    async def work() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None

        def on_signal() -> None:
            if stop.is_set():
                say("stopping now: shards in flight go back to the queue")
                main.cancel()
            else:
                say(f"stopping: shards in flight get {args.grace:g} s to finish (again: now)")
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
                redis_timeout=args.redis_timeout,
            )
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    try:
        stats = asyncio.run(work())
    except asyncio.CancelledError:
        say("worker stopped at once; its unfinished shards are back on the queue")
        return EXIT_INTERRUPTED
    except RedisError as exc:
        say(f"error: Redis at {config!r}: {type(exc).__name__}: {exc}")
        return EXIT_ABORTED
    except AuthenticationError as exc:  # at start, or a shard met it: the credentials are bad
        say(f"error: {exc.message}. Check the auth id and secret key.")
        return EXIT_USAGE
    say(
        f"worker stopped: {stats.shards:,} shards ({stats.lookups:,} lookups) polled, "
        f"{stats.skipped:,} skipped, {stats.handed_back:,} handed back"
    )
    return EXIT_OK
