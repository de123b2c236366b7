"""Decoding and encoding of every endpoint's shapes: the docs' examples, leniency, exactness,
and hypothesis over replies and arguments."""

from __future__ import annotations

import re
import string
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import (
    APIError,
    MutationResult,
    RequestStatus,
    RequestStatusResult,
    ResponseDecodeError,
    WalletAdded,
    WalletBalance,
    WalletNotFoundError,
    WalletStatement,
)
from freedompay_async._config import MAX_AMOUNT_FRACTION_DIGITS, MAX_AMOUNT_INTEGER_DIGITS
from freedompay_async._protocol import (
    ADD,
    BALANCE,
    BLOCK,
    CLOSE,
    ENDPOINTS,
    IDENTIFY_OWNER,
    REQUEST_STATUS,
    STATEMENT,
    decode_response,
    encode,
)
from freedompay_async._validate import check_country, check_currency, check_request_id
from freedompay_async.models import (
    AddRequest,
    BlockRequest,
    StatementRequest,
    owner_identification_request,
)

UTC = timezone.utc
RID = UUID("266ea41d-adf5-480b-af50-15b940c2b846")

# The docs' example replies, verbatim.
STATEMENT_EXAMPLE = (
    b'{"status":"string","request_status":"string","operations":[{"type":"string","amount":0,'
    b'"commission":0,"currency":"string","datetime":"2019-08-24T14:15:22Z","rrn":"string",'
    b'"correspondent":{"name":"string","account_number":"string"}}],"dt":"2019-08-24T14:15:22Z",'
    b'"error_code":"string","error_description":"string"}'
)
BLOCK_EXAMPLE = (
    b'{"status":"string","request_status":"string","dt":"2019-08-24T14:15:22Z",'
    b'"error_code":"string","error_description":"string"}'
)


DT = "2019-08-24T14:15:22Z"


def body(**fields: Any) -> bytes:
    return msgspec.json.encode({"status": "ok", "request_status": "0", "dt": DT, **fields})


# -- the docs' examples ---------------------------------------------------------------------


def test_statement_docs_example_decodes() -> None:
    statement = decode_response(STATEMENT, STATEMENT_EXAMPLE)
    assert isinstance(statement, WalletStatement)
    (operation,) = statement.operations
    assert operation.amount == Decimal(0) and operation.commission == Decimal(0)
    assert operation.datetime == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert operation.correspondent is not None
    assert operation.correspondent.account_number == "string"
    assert statement.request_status is RequestStatus.UNKNOWN  # "string" is kept, not refused


@pytest.mark.parametrize("endpoint", [BLOCK, CLOSE])
def test_block_docs_example_decodes_with_its_raw_body(endpoint: Any) -> None:
    result = decode_response(endpoint, BLOCK_EXAMPLE, request_id=RID)
    assert isinstance(result, MutationResult)
    assert result.request_id == RID
    assert result.request_status is RequestStatus.UNKNOWN
    assert result.raw == msgspec.json.decode(BLOCK_EXAMPLE)


def test_request_examples_encode_like_the_docs() -> None:
    assert encode(BlockRequest(request_id=RID, identifier="string", description="string")) == (
        b'{"request_id":"266ea41d-adf5-480b-af50-15b940c2b846","identifier":"string",'
        b'"description":"string"}'
    )
    at = datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert encode(StatementRequest(identifier="string", start_date=at, end_date=at)) == (
        b'{"identifier":"string","start_date":"2019-08-24T14:15:22Z",'
        b'"end_date":"2019-08-24T14:15:22Z"}'
    )
    add = AddRequest(
        request_id=UUID("828cf71d-a447-4a67-a149-c1df8bc197ca"), country="KAZ", currency="KZT"
    )
    assert encode(add) == (
        b'{"request_id":"828cf71d-a447-4a67-a149-c1df8bc197ca","country":"KAZ","currency":"KZT"}'
    )


# -- errors on every endpoint ---------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=list(ENDPOINTS))
def test_every_endpoint_maps_error_replies_even_with_placeholder_fields(endpoint: Any) -> None:
    reply = msgspec.json.encode(
        {
            "status": "error",
            "request_status": "2",
            "error_code": 1004,
            "error_description": "not found",
            "operations": "string",  # placeholder junk the docs' error examples carry
            "wallet": "string",
        }
    )
    with pytest.raises(WalletNotFoundError) as caught:
        decode_response(endpoint, reply, identifier="w", request_id=RID)
    assert caught.value.endpoint == endpoint.name and caught.value.request_id == RID


@pytest.mark.parametrize("endpoint", [ADD, BLOCK, CLOSE, IDENTIFY_OWNER])
def test_mutations_raise_on_request_status_error_but_reads_do_not(endpoint: Any) -> None:
    reply = body(request_status="error", error_code="1999")
    with pytest.raises(APIError) as caught:
        decode_response(endpoint, reply, request_id=RID)
    assert caught.value.error_code == 1999 and caught.value.request_id == RID
    status = decode_response(REQUEST_STATUS, reply, request_id=RID)
    assert status.request_status is RequestStatus.ERROR and status.error_code == 1999


def test_an_undecodable_mutation_reply_is_flagged_as_possibly_done() -> None:
    with pytest.raises(ResponseDecodeError, match="may have been carried out") as caught:
        decode_response(BLOCK, b'{"status": "ok", "dt": "yesterday"}', request_id=RID)
    assert caught.value.request_id == RID
    with pytest.raises(ResponseDecodeError) as read_error:
        decode_response(STATEMENT, body(operations=[{"type": "x"}]))
    assert "carried out" not in str(read_error.value)


@pytest.mark.parametrize(
    ("endpoint", "fields"),
    [
        (ADD, {"wallet": {"wallet_id": 12345, "balance": "n/a"}}),
        (ADD, {"wallet": "created", "request_id": 99}),
        (BALANCE, {"balance": {"amount": "1.00", "currency": "KZT"}}),
        (REQUEST_STATUS, {"wallet": [1, 2], "request_id": "internal-7"}),
        (IDENTIFY_OWNER, {"owner": None}),
    ],
)
def test_a_provisional_reply_that_defies_the_guess_still_decodes(
    endpoint: Any, fields: dict[str, Any]
) -> None:
    result = decode_response(endpoint, body(dt="2019-08-24T14:15:22Z", **fields), request_id=RID)
    assert result.ok and result.request_status is RequestStatus.SUCCESS
    assert result.dt == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert {name: result.raw[name] for name in fields} == fields  # nothing is lost
    if endpoint.echoes_request_id:
        assert result.request_id == RID


# -- provisional shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "balance", "currency"),
    [
        ({"balance": "15230.50", "currency": "KZT"}, Decimal("15230.50"), "KZT"),
        ({"balance": 15230.5, "currency": "KZT"}, Decimal("15230.5"), "KZT"),
        ({"wallet": {"balance": "1.00", "currency": "USD"}}, Decimal("1.00"), "USD"),
        # The top level wins over the nested wallet.
        ({"balance": "2", "wallet": {"balance": "1", "currency": "USD"}}, Decimal(2), "USD"),
        ({"amount": "3.00"}, None, None),  # unknown name: None, but still in raw
    ],
)
def test_balance_is_decoded_leniently(
    fields: dict[str, Any], balance: Decimal | None, currency: str | None
) -> None:
    result = decode_response(BALANCE, body(**fields))
    assert isinstance(result, WalletBalance)
    assert result.balance == balance and result.currency == currency
    assert result.raw["status"] == "ok"
    assert all(result.raw[name] is not None for name in fields)


def test_raw_keeps_numbers_exact() -> None:
    reply = (
        b'{"status":"ok","request_status":"0","dt":"2019-08-24T14:15:22Z",'
        b'"amount":0.1000000000000000055511151231257827,"count":3}'
    )
    result = decode_response(BALANCE, reply)
    assert result.raw["amount"] == Decimal("0.1000000000000000055511151231257827")
    assert result.raw["count"] == 3 and isinstance(result.raw["count"], int)


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("1", RequestStatus.PROCESSING),
        (1, RequestStatus.PROCESSING),
        ("process", RequestStatus.PROCESSING),
        ("0", RequestStatus.SUCCESS),
        ("success", RequestStatus.SUCCESS),
        (2, RequestStatus.ERROR),
        ("queued", RequestStatus.UNKNOWN),
    ],
)
def test_request_status_reply_spellings(raw: Any, state: RequestStatus) -> None:
    result = decode_response(REQUEST_STATUS, body(request_status=raw), request_id=RID)
    assert isinstance(result, RequestStatusResult)
    assert result.request_status is state
    assert result.request_id == RID  # the id asked about, even when the reply has none


def test_add_reply_with_and_without_a_wallet() -> None:
    bare = decode_response(ADD, body(), request_id=RID)
    assert isinstance(bare, WalletAdded) and bare.wallet is None and bare.request_id == RID
    partial = decode_response(ADD, body(wallet={"account_number": "KZ1"}), request_id=RID)
    assert partial.wallet is not None and partial.wallet.account_number == "KZ1"
    assert partial.wallet.wallet_id is None and partial.wallet.balance is None


def test_statement_refuses_naive_operation_times() -> None:
    reply = body(operations=[{"type": "x", "amount": 1, "datetime": "2019-08-24T14:15:22"}])
    with pytest.raises(ResponseDecodeError, match="datetime"):
        decode_response(STATEMENT, reply)


# -- hypothesis: replies --------------------------------------------------------------------

offsets = st.builds(
    timezone, st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)


def _within_money_bounds(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -MAX_AMOUNT_FRACTION_DIGITS


#: Any finite amount the SDK accepts (|x| < 10**24, at most 40 digits after the point).
amounts = st.decimals(
    allow_nan=False,
    allow_infinity=False,
    min_value=-(10**MAX_AMOUNT_INTEGER_DIGITS) + 1,
    max_value=10**MAX_AMOUNT_INTEGER_DIGITS - 1,
).filter(_within_money_bounds)


@given(
    lines=st.lists(
        st.tuples(
            amounts,
            st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10**9).filter(
                _within_money_bounds
            ),
            moments,
            st.text(max_size=20),
        ),
        max_size=5,
    )
)
def test_statement_amounts_sent_as_json_numbers_decode_exactly(
    lines: list[tuple[Decimal, Decimal, datetime, str]],
) -> None:
    operations = [
        {"type": kind, "amount": "@A", "commission": "@C", "datetime": at.isoformat()}
        for _amount, _commission, at, kind in lines
    ]
    raw = msgspec.json.encode(
        {"status": "ok", "request_status": "0", "dt": DT, "operations": operations}
    ).decode()
    # Splice the decimals in as bare JSON numbers, digit for digit.
    for amount, commission, _at, _kind in lines:
        raw = raw.replace('"@A"', _json_number(amount), 1).replace(
            '"@C"', _json_number(commission), 1
        )
    statement = decode_response(STATEMENT, raw.encode())
    assert [(op.amount, op.commission, op.datetime, op.type) for op in statement.operations] == [
        (a, c, at, kind) for a, c, at, kind in lines
    ]
    # Digit for digit: trailing zeros and exponents survive (no float on the way).
    assert [str(op.amount) for op in statement.operations] == [str(a) for a, *_ in lines]


def _json_number(value: Decimal) -> str:
    return str(value)  # Decimal's str is always a valid JSON number for finite values


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
reply_keys = st.sampled_from(
    [
        "status",
        "request_status",
        "error_code",
        "dt",
        "wallet",
        "balance",
        "currency",
        "operations",
        "request_id",
        "raw",
        "x",
    ]
)


@given(
    endpoint=st.sampled_from(list(ENDPOINTS.values())),
    reply=st.dictionaries(reply_keys, json_values, max_size=6),
    status=st.sampled_from(["ok", "error", None]),
)
def test_any_json_reply_decodes_or_raises_a_typed_error(
    endpoint: Any, reply: dict[str, Any], status: str | None
) -> None:
    if status is not None:
        reply["status"] = status
    encoded = msgspec.json.encode(reply)
    failure: APIError | ResponseDecodeError | None = None
    try:
        result = decode_response(endpoint, encoded, request_id=RID)
    except (APIError, ResponseDecodeError) as error:
        failure = error
    if failure is not None:
        assert failure.endpoint == endpoint.name and failure.request_id == RID
        return
    assert result.ok
    if endpoint.keeps_raw:
        assert result.raw == _exact_object.decode(encoded)


_exact_object = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


# -- hypothesis: arguments ------------------------------------------------------------------


@given(st.text(max_size=5) | st.sampled_from(["KAZ", "KZT", "kaz", "USD", "K Z"]))
def test_alpha3_codes_are_exactly_three_uppercase_ascii_letters(value: str) -> None:
    valid = re.fullmatch(r"[A-Z]{3}", value) is not None
    for check in (check_country, check_currency):
        if valid:
            assert check(value) == value
        else:
            with pytest.raises(ValueError, match="3 uppercase letters"):
                check(value)


@given(st.uuids())
def test_request_ids_are_accepted_as_uuid_or_any_uuid_spelling(value: UUID) -> None:
    for spelling in (value, str(value), str(value).upper(), value.hex, f"{{{value}}}"):
        assert check_request_id(spelling) == value


@given(st.text(alphabet=string.printable, max_size=40))
def test_non_uuid_text_is_refused_as_request_id(value: str) -> None:
    try:
        expected = UUID(value)
    except ValueError:
        with pytest.raises(ValueError, match="request_id"):
            check_request_id(value)
    else:
        assert check_request_id(value) == expected


owner_scalars = (
    st.text(min_size=1, max_size=10).filter(str.strip)
    | st.integers()
    | st.booleans()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.dates()
)
owner_names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: name not in ("request_id", "identifier")
)


@given(
    st.dictionaries(owner_names, owner_scalars | st.lists(owner_scalars, max_size=3), min_size=1)
)
def test_owner_fields_go_out_flat_with_their_names(fields: dict[str, Any]) -> None:
    sent = msgspec.json.decode(encode(owner_identification_request(RID, "w", fields)))
    assert list(sent) == ["request_id", "identifier", *fields]
    assert sent["request_id"] == str(RID) and sent["identifier"] == "w"
    for name, value in fields.items():
        expected = msgspec.json.decode(msgspec.json.encode(value))
        assert sent[name] == expected
        if isinstance(value, date):
            assert sent[name] == value.isoformat()


# -- the contract of a successful reply -----------------------------------------------------


@pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=list(ENDPOINTS))
@pytest.mark.parametrize("missing", ["dt", "request_status"])
def test_a_successful_reply_without_a_verified_envelope_field_is_a_decode_error(
    endpoint: Any, missing: str
) -> None:
    # request_status and dt are in the spec's (verified) common envelope, so they are typed
    # without Optional: a reply that lacks one is refused, provisional endpoints included.
    fields: dict[str, Any] = {
        "status": "ok",
        "request_status": "0",
        "dt": DT,
        "wallet": {"wallet_id": str(RID), "currency": "KZT", "balance": "1.00"},
    }
    del fields[missing]
    with pytest.raises(ResponseDecodeError, match=missing):
        decode_response(endpoint, msgspec.json.encode(fields), identifier="w", request_id=RID)
    fields[missing] = None
    with pytest.raises(ResponseDecodeError, match=missing):
        decode_response(endpoint, msgspec.json.encode(fields), identifier="w", request_id=RID)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=list(ENDPOINTS))
def test_a_successful_reply_has_its_envelope_fields_typed_without_optional(
    endpoint: Any,
) -> None:
    fields = {"wallet": {"wallet_id": str(RID), "currency": "KZT", "balance": "1.00"}}
    reply = decode_response(endpoint, body(**fields), identifier="w", request_id=RID)
    assert reply.dt == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert reply.request_status is RequestStatus.SUCCESS
    if endpoint.echoes_request_id:
        assert reply.request_id == RID  # the id sent, never the placeholder


def test_a_mutation_reply_needs_the_request_id_it_answers() -> None:
    with pytest.raises(ValueError, match="request_id"):
        decode_response(BLOCK, body())


@given(
    code=st.one_of(
        st.integers(min_value=-(10**6), max_value=10**6),
        st.text(max_size=8),
        st.integers(min_value=0, max_value=99999).map(lambda n: f" {n} "),
    )
)
def test_error_code_is_an_int_when_numeric_and_the_raw_text_is_kept(code: int | str) -> None:
    reply = msgspec.json.encode(
        {"status": "error", "request_status": "2", "error_code": code, "error_description": "x"}
    )
    with pytest.raises(APIError) as caught:
        decode_response(STATEMENT, reply)
    error = caught.value
    assert error.error_code_raw == str(code)
    text = str(code).strip()
    numeric = text.lstrip("-").isascii() and text.lstrip("-").isdigit() and text.count("-") <= 1
    if isinstance(code, int) or (numeric and not text.startswith("--")):
        assert error.error_code == int(text)
    else:
        assert error.error_code is None
    if error.error_code == 1004:
        assert isinstance(error, WalletNotFoundError)
