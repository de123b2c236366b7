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
from ..errors import FreedomPayError
from ..models import WalletInfo
from ._connection import client_from
from ._distributed import poll_distributed
from ._exit import EXIT_FAILED, EXIT_OK, UsageError, say
from ._input import IdsFile
from ._output import SampleWriter, Writer, open_writer
from ._poll import poll
from ._progress import progress_stream

#: ``demo`` without ``--out`` prints this many rows as a sample.
DEMO_SAMPLE: Final = 3


def info_command(args: argparse.Namespace) -> int:
    client = client_from(args)

    async def lookup() -> WalletInfo:
        async with client:
            return await client.wallets.info(args.identifier)

    try:
        info = asyncio.run(lookup())
    except FreedomPayError as exc:
        say(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except ValueError as exc:  # an identifier that cannot be valid; nothing was sent
        raise UsageError(str(exc)) from None
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def poll_command(args: argparse.Namespace) -> int:
    if args.distributed is not None:
        return poll_distributed(args)
    for option in ("shard_size", "window", "run_id", "namespace"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} goes with --distributed")
    client = client_from(args)
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
                    progress_stream=progress_stream(),
                )
            )
        finally:
            writer.close()
    finally:
        ids.close()


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
    writer: Writer = sample if sample is not None else open_writer(args.out, args.format)

    async def demo() -> int:
        say(
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
                progress_stream=progress_stream(),
            )

    try:
        status = asyncio.run(demo())
    finally:
        writer.close()
    if sample is not None and sample.written > DEMO_SAMPLE:
        say(
            f"demo: showed {DEMO_SAMPLE} of {sample.written:,} rows; "
            "pass --out results.jsonl (or .csv) to keep them all"
        )
    return status
