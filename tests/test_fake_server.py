"""The fake server's own rules, checked directly on its ledger (pure) and over HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import aiohttp
import msgspec
import pytest

from freedompay_async._jws import sign
from freedompay_async._protocol import ENDPOINTS
from freedompay_async.testing import (
    FakeFreedomPay,
    FakeLedger,
    FakeOperation,
    FakeWallet,
    RequestState,
)

UTC = timezone.utc


def rid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def ledger() -> FakeLedger:
    ledger = FakeLedger()
    ledger.wallets["w"] = FakeWallet("w")
    return ledger


def code(reply: dict[str, Any]) -> str | None:
    assert reply["status"] in ("ok", "error")
    assert "dt" in reply and "request_status" in reply
    return reply.get("error_code") if reply["status"] == "error" else None


# -- 1001: every endpoint checks its body ---------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        ("info", {}),
        ("info", {"identifier": ""}),
        ("balance", {"identifier": 5}),
        ("statement", {"identifier": "w", "start_date": "yesterday"}),
        ("statement", {"identifier": "w", "end_date": "2024-01-01T00:00:00"}),  # no offset
        (
            "statement",
            {
                "identifier": "w",
                "start_date": "2024-01-02T00:00:00Z",
                "end_date": "2024-01-01T00:00:00Z",
            },
        ),
        ("request_status", {"request_id": "x"}),
        ("request_status", {}),
        ("add", {"request_id": "nope", "country": "KAZ", "currency": "KZT"}),
        ("add", {"request_id": "RID", "country": "kaz", "currency": "KZT"}),
        ("add", {"request_id": "RID", "country": "KAZ"}),
        ("add", {"request_id": "RID", "country": "KAZ", "currency": "KZT", "identifier": ""}),
        ("block", {"request_id": "RID", "identifier": "w"}),
        ("block", {"request_id": "RID", "identifier": "w", "description": " "}),
        ("close", {"request_id": 7, "identifier": "w", "description": "x"}),
        ("identify_owner", {"request_id": "RID", "identifier": "w"}),
    ],
)
def test_bad_bodies_get_1001_and_are_not_recorded(
    ledger: FakeLedger, operation: str, payload: dict[str, Any]
) -> None:
    payload = {k: rid() if v == "RID" else v for k, v in payload.items()}
    assert code(ledger.handle(operation, payload)) == "1001"
    assert ledger.requests == {}
    assert ledger.wallets["w"].status == "active"


# -- mutations ------------------------------------------------------------------------------


def test_a_request_id_is_taken_even_when_the_operation_failed(ledger: FakeLedger) -> None:
    request_id = rid()
    body = {"request_id": request_id, "identifier": "nobody", "description": "x"}
    assert code(ledger.handle("block", body)) == "1004"
    assert ledger.requests[uuid.UUID(request_id)].state is RequestState.ERROR
    assert code(ledger.handle("block", {**body, "identifier": "w"})) == "1002"
    assert ledger.wallets["w"].status == "active"
    status = ledger.handle("request_status", {"request_id": request_id})
    assert status["status"] == "ok" and status["request_status"] == "2"
    assert status["error_code"] == "1004"


def test_add_rules(ledger: FakeLedger) -> None:
    body = {"country": "KAZ", "currency": "USD"}
    reply = ledger.handle("add", {"request_id": rid(), **body, "identifier": "new"})
    assert code(reply) is None and reply["request_status"] == "0"
    assert reply["wallet"]["currency"] == "USD" and reply["wallet"]["balance"] == "0.00"
    assert ledger.wallets["new"].country == "KAZ"
    assert code(ledger.handle("add", {"request_id": rid(), **body, "identifier": "new"})) == "1003"
    anonymous = ledger.handle("add", {"request_id": rid(), **body})
    assert anonymous["wallet"]["wallet_id"] in ledger.wallets
    numbers = {w.account_number for w in ledger.wallets.values()}
    assert len(numbers) == 3  # every wallet has its own account number ("w" has "")


@pytest.mark.parametrize(
    ("status", "balance", "operation", "expected_code", "final_status"),
    [
        ("active", "0", "block", None, "blocked"),
        ("blocked", "0", "block", "1008", "blocked"),
        ("closed", "0", "block", "1007", "closed"),
        ("active", "0", "close", None, "closed"),
        ("blocked", "0", "close", None, "closed"),
        ("active", "0.01", "close", "1005", "active"),
        ("active", "-0.01", "close", "1005", "active"),
        ("closed", "0", "close", "1007", "closed"),
        ("blocked", "5", "identify_owner", None, "blocked"),
        ("closed", "0", "identify_owner", "1007", "closed"),
    ],
)
def test_status_rules(
    ledger: FakeLedger,
    status: str,
    balance: str,
    operation: str,
    expected_code: str | None,
    final_status: str,
) -> None:
    ledger.wallets["w"].status = status
    ledger.wallets["w"].balance = Decimal(balance)
    extra = {"iin": "1"} if operation == "identify_owner" else {"description": "why"}
    reply = ledger.handle(operation, {"request_id": rid(), "identifier": "w", **extra})
    assert code(reply) == expected_code
    assert ledger.wallets["w"].status == final_status
    # Reads work whatever the status.
    assert code(ledger.handle("info", {"identifier": "w"})) is None
    assert ledger.handle("balance", {"identifier": "w"})["balance"] == balance


def test_unknown_wallets_are_1004_everywhere(ledger: FakeLedger) -> None:
    for operation in ("info", "balance", "statement"):
        assert code(ledger.handle(operation, {"identifier": "nobody"})) == "1004"
    for operation, extra in (
        ("block", {"description": "x"}),
        ("close", {"description": "x"}),
        ("identify_owner", {"iin": "1"}),
    ):
        body = {"request_id": rid(), "identifier": "nobody", **extra}
        assert code(ledger.handle(operation, body)) == "1004"


def test_request_status_of_an_unknown_id_is_1006(ledger: FakeLedger) -> None:
    assert code(ledger.handle("request_status", {"request_id": rid()})) == "1006"


# -- statement ------------------------------------------------------------------------------


def test_statement_filters_inclusively_and_sorts(ledger: FakeLedger) -> None:
    wallet = ledger.wallets["w"]
    for day in (3, 1, 2):
        wallet.operations.append(
            FakeOperation("emoney_pay", Decimal(day), datetime(2024, 1, day, tzinfo=UTC))
        )
    reply = ledger.handle(
        "statement",
        {
            "identifier": "w",
            "start_date": "2024-01-02T00:00:00Z",
            "end_date": "2024-01-03T00:00:00Z",
        },
    )
    assert [op["amount"] for op in reply["operations"]] == [Decimal(2), Decimal(3)]
    assert reply["operations"][0]["currency"] == "KZT"  # the wallet's, by default


def test_fake_operations_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeOperation("emoney_pay", Decimal(1), datetime(2024, 1, 1))


# -- deferral helpers -----------------------------------------------------------------------


def test_defer_by_operation_counts_times(ledger: FakeLedger) -> None:
    ledger.defer("block", polls=2, times=2)
    ledger.wallets["v"] = FakeWallet("v")
    ledger.wallets["u"] = FakeWallet("u")
    replies = [
        ledger.handle("block", {"request_id": rid(), "identifier": w, "description": "x"})
        for w in ("w", "v", "u")
    ]
    assert [r["request_status"] for r in replies] == ["1", "1", "0"]
    assert len(ledger.pending) == 2
    first = ledger.pending[0]
    assert ledger.handle("request_status", {"request_id": str(first)})["request_status"] == "1"
    assert ledger.wallets["w"].status == "active"
    assert ledger.handle("request_status", {"request_id": str(first)})["request_status"] == "0"
    assert ledger.wallets["w"].status == "blocked"
    # Finished requests stay finished; polling them more changes nothing.
    assert ledger.handle("request_status", {"request_id": str(first)})["request_status"] == "0"
    assert ledger.requests[first].polls == 2


def test_complete_and_its_misuse(ledger: FakeLedger) -> None:
    request_id = rid()
    ledger.defer(request_id=request_id, polls=None)
    body = {"request_id": request_id, "identifier": "w", "description": "x"}
    assert ledger.handle("close", body)["request_status"] == "1"
    for _ in range(5):  # polls never finish it
        ledger.handle("request_status", {"request_id": request_id})
    assert ledger.wallets["w"].status == "active"
    request = ledger.complete(request_id)
    assert request.state is RequestState.SUCCESS and ledger.wallets["w"].status == "closed"
    with pytest.raises(ValueError, match="already finished"):
        ledger.complete(request_id)
    with pytest.raises(KeyError):
        ledger.complete(uuid.uuid4())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("block",), {"request_id": uuid.uuid4()}),
        (("info",), {}),
        (("block",), {"polls": 0}),
        (("block",), {"times": 0}),
    ],
)
def test_defer_refuses_nonsense(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"operation|polls|times"):
        FakeLedger().defer(*args, **kwargs)


# -- over HTTP ------------------------------------------------------------------------------


async def test_every_endpoint_of_the_table_is_served(fake: FakeFreedomPay) -> None:
    async with aiohttp.ClientSession() as session:
        for endpoint in ENDPOINTS.values():
            body = b"{}"
            signature = sign(
                body, uri=endpoint.path, auth_id=fake.auth_id, secret_key=fake.secret_key
            )
            async with session.post(
                fake.url + endpoint.path, data=body, headers={"X-JWS-Signature": signature}
            ) as response:
                assert response.status == 200, endpoint.name
                reply = msgspec.json.decode(await response.read())
            assert reply["status"] == "error" and reply["error_code"] == "1001", endpoint.name
    assert fake.stats.by_path == {endpoint.path: 1 for endpoint in ENDPOINTS.values()}


async def test_unknown_paths_are_404(fake: FakeFreedomPay) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + "/v5/partner/wallet/nope", data=b"{}") as response,
    ):
        assert response.status == 404


async def test_seeding_through_the_server_helpers(fake: FakeFreedomPay) -> None:
    wallet = fake.add_wallet(
        "seeded",
        balance="12.30",
        operations=[
            {"type": "emoney_buy", "amount": "12.30", "datetime": datetime(2024, 1, 1, tzinfo=UTC)}
        ],
    )
    assert wallet.operations[0].amount == Decimal("12.30")
    fake.add_operation("seeded", "emoney_pay", "-1", datetime(2024, 1, 2, tzinfo=UTC), rrn="r")
    assert [op.rrn for op in fake.wallets["seeded"].operations] == ["", "r"]
    with pytest.raises(KeyError):
        fake.add_operation("nobody", "emoney_pay", "1", datetime(2024, 1, 2, tzinfo=UTC))


async def test_seeded_money_is_never_a_float(fake: FakeFreedomPay) -> None:
    with pytest.raises(TypeError, match="balance"):
        fake.add_wallet("f", balance=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="amount"):
        FakeOperation("emoney_pay", 0.1, datetime(2024, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    assert "f" not in fake.wallets
