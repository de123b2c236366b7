"""The SDK's own CPU per lookup, with no HTTP at all: ``python -m benchmarks.overhead [TREE ...]``.

Each tree's ``freedompay_async`` runs in a subprocess of its own, with a transport that answers
every request from memory with the canned Info reply (no aiohttp, no socket, no server), so
what is left is the SDK's own work: validate, build, encode, sign, the request loop, decode,
and for ``info_many`` the batch. Process CPU time per lookup, best of three runs of ``-n``
lookups, for ``await client.wallets.info(...)`` in a loop and for ``info_many`` at
concurrency 64. A tree without the ``Transport`` seam (before issue 17) gets the same canned
reply by replacing its transport's ``send``.

    python -m benchmarks.overhead                    # this tree
    python -m benchmarks.overhead . ../other-tree    # side by side
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

_PROBE = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
import freedompay_async as fpa
from freedompay_async.models import InfoRequest  # noqa: F401 (the tree's own models)

body = bytes.fromhex(sys.argv[3])
n = int(sys.argv[2])
if hasattr(fpa, "Transport"):
    from freedompay_async.transport import TransportResponse

    class Canned:
        pool_size = 64

        async def send(self, url, headers, payload, timeout):
            return TransportResponse(200, {}, body)

        async def aclose(self):
            pass

    client = fpa.FreedomPayClient(
        auth_id="1", secret_key="s", base_url="http://127.0.0.1:1", transport=Canned()
    )
else:
    client = fpa.FreedomPayClient(auth_id="1", secret_key="s", base_url="http://127.0.0.1:1")

    async def send(path, headers, payload, timeout):
        return 200, body, None

    client._transport.send = send


async def one_by_one():
    info = client.wallets.info
    start = time.process_time()
    for _ in range(n):
        await info("user-1")
    return (time.process_time() - start) / n * 1e6


async def batch():
    start = time.process_time()
    done = 0
    async for _ in client.wallets.info_many(("user-1" for _ in range(n)), concurrency=64):
        done += 1
    assert done == n
    return (time.process_time() - start) / n * 1e6


async def main():
    single = min([await one_by_one() for _ in range(3)])
    many = min([await batch() for _ in range(3)])
    print(f"{single:.2f} {many:.2f}")


asyncio.run(main())
"""


def measure(tree: Path, n: int) -> tuple[float, float]:
    """(µs per ``info`` call, µs per ``info_many`` lookup) of ``tree``'s package."""
    from .common import canned_info_body

    if not (tree / "freedompay_async").is_dir():
        raise SystemExit(f"{tree} has no freedompay_async package")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tree), str(n), canned_info_body().hex()],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument("trees", nargs="*", type=Path, default=[Path(".")])
    parser.add_argument("-n", type=int, default=50_000, help="lookups per run (50000)")
    args = parser.parse_args(argv)
    print("| tree | info() µs / call | info_many µs / lookup |")
    print("| --- | ---: | ---: |")
    for tree in args.trees:
        single, many = measure(tree.resolve(), args.n)
        print(f"| {tree} | {single:.2f} | {many:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
