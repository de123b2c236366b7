"""The wallet life cycle end to end, and long-running operations (``wait``) against the fake."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import anyio
import pytest

from freedompay_async import (
    FreedomPayClient,
    RequestNotFoundError,
    RequestStatus,
    WaitTimeoutError,
    WalletClosedError,
    WalletCloseError,
    WalletExistsError,
    WalletNotFoundError,
    WalletStatus,
)
from freedompay_async._polling import poll_until
from freedompay_async._protocol import REQUEST_STATUS
from freedompay_async.testing import FakeFreedomPay

UTC = timezone.utc
FAST = {"poll_interval": 0.01, "max_poll_interval": 0.02}


async def test_full_life_cycle(client: FreedomPayClient, fake: FakeFreedomPay) -> None:
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="alice")
    assert added.request_status is RequestStatus.SUCCESS

    info = await client.wallets.info("alice")
    assert info.wallet.status == WalletStatus.ACTIVE
    assert info.wallet.balance == Decimal("0.00")

    assert (await client.wallets.statement("alice")).operations == ()
    now = datetime.now(UTC)
    fake.add_operation("alice", "emoney_emission", "500.00", now - timedelta(days=2))
    fake.add_operation("alice", "emoney_pay", "-500.00", now - timedelta(days=1))
    statement = await client.wallets.statement("alice", start=now - timedelta(days=1, hours=1))
    assert [(op.type, op.amount) for op in statement.operations] == [
        ("emoney_pay", Decimal("-500.00"))
    ]

    await client.wallets.identify_owner("alice", iin="900101300123", last_name="Serikova")
    blocked = await client.wallets.block("alice", "suspicious activity")
    assert blocked.request_status is RequestStatus.SUCCESS
    assert (await client.wallets.info("alice")).wallet.status == WalletStatus.BLOCKED

    closed = await client.wallets.close("alice", "customer left")
    assert closed.request_status is RequestStatus.SUCCESS
    final = await client.wallets.info("alice")
    assert final.wallet.status == WalletStatus.CLOSED
    assert final.wallet.wallet_id == (added.wallet.wallet_id if added.wallet else None)

    # A closed wallet stays readable and refuses every mutation; its identifier stays taken.
    assert len((await client.wallets.statement("alice")).operations) == 2
    with pytest.raises(WalletClosedError):
        await client.wallets.block("alice", "again")
    with pytest.raises(WalletClosedError):
        await client.wallets.close("alice", "again")
    with pytest.raises(WalletExistsError):
        await client.wallets.add(country="KAZ", currency="KZT", identifier="alice")
    # Every mutation was recorded under its own request_id, each sent once.
    ids = [added.request_id, blocked.request_id, closed.request_id]
    assert all(request_id in fake.requests for request_id in ids)


# -- processing, then done ------------------------------------------------------------------


async def test_a_deferred_add_finishes_on_the_nth_poll(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("add", polls=3)
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="slow")
    assert added.request_status is RequestStatus.PROCESSING
    assert added.wallet is None and added.request_id in fake.pending
    with pytest.raises(WalletNotFoundError):  # not there until it finishes
        await client.wallets.info("slow")

    assert added.request_id is not None
    final = await client.wallets.wait(added.request_id, timeout=5, **FAST)
    assert final.request_status is RequestStatus.SUCCESS
    assert final.wallet is not None and final.wallet.wallet_id is not None
    assert fake.requests[added.request_id].polls == 3
    assert fake.stats.by_path[REQUEST_STATUS.path] == 3
    assert fake.pending == []
    assert (await client.wallets.info("slow")).wallet.wallet_id == final.wallet.wallet_id


async def test_wait_true_follows_a_processing_block_to_the_end(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("block", polls=1)
    done = await client.wallets.block("user-5", "x", wait=True)
    assert done.request_status is RequestStatus.SUCCESS
    assert done.raw["request_status"] == "1"  # raw stays the block's own reply
    assert fake.wallets["user-5"].status == "blocked"
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1


async def test_wait_true_on_add_fills_the_wallet_in(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("add", polls=1)
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="n", wait=True)
    assert added.request_status is RequestStatus.SUCCESS
    assert added.wallet is not None and added.wallet.status == "active"


async def test_wait_true_does_not_poll_a_finished_operation(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    await client.wallets.block("user-5", "x", wait=True)
    assert REQUEST_STATUS.path not in fake.stats.by_path


async def test_a_deferred_operation_that_fails_raises_its_own_error_from_wait(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("rich", balance="10.00")
    fake.defer("close", polls=2)
    pending = await client.wallets.close("rich", "x")  # accepted: the rules run later
    assert pending.request_status is RequestStatus.PROCESSING and pending.request_id
    with pytest.raises(WalletCloseError) as caught:
        await client.wallets.wait(pending.request_id, timeout=5, **FAST)
    assert caught.value.error_code == 1005
    assert caught.value.request_id == pending.request_id
    assert caught.value.request_status is RequestStatus.ERROR
    assert str(pending.request_id) in str(caught.value)
    assert fake.wallets["rich"].status == "active"


async def test_wait_true_raises_the_failure_too(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.add_wallet("gone", status="closed")
    fake.defer("block", polls=1)
    with pytest.raises(WalletClosedError):
        await client.wallets.block("gone", "x", wait=True)


async def test_wait_gives_up_with_a_timeout_error_and_can_be_resumed(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    request_id = uuid4()
    fake.defer(request_id=request_id, polls=None)  # only fake.complete() finishes it
    await client.wallets.block("user-9", "x", request_id=request_id)
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wallets.wait(request_id, timeout=0.2, **FAST)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.request_id == request_id
    assert error.request_status is RequestStatus.PROCESSING
    assert error.attempts >= 2 and "do not resend" in str(error)
    assert fake.wallets["user-9"].status == "active"

    fake.complete(request_id)
    final = await client.wallets.wait(request_id, timeout=5, **FAST)
    assert final.request_status is RequestStatus.SUCCESS
    assert fake.wallets["user-9"].status == "blocked"


async def test_wait_true_with_a_short_budget_raises_wait_timeout(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("close", polls=None)
    fake.add_wallet("w")
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wallets.close("w", "x", wait=True, wait_timeout=0.1)
    assert caught.value.request_id in fake.pending


async def test_wait_returns_as_soon_as_the_operation_completes(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("add", polls=None)
    added = await client.wallets.add(country="KAZ", currency="KZT", identifier="later")
    assert added.request_id is not None
    request_id = added.request_id
    results: list[Any] = []

    async def waiter() -> None:
        results.append(await client.wallets.wait(request_id, timeout=10, **FAST))

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.sleep(0.05)
        assert results == []
        fake.complete(request_id)
    assert results[0].request_status is RequestStatus.SUCCESS


async def test_cancelling_a_wait_leaves_nothing_behind(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.defer("block", polls=None)
    done = await client.wallets.block("user-1", "x")
    assert done.request_id is not None
    with anyio.move_on_after(0.1) as scope:
        await client.wallets.wait(done.request_id, timeout=None, **FAST)
    assert scope.cancelled_caught
    # The client still works afterwards (conftest also checks no task was left running).
    assert (await client.wallets.request_status(done.request_id)).request_status is (
        RequestStatus.PROCESSING
    )


async def test_wait_on_an_unknown_request_raises_1006(client: FreedomPayClient) -> None:
    with pytest.raises(RequestNotFoundError):
        await client.wallets.wait(uuid4(), timeout=5, **FAST)


@pytest.mark.parametrize(
    ("replies", "expected_polls"),
    [
        # The Card API spelling, and an unknown state in between: both keep it polling.
        ([{"request_status": "process"}, {"request_status": "queued"}], 3),
        ([{"request_status": 1}, {"request_status": ""}], 3),  # a blank state is not final
    ],
)
async def test_wait_polls_through_any_non_final_state(
    client: FreedomPayClient,
    fake: FakeFreedomPay,
    replies: list[dict[str, Any]],
    expected_polls: int,
) -> None:
    dt = "2026-01-01T00:00:00Z"
    for reply in replies:
        fake.respond_with(REQUEST_STATUS.path, {"status": "ok", "dt": dt, **reply})
    fake.respond_with(REQUEST_STATUS.path, {"status": "ok", "request_status": "success", "dt": dt})
    final = await client.wallets.wait(uuid4(), timeout=5, **FAST)
    assert final.request_status is RequestStatus.SUCCESS
    assert fake.stats.by_path[REQUEST_STATUS.path] == expected_polls


async def test_wait_raises_a_failure_reported_as_a_status_error_reply(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    # The other plausible shape: Request status itself answers status "error" with the code.
    fake.respond_with(
        REQUEST_STATUS.path,
        {
            "status": "error",
            "request_status": "error",
            "error_code": 1007,
            "error_description": "x",
        },
    )
    request_id = uuid4()
    with pytest.raises(WalletClosedError) as caught:
        await client.wallets.wait(request_id, timeout=5, **FAST)
    assert caught.value.request_id == request_id


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"poll_interval": 0}, ValueError),
        ({"max_poll_interval": True}, TypeError),
        ({"poll_interval": 2.0, "max_poll_interval": 1.0}, ValueError),
    ],
)
async def test_wait_refuses_bad_options_before_sending(
    client: FreedomPayClient, fake: FakeFreedomPay, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await client.wallets.wait(uuid4(), **options)
    assert fake.stats.requests == 0


# -- the backoff schedule itself, with an injected sleep --------------------------------------


async def test_poll_until_backs_off_exponentially_up_to_the_cap() -> None:
    pauses: list[float] = []
    values = iter(range(100))

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    async def fetch() -> int:
        return next(values)

    outcome = await poll_until(
        fetch, lambda value: value == 6, budget=None, interval=0.1, max_interval=0.5, sleep=record
    )
    assert outcome.done and outcome.last == 6 and outcome.polls == 7
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


async def test_poll_until_stops_at_the_budget_even_mid_fetch() -> None:
    calls = 0

    async def slow_fetch() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(10)
        return 0

    outcome = await poll_until(
        slow_fetch, lambda _: True, budget=0.05, interval=0.01, max_interval=0.01
    )
    assert not outcome.done and outcome.polls == 0 and calls == 1
