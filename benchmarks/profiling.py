"""Where the SDK's time goes: a profile of the lookup path, and the pure per-lookup steps timed.

* :func:`profile_sdk` runs the ``sdk`` contender in this process against a running server under
  cProfile (deterministic; inflates tiny calls) or pyinstrument (sampling; true proportions),
  and groups the cost by package (our code, aiohttp, yarl/multidict, asyncio, msgspec, ...).
* :func:`time_steps` times each pure step the SDK performs per lookup (validate, build, encode,
  sign, decode) next to the hand-tuned equivalent, in nanoseconds, without any I/O.
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import io
import pstats
import sysconfig
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .common import AUTH_ID, INFO_PATH, ROOT, SECRET_KEY, canned_info_body, identifiers
from .contenders import CONTENDERS, TunedSigner
from .decode import bench

#: (package label, path fragment or builtin-name fragment), first match wins.
_GROUPS: tuple[tuple[str, str], ...] = (
    ("freedompay_async", "freedompay_async"),
    ("benchmarks (driver)", "benchmarks"),
    ("aiohttp", "aiohttp"),
    ("yarl", "yarl"),
    ("multidict", "multidict"),
    ("msgspec", "msgspec"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("hmac / base64", "hmac"),
    ("hmac / base64", "binascii"),
    ("hmac / base64", "_hashlib"),
    ("socket / selectors", "selectors"),
    ("socket / selectors", "socket"),
    ("socket / selectors", "epoll"),
)


def group_of(filename: str, function: str) -> str:
    text = filename if filename != "~" else function
    for label, fragment in _GROUPS:
        if fragment in text:
            return label
    return "other (stdlib, builtins)"


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    n: int
    total_s: float
    groups: list[tuple[str, float]]  # (group, seconds of own time)
    top: str  # pstats text


def profile_sdk(
    url: str, *, n: int, concurrency: int, modulo: int, top: int = 25, contender: str = "sdk"
) -> ProfileReport:
    """cProfile of ``n`` lookups by ``contender`` (after a warm-up), own time by package."""
    factory = CONTENDERS[contender].factory
    profiler = cProfile.Profile()

    async def main() -> None:
        async with factory(url, concurrency) as run:
            await run(identifiers(min(1000, n), start=n, modulo=modulo))
            profiler.enable()
            tally = await run(identifiers(n, modulo=modulo))
            profiler.disable()
            if tally.failed:
                raise RuntimeError(f"{tally.failed} lookups failed: {tally.first_error}")

    asyncio.run(main())
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        groups[group_of(filename, function)] += tottime
        total += tottime
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return ProfileReport(
        n=n,
        total_s=total,
        groups=sorted(groups.items(), key=lambda item: -item[1]),
        top=_trim_pstats(out.getvalue()),
    )


def pyinstrument_sdk(
    url: str, *, n: int, concurrency: int, modulo: int, contender: str = "sdk"
) -> str:
    """A pyinstrument (sampling) profile of ``n`` lookups by ``contender``, as text."""
    from pyinstrument import Profiler

    factory = CONTENDERS[contender].factory
    profiler = Profiler(interval=0.0005, async_mode="disabled")

    async def main() -> None:
        async with factory(url, concurrency) as run:
            await run(identifiers(min(1000, n), start=n, modulo=modulo))
            profiler.start()
            await run(identifiers(n, modulo=modulo))
            profiler.stop()

    asyncio.run(main())
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    return text


def _trim_pstats(text: str) -> str:
    """pstats text from the column header on, with install prefixes cut from the paths."""
    prefixes = sorted(
        {sysconfig.get_paths()[key] + "/" for key in ("purelib", "platlib", "stdlib")}
        | {str(ROOT) + "/"},
        key=len,
        reverse=True,
    )
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    kept = []
    for line in lines[start:]:
        if line.strip():
            for prefix in prefixes:
                line = line.replace(prefix, "")
            kept.append(line)
    return "\n".join(kept)


@dataclasses.dataclass(frozen=True)
class StepTime:
    step: str
    sdk_ns: float
    tuned_ns: float | None
    note: str


def time_steps(*, min_time: float = 0.2, repeats: int = 5) -> list[StepTime]:
    """The SDK's pure per-lookup work, step by step, next to the hand-tuned raw contender's."""
    import aiohttp
    import msgspec

    from freedompay_async import _protocol
    from freedompay_async._client import FreedomPayClient
    from freedompay_async.models import InfoRequest, WalletInfo
    from freedompay_async.resources.wallets import check_identifier

    client = FreedomPayClient(auth_id=AUTH_ID, secret_key=SECRET_KEY, base_url="http://127.0.0.1:1")
    signer = client._signer(INFO_PATH)
    identifier = "user-1234567"
    request = InfoRequest(identifier=identifier)
    body = _protocol.encode(request)
    reply = canned_info_body()
    default_timeout = client.timeout

    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder(WalletInfo)
    tuned_sign = TunedSigner(uri=INFO_PATH, auth_id=AUTH_ID, secret_key=SECRET_KEY.encode()).sign

    steps: list[tuple[str, Callable[[], Any], Callable[[], Any] | None, str]] = [
        ("check_identifier", lambda: check_identifier(identifier), None, "type, length, printable"),
        ("InfoRequest(...)", lambda: InfoRequest(identifier=identifier), None, "Struct build"),
        ("encode body", lambda: _protocol.encode(request), lambda: encoder.encode(request), ""),
        (
            "sign (X-JWS-Signature)",
            lambda: signer.sign(body),
            lambda: tuned_sign(body),
            "tuned: precomputed HMAC states",
        ),
        (
            "transport timeout",
            lambda: _client_timeout(default_timeout),
            None,
            "ClientTimeout per request",
        ),
        (
            "decode reply",
            lambda: _protocol.decode_response(_protocol.INFO, reply, identifier=identifier),
            lambda: decoder.decode(reply),
            "Struct decode (+ status check)",
        ),
    ]

    def sdk_all() -> Any:
        check_identifier(identifier)
        payload = _protocol.encode(InfoRequest(identifier=identifier))
        _ = {"X-JWS-Signature": signer.sign(payload)}
        _client_timeout(default_timeout)
        return _protocol.decode_response(_protocol.INFO, reply, identifier=identifier)

    def tuned_all() -> Any:
        payload = encoder.encode(InfoRequest(identifier=identifier))
        _ = {"X-JWS-Signature": tuned_sign(payload)}
        return decoder.decode(reply)

    def _client_timeout(timeout: Any) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=timeout.total, connect=timeout.connect, sock_read=timeout.read
        )

    steps.append(("all pure steps of one lookup", sdk_all, tuned_all, "sum, no I/O"))
    results = []
    for name, sdk_step, tuned_step, note in steps:
        sdk_ns = bench(sdk_step, repeats=repeats, min_time=min_time)
        tuned_ns = bench(tuned_step, repeats=repeats, min_time=min_time) if tuned_step else None
        results.append(StepTime(name, sdk_ns, tuned_ns, note))
    return results
