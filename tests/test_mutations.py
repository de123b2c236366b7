"""Exactly-once mutations: a lost reply is resent with the same request_id and reconciled.

Every test drives the real HTTP stack against the fake server, whose fault injector loses
replies either before the endpoint ran (nothing happened) or after (it happened).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import pickle
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import (
    AuthenticationError,
    DuplicateRequestError,
    FreedomPayClient,
    FreedomPayError,
    HTTPStatusError,
    MutationOutcomeUnknownError,
    MutationResult,
    RequestStatus,
    ResponseDecodeError,
    RetryPolicy,
    Timeout,
    TransportError,
    WalletClosedError,
    WalletCloseError,
)
from freedompay_async._mutations import outcome_unknown
from freedompay_async._protocol import ADD, BLOCK, CLOSE, ENDPOINTS, INFO, REQUEST_STATUS
from freedompay_async.testing import FakeFreedomPay, Faults
from freedompay_async.testing._faults import APPLIED_KINDS, FAULT_KINDS

FAST = RetryPolicy(backoff=0.001, max_backoff=0.01)
OFF = RetryPolicy(backoff=0.001, max_backoff=0.01, resend_mutations=False)
#: Short enough for stalls to be noticed quickly, long enough for a loaded machine.
LIMITS = Timeout(total=10, connect=2, read=0.3)
STALL = 1.0  # seconds a stall holds the request (longer than LIMITS.read)
DROPPED_KINDS = sorted(set(FAULT_KINDS) - APPLIED_KINDS)
Call = Callable[[FreedomPayClient, UUID], Awaitable[MutationResult]]


def only(kind: str, stall: float = STALL) -> Faults:
    """Every request draws ``kind``; a stall holds the request ``stall`` seconds."""
    return Faults(**{f"{kind}_rate": 1.0}, stall_seconds=stall)


MUTATIONS: dict[str, Call] = {
    "add": lambda c, rid: c.wallets.add(
        country="KAZ", currency="KZT", identifier="new-1", request_id=rid
    ),
    "block": lambda c, rid: c.wallets.block("user-1", reason="fraud check", request_id=rid),
    "close": lambda c, rid: c.wallets.close("empty", reason="customer left", request_id=rid),
    "identify_owner": lambda c, rid: c.wallets.identify_owner(
        "user-3", first_name="Aigerim", request_id=rid
    ),
}


def applied(fake: FakeFreedomPay, name: str) -> bool:
    """Whether the fake shows the effect of ``MUTATIONS[name]``."""
    if name == "add":
        return "new-1" in fake.wallets
    if name == "block":
        return fake.wallets["user-1"].status == "blocked"
    if name == "close":
        return fake.wallets["empty"].status == "closed"
    return fake.wallets["user-3"].owner == {"first_name": "Aigerim"}


async def settle(fake: FakeFreedomPay) -> None:
    """Wait until the fake has no request in flight (a stalled one lands late)."""
    for _ in range(1000):
        if fake.stats.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake still has requests in flight")


@pytest.fixture
def fake(fake: FakeFreedomPay) -> FakeFreedomPay:
    fake.add_wallet("empty", balance="0.00")  # closable
    return fake


# -- a lost reply is turned into the real outcome ----------------------------------------------


@pytest.mark.parametrize("kind", sorted(APPLIED_KINDS))
@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_applied_but_reply_lost_is_reconciled_through_request_status(
    fake: FakeFreedomPay, name: str, kind: str
) -> None:
    endpoint = ENDPOINTS[name]
    fake.inject_faults(only(kind), path=endpoint.path, times=1)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        result = await MUTATIONS[name](client, rid)
    assert result.request_id == rid
    assert result.request_status is RequestStatus.SUCCESS
    assert fake.stats.faults == {kind: 1}
    # The first send was carried out; the resend (same bytes) was refused with 1002 and the
    # outcome came from Request status.
    sends = fake.stats.mutation_sends[rid]
    assert len(sends) == 2 and sends[0] == sends[1]
    assert list(fake.requests) == [rid]
    assert fake.requests[rid].executions == 1
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1
    assert applied(fake, name)
    if name == "add":
        assert result.wallet is not None
        assert [i.value for i in result.wallet.identifiers] == ["new-1"]


@pytest.mark.parametrize("kind", DROPPED_KINDS)
@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_a_send_dropped_before_it_ran_is_resent_and_carried_out_once(
    fake: FakeFreedomPay, name: str, kind: str
) -> None:
    endpoint = ENDPOINTS[name]
    fake.inject_faults(only(kind), path=endpoint.path, times=1)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        result = await MUTATIONS[name](client, rid)
        await settle(fake)  # a stalled first send lands late, and is refused with 1002
    assert result.request_id == rid
    assert result.request_status is RequestStatus.SUCCESS
    sends = fake.stats.mutation_sends[rid]
    assert len(sends) == 2 and sends[0] == sends[1]
    assert fake.requests[rid].executions == 1
    assert fake.stats.by_path.get(REQUEST_STATUS.path, 0) == 0  # the resend answered itself
    assert applied(fake, name)


@pytest.mark.parametrize("kind", sorted(APPLIED_KINDS))
async def test_a_business_error_survives_reconciliation(fake: FakeFreedomPay, kind: str) -> None:
    fake.add_wallet("gone", status="closed")
    fake.inject_faults(only(kind), path=BLOCK.path, times=1)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(WalletClosedError) as caught:
            await client.wallets.block("gone", reason="fraud check", request_id=rid)
    error = caught.value
    assert error.request_id == rid
    assert error.endpoint == "block" and error.identifier == "gone"
    assert error.attempts == 2
    assert error.request_status is RequestStatus.ERROR
    assert "Request status" in str(error)
    assert fake.requests[rid].executions == 1
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1


async def test_a_close_refused_for_money_on_it_survives_reconciliation(
    fake: FakeFreedomPay,
) -> None:
    fake.inject_faults(only("reply_lost"), path=CLOSE.path, times=1)
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(WalletCloseError):
            await client.wallets.close("user-5", reason="customer left")
    assert fake.wallets["user-5"].status == "active"


async def test_a_request_id_reused_by_the_caller_is_still_a_duplicate(
    fake: FakeFreedomPay,
) -> None:
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        await client.wallets.block("user-1", reason="first", request_id=rid)
        with pytest.raises(DuplicateRequestError) as caught:
            await client.wallets.block("user-2", reason="second", request_id=rid)
    assert caught.value.request_id == rid
    assert caught.value.attempts == 1
    assert len(fake.stats.mutation_sends[rid]) == 2  # one send per call
    assert fake.stats.by_path.get(REQUEST_STATUS.path, 0) == 0  # no reconciliation
    assert fake.wallets["user-2"].status == "active"


async def test_processing_found_by_reconciliation_is_returned_or_waited_for(
    fake: FakeFreedomPay,
) -> None:
    first, second = uuid4(), uuid4()
    fake.defer(request_id=first, polls=2)
    fake.defer(request_id=second, polls=2)
    fake.inject_faults(only("reply_lost"), path=BLOCK.path, times=1)
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        pending = await client.wallets.block("user-1", reason="x", request_id=first)
        assert pending.request_status is RequestStatus.PROCESSING
        assert fake.wallets["user-1"].status == "active"

        fake.inject_faults(only("reply_lost"), path=BLOCK.path, times=1)
        done = await client.wallets.block(
            "user-2", reason="x", request_id=second, wait=True, wait_timeout=10
        )
    assert done.request_status is RequestStatus.SUCCESS
    assert fake.wallets["user-2"].status == "blocked"
    assert fake.requests[second].executions == 1


async def test_an_add_whose_status_lacks_the_wallet_fetches_it(fake: FakeFreedomPay) -> None:
    fake.inject_faults(only("reply_lost"), path=ADD.path, times=1)
    fake.respond_with(
        REQUEST_STATUS.path, {"status": "ok", "request_status": "0", "dt": "2026-01-01T00:00:00Z"}
    )
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        added = await client.wallets.add(country="KAZ", currency="KZT", identifier="new-1")
    assert added.request_status is RequestStatus.SUCCESS
    assert added.wallet is not None
    assert added.wallet.wallet_id == fake.wallets["new-1"].wallet_id
    assert fake.stats.by_path[INFO.path] == 1


# -- when the outcome cannot be known ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(APPLIED_KINDS))
async def test_every_reply_lost_still_reconciles_when_all_sends_fail(
    fake: FakeFreedomPay, kind: str
) -> None:
    fake.inject_faults(only(kind), path=BLOCK.path)  # every send, not just the first
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        done = await client.wallets.block("user-1", reason="x", request_id=rid)
    assert done.request_status is RequestStatus.SUCCESS
    assert len(fake.stats.mutation_sends[rid]) == FAST.max_attempts
    assert fake.requests[rid].executions == 1
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1


@pytest.mark.parametrize("kind", DROPPED_KINDS)
async def test_unknown_outcome_raises_with_request_id_and_cause_and_the_recipe_works(
    fake: FakeFreedomPay, kind: str
) -> None:
    # Stalled sends land late, after the call gave up (3 sends of LIMITS.read, then a look).
    fake.inject_faults(only(kind, stall=3.0), path=BLOCK.path)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await client.wallets.block("user-1", reason="x", request_id=rid)
        error = caught.value
        assert isinstance(error, FreedomPayError)
        assert error.request_id == rid and str(rid) in str(error)
        assert error.attempts == FAST.max_attempts
        assert isinstance(error.cause, (TransportError, HTTPStatusError, ResponseDecodeError))
        assert error.__cause__ is error.cause
        assert "same request_id" in str(error)
        assert fake.stats.by_path[REQUEST_STATUS.path] == 1  # one last look, 1006
        await settle(fake)  # stalled sends land late and carry it out: that is why it is unknown
        landed = rid in fake.requests
        assert landed is (kind == "stall")
        # The recipe: the same call later, with the same request_id and resume=True.
        fake.clear_faults()
        done = await client.wallets.block("user-1", reason="x", request_id=rid, resume=True)
    assert done.request_status is RequestStatus.SUCCESS
    assert done.request_id == rid
    assert fake.requests[rid].executions == 1
    assert fake.wallets["user-1"].status == "blocked"
    # It was reconciled (one more Request status) exactly when a late send had landed.
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1 + landed


async def test_resume_needs_the_request_id_it_resumes(fake: FakeFreedomPay) -> None:
    async with fake.client(retry=FAST) as client:
        with pytest.raises(ValueError, match="resume"):
            await client.wallets.block("user-1", reason="x", resume=True)
        with pytest.raises(TypeError, match="resume"):
            await client.wallets.block("user-1", reason="x", request_id=uuid4(), resume=1)  # type: ignore[arg-type]
    assert fake.stats.requests == 0


async def test_resume_returns_a_business_error_that_landed_meanwhile(
    fake: FakeFreedomPay,
) -> None:
    fake.add_wallet("gone", status="closed")
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(WalletClosedError):  # the first call's outcome, lost to the caller
            await client.wallets.block("gone", reason="x", request_id=rid)
        with pytest.raises(WalletClosedError) as caught:
            await client.wallets.block("gone", reason="x", request_id=rid, resume=True)
    assert caught.value.request_id == rid
    assert fake.requests[rid].executions == 1


async def test_resends_never_run_past_the_calls_total_limit(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(stall_rate=1.0, stall_seconds=30), path=BLOCK.path)
    rid = uuid4()
    limits = Timeout(total=1.0, connect=1.0, read=0.3)
    async with fake.client(retry=RetryPolicy(max_attempts=50, backoff=0.001), timeout=limits) as c:
        started = time.monotonic()
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await c.wallets.block("user-1", reason="x", request_id=rid)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5  # the limit, plus scheduling slack on a loaded machine
    assert 2 <= caught.value.attempts <= 4  # 0.3 s per stalled send within 1 s
    assert len(fake.stats.mutation_sends[rid]) == caught.value.attempts


async def test_a_failing_request_status_leaves_the_outcome_unknown(fake: FakeFreedomPay) -> None:
    fake.inject_faults(only("reply_lost"), path=BLOCK.path)
    fake.inject_faults(only("server_error"), path=REQUEST_STATUS.path)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await client.wallets.block("user-1", reason="x", request_id=rid)
    assert caught.value.request_id == rid
    assert "Request status failed" in str(caught.value)
    assert fake.stats.by_path[REQUEST_STATUS.path] == FAST.max_attempts  # a read, retried
    assert fake.requests[rid].executions == 1  # it did happen; the SDK could not learn it


# -- the policy switch -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) - {"oversize"}))
@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_with_resends_off_a_mutation_is_sent_exactly_once(
    fake: FakeFreedomPay, name: str, kind: str
) -> None:
    endpoint = ENDPOINTS[name]
    fake.inject_faults(only(kind), path=endpoint.path)
    rid = uuid4()
    async with fake.client(retry=OFF, timeout=LIMITS) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await MUTATIONS[name](client, rid)
    error = caught.value
    assert error.request_id == rid and error.attempts == 1
    assert error.cause is not None and error.cause.request_id == rid
    assert len(fake.stats.mutation_sends[rid]) == 1
    assert fake.stats.by_path.get(REQUEST_STATUS.path, 0) == 0


async def test_with_resends_off_the_manual_recipe_still_works(fake: FakeFreedomPay) -> None:
    fake.inject_faults(only("reply_lost"), path=BLOCK.path, times=1)
    rid = uuid4()
    async with fake.client(retry=OFF, timeout=LIMITS) as client:
        with pytest.raises(MutationOutcomeUnknownError):
            await client.wallets.block("user-1", reason="x", request_id=rid)
        status = await client.wallets.request_status(rid)
        assert status.request_status is RequestStatus.SUCCESS
        with pytest.raises(DuplicateRequestError):  # a resend is refused, not replayed
            await client.wallets.block("user-1", reason="x", request_id=rid)
    assert fake.requests[rid].executions == 1


def test_resend_mutations_must_be_a_bool() -> None:
    assert RetryPolicy().resend_mutations is True
    with pytest.raises(TypeError, match="resend_mutations"):
        RetryPolicy(resend_mutations=1)  # type: ignore[arg-type]


@given(status=st.integers(min_value=100, max_value=599))
def test_which_http_statuses_leave_a_mutations_outcome_unknown(status: int) -> None:
    error = HTTPStatusError("x", http_status=status)
    assert outcome_unknown(error) is (status == 429 or status >= 500)


def test_answers_that_say_what_happened_are_not_unknown() -> None:
    assert not outcome_unknown(WalletClosedError("x", error_code="1007"))
    assert not outcome_unknown(DuplicateRequestError("x", error_code="1002"))
    assert outcome_unknown(TransportError("reset"))
    assert outcome_unknown(ResponseDecodeError("junk"))


# -- the fake's side of the contract ------------------------------------------------------------


async def test_faults_with_times_stop_by_themselves(fake: FakeFreedomPay) -> None:
    fake.inject_faults(only("server_error"), path=INFO.path, times=2)
    async with fake.client(retry=RetryPolicy(max_attempts=1)) as client:
        for _ in range(2):
            with pytest.raises(HTTPStatusError):
                await client.wallets.info("user-1")
        assert (await client.wallets.info("user-1")).wallet.identifiers[0].value == "user-1"
    assert fake.stats.faults == {"server_error": 2}
    with pytest.raises(ValueError, match="times"):
        fake.inject_faults(only("reset"), times=0)


@pytest.mark.parametrize("kind", ["reply_lost", "reply_stall"])
async def test_reply_lost_faults_run_the_endpoint_first(fake: FakeFreedomPay, kind: str) -> None:
    fake.inject_faults(only(kind), path=BLOCK.path)
    async with fake.client(retry=OFF, timeout=LIMITS) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await client.wallets.block("user-1", reason="x")
    expected: Any = TransportError  # a RequestTimeoutError is one too
    assert isinstance(caught.value.cause, expected)
    assert fake.wallets["user-1"].status == "blocked"


# -- the README's "Mutations" example -----------------------------------------------------------


def _readme_mutations_examples() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Mutations\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


README_MUTATIONS_EXAMPLES = _readme_mutations_examples()


async def test_the_readme_recovery_recipe_runs_and_recovers(
    fake: FakeFreedomPay, capsys: pytest.CaptureFixture[str]
) -> None:
    (source,) = README_MUTATIONS_EXAMPLES
    # Every send of the first call is dropped before it runs: the outcome is unknown.
    fake.inject_faults(only("server_error"), path=BLOCK.path, times=FAST.max_attempts)
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        code = compile(source, "README Mutations", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        namespace: dict[str, Any] = {"client": client}
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
    rid = namespace["request_id"]
    assert str(rid) in capsys.readouterr().out  # the except branch ran
    assert fake.stats.faults == {"server_error": FAST.max_attempts}
    assert len(fake.stats.mutation_sends[rid]) == FAST.max_attempts + 1
    assert fake.requests[rid].executions == 1
    assert fake.wallets["user-3"].status == "blocked"


async def test_a_resend_refused_by_a_gateway_is_still_reconciled(fake: FakeFreedomPay) -> None:
    # The first send is carried out and its reply stalls; the resend is refused with 403 by
    # something in front of the API. That says nothing of the first send: ask Request status.
    fake.inject_faults(only("reply_stall"), path=BLOCK.path, times=1)
    rid = uuid4()
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        call = asyncio.create_task(client.wallets.block("user-1", reason="x", request_id=rid))
        while rid not in fake.requests:  # carried out; its reply is being held back
            await asyncio.sleep(0.005)
        fake.respond_with(BLOCK.path, b"forbidden", status=403)
        done = await call
    assert done.request_status is RequestStatus.SUCCESS
    assert len(fake.stats.mutation_sends[rid]) == 2
    assert fake.stats.by_path[REQUEST_STATUS.path] == 1
    assert fake.requests[rid].executions == 1


async def test_a_first_send_refused_by_a_gateway_raises_as_it_is(fake: FakeFreedomPay) -> None:
    fake.respond_with(BLOCK.path, b"forbidden", status=403)
    async with fake.client(retry=FAST, timeout=LIMITS) as client:
        with pytest.raises(AuthenticationError):
            await client.wallets.block("user-1", reason="x")
    assert fake.stats.by_path.get(REQUEST_STATUS.path, 0) == 0
    assert fake.requests == {}


def test_an_unknown_outcome_survives_pickling_with_its_request_id_and_cause() -> None:
    rid = uuid4()
    cause = TransportError("reset", endpoint="block", request_id=rid)
    error = MutationOutcomeUnknownError("unknown", cause=cause, endpoint="block", request_id=rid)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MutationOutcomeUnknownError
    assert copy.request_id == rid
    assert isinstance(copy.cause, TransportError) and copy.cause.message == "reset"


async def test_a_429_resend_waits_what_the_server_asked(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(rate_limit_rate=1.0, retry_after="1"), path=BLOCK.path, times=1)
    policy = RetryPolicy(backoff=0.001, max_backoff=0.001)  # the backoff alone would be ~0 s
    async with fake.client(retry=policy, timeout=LIMITS) as client:
        started = time.monotonic()
        done = await client.wallets.block("user-1", reason="x")
        elapsed = time.monotonic() - started
    assert done.request_status is RequestStatus.SUCCESS
    assert elapsed >= 1.0
    assert fake.stats.faults == {"rate_limit": 1}
