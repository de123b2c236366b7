"""``python -m benchmarks.pool_queue``: waiting for a pooled connection must not become timeouts.

``info_many`` with a concurrency far above the connection pool (default 100 sockets) against a
slow server: the lookups that queue for a socket must not time out, and memory must stay flat.
Starts ``FakeFreedomPay`` in a child process with ``--latency`` seconds per reply, runs the batch
here, and prints one JSON line: lookups, failures by class, elapsed seconds, peak RSS (MiB)::

    python -m benchmarks.pool_queue                       # 20,000 lookups, concurrency 10,000, 0.4 s
    python -m benchmarks.pool_queue --lookups 2000 --concurrency 1000 --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import time
from typing import Any

from freedompay_async import FreedomPayClient

from .common import AUTH_ID, SECRET_KEY, identifiers
from .servers import FAKE_WALLETS, FakeServer


async def run(url: str, lookups: int, concurrency: int) -> dict[str, Any]:
    failures: collections.Counter[str] = collections.Counter()
    ok = 0
    started = time.perf_counter()
    async with FreedomPayClient(AUTH_ID, SECRET_KEY, base_url=url) as client:
        ids = identifiers(lookups, modulo=FAKE_WALLETS)
        async with client.wallets.info_many(ids, concurrency=concurrency) as results:
            async for result in results:
                if result.error is None:
                    ok += 1
                else:
                    failures[type(result.error).__name__] += 1
    return {
        "lookups": lookups,
        "concurrency": concurrency,
        "ok": ok,
        "failed": dict(failures),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.4)
    args = parser.parse_args()
    with FakeServer(latency=args.latency) as server:
        figures = asyncio.run(run(server.url, args.lookups, args.concurrency))
    figures["latency_s"] = args.latency
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
