"""Every endpoint through the stateful fake server: success, each documented error, bad input."""

from __future__ import annotations

import socket
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest

from freedompay_async import (
    APIError,
    DuplicateRequestError,
    FreedomPayClient,
    InvalidRequestError,
    MutationResult,
    OperationType,
    RequestNotFoundError,
    RequestStatus,
    RequestTimeoutError,
    ResponseDecodeError,
    TransportError,
    WalletAdded,
    WalletBalance,
    WalletBlockError,
    WalletClosedError,
    WalletCloseError,
    WalletExistsError,
    WalletNotFoundError,
    WalletStatement,
    WalletStatus,
)
from freedompay_async._protocol import ADD, BLOCK, ENDPOINTS, STATEMENT
from freedompay_async.testing import FakeFreedomPay

UTC = timezone.utc
ALMATY = timezone(timedelta(hours=5))
SPEC_REQUEST_ID = "828cf71d-a447-4a67-a149-c1df8bc197ca"
SPEC_ADD_BODY = (
    b'{"request_id":"828cf71d-a447-4a67-a149-c1df8bc197ca","country":"KAZ","currency":"KZT"}'
)
SPEC_ADD_SIGNATURE = (
    "eyJ1cmkiOiIvdjUvcGFydG5lci93YWxsZXQvYWRkIiwiYXV0aF9pZCI6IjEyMzQ1NiIsIm1ldGhvZCI6IlBPU1QiLCJwY"
    "XJhbXMiOiIiLCJhbGciOiJIUzI1NiJ9..5xVbhml5y1Uw1TYQ_djwwefFz8y_CnX-ajzNvOBCcmE"
)


def assert_nothing_sent(fake: FakeFreedomPay, client: FreedomPayClient) -> None:
    assert fake.stats.requests == 0
    assert client.session is None  # not even connected


# -- balance --------------------------------------------------------------------------------


async def test_balance_round_trip(client: FreedomPayClient, fake: FakeFreedomPay) -> None:
    fake.add_wallet("user-42", balance="15230.50", currency="KZT")
    result = await client.wallets.balance("user-42")
    assert isinstance(result, WalletBalance)
    assert result.balance == Decimal("15230.50") and str(result.balance) == "15230.50"
    assert result.currency == "KZT"
    assert result.request_status is RequestStatus.SUCCESS
    assert result.raw["balance"] == "15230.50"  # the whole reply, for a provisional shape
    assert fake.stats.by_path == {ENDPOINTS["balance"].path: 1}


async def test_balance_of_an_unknown_wallet(client: FreedomPayClient) -> None:
    with pytest.raises(WalletNotFoundError) as caught:
        await client.wallets.balance("nobody")
    assert caught.value.error_code == 1004
    assert caught.value.identifier == "nobody" and caught.value.endpoint == "balance"


@pytest.mark.parametrize("identifier", ["", " ", "x" * 257, "a\tb"])
async def test_balance_refuses_bad_identifiers_before_sending(
    client: FreedomPayClient, fake: FakeFreedomPay, identifier: str
) -> None:
    with pytest.raises(ValueError, match="identifier"):
        await client.wallets.balance(identifier)
    assert_nothing_sent(fake, client)


# -- statement ------------------------------------------------------------------------------


def seed_statement(fake: FakeFreedomPay) -> None:
    fake.add_wallet("user-42", balance="100.00")
    # A JSON number with more digits than a float holds: must arrive exactly.
    fake.add_operation(
        "user-42",
        OperationType.EMISSION.value,
        "1000.1000000000000000055511151231257827",
        datetime(2024, 1, 10, 9, 0, tzinfo=UTC),
        commission="0",
        rrn="rrn-1",
        correspondent_name="Bank",
        correspondent_account="KZ01",
    )
    fake.add_operation(
        "user-42", "emoney_transfer", "-900.10", datetime(2024, 2, 1, tzinfo=UTC), commission="1.5"
    )
    fake.add_operation("user-42", "emoney_pay", "0.01", datetime(2024, 3, 1, tzinfo=ALMATY))


async def test_statement_returns_all_operations_oldest_first_with_exact_amounts(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    seed_statement(fake)
    statement = await client.wallets.statement("user-42")
    assert isinstance(statement, WalletStatement)
    first, second, third = statement.operations
    assert first.type == OperationType.EMISSION
    assert first.amount == Decimal("1000.1000000000000000055511151231257827")
    assert first.commission == Decimal(0) and first.rrn == "rrn-1" and first.currency == "KZT"
    assert first.correspondent is not None and first.correspondent.name == "Bank"
    assert first.datetime == datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
    assert second.amount == Decimal("-900.10") and second.commission == Decimal("1.5")
    assert third.datetime.utcoffset() == timedelta(hours=5)


async def test_statement_period_bounds_are_inclusive_and_offsets_respected(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    seed_statement(fake)

    async def types(**period: datetime) -> list[str]:
        return [op.type for op in (await client.wallets.statement("user-42", **period)).operations]

    assert await types(start=datetime(2024, 2, 1, tzinfo=UTC)) == ["emoney_transfer", "emoney_pay"]
    assert await types(end=datetime(2024, 2, 1, tzinfo=UTC)) == [
        "emoney_emission",
        "emoney_transfer",
    ]
    # 2024-02-01T05:00+05:00 is the same instant as the transfer: both bounds include it.
    same_instant = datetime(2024, 2, 1, 5, 0, tzinfo=ALMATY)
    assert await types(start=same_instant, end=same_instant) == ["emoney_transfer"]
    assert await types(start=datetime(2025, 1, 1, tzinfo=UTC)) == []


async def test_statement_sends_rfc3339_and_omits_missing_bounds(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    sent: list[bytes] = []
    trace = aiohttp.TraceConfig()

    async def on_chunk(_session: Any, _ctx: Any, params: Any) -> None:
        sent.append(params.chunk)

    trace.on_request_chunk_sent.append(on_chunk)
    fake.add_wallet("user-42")
    async with fake.client(trace_configs=[trace]) as traced:
        await traced.wallets.statement("user-42", start=datetime(2024, 1, 1, tzinfo=UTC))
        await traced.wallets.statement(
            "user-42",
            start=datetime(2024, 1, 1, tzinfo=ALMATY),
            end=datetime(2024, 1, 2, tzinfo=ALMATY),
        )
        await traced.wallets.statement("user-42")
    assert sent == [
        b'{"identifier":"user-42","start_date":"2024-01-01T00:00:00Z"}',
        b'{"identifier":"user-42","start_date":"2024-01-01T00:00:00+05:00",'
        b'"end_date":"2024-01-02T00:00:00+05:00"}',
        b'{"identifier":"user-42"}',
    ]


@pytest.mark.parametrize(
    ("start", "end", "error", "match"),
    [
        (datetime(2024, 1, 1), None, ValueError, "start must be timezone-aware"),
        (None, datetime(2024, 1, 1), ValueError, "end must be timezone-aware"),
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), ValueError, "after"),
        # Same wall clock, but 00:00+05:00 is five hours *before* 00:00Z: fine the other way.
        (
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2024, 1, 1, tzinfo=ALMATY),
            ValueError,
            "after",
        ),
        (date(2024, 1, 1), None, TypeError, "datetime"),
        ("2024-01-01T00:00:00Z", None, TypeError, "datetime"),
    ],
)
async def test_statement_refuses_bad_periods_before_sending(
    client: FreedomPayClient,
    fake: FakeFreedomPay,
    start: Any,
    end: Any,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        await client.wallets.statement("user-1", start=start, end=end)
    assert_nothing_sent(fake, client)


async def test_statement_of_an_unknown_wallet(client: FreedomPayClient) -> None:
    with pytest.raises(WalletNotFoundError):
        await client.wallets.statement("nobody")


async def test_statement_bad_dates_reaching_the_server_get_1001(fake: FakeFreedomPay) -> None:
    # The SDK never sends these; the fake still answers them like the real service.
    fake.respond_with(STATEMENT.path, {"status": "error", "error_code": "1001"})
    async with fake.client() as client:
        with pytest.raises(InvalidRequestError):
            await client.wallets.statement("user-1")


# -- add ------------------------------------------------------------------------------------


async def test_add_generates_a_uuid4_request_id_and_returns_it(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="new-1")
    assert isinstance(added, WalletAdded)
    assert isinstance(added.request_id, UUID) and added.request_id.version == 4
    assert added.request_id in fake.requests  # the id sent is the id returned
    assert added.request_status is RequestStatus.SUCCESS
    assert added.wallet is not None and added.wallet.balance == Decimal("0.00")
    assert [i.value for i in added.wallet.identifiers] == ["new-1"]
    info = await client.wallets.info("new-1")
    assert info.wallet.wallet_id == added.wallet.wallet_id
    assert info.wallet.status == WalletStatus.ACTIVE and info.wallet.currency == "KZT"
    # Two calls, two ids.
    other = await client.wallets.add(country="KAZ", currency="USD", identifier="new-2")
    assert other.request_id != added.request_id


async def test_add_sends_the_documented_body_and_signature_byte_for_byte() -> None:
    sent: list[tuple[bytes, str]] = []
    trace = aiohttp.TraceConfig()

    async def on_chunk(_session: Any, _ctx: Any, params: Any) -> None:
        sent.append((params.chunk, ""))

    async def on_headers(_session: Any, _ctx: Any, params: Any) -> None:
        sent.append((b"", params.headers["X-JWS-Signature"]))

    trace.on_request_chunk_sent.append(on_chunk)
    trace.on_request_headers_sent.append(on_headers)
    spec_fake = FakeFreedomPay(auth_id="123456", secret_key="your-256-bit-secret")
    async with spec_fake as fake, fake.client(trace_configs=[trace]) as client:
        added = await client.wallets.add(country="KAZ", currency="KZT", request_id=SPEC_REQUEST_ID)
    assert added.request_id == UUID(SPEC_REQUEST_ID)
    assert (b"", SPEC_ADD_SIGNATURE) in sent
    assert (SPEC_ADD_BODY, "") in sent


async def test_add_without_identifier_is_known_by_its_wallet_id(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    added = await client.wallets.add(country="KGZ", currency="KGS")
    assert added.wallet is not None and added.wallet.wallet_id is not None
    info = await client.wallets.info(str(added.wallet.wallet_id))
    assert info.wallet.currency == "KGS"
    assert fake.wallets[str(added.wallet.wallet_id)].country == "KGZ"


async def test_add_an_existing_identifier_raises_1003_with_the_request_id(
    client: FreedomPayClient,
) -> None:
    request_id = uuid4()
    with pytest.raises(WalletExistsError) as caught:
        await client.wallets.add(
            country="KAZ", currency="KZT", identifier="user-1", request_id=request_id
        )
    assert caught.value.error_code == 1003
    assert caught.value.request_id == request_id
    assert caught.value.identifier == "user-1" and caught.value.endpoint == "add"
    assert str(request_id) in str(caught.value)


async def test_a_reused_request_id_raises_1002_and_changes_nothing(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    request_id = str(uuid4())
    await client.wallets.add(country="KAZ", currency="KZT", identifier="a", request_id=request_id)
    with pytest.raises(DuplicateRequestError) as caught:
        await client.wallets.add(
            country="KAZ", currency="KZT", identifier="b", request_id=request_id
        )
    assert caught.value.request_id == UUID(request_id)
    assert "b" not in fake.wallets
    # The same id on another endpoint is a reuse too.
    with pytest.raises(DuplicateRequestError):
        await client.wallets.block("a", "test", request_id=request_id)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"country": "kaz"}, ValueError, "did you mean 'KAZ'"),
        ({"country": "KZ"}, ValueError, "alpha-3"),
        ({"country": "KAZA"}, ValueError, "alpha-3"),
        ({"country": "K1Z"}, ValueError, "alpha-3"),
        ({"country": 398}, TypeError, "country must be a str"),
        ({"currency": "kzt"}, ValueError, "did you mean 'KZT'"),
        ({"currency": "₸"}, ValueError, "ISO 4217"),
        ({"currency": None}, TypeError, "currency must be a str"),
        ({"identifier": ""}, ValueError, "identifier"),
        ({"identifier": 42}, TypeError, "identifier"),
        ({"request_id": "not-a-uuid"}, ValueError, "request_id must be a UUID"),
        ({"request_id": 42}, TypeError, "request_id"),
        ({"wait": "yes"}, TypeError, "wait must be True or False"),
        ({"wait": True, "wait_timeout": 0}, ValueError, "wait_timeout"),
        ({"timeout": "soon"}, TypeError, "timeout"),
    ],
)
async def test_add_refuses_bad_arguments_before_sending(
    client: FreedomPayClient,
    fake: FakeFreedomPay,
    arguments: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    call: dict[str, Any] = {"country": "KAZ", "currency": "KZT", "identifier": "x", **arguments}
    with pytest.raises(error, match=match):
        await client.wallets.add(**call)
    assert_nothing_sent(fake, client)


# -- block ----------------------------------------------------------------------------------


async def test_block_changes_the_wallet_status(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    done = await client.wallets.block("user-7", reason="card reported stolen")
    assert isinstance(done, MutationResult)
    assert done.request_status is RequestStatus.SUCCESS and done.request_id is not None
    assert fake.wallets["user-7"].status == "blocked"
    assert fake.wallets["user-7"].description == "card reported stolen"
    assert (await client.wallets.info("user-7")).wallet.status == WalletStatus.BLOCKED
    # Reads keep working on a blocked wallet.
    assert (await client.wallets.balance("user-7")).balance == fake.wallets["user-7"].balance


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [("blocked", WalletBlockError, 1008), ("closed", WalletClosedError, 1007)],
)
async def test_block_refusals(
    client: FreedomPayClient,
    fake: FakeFreedomPay,
    status: str,
    error: type[APIError],
    code: int,
) -> None:
    fake.add_wallet("w", status=status)
    request_id = uuid4()
    with pytest.raises(error) as caught:
        await client.wallets.block("w", "again", request_id=request_id)
    assert caught.value.error_code == code and caught.value.request_id == request_id
    assert fake.wallets["w"].status == status


async def test_block_an_unknown_wallet(client: FreedomPayClient) -> None:
    with pytest.raises(WalletNotFoundError) as caught:
        await client.wallets.block("nobody", "reason")
    assert caught.value.request_id is not None  # generated, and still reported


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("", ValueError),
        ("   ", ValueError),
        ("x" * 1025, ValueError),
        (None, TypeError),
        (1, TypeError),
    ],
)
async def test_block_and_close_refuse_bad_reasons_before_sending(
    client: FreedomPayClient, fake: FakeFreedomPay, reason: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="reason"):
        await client.wallets.block("user-1", reason)
    with pytest.raises(error, match="reason"):
        await client.wallets.close("user-1", reason)
    assert_nothing_sent(fake, client)


# -- close ----------------------------------------------------------------------------------


async def test_close_an_empty_wallet(client: FreedomPayClient, fake: FakeFreedomPay) -> None:
    fake.add_wallet("empty", balance="0")
    done = await client.wallets.close("empty", "customer left")
    assert done.request_status is RequestStatus.SUCCESS
    assert (await client.wallets.info("empty")).wallet.status == WalletStatus.CLOSED


async def test_close_refuses_a_wallet_with_money_1005(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("rich", balance="0.01")
    with pytest.raises(WalletCloseError) as caught:
        await client.wallets.close("rich", "customer left")
    assert caught.value.error_code == 1005 and caught.value.request_id is not None
    assert fake.wallets["rich"].status == "active"


async def test_close_twice_raises_1007(client: FreedomPayClient, fake: FakeFreedomPay) -> None:
    fake.add_wallet("w")
    await client.wallets.close("w", "done")
    with pytest.raises(WalletClosedError):
        await client.wallets.close("w", "done again")


async def test_a_blocked_wallet_can_be_closed(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("w", status="blocked")
    await client.wallets.close("w", "fraud confirmed")
    assert fake.wallets["w"].status == "closed"


async def test_close_an_unknown_wallet(client: FreedomPayClient) -> None:
    with pytest.raises(WalletNotFoundError):
        await client.wallets.close("nobody", "reason")


# -- owner identification -------------------------------------------------------------------


async def test_identify_owner_sends_the_fields_flat(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("w")
    done = await client.wallets.identify_owner(
        "w",
        iin="900101300123",
        first_name="Aigerim",
        birth_date=date(1990, 1, 1),
        income=Decimal("1234.50"),
        resident=True,
        address={"country": "KAZ", "lines": ["Almaty", "Abay 1"]},
    )
    assert done.request_status is RequestStatus.SUCCESS and done.request_id is not None
    assert fake.requests[done.request_id].payload == {
        "request_id": str(done.request_id),
        "identifier": "w",
        "iin": "900101300123",
        "first_name": "Aigerim",
        "birth_date": "1990-01-01",
        "income": "1234.50",
        "resident": True,
        "address": {"country": "KAZ", "lines": ["Almaty", "Abay 1"]},
    }
    assert fake.wallets["w"].owner["iin"] == "900101300123"
    assert (await client.wallets.info("w")).wallet.owner_id  # the fake assigns one


async def test_identify_owner_refusals(client: FreedomPayClient, fake: FakeFreedomPay) -> None:
    with pytest.raises(WalletNotFoundError):
        await client.wallets.identify_owner("nobody", iin="1")
    fake.add_wallet("gone", status="closed")
    with pytest.raises(WalletClosedError):
        await client.wallets.identify_owner("gone", iin="1")


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({}, ValueError, "keyword arguments"),
        ({"income": 12.5}, TypeError, "float"),
        ({"iin": None}, ValueError, "leave the field out"),
        ({"iin": "  "}, ValueError, "empty"),
        ({"seen": datetime(2024, 1, 1)}, ValueError, "timezone-aware"),
        ({"bad key": "x"}, ValueError, "owner field name"),
        ({"_private": "x"}, ValueError, "owner field name"),
        ({"address": {"city": 1.5}}, TypeError, "address.city"),
        ({"address": {1: "x"}}, TypeError, "keys"),
        ({"tags": [object()]}, TypeError, r"tags\[0\]"),
        ({"income": Decimal("NaN")}, ValueError, "finite"),
        ({"deep": {"a": {"b": {"c": {"d": {"e": "x"}}}}}}, ValueError, "nested"),
    ],
)
async def test_identify_owner_refuses_bad_fields_before_sending(
    client: FreedomPayClient,
    fake: FakeFreedomPay,
    fields: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        await client.wallets.identify_owner("user-1", **fields)
    assert_nothing_sent(fake, client)


# -- request status -------------------------------------------------------------------------


async def test_request_status_of_a_finished_add(client: FreedomPayClient) -> None:
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="n")
    assert added.request_id is not None
    status = await client.wallets.request_status(str(added.request_id))
    assert status.request_status is RequestStatus.SUCCESS
    assert status.request_id == added.request_id
    assert status.wallet is not None and added.wallet is not None
    assert status.wallet.wallet_id == added.wallet.wallet_id


async def test_request_status_reports_a_failed_operation(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("gone", status="closed")
    request_id = uuid4()
    with pytest.raises(WalletClosedError):
        await client.wallets.block("gone", "x", request_id=request_id)
    status = await client.wallets.request_status(request_id)
    assert status.request_status is RequestStatus.ERROR
    assert status.error_code == 1007


async def test_request_status_of_an_unknown_request_raises_1006(client: FreedomPayClient) -> None:
    request_id = uuid4()
    with pytest.raises(RequestNotFoundError) as caught:
        await client.wallets.request_status(request_id)
    assert caught.value.error_code == 1006 and caught.value.request_id == request_id
    assert caught.value.endpoint == "request_status"


@pytest.mark.parametrize(
    ("request_id", "error"), [("nope", ValueError), (None, TypeError), (7, TypeError)]
)
async def test_request_status_refuses_bad_ids_before_sending(
    client: FreedomPayClient, fake: FakeFreedomPay, request_id: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="request_id"):
        await client.wallets.request_status(request_id)
    assert_nothing_sent(fake, client)


# -- mutations are never resent, and their errors always carry the request_id ---------------


async def test_a_timed_out_block_is_never_resent_by_the_sdk(fake: FakeFreedomPay) -> None:
    request_id = uuid4()
    fake.latency = 0.5  # the fake stalls before reading: the request never gets through
    async with fake.client() as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.wallets.block("user-3", "x", request_id=request_id, timeout=0.1)
        assert caught.value.request_id == request_id
        assert caught.value.endpoint == "block" and caught.value.identifier == "user-3"
        assert fake.stats.by_path[BLOCK.path] == 1  # no automatic resend
        fake.latency = 0
        # Reconcile: Request status says the server never had it, so sending it again with
        # the same request_id is safe (had it arrived, the resend would get 1002).
        with pytest.raises(RequestNotFoundError):
            await client.wallets.request_status(request_id)
        done = await client.wallets.block("user-3", "x", request_id=request_id)
    assert done.request_id == request_id
    assert fake.stats.by_path[BLOCK.path] == 2
    assert fake.wallets["user-3"].status == "blocked"


async def test_an_undecodable_mutation_reply_says_to_check_request_status(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(ADD.path, b"<html>gateway</html>")
    request_id = uuid4()
    with pytest.raises(ResponseDecodeError, match="check Request status") as caught:
        await client.wallets.add(country="KAZ", currency="KZT", request_id=request_id)
    assert caught.value.request_id == request_id
    assert fake.stats.by_path[ADD.path] == 1


async def test_a_mutation_answered_ok_but_request_status_error_raises(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(
        BLOCK.path,
        {"status": "ok", "request_status": "2", "error_code": "1008", "error_description": "no"},
    )
    with pytest.raises(WalletBlockError) as caught:
        await client.wallets.block("user-1", "x")
    assert caught.value.request_status is RequestStatus.ERROR
    assert caught.value.request_id is not None


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("add", {"country": "KAZ", "currency": "KZT", "identifier": "x"}),
        ("block", {"identifier": "x", "reason": "r"}),
        ("close", {"identifier": "x", "reason": "r"}),
        ("identify_owner", {"identifier": "x", "iin": "1"}),
    ],
)
async def test_every_mutation_error_carries_its_request_id(
    name: str, arguments: dict[str, Any]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request_id = uuid4()
    async with FreedomPayClient(
        auth_id="1", secret_key="s", base_url=f"http://127.0.0.1:{port}"
    ) as client:
        with pytest.raises(TransportError) as caught:
            await getattr(client.wallets, name)(request_id=request_id, **arguments)
    assert caught.value.request_id == request_id
    assert caught.value.endpoint == name
    assert str(request_id) in str(caught.value)
