"""Hostile replies from raw-socket servers (``tests/hostile.py``), not from ``FakeFreedomPay``:
compression bombs, replies that cannot be decoded, absurd money, deadlines, secrets in chains."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from freedompay_async import (
    FreedomPayClient,
    ResponseDecodeError,
    ResponseTooLargeError,
    RetryPolicy,
)

from .hostile import AUTH_ID, SECRET_KEY, HostileServer, bomb, chunked, respond

ROOT = Path(__file__).resolve().parent.parent
WALLET_ID = "3f1c7c1e-7a4b-4c1e-9d3e-2b5c6a7d8e9f"


def info_body(balance: str = '"1.00"') -> bytes:
    wallet = f'{{"wallet_id":"{WALLET_ID}","currency":"KZT","balance":{balance}}}'
    return f'{{"status":"ok","wallet":{wallet}}}'.encode()


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
