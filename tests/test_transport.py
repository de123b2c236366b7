"""The transport seam: ``FreedomPayClient(transport=...)`` with any object of the protocol."""

from __future__ import annotations

import ast
import asyncio
import logging
import pathlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest

import freedompay_async
from freedompay_async import (
    AiohttpTransport,
    ClientClosedError,
    FreedomPayClient,
    FreedomPayError,
    MutationOutcomeUnknownError,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    Timeout,
    Transport,
    TransportError,
    TransportResponse,
    WalletNotFoundError,
)
from freedompay_async._protocol import ENDPOINTS
from freedompay_async.testing import FakeFreedomPay

QUICK = RetryPolicy(backoff=0.001, max_backoff=0.01)

Hook = Callable[[int, str], Awaitable[TransportResponse | None]]


class Recording:
    """Wraps the default transport; records every send; ``hook`` may answer or raise first."""

    def __init__(self, inner: Transport | None = None, hook: Hook | None = None) -> None:
        self.inner = inner if inner is not None else AiohttpTransport()
        self.hook = hook
        self.sends: list[tuple[str, dict[str, str], bytes, Timeout]] = []
        self.closes = 0

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: Timeout
    ) -> TransportResponse:
        self.sends.append((url, dict(headers), body, timeout))
        if self.hook is not None:
            answer = await self.hook(len(self.sends), url)
            if answer is not None:
                return answer
        return await self.inner.send(url, headers, body, timeout)

    async def aclose(self) -> None:
        self.closes += 1
        await self.inner.aclose()


def test_the_transports_satisfy_the_protocol() -> None:
    assert isinstance(AiohttpTransport(), Transport)
    assert isinstance(Recording(), Transport)
    assert not isinstance(object(), Transport)


async def test_a_custom_transport_carries_reads_and_mutations(fake: FakeFreedomPay) -> None:
    transport = Recording()
    async with fake.client(transport=transport, user_agent="shop/1.0") as client:
        assert client.transport is transport
        assert client.session is None  # an aiohttp session belongs to the default transport
        info = await client.wallets.info("user-1")
        assert info.wallet.identifiers[0].value == "user-1"
        blocked = await client.wallets.block("user-2", "fraud check")
        assert blocked.request_status.is_final
        with pytest.raises(WalletNotFoundError):
            await client.wallets.info("nobody")
    assert transport.closes == 1
    assert [url for url, *_ in transport.sends] == [
        fake.url + ENDPOINTS["info"].path,
        fake.url + ENDPOINTS["block"].path,
        fake.url + ENDPOINTS["info"].path,
    ]
    for _, headers, body, timeout in transport.sends:
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == "shop/1.0"
        assert headers["X-JWS-Signature"].count(".") == 2  # a compact JWS over ``body``
        assert body.startswith(b"{")
        assert timeout == Timeout()  # the client's default limits
    assert fake.stats.by_path[ENDPOINTS["block"].path] == 1


async def test_retries_go_through_the_transport_with_the_time_left(
    fake: FakeFreedomPay,
) -> None:
    async def unavailable_twice(n: int, url: str) -> TransportResponse | None:
        if n <= 2:
            await asyncio.sleep(0.05)
            return TransportResponse(503, {}, b"busy")
        return None

    transport = Recording(hook=unavailable_twice)
    async with fake.client(transport=transport, retry=QUICK, timeout=5.0) as client:
        info = await client.wallets.info("user-1")
    assert info.wallet.identifiers[0].value == "user-1"
    totals = [timeout.total for *_, timeout in transport.sends]
    assert len(totals) == 3 and totals[0] == 5.0
    assert all(total is not None for total in totals)
    assert totals[0] > totals[1] > totals[2]  # each retry gets only what is left
    assert len({body for _, _, body, _ in transport.sends}) == 1  # the very same bytes


async def test_retry_after_is_read_from_any_mapping_whatever_the_case(
    fake: FakeFreedomPay,
) -> None:
    async def rate_limited(n: int, url: str) -> TransportResponse:
        return TransportResponse(429, {"retry-after": "7"}, b"")

    async with fake.client(transport=Recording(hook=rate_limited), max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.wallets.info("user-1")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [(ValueError, TransportError), (OSError, TransportError), (TimeoutError, RequestTimeoutError)],
)
async def test_a_transport_raising_something_else_gives_the_caller_a_freedompay_error(
    fake: FakeFreedomPay, raised: type[Exception], expected: type[FreedomPayError]
) -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"

    async def broken(n: int, url: str) -> TransportResponse:
        raise raised(f"boom {secret}")

    transport = Recording(hook=broken)
    async with fake.client(transport=transport, retry=QUICK) as client:
        with pytest.raises(FreedomPayError) as caught:
            await client.wallets.info("user-1")
    error = caught.value
    assert type(error) is expected
    assert isinstance(error.__cause__, raised)
    assert error.attempts == 3 and len(transport.sends) == 3  # retried like a lost connection
    assert "Recording" in str(error) and raised.__name__ in str(error)
    assert secret not in str(error)  # the foreign message is left on the cause only


async def test_a_mutation_whose_send_raised_something_else_is_resent_and_reconciled(
    fake: FakeFreedomPay,
) -> None:
    async def first_send_breaks(n: int, url: str) -> TransportResponse | None:
        if n == 1:
            raise ConnectionResetError("gone")
        return None

    transport = Recording(hook=first_send_breaks)
    async with fake.client(transport=transport, retry=QUICK) as client:
        blocked = await client.wallets.block("user-3", "fraud check")
        assert blocked.request_status.is_final
        assert (await client.wallets.info("user-3")).wallet.status == "blocked"
    # The first send never reached the server; the resend carried the same bytes.
    assert transport.sends[0][2] == transport.sends[1][2]
    assert fake.stats.by_path[ENDPOINTS["block"].path] == 1


async def test_a_mutation_through_a_transport_that_always_fails_is_outcome_unknown(
    fake: FakeFreedomPay,
) -> None:
    async def broken(n: int, url: str) -> TransportResponse:
        raise RuntimeError("no network here")

    async with fake.client(transport=Recording(hook=broken), retry=QUICK) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await client.wallets.block("user-3", "fraud check")
    assert isinstance(caught.value.cause, TransportError)


class Hanging:
    """Honours ``timeout.total`` as the protocol asks, and never answers."""

    def __init__(self) -> None:
        self.totals: list[float | None] = []

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: Timeout
    ) -> TransportResponse:
        self.totals.append(timeout.total)
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout.total)
        except TimeoutError as exc:  # asyncio.TimeoutError on 3.10: the same class from 3.11
            raise RequestTimeoutError(f"no answer in {timeout.total}s") from exc
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


async def test_the_calls_deadline_holds_through_a_custom_transport() -> None:
    transport = Hanging()
    async with FreedomPayClient("1", "s", transport=transport, retry=QUICK, timeout=0.3) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeoutError):
            await client.wallets.info("user-1")
        assert loop.time() - started < 0.3 + 0.2
    assert transport.totals[0] == 0.3
    assert all(total is not None and total <= 0.3 for total in transport.totals)


async def test_a_cancellation_through_a_custom_transport_stays_a_cancellation() -> None:
    transport = Hanging()
    async with FreedomPayClient("1", "s", transport=transport, timeout=30) as client:
        task = asyncio.create_task(client.wallets.info("user-1"))
        while not transport.totals:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(transport.totals) == 1  # not retried


async def test_a_view_sends_with_its_own_options_through_the_shared_transport(
    fake: FakeFreedomPay,
) -> None:
    transport = Recording()
    async with fake.client(transport=transport, timeout=9.0) as client:
        view = client.with_options(timeout=4.0)
        await view.wallets.info("user-1")
        await view.wallets.block("user-2", "fraud check")
        await client.wallets.info("user-1")
        await view.aclose()
        assert client.closed
        with pytest.raises(ClientClosedError):
            await client.wallets.info("user-1")
    assert [timeout.total for *_, timeout in transport.sends] == [4.0, 4.0, 9.0]
    assert transport.closes == 1  # closed once, however many views


@pytest.mark.parametrize(
    "option",
    [
        {"max_connections": 5},
        {"max_connections_per_host": 3},
        {"max_response_bytes": 1000},
        {"ssl": ssl.create_default_context()},
        {"trace_configs": []},
    ],
)
def test_default_transport_options_with_a_transport_are_a_value_error(
    option: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(option))}.*transport=") as caught:
        FreedomPayClient("1", "s", transport=Recording(), **option)
    assert "AiohttpTransport" in str(caught.value)


async def test_a_session_with_a_transport_is_a_value_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="session"):
            FreedomPayClient("1", "s", transport=Recording(), session=session)


def test_a_transport_is_checked_when_the_client_is_built() -> None:
    with pytest.raises(TypeError, match="send"):
        FreedomPayClient("1", "s", transport=object())  # type: ignore[arg-type]

    class Sized(Recording):
        pool_size: object = 0

    with pytest.raises(ValueError, match="pool_size"):
        FreedomPayClient("1", "s", transport=Sized())


async def test_info_many_is_capped_at_the_transports_pool_size(
    fake: FakeFreedomPay, caplog: pytest.LogCaptureFixture
) -> None:
    class Sized(Recording):
        pool_size = 3

    in_flight = peak = 0

    async def count(n: int, url: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return

    async with fake.client(transport=Sized(hook=count)) as client:
        with caplog.at_level(logging.WARNING, "freedompay_async"):
            ok = 0
            ids = [f"user-{i}" for i in range(30)]
            async with client.wallets.info_many(ids, concurrency=10) as results:
                async for result in results:
                    ok += result.ok
    assert ok == 30
    assert peak == 3
    assert "capped at the connection pool size 3" in caplog.text


async def test_without_a_pool_size_info_many_is_not_capped(fake: FakeFreedomPay) -> None:
    in_flight = peak = 0

    async def count(n: int, url: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return

    async with fake.client(transport=Recording(hook=count)) as client:
        ids = [f"user-{i}" for i in range(40)]
        async with client.wallets.info_many(ids, concurrency=20) as results:
            assert all([result.ok async for result in results])
    assert peak == 20


def test_the_default_transport_is_aiohttp_with_the_clients_pool_options() -> None:
    client = FreedomPayClient("1", "s", max_connections=7)
    assert isinstance(client.transport, AiohttpTransport)
    assert client.transport.pool_size == 7
    assert client.session is None  # created on first use


def test_only_the_aiohttp_transport_imports_aiohttp() -> None:
    """Outside ``testing``, no module imports aiohttp at run time but ``_transport.py`` (a
    ``TYPE_CHECKING`` import, for annotations, is allowed)."""
    package = pathlib.Path(freedompay_async.__file__).parent
    importers = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "testing":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _runtime_nodes(tree.body):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name == "aiohttp" or name.startswith("aiohttp.") for name in names):
                importers.append(str(relative))
    assert importers == ["_transport.py"]


def _runtime_nodes(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node of ``body`` but those under ``if TYPE_CHECKING:``."""
    nodes: list[ast.AST] = []
    for statement in body:
        if (
            isinstance(statement, ast.If)
            and isinstance(statement.test, ast.Name)
            and statement.test.id == "TYPE_CHECKING"
        ):
            nodes += _runtime_nodes(statement.orelse)
            continue
        nodes += ast.walk(statement)
    return nodes
