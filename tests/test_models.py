"""Decoding: the spec's shapes, leniency, exact money, aware timestamps, error mapping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import (
    APIError,
    DuplicateRequestError,
    InvalidRequestError,
    RequestNotFoundError,
    RequestStatus,
    ResponseDecodeError,
    WalletBlockError,
    WalletClosedError,
    WalletCloseError,
    WalletExistsError,
    WalletInfo,
    WalletNotFoundError,
    WalletStatus,
)
from freedompay_async._protocol import INFO, decode_response

# The docs' example body, verbatim.
SPEC_EXAMPLE = (
    b'{"status":"string","request_status":"string","wallet":{"wallet_id":'
    b'"d9a8fbfc-848f-43a2-9168-911ed3a04a48","identifiers":[{"value":"string"}],"owner_id":"string",'
    b'"account_number":"string","currency":"string","balance":"string","status":"string"},'
    b'"dt":"2019-08-24T14:15:22Z","error_code":"string","error_description":"string"}'
)


def info_body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "status": "ok",
        "request_status": "0",
        "wallet": {
            "wallet_id": "d9a8fbfc-848f-43a2-9168-911ed3a04a48",
            "identifiers": [{"value": "user-42"}],
            "owner_id": "owner-1",
            "account_number": "KZ123",
            "currency": "KZT",
            "balance": "15230.50",
            "status": "active",
        },
        "dt": "2019-08-24T14:15:22Z",
    }
    body.update(overrides)
    return msgspec.json.encode(body)


def test_info_decodes_the_spec_shape_with_real_values() -> None:
    info = decode_response(INFO, info_body())
    assert isinstance(info, WalletInfo)
    assert info.wallet.wallet_id == UUID("d9a8fbfc-848f-43a2-9168-911ed3a04a48")
    assert info.wallet.balance == Decimal("15230.50")
    assert str(info.wallet.balance) == "15230.50"  # exact, trailing zero kept
    assert info.wallet.currency == "KZT"
    assert info.wallet.identifiers[0].value == "user-42"
    assert info.wallet.status == WalletStatus.ACTIVE
    assert info.dt == datetime(2019, 8, 24, 14, 15, 22, tzinfo=timezone.utc)
    assert info.request_status is RequestStatus.SUCCESS
    assert info.error_code is None


def test_the_docs_literal_example_is_refused_as_not_matching_the_spec() -> None:
    # "balance":"string" is not a decimal; "status":"string" is not "error".
    with pytest.raises(ResponseDecodeError) as caught:
        decode_response(INFO, SPEC_EXAMPLE, identifier="user-42")
    assert caught.value.body is not None and "d9a8fbfc" in caught.value.body
    assert caught.value.identifier == "user-42"
    assert caught.value.endpoint == "info"


def test_error_reply_with_placeholder_wallet_still_raises_the_api_error() -> None:
    body = SPEC_EXAMPLE.replace(
        b'"status":"string","request_status"', b'"status":"error","request_status"'
    )
    body = body.replace(b'"error_code":"string"', b'"error_code":"1004"')
    with pytest.raises(WalletNotFoundError) as caught:
        decode_response(INFO, body, identifier="user-42")
    assert caught.value.error_code == 1004
    assert caught.value.http_status == 200


def test_unknown_fields_are_ignored_and_unknown_statuses_kept() -> None:
    body = info_body(extra={"nested": [1, 2]}, request_status="weird-state")
    wallet_part = msgspec.json.decode(body)["wallet"]
    wallet_part.update(status="frozen-by-compliance", brand_new_field=True)
    info = decode_response(INFO, info_body(wallet=wallet_part, request_status="weird-state"))
    assert info.wallet.status == "frozen-by-compliance"
    assert info.request_status is RequestStatus.UNKNOWN
    assert info.request_status_raw == "weird-state"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", RequestStatus.SUCCESS),
        (0, RequestStatus.SUCCESS),
        ("success", RequestStatus.SUCCESS),
        ("1", RequestStatus.PROCESSING),
        (1, RequestStatus.PROCESSING),
        ("process", RequestStatus.PROCESSING),
        ("2", RequestStatus.ERROR),
        (2, RequestStatus.ERROR),
        ("error", RequestStatus.ERROR),
        ("ERROR ", RequestStatus.ERROR),
        ("7", RequestStatus.UNKNOWN),
    ],
)
def test_request_status_accepts_both_spellings_and_numbers(
    raw: str | int, expected: RequestStatus
) -> None:
    info = decode_response(INFO, info_body(request_status=raw))
    assert info.request_status is expected
    assert info.request_status_raw == raw


def test_balance_decodes_exactly_from_a_json_number_too() -> None:
    body = info_body().replace(
        b'"balance":"15230.50"', b'"balance":0.1000000000000000055511151231257827'
    )
    info = decode_response(INFO, body)
    assert info.wallet.balance == Decimal("0.1000000000000000055511151231257827")


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ResponseDecodeError, match="dt"):
        decode_response(INFO, info_body(dt="2019-08-24T14:15:22"))


def test_offset_timestamps_keep_their_offset() -> None:
    info = decode_response(INFO, info_body(dt="2019-08-24T19:15:22+05:00"))
    assert info.dt is not None
    assert info.dt.utcoffset() == timedelta(hours=5)
    assert info.dt == datetime(2019, 8, 24, 14, 15, 22, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("1001", InvalidRequestError),
        ("1002", DuplicateRequestError),
        ("1003", WalletExistsError),
        ("1004", WalletNotFoundError),
        ("1005", WalletCloseError),
        ("1006", RequestNotFoundError),
        ("1007", WalletClosedError),
        ("1008", WalletBlockError),
        (1004, WalletNotFoundError),
        ("1999", APIError),
        (None, APIError),
    ],
)
def test_error_codes_map_to_their_classes(code: str | int | None, cls: type[APIError]) -> None:
    body = msgspec.json.encode(
        {"status": "error", "request_status": "2", "error_code": code, "error_description": "no"}
    )
    with pytest.raises(APIError) as caught:
        decode_response(INFO, body, identifier="user-1")
    assert type(caught.value) is cls
    assert caught.value.error_code == (None if code is None else int(code))
    assert caught.value.error_code_raw == (None if code is None else str(code))
    assert caught.value.request_status is RequestStatus.ERROR
    assert caught.value.identifier == "user-1"
    assert "no" in str(caught.value)


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"not json", b"[]", b'{"status":"ok"}', b'{"status": 1}', b"\xff\xfe"]
)
def test_junk_bodies_raise_response_decode_error(body: bytes) -> None:
    with pytest.raises(ResponseDecodeError):
        decode_response(INFO, body)


money = st.decimals(
    allow_nan=False, allow_infinity=False, places=2, min_value=-(10**12), max_value=10**12
)
text = st.text(max_size=30)
# RFC 3339 offsets are whole minutes.
offsets = st.builds(
    timezone, st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes))
)


@given(
    wallet_id=st.uuids(),
    balance=money,
    currency=st.text(min_size=1, max_size=3),
    identifiers=st.lists(text, max_size=3),
    owner_id=st.none() | text,
    status=st.none() | text,
    as_number=st.booleans(),
    dt=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
    ),
)
def test_any_wallet_payload_round_trips_exactly(
    wallet_id: UUID,
    balance: Decimal,
    currency: str,
    identifiers: list[str],
    owner_id: str | None,
    status: str | None,
    as_number: bool,
    dt: datetime,
) -> None:
    wallet: dict[str, Any] = {
        "wallet_id": str(wallet_id),
        "currency": currency,
        "balance": str(balance),
        "identifiers": [{"value": value} for value in identifiers],
        "owner_id": owner_id,
        "status": status,
    }
    body = msgspec.json.encode(
        {"status": "ok", "request_status": "0", "wallet": wallet, "dt": dt.isoformat()}
    )
    if as_number:
        body = body.replace(f'"balance":"{balance}"'.encode(), f'"balance":{balance}'.encode())
    info = decode_response(INFO, body)
    assert info.wallet.wallet_id == wallet_id
    assert info.wallet.balance == balance
    assert [i.value for i in info.wallet.identifiers] == identifiers
    assert info.wallet.owner_id == owner_id and info.wallet.status == status
    assert info.dt == dt


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_a_typed_error(body: bytes) -> None:
    try:
        decode_response(INFO, body)
    except (APIError, ResponseDecodeError):
        pass
