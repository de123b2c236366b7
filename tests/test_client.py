"""The client end to end through the fake server: round trips, every error class, lifecycle."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from uuid import UUID

import aiohttp
import pytest

from freedompay_async import (
    APIError,
    ArgumentTypeError,
    AuthenticationError,
    ClientClosedError,
    FreedomPayClient,
    FreedomPayError,
    HTTPStatusError,
    InvalidArgumentError,
    InvalidRequestError,
    RequestTimeoutError,
    ResponseDecodeError,
    Timeout,
    TransportError,
    WalletInfo,
    WalletNotFoundError,
)
from freedompay_async._jws import verify
from freedompay_async.testing import FakeFreedomPay

INFO_PATH = "/v5/partner/wallet/info"


async def test_quickstart_round_trip(fake: FakeFreedomPay) -> None:
    fake.add_wallet("user-42", balance="15230.50", currency="KZT")
    async with FreedomPayClient(
        auth_id=fake.auth_id, secret_key=fake.secret_key, base_url=fake.url
    ) as client:
        info = await client.wallets.info("user-42")
    assert isinstance(info, WalletInfo)
    assert info.wallet.balance == Decimal("15230.50")
    assert info.wallet.currency == "KZT"
    assert info.wallet.identifiers[0].value == "user-42"
    assert isinstance(info.wallet.wallet_id, UUID)
    assert info.dt is not None and info.dt.tzinfo is not None
    assert fake.stats.by_path == {INFO_PATH: 1}


async def test_seeded_wallets_are_all_reachable(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    infos = await asyncio.gather(*(client.wallets.info(f"user-{i}") for i in range(100)))
    assert [info.wallet.identifiers[0].value for info in infos] == [f"user-{i}" for i in range(100)]
    assert {info.wallet.balance for info in infos} == {w.balance for w in fake.wallets.values()}


async def test_hs512_client_is_accepted_by_the_server(fake: FakeFreedomPay) -> None:
    async with fake.client(algorithm="HS512") as client:
        info = await client.wallets.info("user-1")
    assert info.wallet.identifiers[0].value == "user-1"


async def test_unknown_wallet_raises_wallet_not_found(client: FreedomPayClient) -> None:
    with pytest.raises(WalletNotFoundError) as caught:
        await client.wallets.info("nobody")
    error = caught.value
    assert isinstance(error, APIError) and isinstance(error, FreedomPayError)
    assert error.error_code == 1004
    assert error.identifier == "nobody"
    assert error.endpoint == "info"
    assert error.http_status == 200
    assert "nobody" in str(error) and "1004" in str(error)


async def test_the_fake_answers_1001_for_bad_bodies(fake: FakeFreedomPay) -> None:
    from freedompay_async._jws import sign

    async with aiohttp.ClientSession() as session:
        for body in (b"not json", b'{"identifier": ""}', b'{"identifier": 5}', b"[]"):
            signature = sign(body, uri=INFO_PATH, auth_id=fake.auth_id, secret_key=fake.secret_key)
            async with session.post(
                fake.url + INFO_PATH, data=body, headers={"X-JWS-Signature": signature}
            ) as response:
                reply = await response.json()
            assert response.status == 200
            assert reply["status"] == "error" and reply["error_code"] == "1001", body


async def test_invalid_request_error_through_http(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(
        INFO_PATH, {"status": "error", "error_code": 1001, "error_description": "bad identifier"}
    )
    with pytest.raises(InvalidRequestError, match="bad identifier"):
        await client.wallets.info("user-1")


async def test_the_fake_verifies_signatures(fake: FakeFreedomPay) -> None:
    async with fake.client(secret_key="wrong-key") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.wallets.info("user-1")
    assert caught.value.http_status == 401
    assert isinstance(caught.value, HTTPStatusError)
    assert fake.stats.rejected_signatures == 1
    async with fake.client(auth_id="999") as client:
        with pytest.raises(AuthenticationError):
            await client.wallets.info("user-1")
    assert fake.stats.rejected_signatures == 2


async def test_the_signature_sent_covers_exactly_the_body_sent(fake: FakeFreedomPay) -> None:
    seen: list[tuple[str, bytes]] = []

    async def on_request_chunk_sent(session, context, params) -> None:  # type: ignore[no-untyped-def]
        seen.append(("chunk", params.chunk))

    async def on_request_headers_sent(session, context, params) -> None:  # type: ignore[no-untyped-def]
        seen.append(("sig", params.headers["X-JWS-Signature"].encode()))

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_request_chunk_sent)
    trace.on_request_headers_sent.append(on_request_headers_sent)
    async with fake.client(trace_configs=[trace]) as client:
        await client.wallets.info("user-7")
    signature = next(value for kind, value in seen if kind == "sig").decode()
    body = b"".join(value for kind, value in seen if kind == "chunk")
    assert body == b'{"identifier":"user-7"}'
    header = verify(signature, body, secret_key=fake.secret_key)
    assert header == {
        "uri": INFO_PATH,
        "auth_id": fake.auth_id,
        "method": "POST",
        "params": "",
        "alg": "HS256",
    }


async def test_non_2xx_raises_http_status_error_with_truncated_body(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(
        INFO_PATH,
        b"<html>" + b"x" * 5000 + b"</html>",
        status=502,
        content_type="text/html",
        times=3,
    )
    with pytest.raises(HTTPStatusError) as caught:
        await client.wallets.info("user-1")
    error = caught.value
    assert not isinstance(error, AuthenticationError)
    assert error.http_status == 502
    assert error.body is not None and error.body.startswith("<html>xxx")
    assert len(error.body) < 600 and "more bytes" in error.body


async def test_non_2xx_with_an_envelope_keeps_its_error_code(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(INFO_PATH, {"status": "error", "error_code": "1001"}, status=400)
    with pytest.raises(HTTPStatusError) as caught:
        await client.wallets.info("user-1")
    assert caught.value.http_status == 400
    assert caught.value.error_code == 1001


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"status":"ok"}', b'{"status":"ok","wallet":{}}']
)
async def test_malformed_replies_raise_response_decode_error(
    client: FreedomPayClient, fake: FakeFreedomPay, body: bytes
) -> None:
    fake.respond_with(INFO_PATH, body, times=3)
    with pytest.raises(ResponseDecodeError) as caught:
        await client.wallets.info("user-1")
    assert caught.value.attempts == 3  # a read is retried; the fake answered junk each time
    assert caught.value.body == body.decode()
    assert caught.value.identifier == "user-1"


async def test_oversized_replies_are_refused(fake: FakeFreedomPay) -> None:
    fake.respond_with(INFO_PATH, b'{"status":"ok","pad":"' + b"x" * 5000 + b'"}')
    async with fake.client(max_response_bytes=1000) as client:
        with pytest.raises(ResponseDecodeError, match="max_response_bytes=1000"):
            await client.wallets.info("user-1")
        # The pool is still usable afterwards.
        assert (await client.wallets.info("user-2")).wallet.identifiers[0].value == "user-2"


async def test_connection_refused_raises_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with FreedomPayClient(
        auth_id="1", secret_key="s", base_url=f"http://127.0.0.1:{port}"
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.wallets.info("user-1")
    assert not isinstance(caught.value, RequestTimeoutError)
    assert caught.value.endpoint == "info" and caught.value.identifier == "user-1"
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_timeouts_raise_request_timeout_error() -> None:
    async with FakeFreedomPay(wallets=1, latency=2.0) as slow, slow.client(timeout=0.2) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.wallets.info("user-0")
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, TransportError)
        assert "0.2" in str(caught.value)
        # Per-call override.
        with pytest.raises(RequestTimeoutError, match=r"total=0\.1s"):
            await client.wallets.info("user-0", timeout=Timeout(total=0.1))


@pytest.mark.parametrize(
    ("identifier", "error"),
    [
        ("", ValueError),
        ("   ", ValueError),
        ("x" * 257, ValueError),
        ("bad\nline", ValueError),
        (None, TypeError),
        (42, TypeError),
        (b"user-1", TypeError),
    ],
)
async def test_bad_identifiers_are_refused_before_any_network_call(
    client: FreedomPayClient, fake: FakeFreedomPay, identifier: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await client.wallets.info(identifier)  # type: ignore[arg-type]
    assert fake.stats.requests == 0
    assert client.session is None  # nothing was even connected


# -- lifecycle ------------------------------------------------------------------------------


async def test_close_is_idempotent_and_calls_after_close_fail_clearly(fake: FakeFreedomPay) -> None:
    client = fake.client()
    await client.wallets.info("user-1")
    session = client.session
    assert session is not None and not session.closed
    await client.aclose()
    await client.aclose()
    assert client.closed and session.closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.wallets.info("user-1")
    assert isinstance(ClientClosedError("x"), RuntimeError)
    with pytest.raises(ClientClosedError):
        async with client:
            pass


async def test_closing_an_unused_client_is_fine() -> None:
    client = FreedomPayClient(auth_id="1", secret_key="s")
    await client.aclose()
    assert client.closed


async def test_entering_twice_is_an_error(fake: FakeFreedomPay) -> None:
    async with fake.client() as client:
        with pytest.raises(RuntimeError, match="already"):
            await client.__aenter__()


async def test_caller_owned_session_is_used_and_never_closed(fake: FakeFreedomPay) -> None:
    async with aiohttp.ClientSession() as session:
        async with fake.client(session=session) as client:
            info = await client.wallets.info("user-5")
            assert client.session is session
        assert info.wallet.identifiers[0].value == "user-5"
        assert not session.closed
        async with session.get(fake.url + "/") as response:  # still usable by its owner
            assert response.status == 405


def test_client_built_outside_a_loop_works_in_asyncio_run() -> None:
    server_ready: dict[str, FakeFreedomPay] = {}
    client = FreedomPayClient(
        auth_id="123456", secret_key="fake-secret-key", base_url="http://127.0.0.1:1"
    )

    async def main() -> WalletInfo:
        async with FakeFreedomPay(wallets=3) as fake:
            server_ready["fake"] = fake
            # Point the lazily created transport at the running fake.
            lazy = FreedomPayClient(
                auth_id=fake.auth_id, secret_key=fake.secret_key, base_url=fake.url
            )
            async with lazy:
                return await lazy.wallets.info("user-2")

    assert asyncio.run(main()).wallet.identifiers[0].value == "user-2"
    assert client.session is None  # constructing never touched a loop
    asyncio.run(client.aclose())


def test_a_client_is_bound_to_its_first_event_loop() -> None:
    loop_a, loop_b = asyncio.new_event_loop(), asyncio.new_event_loop()
    fake = FakeFreedomPay(wallets=1)
    try:
        loop_a.run_until_complete(fake.start())
        client = fake.client()
        info = loop_a.run_until_complete(client.wallets.info("user-0"))
        assert info.wallet.identifiers[0].value == "user-0"
        with pytest.raises(RuntimeError, match="event loop"):
            loop_b.run_until_complete(client.wallets.info("user-0"))
        # Still fine in its own loop afterwards.
        loop_a.run_until_complete(client.wallets.info("user-0"))
        loop_a.run_until_complete(client.aclose())
        loop_a.run_until_complete(fake.aclose())
    finally:
        loop_a.close()
        loop_b.close()


# -- configuration --------------------------------------------------------------------------


def test_credentials_and_host_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREEDOMPAY_AUTH_ID", "777")
    monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", "env-secret")
    monkeypatch.setenv("FREEDOMPAY_BASE_URL", "https://example.test")
    client = FreedomPayClient()
    assert client.auth_id == "777"
    assert client.base_url == "https://example.test"
    assert FreedomPayClient(base_url="https://other.test").base_url == "https://other.test"


def test_missing_credentials_say_which_and_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FREEDOMPAY_AUTH_ID", raising=False)
    monkeypatch.delenv("FREEDOMPAY_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match=r"auth_id is required.*FREEDOMPAY_AUTH_ID"):
        FreedomPayClient(secret_key="s")
    with pytest.raises(ValueError, match=r"secret_key is required.*FREEDOMPAY_SECRET_KEY"):
        FreedomPayClient(auth_id="1")


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("kz", "https://api.freedompay.kz"),
        ("kz-test", "https://test-api.freedompay.kz"),
        ("kg", "https://api.freedompay.kg"),
        ("uz", "https://api.freedompay.uz"),
    ],
)
def test_regions(region: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FREEDOMPAY_BASE_URL", raising=False)
    assert FreedomPayClient(auth_id="1", secret_key="s", region=region).base_url == url  # type: ignore[arg-type]
    assert FreedomPayClient(auth_id="1", secret_key="s").base_url == "https://api.freedompay.kz"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"region": "mars"}, InvalidArgumentError, "region must be one of"),
        ({"region": 5}, ArgumentTypeError, "region"),
        ({"region": "kz", "base_url": "https://x.test"}, InvalidArgumentError, "not both"),
        ({"base_url": "ftp://x.test"}, InvalidArgumentError, "http"),
        ({"base_url": "https://x.test/v5"}, InvalidArgumentError, "origin"),
        ({"base_url": b"https://x.test"}, ArgumentTypeError, "base_url"),
        ({"algorithm": "none"}, InvalidArgumentError, "algorithm"),
        ({"algorithm": 256}, ArgumentTypeError, "algorithm"),
        ({"max_connections": 0}, InvalidArgumentError, "max_connections"),
        ({"max_connections": True}, ArgumentTypeError, "max_connections"),
        ({"max_connections_per_host": -1}, InvalidArgumentError, "max_connections_per_host"),
        ({"max_response_bytes": 1.5}, ArgumentTypeError, "max_response_bytes"),
        ({"timeout": -1}, InvalidArgumentError, "positive"),
        ({"timeout": "10"}, ArgumentTypeError, "timeout"),
        ({"retry": 3}, ArgumentTypeError, "RetryPolicy"),
        ({"max_retries": -1}, InvalidArgumentError, "max_retries"),
        ({"max_retries": 1.0}, ArgumentTypeError, "max_retries"),
        ({"user_agent": b"bot"}, ArgumentTypeError, "user_agent"),
        ({"auth_id": ""}, InvalidArgumentError, "auth_id"),
        ({"auth_id": 123456}, ArgumentTypeError, "auth_id"),
        ({"session": object()}, ArgumentTypeError, "ClientSession"),
        ({"ssl": True}, ArgumentTypeError, "SSLContext"),
    ],
)
def test_bad_options_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    options: dict[str, object] = {"auth_id": "1", "secret_key": "s", **kwargs}
    with pytest.raises(error, match=match):
        FreedomPayClient(**options)  # type: ignore[arg-type]


def test_timeout_object() -> None:
    assert Timeout.coerce(5) == Timeout(total=5.0, connect=5.0)
    assert Timeout.coerce(60) == Timeout(total=60.0, connect=10.0)
    assert Timeout.coerce(None) == Timeout()
    with pytest.raises(ValueError, match="read"):
        Timeout(read=0)


# -- secrets --------------------------------------------------------------------------------


async def test_secret_never_appears_in_reprs_or_errors(fake: FakeFreedomPay) -> None:
    secret = fake.secret_key
    async with fake.client() as client:
        texts = [repr(client), str(client), repr(client.wallets), repr(fake)]
        for identifier in ("user-1", "missing"):
            try:
                await client.wallets.info(identifier)
            except FreedomPayError as exc:
                texts += [str(exc), repr(exc)]
        texts += [repr(signer) for signer in client._signers.values()]
    async with fake.client(secret_key="wrong-" + secret) as bad:
        with pytest.raises(AuthenticationError) as caught:
            await bad.wallets.info("user-1")
        texts += [str(caught.value), repr(caught.value), repr(bad)]
    assert texts
    for text in texts:
        assert secret not in text
        assert "X-JWS" not in text and ".." not in text.replace("...", "")
