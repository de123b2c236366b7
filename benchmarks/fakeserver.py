"""``python -m benchmarks.fakeserver``: FakeFreedomPay in its own process, for the harness.

Prints ``<url> <loop>`` on stdout once listening, then serves until stdin reaches EOF (the
harness closes it, or dies) or SIGTERM/SIGINT arrives. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from freedompay_async.testing import FakeFreedomPay

from .common import AUTH_ID, SECRET_KEY


async def serve(latency: float, wallets: int, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    # stdin EOF means the harness is gone or done with us.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stopped.set())
    async with FakeFreedomPay(
        wallets=wallets, auth_id=AUTH_ID, secret_key=SECRET_KEY, latency=latency
    ) as fake:
        print(f"{fake.url} {loop_name}", flush=True)
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fakeserver")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--wallets", type=int, default=1000)
    args = parser.parse_args()
    # Default loop on purpose: FakeFreedomPay.start() asserts an asyncio.base_events.Server,
    # which uvloop's server is not (reported to the integrator).
    asyncio.run(serve(args.latency, args.wallets, "asyncio"))


if __name__ == "__main__":
    main()
