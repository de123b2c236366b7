"""The client contenders. Each does the same work per lookup: sign the body with the
``X-JWS-Signature`` scheme, POST it, read the reply, decode it into a typed object whose
``wallet.balance`` is a ``Decimal``, and add that balance to a checksum (so no contender can skip
the decode). They differ only in the libraries and the care taken.

A contender is an async context manager (it owns its HTTP pool) yielding ``run(ids)``, which
does one lookup per id with ``concurrency`` requests in flight and returns a :class:`Tally`.
The worker process (``benchmarks/worker.py``) calls ``run`` once to warm up and once timed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any, Final

from .common import AUTH_ID, INFO_PATH, SECRET_KEY


@dataclasses.dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    checksum: Decimal = Decimal(0)
    first_error: str = ""

    def fail(self, error: BaseException | str) -> None:
        self.failed += 1
        if not self.first_error:
            self.first_error = (
                error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            )


Run = Callable[[Iterator[str]], Awaitable[Tally]]
Factory = Callable[[str, int], AbstractAsyncContextManager[Run]]


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    label: str
    factory: Factory
    #: modules that must import for this contender to run (else it is skipped, and said so)
    requires: tuple[str, ...] = ()
    #: set when the harness should report which code path was taken (see ``sdk_mode``)
    describe: Callable[[], str] | None = None


def tally_of(results: list[Decimal | BaseException]) -> Tally:
    """Count ``gather(..., return_exceptions=True)`` outcomes: a balance, or the failure."""
    tally = Tally()
    for result in results:
        if isinstance(result, BaseException):
            tally.fail(result)
        else:
            tally.ok += 1
            tally.checksum += result
    return tally


async def worker_pool(
    ids: Iterator[str], concurrency: int, one: Callable[[str], Awaitable[None]]
) -> None:
    """``concurrency`` workers pulling from one shared iterator: at most that many in flight,
    no task per id, and the input is never materialised."""

    async def worker() -> None:
        for identifier in ids:
            await one(identifier)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- freedompay_async ---------------------------------------------------------------------------


def sdk_mode() -> str:
    from freedompay_async.resources.wallets import Wallets

    if hasattr(Wallets, "info_many"):
        return "client.wallets.info_many"
    return "fixed worker pool over client.wallets.info (info_many not in this tree)"


@asynccontextmanager
async def sdk(url: str, concurrency: int) -> AsyncIterator[Run]:
    """The SDK as a user would call it: ``info_many`` when present, else an equivalent pool."""
    from freedompay_async import FreedomPayClient, FreedomPayError

    async with FreedomPayClient(auth_id=AUTH_ID, secret_key=SECRET_KEY, base_url=url) as client:
        yield sdk_run(client, concurrency, FreedomPayError)


def sdk_run(client: Any, concurrency: int, error: type[BaseException]) -> Run:
    """The ``sdk`` code path over any tree's client (``ab`` passes aliased trees' clients):
    ``client.wallets.info_many`` when the tree has it, else a fixed worker pool over
    ``wallets.info``; ``error`` is that tree's ``FreedomPayError``."""
    wallets = client.wallets
    info_many = getattr(wallets, "info_many", None)

    async def run(ids: Iterator[str]) -> Tally:
        tally = Tally()
        if info_many is not None:
            async for result in info_many(ids, concurrency=concurrency):
                if result.ok:
                    tally.ok += 1
                    tally.checksum += result.value.wallet.balance
                else:
                    tally.fail(result.error)
            return tally

        async def one(identifier: str) -> None:
            try:
                info = await wallets.info(identifier)
            except error as exc:
                tally.fail(exc)
            else:
                tally.ok += 1
                tally.checksum += info.wallet.balance

        await worker_pool(ids, concurrency, one)
        return tally

    return run


# -- hand-tuned raw aiohttp + msgspec: the ceiling for an aiohttp client ------------------------

_B64URL: Final = bytes.maketrans(b"+/", b"-_")
_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))


def _b64url(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_B64URL).rstrip(b"=")


class TunedSigner:
    """``X-JWS-Signature`` (HS256) the fastest way we know in pure Python: the HMAC inner and
    outer SHA-256 states are computed once, the inner one having already absorbed the constant
    ``b64(header) + "."`` prefix; each signature copies both states and hashes only the body."""

    __slots__ = ("_inner", "_outer", "_prefix")

    def __init__(self, *, uri: str, auth_id: str, secret_key: bytes) -> None:
        import msgspec

        header = msgspec.json.encode(
            {"uri": uri, "auth_id": auth_id, "method": "POST", "params": "", "alg": "HS256"}
        )
        encoded_header = _b64url(header)
        key = secret_key if len(secret_key) <= 64 else hashlib.sha256(secret_key).digest()
        key = key.ljust(64, b"\0")  # SHA-256 block size
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._inner.update(encoded_header + b".")
        self._outer = hashlib.sha256(key.translate(_OPAD))
        self._prefix = encoded_header.decode() + ".."

    def sign(self, body: bytes) -> str:
        inner = self._inner.copy()
        inner.update(_b64url(body))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return self._prefix + _b64url(outer.digest()).decode()


@asynccontextmanager
async def raw_aiohttp(url: str, concurrency: int) -> AsyncIterator[Run]:
    """What an expert writes by hand: one tuned session, constant headers on the session,
    precomputed HMAC states (:class:`TunedSigner`), msgspec encode/decode into the SDK's own
    Structs, a worker pool. Same timeout protection as the SDK (30 s total, 10 s connect)."""
    import aiohttp
    import msgspec
    from yarl import URL

    from freedompay_async.models import InfoRequest, WalletInfo

    sign = TunedSigner(uri=INFO_PATH, auth_id=AUTH_ID, secret_key=SECRET_KEY.encode()).sign
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder(WalletInfo).decode
    target = URL(url).join(URL(INFO_PATH))

    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300, keepalive_timeout=15)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"Content-Type": "application/json", "User-Agent": "bench-raw/1"},
        timeout=aiohttp.ClientTimeout(total=30, connect=10),
    ) as session:
        post = session.post

        async def run(ids: Iterator[str]) -> Tally:
            tally = Tally()

            async def one(identifier: str) -> None:
                body = encode(InfoRequest(identifier=identifier))
                headers = {"X-JWS-Signature": sign(body)}
                try:
                    async with post(target, data=body, headers=headers) as response:
                        status = response.status
                        payload = await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    tally.fail(exc)
                    return
                if status != 200:
                    tally.fail(f"HTTP {status}")
                    return
                try:
                    info = decode(payload)
                except msgspec.DecodeError as exc:
                    tally.fail(exc)
                    return
                if info.status == "error":
                    tally.fail(f"API error {info.error_code}")
                    return
                tally.ok += 1
                tally.checksum += info.wallet.balance

            await worker_pool(ids, concurrency, one)
            return tally

        yield run


# -- what many teams would write ---------------------------------------------------------------


def naive_signature(body: bytes) -> str:
    """The signature computed the obvious way: header JSON rebuilt and encoded per request."""
    header = json.dumps(
        {"uri": INFO_PATH, "auth_id": AUTH_ID, "method": "POST", "params": "", "alg": "HS256"}
    ).encode()
    h = base64.urlsafe_b64encode(header).rstrip(b"=")
    p = base64.urlsafe_b64encode(body).rstrip(b"=")
    mac = hmac.new(SECRET_KEY.encode(), h + b"." + p, hashlib.sha256).digest()
    return (h + b".." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


@asynccontextmanager
async def naive_aiohttp(url: str, concurrency: int) -> AsyncIterator[Run]:
    """Default ``ClientSession``, ``json``, a task per id under ``gather`` + a semaphore."""
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def run(ids: Iterator[str]) -> Tally:
            semaphore = asyncio.Semaphore(concurrency)

            async def one(identifier: str) -> Decimal:
                async with semaphore:
                    body = json.dumps({"identifier": identifier}).encode()
                    headers = {
                        "Content-Type": "application/json",
                        "X-JWS-Signature": naive_signature(body),
                    }
                    async with session.post(url + INFO_PATH, data=body, headers=headers) as resp:
                        resp.raise_for_status()
                        data: dict[str, Any] = await resp.json()
                if data["status"] == "error":
                    raise RuntimeError(f"API error {data.get('error_code')}")
                return Decimal(data["wallet"]["balance"])

            results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
            return tally_of(results)

        yield run


@asynccontextmanager
async def httpx_pydantic(url: str, concurrency: int) -> AsyncIterator[Run]:
    """``httpx.AsyncClient`` (pool sized to the concurrency) + pydantic v2 models, ``gather`` +
    semaphore: the stack many teams reach for."""
    import httpx

    from .pydantic_models import WalletInfoModel

    validate = WalletInfoModel.model_validate_json
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url,
        limits=limits,
        timeout=httpx.Timeout(30.0, connect=10.0),
        headers={"Content-Type": "application/json"},
    ) as client:

        async def run(ids: Iterator[str]) -> Tally:
            semaphore = asyncio.Semaphore(concurrency)

            async def one(identifier: str) -> Decimal:
                async with semaphore:
                    body = json.dumps({"identifier": identifier}).encode()
                    response = await client.post(
                        INFO_PATH, content=body, headers={"X-JWS-Signature": naive_signature(body)}
                    )
                response.raise_for_status()
                info = validate(response.content)
                if info.status == "error":
                    raise RuntimeError(f"API error {info.error_code}")
                return info.wallet.balance

            results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
            return tally_of(results)

        yield run


CONTENDERS: Final[dict[str, Contender]] = {
    contender.name: contender
    for contender in (
        Contender("sdk", "freedompay_async", sdk, describe=sdk_mode),
        Contender("sdk-uvloop", "freedompay_async + uvloop", sdk, ("uvloop",), describe=sdk_mode),
        Contender("raw", "raw aiohttp + msgspec (tuned pool)", raw_aiohttp),
        Contender("raw-uvloop", "raw aiohttp + msgspec + uvloop", raw_aiohttp, ("uvloop",)),
        Contender("naive", "naive aiohttp + json (gather + semaphore)", naive_aiohttp),
        Contender("httpx", "httpx AsyncClient + pydantic", httpx_pydantic, ("httpx", "pydantic")),
    )
}
#: Which event loop each contender runs on.
LOOPS: Final[dict[str, str]] = {"sdk-uvloop": "uvloop", "raw-uvloop": "uvloop"}
