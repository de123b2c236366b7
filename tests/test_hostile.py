"""Hostile replies from raw-socket servers (``tests/hostile.py``), not from ``FakeFreedomPay``:
compression bombs, replies that cannot be decoded, absurd money, deadlines, secrets in chains."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freedompay_async import (
    FreedomPayClient,
    FreedomPayError,
    ResponseDecodeError,
    ResponseTooLargeError,
    RetryPolicy,
)
from freedompay_async._protocol import ENDPOINTS

from .hostile import (
    AUTH_ID,
    SECRET_KEY,
    HostileServer,
    RawRequest,
    Reply,
    bomb,
    chunked,
    deep_json,
    respond,
    route,
)

ROOT = Path(__file__).resolve().parent.parent
WALLET_ID = "3f1c7c1e-7a4b-4c1e-9d3e-2b5c6a7d8e9f"


def info_body(balance: str = '"1.00"') -> bytes:
    wallet = f'{{"wallet_id":"{WALLET_ID}","currency":"KZT","balance":{balance}}}'
    return f'{{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","wallet":{wallet}}}'.encode()


def client_for(server: HostileServer, **options: object) -> FreedomPayClient:
    options.setdefault("retry", RetryPolicy(backoff=0.001))
    return FreedomPayClient(AUTH_ID, SECRET_KEY, base_url=server.url, **options)  # type: ignore[arg-type]


# -- 1. compression bombs ---------------------------------------------------------------------


def _in_pieces(data: bytes, step: int = 16 * 1024) -> Callable[[], Iterator[bytes]]:
    return lambda: (data[i : i + step] for i in range(0, len(data), step))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_compression_bomb_is_refused_once_decoded_past_the_cap_and_not_retried(
    encoding: str, with_length: bool
) -> None:
    payload = bomb(encoding, 16)  # 16 MiB inflated, ~16 KiB on the wire
    headers = {"Content-Encoding": encoding}
    reply = (
        respond(payload, headers=headers)
        if with_length
        else chunked(_in_pieces(payload), headers=headers)
    )
    async with HostileServer(reply) as server, client_for(server) as client:
        with pytest.raises(ResponseTooLargeError) as caught:
            await client.wallets.info("user-1")
    assert "max_response_bytes=1048576 once decoded" in str(caught.value)
    assert caught.value.attempts == 1
    assert len(server.requests) == 1  # never retried: the same request gets the same bomb


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_compressed_reply_under_the_cap_decodes(encoding: str, with_length: bool) -> None:
    body = info_body()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    headers = {"Content-Encoding": encoding}
    reply = (
        respond(packed, headers=headers)
        if with_length
        else chunked(_in_pieces(packed, 7), headers=headers)
    )
    async with HostileServer(reply) as server, client_for(server) as client:
        info = await client.wallets.info("user-1")
    assert str(info.wallet.balance) == "1.00"


async def test_the_cap_counts_decoded_bytes_exactly() -> None:
    body = info_body()[:-1] + b',"padding":"' + b"p" * 5000 + b'"}'
    packed = gzip.compress(body)
    reply = respond(packed, headers={"Content-Encoding": "gzip"})
    async with HostileServer(reply) as server:
        async with client_for(server, max_response_bytes=len(body)) as client:
            await client.wallets.info("user-1")  # exactly at the cap: fine
        async with client_for(server, max_response_bytes=len(body) - 1) as client:
            with pytest.raises(ResponseTooLargeError):
                await client.wallets.info("user-1")


@pytest.mark.parametrize(
    ("kind", "encoding"), [("bomb", "gzip"), ("bomb-chunked", "deflate")], ids=["gzip", "deflate"]
)
def test_a_500_mb_bomb_adds_under_20_mb_to_peak_rss(kind: str, encoding: str) -> None:
    # A fresh process: ru_maxrss is the peak of the whole process, so it must be ours alone.
    run = subprocess.run(
        [sys.executable, "-m", "tests.hostile", kind, encoding, "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(run.stdout)
    assert figures["error"] == "ResponseTooLargeError"
    assert figures["requests_sent"] == 1
    assert figures["added_mb"] < 20, figures


async def test_an_endless_body_without_length_is_refused_at_the_cap() -> None:
    def endless() -> Iterator[bytes]:
        return iter(lambda: b"x" * 65536, None)

    async with HostileServer(chunked(endless)) as server, client_for(server) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.wallets.info("user-1")
    assert len(server.requests) == 1


async def test_an_oversized_error_reply_is_refused_too() -> None:
    payload = bomb("gzip", 8)
    reply = respond(payload, status=503, headers={"Content-Encoding": "gzip"})
    async with HostileServer(reply) as server, client_for(server) as client:
        with pytest.raises(ResponseDecodeError):
            await client.wallets.info("user-1")


# -- 2. nothing but FreedomPayError leaves a call -----------------------------------------------

REQUEST_ID = UUID("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")


def every_endpoint(client: FreedomPayClient) -> dict[str, Callable[[], Awaitable[object]]]:
    """One valid call of each endpoint (mutations with a known request_id)."""
    wallets = client.wallets
    return {
        "info": lambda: wallets.info("user-1"),
        "balance": lambda: wallets.balance("user-1"),
        "statement": lambda: wallets.statement("user-1"),
        "request_status": lambda: wallets.request_status(REQUEST_ID),
        "add": lambda: wallets.add(country="KAZ", currency="KZT", request_id=REQUEST_ID),
        "identify_owner": lambda: wallets.identify_owner(
            "user-1", request_id=REQUEST_ID, first_name="A"
        ),
        "block": lambda: wallets.block("user-1", "fraud", request_id=REQUEST_ID),
        "close": lambda: wallets.close("user-1", "gone", request_id=REQUEST_ID),
    }


MUTATIONS = {"add", "identify_owner", "block", "close"}
DEEP = (
    b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","x":'
    + deep_json(100_000)
    + b"}"
)
HUGE_INT = (
    b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","x":' + b"7" * 5000 + b"}"
)


@pytest.mark.parametrize("body", [DEEP, HUGE_INT], ids=["deep-json", "5000-digit-int"])
@pytest.mark.parametrize("name", list(ENDPOINTS))
async def test_undecodable_replies_are_response_decode_errors(name: str, body: bytes) -> None:
    async with HostileServer(respond(body)) as server, client_for(server, max_retries=0) as client:
        if name == "statement" and body is HUGE_INT:
            await every_endpoint(client)[name]()  # no raw kept, unknown field skipped: fine
            return
        with pytest.raises(ResponseDecodeError) as caught:
            await every_endpoint(client)[name]()
    error = caught.value
    assert type(error) is ResponseDecodeError
    assert error.endpoint == name
    if name in MUTATIONS:
        assert error.request_id == REQUEST_ID
        assert "may have been carried out" in error.message


async def test_info_many_reports_an_undecodable_reply_on_that_item_only() -> None:
    def choose(request: RawRequest) -> Reply:
        return respond(DEEP) if b"user-13" in request.body else respond(info_body())

    async with HostileServer(route(choose)) as server, client_for(server, max_retries=0) as client:
        ids = [f"user-{i}" for i in range(40)]
        async with client.wallets.info_many(ids, concurrency=8) as results:
            outcomes = {result.identifier: result.error async for result in results}
    assert set(outcomes) == set(ids)
    assert isinstance(outcomes.pop("user-13"), ResponseDecodeError)
    assert all(error is None for error in outcomes.values())


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "sNaN", "-Infinity", "1E+999999999", "0.1", "1e-99"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
hostile_numbers = st.sampled_from(
    [b'"NaN"', b'"sNaN"', b'"-Infinity"', b"1E+999999999", b"1" * 5000, b"-0.5", b"1e-50"]
)


def _money_reply(number: bytes) -> bytes:
    wallet = b'{"wallet_id":"' + WALLET_ID.encode() + b'","currency":"KZT","balance":' + number
    op = b'{"type":"emoney_pay","datetime":"2024-01-01T00:00:00Z","amount":' + number + b"}"
    return (
        b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","balance":'
        + number
        + b',"wallet":'
        + wallet
        + b'},"operations":['
        + op
        + b"]}"
    )


bodies = (
    st.binary(max_size=200)
    | json_values.map(msgspec.json.encode)
    | st.fixed_dictionaries(
        {"status": st.sampled_from(["ok", "error"]) | json_values},
        optional={
            "wallet": json_values,
            "request_status": json_values,
            "error_code": json_values,
            "operations": st.lists(json_values, max_size=2),
            "request_id": st.uuids().map(str) | json_values,
        },
    ).map(msgspec.json.encode)
    | st.integers(1, 120_000).map(
        lambda n: (
            b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","x":'
            + deep_json(n)
            + b"}"
        )
    )
    | hostile_numbers.map(_money_reply)
)


class Stage:
    """A hostile server and a client on a private loop, shared by the hypothesis examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.reply: Reply = respond(b"")
        self.server = HostileServer(route(lambda _request: self.reply))
        self.loop.run_until_complete(self.server.__aenter__())
        self.client = client_for(self.server, max_retries=0, timeout=5)
        self.calls = every_endpoint(self.client)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.server.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    staged = Stage()
    try:
        yield staged
    finally:
        staged.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    status=st.sampled_from([200, 200, 200, 201, 400, 401, 429, 500, 503]),
    encoding=st.sampled_from([None, None, "gzip", "deflate", "br", "zstd"]),
    retry_after=st.none() | st.sampled_from(["²", "9" * 400, "-1", "Wed, 99 Foo", "1e9"]),
)
def test_any_reply_to_any_endpoint_raises_only_freedompay_errors(
    stage: Stage, body: bytes, status: int, encoding: str | None, retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if encoding in ("gzip", "deflate"):  # br / zstd stay raw: undecodable, or no decoder
            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    stage.reply = respond(body, status=status, headers=headers)
    for name, call in stage.calls.items():
        try:
            stage.loop.run_until_complete(call())
        except FreedomPayError as error:  # anything else fails the test
            assert error.endpoint == name
        else:
            assert 200 <= status < 300


# -- 3. money is a finite number, within bounds -------------------------------------------------

ABSURD = {
    "nan": b'"NaN"',
    "snan": b'"sNaN"',
    "minus-infinity": b'"-Infinity"',
    "infinity-number": b"Infinity",
    "huge-exponent": b"1E+999999999",
    "tiny-exponent": b"1E-999999999",
    "500000-digits": b"9" * 500_000,
    "500000-digit-fraction": b"0." + b"3" * 500_000,
    "10^24": b'"1' + b"0" * 24 + b'"',
    "41-fraction-digits": b"0." + b"1" * 41,
}
READS_WITH_MONEY = ["info", "balance", "statement", "request_status", "add"]


@pytest.mark.parametrize("name", READS_WITH_MONEY)
@pytest.mark.parametrize("number", list(ABSURD.values()), ids=list(ABSURD))
async def test_absurd_money_is_a_response_decode_error(name: str, number: bytes) -> None:
    async with HostileServer(respond(_money_reply(number))) as server:
        async with client_for(server, max_retries=0) as client:
            with pytest.raises(ResponseDecodeError) as caught:
                await every_endpoint(client)[name]()
    assert len(str(caught.value)) < 2000  # the half-megabyte number is not echoed


@pytest.mark.parametrize("name", READS_WITH_MONEY)
@pytest.mark.parametrize(
    "number",
    [b'"999999999999999999.99"', b"-999999999999999999999999", b"0.1000000000000000055511"],
)
async def test_large_but_sane_money_decodes_exactly(name: str, number: bytes) -> None:
    async with HostileServer(respond(_money_reply(number))) as server:
        async with client_for(server, max_retries=0) as client:
            result: Any = await every_endpoint(client)[name]()
    expected = Decimal(number.strip(b'"').decode())
    if name == "statement":
        assert result.operations[0].amount == expected
    elif name == "info":
        assert result.wallet.balance == expected
    else:
        assert result.wallet.balance == expected
        if name == "balance":
            assert result.balance == expected
