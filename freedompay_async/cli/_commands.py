"""The local commands: ``info``, ``poll`` (without ``--distributed``) and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from typing import Final

import msgspec

from ..batch import DEFAULT_CONCURRENCY
from ..errors import AuthenticationError, FreedomPayError, TransportError
from ..models import WalletInfo
from ._connection import client_from
from ._distributed import poll_distributed
from ._exit import EXIT_ABORTED, EXIT_FAILED, EXIT_OK, OutputError, UsageError, say
from ._outfile import open_output
from ._output import SampleWriter, Writer
from ._poll import Report, poll
from ._progress import progress_stream
from ._session import configure_logging, poll_files

#: ``demo`` without ``--out`` prints this many rows as a sample.
DEMO_SAMPLE: Final = 3


def info_command(args: argparse.Namespace) -> int:
    client = client_from(args)
    configure_logging(args.log_level, quiet=args.quiet)

    async def lookup() -> WalletInfo:
        async with client:
            return await client.wallets.info(args.identifier)

    try:
        info = asyncio.run(lookup())
    except (AuthenticationError, TransportError) as exc:  # credentials refused, host unreachable
        say(f"{type(exc).__name__}: {exc}")
        return EXIT_ABORTED
    except FreedomPayError as exc:
        say(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except ValueError as exc:  # an identifier that cannot be valid; nothing was sent
        raise UsageError(str(exc)) from None
    try:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write <stdout>: {exc.strerror or exc}") from None
    return EXIT_OK


def poll_command(args: argparse.Namespace) -> int:
    if args.distributed is not None:
        return poll_distributed(args)
    for option in ("shard_size", "window", "run_id", "namespace", "redis_timeout"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} goes with --distributed")
    client = client_from(args)
    configure_logging(args.log_level, quiet=args.quiet)
    with poll_files(args) as (ids, output):
        report = Report(
            output.writer,
            ids.fraction,
            progress_stream(),
            ids=ids,
            out=output.name,
            quiet=args.quiet,
            max_errors=args.max_errors,
        )
        return asyncio.run(
            poll(
                client,
                ids.identifiers(),
                report,
                concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                rate_limit=args.rate,
                ordered=args.ordered,
            )
        )


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


def demo_command(args: argparse.Namespace) -> int:
    from ..testing import FakeFreedomPay  # only the demo needs the server

    total = args.wallets + args.missing
    sample = SampleWriter(sys.stdout.buffer, DEMO_SAMPLE) if args.out is None else None
    if sample is not None:
        writer: Writer = sample
        out = "<stdout>"
    else:
        output = open_output(args.out, args.format, overwrite=args.overwrite)
        writer, out = output.writer, output.name

    async def demo() -> int:
        if not args.quiet:
            say(
                f"demo: a fake Freedom Pay server with {args.wallets:,} wallets on 127.0.0.1; "
                f"looking up {total:,} identifiers ({args.missing:,} unknown), "
                f"concurrency {args.concurrency or DEFAULT_CONCURRENCY}"
            )
        # Requests cut short (Ctrl-C) make aiohttp's server log a traceback per connection:
        # noise in a demo, where the server is ours and the client is about to exit anyway.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        async with FakeFreedomPay(wallets=args.wallets, latency=args.latency) as fake:
            report = Report(
                writer,
                lambda stats: stats.done / total if total else None,
                progress_stream(),
                out=out,
                quiet=args.quiet,
            )
            return await poll(
                fake.client(timeout=args.timeout),
                _demo_ids(args.wallets, args.missing),
                report,
                concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                rate_limit=args.rate,
                ordered=args.ordered,
            )

    try:
        status = asyncio.run(demo())
    finally:
        writer.close()
    if sample is not None and sample.seen > DEMO_SAMPLE and not args.quiet:
        say(
            f"demo: showed {DEMO_SAMPLE} of {sample.seen:,} rows; "
            "pass --out results.jsonl (or .csv) to keep them all"
        )
    return status
