"""What every part of the harness agrees on: credentials, the endpoint, the canned reply, ids."""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from freedompay_async._jws import sign
from freedompay_async.testing._server import seeded_wallet

#: Credentials shared by the client contenders and the fallback fake server.
AUTH_ID: Final = "123456"
SECRET_KEY: Final = "benchmark-secret-key"
#: The endpoint every contender calls.
INFO_PATH: Final = "/v5/partner/wallet/info"
#: The only address anything here listens on or talks to.
LOOPBACK: Final = "127.0.0.1"

#: Environment variable: a directory put first on ``sys.path`` of worker processes (before the
#: worktree), so that another tree's ``freedompay_async`` is measured (``--compare-sdk``).
SDK_PATH_ENV: Final = "FREEDOMPAY_BENCH_SDK_PATH"

#: The worktree root: children run with it first on ``PYTHONPATH`` so that this checkout's
#: ``freedompay_async`` (not some other installed copy) is what gets measured.
ROOT: Final = Path(__file__).resolve().parent.parent

#: The wallet behind the canned reply (deterministic, as ``FakeFreedomPay(wallets=N)`` seeds it).
CANNED_WALLET: Final = seeded_wallet(42)
CANNED_BALANCE: Final[Decimal] = CANNED_WALLET.balance


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the markdown."""
    print(message, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A contender crashed, timed out or returned wrong results: the harness is broken."""


def canned_info_body() -> bytes:
    """A realistic ``status: "ok"`` Info reply, fixed bytes (what nginx answers every POST with)."""
    reply: dict[str, Any] = {
        "status": "ok",
        "request_status": "0",
        "wallet": CANNED_WALLET.to_wire(),
        "dt": "2026-01-01T12:00:00+05:00",
    }
    return msgspec.json.encode(reply)


def identifiers(count: int, *, start: int = 0, modulo: int = 0) -> Iterator[str]:
    """``user-<i>`` for ``count`` values of i, lazily (never a list); ``modulo`` wraps the index so
    that every id exists on a fake server seeded with ``modulo`` wallets."""
    if modulo:
        return (f"user-{i % modulo}" for i in range(start, start + count))
    return (f"user-{i}" for i in range(start, start + count))


def fixed_request() -> tuple[bytes, str]:
    """One valid signed Info request (body, ``X-JWS-Signature``): what ``wrk`` replays."""
    body = b'{"identifier":"user-42"}'
    return body, sign(body, uri=INFO_PATH, auth_id=AUTH_ID, secret_key=SECRET_KEY)


def child_env() -> dict[str, str]:
    """Environment for child Python processes: this worktree first on the import path."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


#: Environment variable: set (to anything) to make worker processes skip :func:`prime_malloc`.
NO_MALLOC_PRIME_ENV: Final = "FREEDOMPAY_BENCH_NO_MALLOC_PRIME"


def prime_malloc() -> None:
    """Free one 512 KiB block at once, so that glibc serves asyncio's read buffers from the heap.

    The default event loop reads every socket with ``recv(256 KiB)``: a fresh 256 KiB bytes
    object per read, shrunk to what arrived. glibc serves blocks that large with mmap until its
    dynamic mmap threshold is raised, which happens the first time the process frees an mmapped
    block it never shrank; until then every read costs an mmap, an mremap and a munmap (about
    15 µs of CPU per lookup here). When that first happens depends on the process's allocation
    history, so without this a benchmark process is in one mode or the other by chance, for its
    whole life. Freeing a 512 KiB block up front puts every process in the steady state of a
    long-running one, the same for all contenders (uvloop reads into its own buffer either way).
    """
    block = bytes(512 * 1024)
    del block


def cpu_seconds() -> float:
    """CPU time of this process so far, user + system (``getrusage``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def python() -> str:
    return sys.executable


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What one contender subprocess is asked to do (passed as JSON on its command line)."""

    contender: str
    url: str
    n: int
    concurrency: int
    warmup: int
    loop: str = "asyncio"
    #: ids wrap around this many wallets (the fake server's seed); 0 for nginx.
    modulo: int = 0


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """What one contender subprocess measured (printed as JSON on its stdout)."""

    contender: str
    loop: str
    n: int
    ok: int
    failed: int
    wall_s: float
    cpu_s: float
    #: ru_maxrss after imports and client setup, before the warm-up (MB).
    rss_start_mb: float
    #: ru_maxrss at the end: the process's peak (MB).
    rss_peak_mb: float
    checksum: str
    mode: str = ""
    first_error: str = ""
    #: the ``freedompay_async`` package the worker imported (shows which tree was measured)
    sdk_file: str = ""
    #: Default loop only: whether asyncio's 256 KiB per-read receive buffer is served by mmap in
    #: this process (glibc's dynamic mmap threshold, see ``worker.recv_buffer_mmapped``); None
    #: when unknown or not applicable.
    recv_buffer_mmapped: bool | None = None

    @property
    def rate(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_s / self.n * 1e6 if self.n else 0.0
