"""examples/fastapi_app.py and examples/aiohttp_app.py, served in-process on loopback.

Each app runs in this test's event loop (uvicorn.Server / aiohttp AppRunner on port 0) in front
of FakeFreedomPay, and is called over real HTTP. Both apps must answer every case alike.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
import uvicorn
from aiohttp import web

import freedompay_async.errors as errors_module
from examples import aiohttp_app, fastapi_app
from freedompay_async import (
    ClientClosedError,
    FreedomPayClient,
    FreedomPayError,
    InvalidArgumentError,
    RequestStatus,
    WalletNotFoundError,
)
from freedompay_async.testing import FakeFreedomPay, Faults

INFO_PATH = "/v5/partner/wallet/info"

ClientFactory = Callable[[], FreedomPayClient]
Serve = Callable[[ClientFactory], AbstractAsyncContextManager[str]]


@asynccontextmanager
async def serve_fastapi(client_factory: ClientFactory) -> AsyncIterator[str]:
    """Run the FastAPI app with uvicorn in this loop; yield its base URL; shut it down."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        fastapi_app.create_app(client_factory), lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn did not start")
                await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serve_aiohttp(client_factory: ClientFactory) -> AsyncIterator[str]:
    """Run the aiohttp app on an AppRunner in this loop; yield its base URL; clean it up."""
    runner = web.AppRunner(
        aiohttp_app.create_app(client_factory), access_log=None, handle_signals=False
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(params=["fastapi", "aiohttp"])
def serve(request: pytest.FixtureRequest) -> Serve:
    return serve_fastapi if request.param == "fastapi" else serve_aiohttp


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No keep-alive: uvicorn's shutdown then has no idle connection to wait for (0.1 s each).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


async def get_balance(
    http: aiohttp.ClientSession, base_url: str, identifier: str
) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base_url}/wallets/{identifier}/balance") as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def no_retries(fake: FakeFreedomPay, **options: Any) -> ClientFactory:
    """A client factory whose failures show at once (no retries)."""
    return lambda: fake.client(max_retries=0, **options)


async def test_balance_is_the_exact_decimal_as_a_string(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    wallet = fake.add_wallet("vip", balance="12345678901234567890.10", currency="KZT")
    async with serve(fake.client) as base_url:
        status, body = await get_balance(http, base_url, "vip")
    assert status == 200
    assert body == {
        "identifier": "vip",
        "wallet_id": str(wallet.wallet_id),
        "balance": "12345678901234567890.10",  # not a float: every digit and the trailing 0
        "currency": "KZT",
        "status": "active",
    }


async def test_a_missing_wallet_is_404_with_the_api_error_code(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    async with serve(fake.client) as base_url:
        status, body = await get_balance(http, base_url, "nobody")
    assert status == 404
    assert body["error"] == "wallet_not_found"
    assert body["error_code"] == WalletNotFoundError.code
    assert body["request_status"] == RequestStatus.ERROR.value
    assert "nobody" in body["message"]


UPSTREAM_FAILURES: dict[str, Callable[[FakeFreedomPay], None]] = {
    "http 503": lambda fake: fake.respond_with(INFO_PATH, b"<html>busy</html>", status=503),
    "garbage body": lambda fake: fake.respond_with(INFO_PATH, b"\x00 not json {"),
    "wrong shape": lambda fake: fake.respond_with(INFO_PATH, {"status": "ok", "wallet": 7}),
    "api error 1001": lambda fake: fake.respond_with(
        INFO_PATH,
        {"status": "error", "request_status": "2", "error_code": "1001", "error_description": "?"},
    ),
    "connection reset": lambda fake: fake.inject_faults(Faults(reset_rate=1.0)),
}


async def test_upstream_failures_are_502(
    serve: Serve,
    fake: FakeFreedomPay,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with serve(no_retries(fake)) as base_url:  # one server for every case: uvicorn
        for failure, inject in UPSTREAM_FAILURES.items():  # takes 0.2 s to stop
            fake.stats.reset()
            inject(fake)
            status, body = await get_balance(http, base_url, "user-1")
            fake.clear_faults()
            assert status == 502, failure
            assert body["error"] == "upstream_error", failure
            assert body["error_code"] == (1001 if failure == "api error 1001" else None)
            assert set(body) == {"error", "message", "error_code", "request_status"}
            assert "busy" not in body["message"]  # the upstream reply stays in the logs
            assert fake.stats.by_path == {INFO_PATH: 1}, failure
        status, _ = await get_balance(http, base_url, "user-1")
        assert status == 200  # and nothing is left broken
    assert "upstream body: <html>busy</html>" in caplog.text


async def test_refused_credentials_are_502_and_never_show_the_key(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    secret = "s3cr3t-key-that-the-fake-refuses"
    async with serve(no_retries(fake, secret_key=secret)) as base_url:
        async with http.get(f"{base_url}/wallets/user-1/balance") as response:
            text = await response.text()
            status = response.status
    assert status == 502
    assert "401" in text
    assert secret not in text
    assert fake.secret_key not in text
    assert fake.stats.rejected_signatures == 1


async def test_a_timeout_is_504(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    fake.inject_faults(Faults(stall_rate=1.0, stall_seconds=30))  # released when the fake closes
    async with serve(no_retries(fake, timeout=0.1)) as base_url:
        status, body = await get_balance(http, base_url, "user-1")
    assert status == 504
    assert body["error"] == "upstream_timeout"
    assert fake.stats.faults == {"stall": 1}


async def test_an_invalid_identifier_is_422_and_nothing_is_sent(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    async with serve(fake.client) as base_url:
        for identifier in ["%20%20", "x" * 300, "user%07", "user%0A1"]:  # blank, too long, control
            status, body = await get_balance(http, base_url, identifier)
            assert status == 422, identifier
            assert body["error"] == "invalid_identifier"
            assert body["message"].startswith("identifier "), body
    assert fake.stats.requests == 0


async def test_one_client_serves_every_request_and_is_closed_on_shutdown(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    fake.latency = 0.05  # so that the requests overlap
    made: list[FreedomPayClient] = []
    sent: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_request_start(session: object, context: object, params: Any) -> None:
        sent.append(str(params.url))

    trace.on_request_start.append(on_request_start)

    def factory() -> FreedomPayClient:
        made.append(fake.client(trace_configs=[trace]))
        return made[-1]

    identifiers = [f"user-{n}" for n in range(30)]
    async with serve(factory) as base_url:
        replies = await asyncio.gather(*(get_balance(http, base_url, i) for i in identifiers))
        (client,) = made  # made once, at startup
        session = client.session
        assert session is not None and not client.closed
    assert [status for status, _ in replies] == [200] * len(identifiers)
    assert [body["balance"] for _, body in replies] == [
        str(fake.wallets[i].balance) for i in identifiers
    ]
    assert len(sent) == len(identifiers)  # every lookup went through that one client
    assert fake.stats.max_in_flight > 1  # ... concurrently
    assert client.closed and session.closed  # closed on shutdown


async def test_shutdown_lets_a_request_in_flight_finish_before_closing_the_client(
    serve: Serve, fake: FakeFreedomPay, http: aiohttp.ClientSession
) -> None:
    fake.latency = 0.15
    made: list[FreedomPayClient] = []

    def factory() -> FreedomPayClient:
        made.append(fake.client())
        return made[-1]

    async with serve(factory) as base_url:
        pending = asyncio.create_task(get_balance(http, base_url, "user-3"))
        with anyio.fail_after(5):
            while fake.stats.in_flight == 0:  # the request has reached Freedom Pay
                await asyncio.sleep(0.005)
    # The server has shut down: the request in flight was answered first.
    status, body = await pending
    assert status == 200
    assert body["balance"] == str(fake.wallets["user-3"].balance)
    assert made[0].closed


def every_error_class() -> list[type[FreedomPayError]]:
    found: list[type[FreedomPayError]] = []
    stack: list[type[FreedomPayError]] = [FreedomPayError]
    while stack:
        cls = stack.pop()
        if cls.__module__ == errors_module.__name__:
            found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_both_apps_map_every_error_alike() -> None:
    assert fastapi_app.ERROR_STATUSES == aiohttp_app.ERROR_STATUSES
    classes = every_error_class()
    assert len(classes) == len(errors_module.__all__) - 2  # every class but the two functions
    for cls in classes:
        error = cls("it failed", error_code="1004", request_status=RequestStatus.ERROR)
        status, body = fastapi_app.error_reply(error)
        assert (status, body) == aiohttp_app.error_reply(error)
        assert status in (404, 502, 503, 504) or (
            status == 422 and issubclass(cls, errors_module.InvalidArgumentError)
        )
        assert body["error_code"] == 1004
        assert body["request_status"] == "error"
    assert fastapi_app.error_reply(ClientClosedError("closed"))[0] == 503
    assert fastapi_app.error_reply(InvalidArgumentError("identifier must not be empty")) == (
        422,
        {
            "error": "invalid_identifier",
            "message": "identifier must not be empty",
            "error_code": None,
            "request_status": None,
        },
    )
