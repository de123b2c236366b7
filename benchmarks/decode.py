"""Decode micro-benchmark: one Info reply body -> the balance as a ``Decimal``, several ways."""

from __future__ import annotations

import dataclasses
import json
import timeit
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from freedompay_async import _protocol
from freedompay_async.models import WalletInfo

from .common import CANNED_BALANCE, BenchError, canned_info_body


@dataclasses.dataclass(frozen=True)
class DecodeResult:
    name: str
    ns_per_op: float
    note: str


def variants(body: bytes) -> list[tuple[str, Callable[[], Any], str]]:
    struct_decoder = msgspec.json.Decoder(WalletInfo)
    untyped = msgspec.json.Decoder()

    def msgspec_struct() -> Decimal:
        return struct_decoder.decode(body).wallet.balance

    def sdk_decode_response() -> Decimal:
        return _protocol.decode_response(_protocol.INFO, body).wallet.balance

    def json_loads() -> Decimal:
        data = json.loads(body)
        if data["status"] == "error":
            raise RuntimeError
        wallet = data["wallet"]
        _ = wallet["currency"], wallet["wallet_id"]
        return Decimal(wallet["balance"])

    def msgspec_untyped() -> Decimal:
        data = untyped.decode(body)
        wallet = data["wallet"]
        _ = wallet["currency"], wallet["wallet_id"]
        return Decimal(wallet["balance"])

    result: list[tuple[str, Callable[[], Any], str]] = [
        ("msgspec Struct (Decoder(WalletInfo))", msgspec_struct, "typed: UUID, Decimal, aware dt"),
        ("SDK _protocol.decode_response", sdk_decode_response, "Struct decode + status check"),
        ("msgspec.json.decode -> dict", msgspec_untyped, "untyped; Decimal by hand"),
        ("json.loads + dict access", json_loads, "untyped; Decimal by hand"),
    ]
    try:
        from .pydantic_models import WalletInfoModel
    except ImportError:
        return result
    validate = WalletInfoModel.model_validate_json

    def pydantic_model() -> Decimal:
        return validate(body).wallet.balance

    result.append(
        ("pydantic v2 model_validate_json", pydantic_model, "typed: UUID, Decimal, aware dt")
    )
    return result


def bench(function: Callable[[], Any], *, repeats: int, min_time: float) -> float:
    """Best-of-``repeats`` nanoseconds per call (the minimum is the least noisy estimate)."""
    timer = timeit.Timer(function)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            break
        number *= 2 if elapsed <= 0 else max(2, min(10, int(min_time / elapsed * 1.2) + 1))
    best = min([elapsed, *timer.repeat(repeat=max(0, repeats - 1), number=number)])
    return best / number * 1e9


def run_decode(*, repeats: int = 5, min_time: float = 0.2) -> list[DecodeResult]:
    body = canned_info_body()
    results = []
    for name, function, note in variants(body):
        if function() != CANNED_BALANCE:
            raise BenchError(f"{name} decoded the wrong balance")
        results.append(
            DecodeResult(name, bench(function, repeats=repeats, min_time=min_time), note)
        )
    return results
