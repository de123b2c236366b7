"""Hard limits against raw-socket servers: the call's deadline (429 + Retry-After, stalls,
backoff), no signature or secret anywhere in an exception chain, and construction refusing
credentials that can never work."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest

from freedompay_async import (
    FreedomPayClient,
    FreedomPayError,
    HTTPStatusError,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    Timeout,
)
from freedompay_async.testing import FakeFreedomPay, Faults
from freedompay_async.testing._faults import FAULT_KINDS

from .hostile import (
    AUTH_ID,
    SECRET_KEY,
    HostileServer,
    Reply,
    bomb,
    chunked,
    raw,
    respond,
    stall,
)

INFO_PATH = "/v5/partner/wallet/info"
MANY = RetryPolicy(max_attempts=50, backoff=0.001, max_backoff=0.001, max_retry_after=30.0)


def client_for(server: HostileServer, **options: Any) -> FreedomPayClient:
    return FreedomPayClient(AUTH_ID, SECRET_KEY, base_url=server.url, **options)


# -- 4. the caller's deadline is a deadline ------------------------------------------------------


async def test_a_retry_after_that_does_not_fit_raises_at_once() -> None:
    reply = respond(b"slow down", status=429, headers={"Retry-After": "999999"})
    async with HostileServer(reply) as server, client_for(server, timeout=5, retry=MANY) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as caught:
            await client.wallets.info("user-1")
        elapsed = time.monotonic() - started
    error = caught.value
    assert isinstance(error, HTTPStatusError) and error.http_status == 429
    assert error.retry_after == 999999.0
    assert error.attempts == 1 and len(server.requests) == 1
    assert "not retried" in error.message
    assert elapsed < 5  # before: two capped waits of 30 s each


async def test_a_retry_after_that_fits_is_waited_then_retried() -> None:
    reply = respond(b"slow down", status=429, headers={"Retry-After": "0"})
    policy = RetryPolicy(max_attempts=3, backoff=0.001)
    async with (
        HostileServer(reply) as server,
        client_for(server, timeout=5, retry=policy) as client,
    ):
        with pytest.raises(RateLimitError) as caught:
            await client.wallets.info("user-1")
    assert caught.value.retry_after == 0.0
    assert caught.value.attempts == 3 and len(server.requests) == 3


@pytest.mark.parametrize("value", [None, "soon", "²"])
async def test_rate_limit_error_without_a_usable_retry_after(value: str | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    async with HostileServer(respond(b"{}", status=429, headers=headers)) as server:
        async with client_for(server, max_retries=0) as client:
            with pytest.raises(RateLimitError) as caught:
                await client.wallets.info("user-1")
    assert caught.value.retry_after is None
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is RateLimitError and copy.retry_after is None


async def test_a_stall_uses_the_deadline_once_not_once_per_attempt() -> None:
    async with HostileServer(stall()) as server:
        async with client_for(server, timeout=0.5, retry=MANY) as client:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError) as caught:
                await client.wallets.info("user-1")
            elapsed = time.monotonic() - started
    assert caught.value.attempts == 1  # no time was left for another
    assert elapsed < 2.5  # before: 50 attempts of 0.5 s each


async def test_retries_and_backoff_stop_at_the_deadline() -> None:
    async def slow_503(request: Any, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.1)
        await respond(b"busy", status=503)(request, writer)

    policy = RetryPolicy(max_attempts=1000, backoff=0.05, max_backoff=0.05)
    async with HostileServer(slow_503) as server:
        async with client_for(server, timeout=1.0, retry=policy) as client:
            started = time.monotonic()
            # The last attempt gets what is left: a 503, or a timeout when that was too little.
            with pytest.raises((HTTPStatusError, RequestTimeoutError)) as caught:
                await client.wallets.info("user-1")
            elapsed = time.monotonic() - started
    assert 2 <= caught.value.attempts < 20
    assert elapsed < 3  # before: 1000 attempts, about two minutes


async def test_without_a_total_the_retry_after_cap_still_applies() -> None:
    reply = respond(b"slow down", status=429, headers={"Retry-After": "999999"})
    policy = RetryPolicy(max_attempts=2, max_retry_after=0.01)
    async with HostileServer(reply) as server:
        async with client_for(server, timeout=Timeout(total=None), retry=policy) as client:
            with pytest.raises(RateLimitError) as caught:
                await client.wallets.info("user-1")
    assert caught.value.attempts == 2


# -- 6. no signature or secret anywhere in an exception chain -------------------------------------


def reachable(error: BaseException) -> Iterator[object]:
    """Every object reachable from ``error`` through causes, contexts, args and attributes (of
    exceptions, containers, and aiohttp / yarl / multidict / SDK objects)."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        obj = pending.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, (str, bytes, int, float, type)):
            continue
        if isinstance(obj, BaseException):
            pending += (obj.__cause__, obj.__context__, *obj.args)
        if isinstance(obj, Mapping):
            pending += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (tuple, list, set, frozenset)):
            pending += list(obj)
        module = type(obj).__module__.split(".")[0]
        if isinstance(obj, BaseException) or module in {
            "aiohttp",
            "yarl",
            "multidict",
            "freedompay_async",
        }:
            pending += list(getattr(obj, "__dict__", {}).values())
            for name in getattr(type(obj), "__slots__", ()):
                pending.append(getattr(obj, name, None))


def assert_no_secret(error: BaseException, signatures: list[str]) -> None:
    assert signatures, "the client sent no request"
    secrets = [SECRET_KEY] + [signature.rsplit(".", 1)[-1] for signature in signatures]
    for obj in reachable(error):
        texts = [repr(obj)]
        if isinstance(obj, BaseException):
            texts.append(str(obj))
        if isinstance(obj, bytes):
            texts.append(obj.decode("latin-1"))
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"secret reachable from {error!r} via {type(obj)}"


def signature_trace(signatures: list[str]) -> aiohttp.TraceConfig:
    async def on_start(_session: object, _context: object, params: Any) -> None:
        signatures.append(params.headers["X-JWS-Signature"])

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_no_fault_leaves_the_signature_in_the_exception_chain(kind: str) -> None:
    faults = Faults(**{f"{kind}_rate": 1.0}, stall_seconds=5, retry_after="0")  # type: ignore[arg-type]
    signatures: list[str] = []
    async with FakeFreedomPay(wallets=3, auth_id=AUTH_ID, secret_key=SECRET_KEY) as fake:
        fake.inject_faults(faults)
        options: dict[str, Any] = {"trace_configs": [signature_trace(signatures)]}
        async with fake.client(timeout=0.5, retry=RetryPolicy(backoff=0.001), **options) as client:
            for call in (
                lambda: client.wallets.info("user-1"),
                lambda: client.wallets.block("user-1", "fraud"),
            ):
                with pytest.raises(FreedomPayError) as caught:
                    await call()
                assert_no_secret(caught.value, signatures)


def _bad_gzip() -> Reply:
    return respond(b"not gzip at all", headers={"Content-Encoding": "gzip"})


SOCKET_FAILURES: dict[str, Reply] = {
    "bad-status-line": raw(b"HTTP/1.1 OK NOPE\r\n\r\n"),
    "garbage": raw(b"\x00\x01\x02 hello\r\n\r\n"),
    "half-headers": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Fo"),
    "closed-at-once": raw(b""),
    "short-body": respond(b'{"status":"ok"', length=1000, close=True),
    "bad-chunking": raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
    "bad-gzip": _bad_gzip(),
    "header-too-long": raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"),
    "oversize-bomb": respond(bomb("gzip", 4), headers={"Content-Encoding": "gzip"}),
    "endless": chunked(lambda: iter(lambda: b"x" * 65536, None)),
    "stall": stall(),
}


@pytest.mark.parametrize("name", list(SOCKET_FAILURES))
async def test_no_socket_failure_leaves_the_signature_in_the_exception_chain(name: str) -> None:
    signatures: list[str] = []
    async with HostileServer(SOCKET_FAILURES[name]) as server:
        options: dict[str, Any] = {"trace_configs": [signature_trace(signatures)]}
        async with client_for(server, timeout=0.5, max_retries=1, **options) as client:
            for call in (
                lambda: client.wallets.info("user-1"),
                lambda: client.wallets.close("user-1", "gone"),
            ):
                with pytest.raises(FreedomPayError) as caught:
                    await call()
                assert_no_secret(caught.value, signatures)


async def test_a_refused_connection_leaves_no_signature_either() -> None:
    async with HostileServer(stall()) as server:
        url = server.url
    signatures: list[str] = []
    trace = signature_trace(signatures)
    async with FreedomPayClient(
        AUTH_ID, SECRET_KEY, base_url=url, max_retries=0, trace_configs=[trace]
    ) as client:
        with pytest.raises(FreedomPayError) as caught:
            await client.wallets.info("user-1")
    assert_no_secret(caught.value, signatures)


async def test_the_redacted_cause_keeps_what_helps() -> None:
    async with HostileServer(SOCKET_FAILURES["bad-status-line"]) as server:
        async with client_for(server, max_retries=0) as client:
            with pytest.raises(FreedomPayError) as caught:
                await client.wallets.info("user-1")
    cause = caught.value.__cause__
    assert isinstance(cause, aiohttp.ClientResponseError)
    assert cause.request_info.headers["X-JWS-Signature"] == "[redacted]"
    assert cause.request_info.headers["Content-Type"] == "application/json"
    assert str(cause.request_info.url).endswith(INFO_PATH)


# -- 7. construction refuses what can never work -------------------------------------------------

BAD_VALUES = {
    "cr": "abc\rdef",
    "lf": "abc\ndef",
    "crlf-injection": "abc\r\nX-Evil: 1",
    "nul": "abc\x00def",
    "tab": "abc\tdef",
    "del": "abc\x7fdef",
    "leading-space": " abcdef",
    "trailing-space": "abcdef ",
    "trailing-newline": "abcdef\n",
}


@pytest.mark.parametrize("option", ["auth_id", "secret_key", "user_agent"])
@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_construction_refuses_control_characters_and_surrounding_whitespace(
    option: str, value: str
) -> None:
    options: dict[str, Any] = {"auth_id": AUTH_ID, "secret_key": SECRET_KEY, option: value}
    with pytest.raises(ValueError, match=option) as caught:
        FreedomPayClient(**options)
    assert value not in str(caught.value) and value.strip() not in str(caught.value)


def test_a_bad_secret_from_the_environment_is_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FREEDOMPAY_AUTH_ID", AUTH_ID)
    monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", "s3cr3t-value\n")
    with pytest.raises(ValueError, match="secret_key") as caught:
        FreedomPayClient()
    assert "s3cr3t" not in str(caught.value)


def test_ordinary_credentials_and_user_agents_are_accepted() -> None:
    FreedomPayClient("123456", "Ab+/=-_.~ key", user_agent="my-app/1.0 (ops@example.com)")
    FreedomPayClient("123456", "ключ-Ω", user_agent="")


# -- 5. waiting for a pooled connection is not a request timing out ------------------------------


class SlowServer:
    """Answers every Info after ``latency`` seconds; records the most requests in flight."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, request: Any, writer: asyncio.StreamWriter) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            await respond(INFO_BODY)(request, writer)
        finally:
            self.in_flight -= 1


INFO_BODY = (
    b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","wallet":{"wallet_id":"3f1c7c1e-7a4b-4c1e-9d3e-2b5c6a7d8e9f",'
    b'"currency":"KZT","balance":"1.00"}}'
)


async def test_info_many_caps_concurrency_at_the_pool_so_queueing_never_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = SlowServer(latency=0.1)
    # 5 sockets, 0.1 s a reply: 50 lookups take 1 s, twice the connect limit, which a request
    # queued for a socket would spend waiting (before the cap: most of them timed out).
    timeout = Timeout(total=2.0, connect=0.5)
    async with HostileServer(slow) as server:
        options = {"max_connections": 5, "timeout": timeout, "max_retries": 0}
        async with client_for(server, **options) as client:
            ids = [f"user-{i}" for i in range(50)]
            async with client.wallets.info_many(ids, concurrency=10_000) as results:
                errors = [result.error async for result in results]
    assert errors == [None] * 50
    assert slow.most_in_flight <= 5
    capped = [r for r in caplog.records if "capped at the connection pool size 5" in r.message]
    assert len(capped) == 1


async def test_the_cap_follows_a_borrowed_sessions_pool() -> None:
    slow = SlowServer(latency=0.05)
    async with HostileServer(slow) as server:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=3)
        async with aiohttp.ClientSession(connector=connector) as session:
            timeout = Timeout(total=2, connect=0.3)
            client = client_for(server, session=session, timeout=timeout, max_retries=0)
            async with client:
                assert client._transport.pool_size == 3
                ids = [f"user-{i}" for i in range(30)]
                async with client.wallets.info_many(ids, concurrency=500) as results:
                    errors = [result.error async for result in results]
    assert errors == [None] * 30
    assert slow.most_in_flight <= 3


async def test_no_cap_when_the_pool_has_none() -> None:
    async with HostileServer(SlowServer(latency=0)) as server:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async with client_for(server, session=session) as client:
                assert client._transport.pool_size is None
                async with client.wallets.info_many(["a", "b"], concurrency=500) as results:
                    assert [result.error async for result in results] == [None, None]
