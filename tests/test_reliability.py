"""Retries, timeouts, limits and fault injection, through the fake server's real HTTP."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest

from freedompay_async import (
    AuthenticationError,
    FreedomPayClient,
    HTTPStatusError,
    MutationOutcomeUnknownError,
    RequestStatus,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    RetryPolicy,
    Timeout,
    TransportError,
    WalletNotFoundError,
)
from freedompay_async._protocol import ENDPOINTS
from freedompay_async._retry import parse_retry_after
from freedompay_async.testing import FakeFreedomPay, Faults

INFO_PATH = "/v5/partner/wallet/info"
FAST = RetryPolicy(backoff=0.001, max_backoff=0.01)


# -- the policy, as pure math ---------------------------------------------------------------


def test_full_jitter_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=3.0)
    highest = [policy.delay(n, uniform=lambda low, high: high) for n in range(1, 6)]
    assert highest == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [policy.delay(n, uniform=lambda low, high: low) for n in range(1, 4)] == [0.0] * 3
    draws = {policy.delay(3) for _ in range(200)}
    assert len(draws) > 100  # jittered
    assert all(0.0 <= d <= 2.0 for d in draws)


def test_retry_after_seconds_and_http_dates_are_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.delay(1, "4") == 4.0
    assert policy.delay(1, "3600") == 10.0
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert policy.delay(1, date, now=now.timestamp) == pytest.approx(7.0)
    past = format_datetime(now - timedelta(seconds=7), usegmt=True)
    assert policy.delay(1, past, now=now.timestamp) == 0.0
    # Junk falls back to the jittered backoff.
    assert policy.delay(1, "soon", uniform=lambda low, high: high) == policy.backoff
    assert parse_retry_after("-5") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00") is None  # no zone: not an HTTP date


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 2.5}, TypeError),
        ({"backoff": -1}, ValueError),
        ({"max_backoff": float("inf")}, ValueError),
        ({"max_retry_after": "1"}, TypeError),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_max_retries_shorthand_and_with_options() -> None:
    client = FreedomPayClient(auth_id="1", secret_key="s", max_retries=5)
    assert client.retry.max_attempts == 6
    view = client.with_options(max_retries=0, timeout=2)
    assert view.retry.max_attempts == 1
    assert view.timeout == Timeout(total=2.0, connect=2.0)
    assert client.retry.max_attempts == 6  # the original is untouched
    assert client.timeout == Timeout()
    with pytest.raises(ValueError, match="max_retries"):
        client.with_options(max_retries=-1)
    with pytest.raises(TypeError, match="RetryPolicy"):
        FreedomPayClient(auth_id="1", secret_key="s", retry=3)  # type: ignore[arg-type]


# -- retries through HTTP -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_for_reads(fake: FakeFreedomPay, status: int) -> None:
    fake.respond_with(INFO_PATH, b"busy", status=status, times=2, content_type="text/plain")
    async with fake.client(retry=FAST) as client:
        info = await client.wallets.info("user-1")
    assert info.wallet.identifiers[0].value == "user-1"
    assert fake.stats.by_path[INFO_PATH] == 3


@pytest.mark.parametrize("status", [400, 404, 409, 501])
async def test_other_statuses_are_not_retried(fake: FakeFreedomPay, status: int) -> None:
    fake.respond_with(INFO_PATH, b"no", status=status, times=3, content_type="text/plain")
    async with fake.client(retry=FAST) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.wallets.info("user-1")
    assert caught.value.http_status == status
    assert caught.value.attempts == 1
    assert fake.stats.by_path[INFO_PATH] == 1


async def test_api_errors_and_auth_errors_are_never_retried(fake: FakeFreedomPay) -> None:
    async with fake.client(retry=FAST) as client:
        with pytest.raises(WalletNotFoundError):
            await client.wallets.info("nobody")
    async with fake.client(retry=FAST, secret_key="wrong") as client:
        with pytest.raises(AuthenticationError):
            await client.wallets.info("user-1")
    assert fake.stats.by_path[INFO_PATH] == 2


async def test_the_final_error_tells_the_attempts_and_keeps_the_cause(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(reset_rate=1.0))
    async with fake.client(retry=RetryPolicy(max_attempts=4, backoff=0.001)) as client:
        with pytest.raises(TransportError) as caught:
            await client.wallets.info("user-1")
    error = caught.value
    assert error.attempts == 4
    assert "attempts=4" in str(error)
    assert isinstance(error.__cause__, aiohttp.ClientError)
    assert fake.stats.by_path[INFO_PATH] == 4
    assert fake.stats.faults == {"reset": 4}


async def test_retry_after_is_honoured(
    fake: FakeFreedomPay, caplog: pytest.LogCaptureFixture
) -> None:
    fake.respond_with(INFO_PATH, b"slow down", status=429, headers={"Retry-After": "7"})
    policy = RetryPolicy(backoff=0.001, max_retry_after=0.05)
    caplog.set_level(logging.WARNING, logger="freedompay_async")
    async with fake.client(retry=policy) as client:
        await client.wallets.info("user-1")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.delay == 0.05  # type: ignore[attr-defined]  # 7 s, capped
    assert record.http_status == 429  # type: ignore[attr-defined]


async def test_retries_can_be_switched_off(fake: FakeFreedomPay) -> None:
    fake.respond_with(INFO_PATH, b"busy", status=503, content_type="text/plain")
    async with fake.client(max_retries=0) as client:
        with pytest.raises(HTTPStatusError):
            await client.wallets.info("user-1")
    assert fake.stats.by_path[INFO_PATH] == 1


async def test_per_call_options_through_with_options(fake: FakeFreedomPay) -> None:
    fake.respond_with(INFO_PATH, b"busy", status=503, times=2, content_type="text/plain")
    async with fake.client(max_retries=0) as client:
        info = await client.with_options(retry=FAST).wallets.info("user-1")
        assert info.wallet.identifiers[0].value == "user-1"
        assert not client.closed


# -- each fault, one at a time --------------------------------------------------------------


async def test_stalls_become_request_timeout_errors(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(stall_rate=1.0, stall_seconds=30))
    # A per-attempt read limit and no total: each stalled attempt times out and is retried.
    # (A total is the call's deadline, retries included: see test_hostile.py.)
    async with fake.client(timeout=Timeout(total=None, read=0.2), retry=FAST) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.wallets.info("user-1")
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.attempts == 3
    assert fake.stats.faults == {"stall": 3}
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # no cancellation left behind


async def test_read_timeout_is_separate_from_total(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(latency=0.5))
    async with fake.client(timeout=Timeout(total=None, read=0.1), max_retries=0) as client:
        with pytest.raises(RequestTimeoutError, match=r"read=0\.1s"):
            await client.wallets.info("user-1")


@pytest.mark.parametrize("kind", ["truncated", "non_json", "wrong_shape"])
async def test_damaged_bodies_are_retried_then_reported(fake: FakeFreedomPay, kind: str) -> None:
    fake.inject_faults(Faults(**{f"{kind}_rate": 1.0}))  # type: ignore[arg-type]
    async with fake.client(retry=FAST) as client:
        with pytest.raises(ResponseDecodeError) as caught:
            await client.wallets.info("user-1")
    assert caught.value.attempts == 3
    assert caught.value.body
    assert fake.stats.faults == {kind: 3}


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_bodies_are_refused_without_retry(
    fake: FakeFreedomPay, chunked: bool
) -> None:
    fake.inject_faults(Faults(oversize_rate=1.0, oversize_bytes=300_000, oversize_chunked=chunked))
    async with fake.client(retry=FAST, max_response_bytes=100_000) as client:
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes=100000") as caught:
            await client.wallets.info("user-1")
        assert caught.value.attempts == 1
        fake.clear_faults()
        assert (await client.wallets.info("user-2")).wallet.identifiers[0].value == "user-2"


async def test_redirects_are_not_followed(fake: FakeFreedomPay) -> None:
    async with FakeFreedomPay(wallets=1) as elsewhere:
        fake.respond_with(
            INFO_PATH, b"", status=307, headers={"Location": elsewhere.url + INFO_PATH}
        )
        async with fake.client(retry=FAST) as client:
            with pytest.raises(HTTPStatusError) as caught:
                await client.wallets.info("user-0")
        assert caught.value.http_status == 307
        assert elsewhere.stats.requests == 0  # the signature never left for another host


async def test_faults_are_deterministic_for_a_seed() -> None:
    faults = Faults(server_error_rate=0.2, reset_rate=0.1, truncated_rate=0.1, seed=11)
    seen = []
    for _ in range(2):
        async with FakeFreedomPay(wallets=200, faults=faults) as fake:
            async with fake.client(max_retries=0) as client:
                outcomes = await asyncio.gather(
                    *(client.wallets.info(f"user-{i}") for i in range(200)), return_exceptions=True
                )
            seen.append(([type(o).__name__ for o in outcomes], dict(fake.stats.faults)))
    assert seen[0] == seen[1]
    assert sum(seen[0][1].values()) > 40  # roughly 40% of 200 drew a fault


async def test_faults_can_target_one_path(fake: FakeFreedomPay) -> None:
    fake.inject_faults(Faults(server_error_rate=1.0), path="/v5/partner/wallet/other")
    async with fake.client(max_retries=0) as client:
        await client.wallets.info("user-1")
    assert fake.stats.faults == {}
    fake.inject_faults(Faults(server_error_rate=1.0), path=INFO_PATH)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(HTTPStatusError):
            await client.wallets.info("user-1")
    assert fake.stats.faults == {"server_error": 1}


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="add up"):
        Faults(server_error_rate=0.6, reset_rate=0.6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(stall_rate=-0.1)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=(2.0, 1.0))
    with pytest.raises(ValueError, match="5xx"):
        Faults(server_error_statuses=(404,))


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelling_a_call_leaves_no_task_and_no_busy_connection(
    fake: FakeFreedomPay,
) -> None:
    fake.inject_faults(Faults(stall_rate=1.0))
    async with fake.client() as client:
        task = asyncio.create_task(client.wallets.info("user-1"))
        while fake.stats.in_flight == 0:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        connector = client.session.connector if client.session else None
        assert connector is not None
        assert len(connector._acquired) == 0  # type: ignore[attr-defined]
        fake.clear_faults()
        assert (await client.wallets.info("user-2")).wallet.identifiers[0].value == "user-2"


# -- logging and secrets --------------------------------------------------------------------


async def test_logging_one_debug_line_per_request_warning_per_retry_and_no_secrets(
    fake: FakeFreedomPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="freedompay_async")
    fake.respond_with(INFO_PATH, b"busy", status=503, content_type="text/plain")
    signatures: list[str] = []

    async def on_headers(session, context, params) -> None:  # type: ignore[no-untyped-def]
        signatures.append(params.headers["X-JWS-Signature"])

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers)
    async with fake.client(retry=FAST, trace_configs=[trace]) as client:
        await client.wallets.info("user-1")
        with pytest.raises(WalletNotFoundError):
            await client.wallets.info("nobody")
    records = [r for r in caplog.records if r.name.startswith("freedompay_async")]
    levels = [r.levelname for r in records]
    assert levels == ["WARNING", "DEBUG", "DEBUG"]
    ok = records[1]
    assert ok.endpoint == "info"  # type: ignore[attr-defined]
    assert ok.identifier == "user-1"  # type: ignore[attr-defined]
    assert ok.http_status == 200  # type: ignore[attr-defined]
    assert ok.attempts == 2  # type: ignore[attr-defined]
    assert ok.elapsed_ms > 0  # type: ignore[attr-defined]
    assert "WalletNotFoundError" in records[2].getMessage()
    assert not [r for r in records if r.levelno == logging.INFO]
    assert len(signatures) == 3
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in records)
    assert fake.secret_key not in text
    for signature in signatures:
        assert signature not in text
        assert signature.split("..")[1] not in text


async def test_nothing_is_logged_at_info_by_default(
    fake: FakeFreedomPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with fake.client() as client:
        await client.wallets.info("user-1")
    assert [r for r in caplog.records if r.name.startswith("freedompay_async")] == []


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_is_verified_by_default_and_a_context_can_trust_a_private_ca(
    tls_files: tuple[pathlib.Path, pathlib.Path],
) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with FakeFreedomPay(wallets=1, ssl=server_context) as fake:
        assert fake.url.startswith("https://")
        async with fake.client(max_retries=0) as client:
            with pytest.raises(TransportError, match=r"(?i)certificate"):
                await client.wallets.info("user-0")
        trusting = ssl.create_default_context(cafile=str(cert))
        async with fake.client(ssl=trusting) as client:
            info = await client.wallets.info("user-0")
        assert info.wallet.identifiers[0].value == "user-0"


# -- mutations under faults: resent with the same request_id, or sent once when told -------


MUTATIONS = {
    "add": lambda client: client.wallets.add(country="KAZ", currency="KZT", identifier="new-1"),
    "block": lambda client: client.wallets.block("user-1", reason="fraud check"),
    "close": lambda client: client.wallets.close("user-2", reason="customer left"),
    "identify_owner": lambda client: client.wallets.identify_owner("user-3", first_name="Aigerim"),
}
MUTATION_FAULTS = {
    "server_error": Faults(server_error_rate=1.0, server_error_statuses=(503,)),
    "rate_limit": Faults(rate_limit_rate=1.0, retry_after="0"),
    "reset": Faults(reset_rate=1.0),
    "stall": Faults(stall_rate=1.0),
    "truncated": Faults(truncated_rate=1.0),
}


@pytest.mark.parametrize("fault", sorted(MUTATION_FAULTS))
@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_mutations_with_resends_off_are_never_sent_twice_under_faults(
    fake: FakeFreedomPay, name: str, fault: str
) -> None:
    fake.add_wallet("user-2", balance="0.00")  # closable
    endpoint = ENDPOINTS[name]
    fake.inject_faults(MUTATION_FAULTS[fault], path=endpoint.path)
    # Generous retries and short timeouts: a read would be sent 5 times.
    policy = RetryPolicy(max_attempts=5, backoff=0.001, resend_mutations=False)
    async with fake.client(retry=policy, timeout=0.3) as client:
        with pytest.raises(MutationOutcomeUnknownError) as caught:
            await MUTATIONS[name](client)
    error = caught.value
    assert fake.stats.by_path[endpoint.path] == 1
    assert error.attempts == 1
    assert error.request_id is not None
    assert str(error.request_id) in str(error)


async def test_a_reset_mutation_is_reconciled_through_request_status(fake: FakeFreedomPay) -> None:
    # The server carried the block out, then the connection dropped mid-reply; the SDK resent
    # it (refused with 1002, not replayed) and learned the outcome from Request status.
    fake.inject_faults(Faults(reset_rate=1.0), path=ENDPOINTS["block"].path, times=1)
    async with fake.client(retry=FAST) as client:
        done = await client.wallets.block("user-1", reason="fraud check")
        assert done.request_status is RequestStatus.SUCCESS
        assert (await client.wallets.info("user-1")).wallet.status == "blocked"
    assert done.request_id is not None and fake.requests[done.request_id].executions == 1
    assert fake.stats.by_path[ENDPOINTS["block"].path] == 2
    assert fake.stats.by_path[ENDPOINTS["request_status"].path] == 1


# -- long total limits: one shared tick instead of a timer per request ----------------------


needs_asyncio_timeout = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="coarse deadlines need asyncio.Timeout (3.11+)"
)


@pytest.fixture
def quick_coarse_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make "long" totals short enough to test: coarse from 0.2 s, a tick every 0.05 s."""
    from freedompay_async import _deadlines

    monkeypatch.setattr(_deadlines, "COARSE_TIMEOUT", 0.2)
    monkeypatch.setattr(_deadlines, "DEADLINE_TICK", 0.05)


@pytest.fixture
async def stalled_client(
    quick_coarse_deadlines: None, fake: FakeFreedomPay
) -> AsyncIterator[FreedomPayClient]:
    """Every request stalls; its total of 0.3 s is a coarse (shared-tick) limit; no retries."""
    fake.inject_faults(Faults(stall_rate=1.0))
    async with fake.client(timeout=Timeout(total=0.3, connect=None), max_retries=0) as client:
        yield client


@needs_asyncio_timeout
async def test_a_coarse_total_limit_fires_within_a_tick(
    fake: FakeFreedomPay, stalled_client: FreedomPayClient
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeoutError, match=r"total=0\.3s"):
        await stalled_client.wallets.info("user-1")
    waited = loop.time() - started
    assert 0.3 <= waited < 0.3 + 0.05 + 0.2  # one tick late at most (plus slack)
    deadlines = stalled_client.transport._deadlines
    assert deadlines is not None
    assert deadlines._active == {}
    fake.clear_faults()
    # Requests that finish in time are unaffected, and leave nothing registered.
    infos = await asyncio.gather(*(stalled_client.wallets.info(f"user-{i}") for i in range(20)))
    assert len(infos) == 20
    assert deadlines._active == {}


@needs_asyncio_timeout
async def test_cancelling_a_call_under_a_coarse_limit_is_a_cancellation_not_a_timeout(
    fake: FakeFreedomPay, stalled_client: FreedomPayClient
) -> None:
    task = asyncio.create_task(stalled_client.wallets.info("user-1"))
    while fake.stats.in_flight == 0:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadlines = stalled_client.transport._deadlines
    assert deadlines is not None
    assert deadlines._active == {}
    await asyncio.sleep(0.4)  # past the deadline: the tick must not touch anything
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


@needs_asyncio_timeout
async def test_a_coarse_timeout_leaves_no_cancellation_behind(
    stalled_client: FreedomPayClient,
) -> None:
    with pytest.raises(RequestTimeoutError) as caught:
        await stalled_client.wallets.info("user-1")
    # Chained like asyncio.Timeout's own: TimeoutError from the cancellation.
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert isinstance(caught.value.__cause__.__cause__, asyncio.CancelledError)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # this task goes on undisturbed
    deadlines = stalled_client.transport._deadlines
    assert deadlines is not None and deadlines._active == {} and deadlines._expired == {}


@needs_asyncio_timeout
async def test_a_cancellation_racing_the_coarse_deadline_stays_a_cancellation(
    fake: FakeFreedomPay, stalled_client: FreedomPayClient
) -> None:
    task = asyncio.create_task(stalled_client.wallets.info("user-1"))
    while fake.stats.in_flight == 0:
        await asyncio.sleep(0.005)
    deadlines = stalled_client.transport._deadlines
    assert deadlines is not None and len(deadlines._active) == 1
    # The caller cancels, and the deadline expires in the same loop round.
    task.cancel()
    deadlines._active = {t: (0.0, cancelling) for t, (_, cancelling) in deadlines._active.items()}
    deadlines._tick()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines._active == {} and deadlines._expired == {}
    assert task.cancelling() == 1  # the caller's cancellation, and only it, is still counted


@needs_asyncio_timeout
async def test_a_nested_request_of_the_same_task_gets_a_precise_timer(
    fake: FakeFreedomPay,
) -> None:
    async with fake.client() as client:
        await client.wallets.info("user-1")  # opens the session and the deadline registry
        deadlines = client.transport._deadlines
        assert deadlines is not None
        task = deadlines.enter(30.0)
        assert task is asyncio.current_task()
        assert deadlines.enter(30.0) is None  # already registered: not twice under one key
        assert deadlines.enter(1.0) is None  # short limits always get a timer of their own
        assert not deadlines.leave(task)
        assert deadlines._active == {}


@needs_asyncio_timeout
@pytest.mark.usefixtures("quick_coarse_deadlines")
async def test_a_coarse_limit_inside_an_outer_timeout_keeps_both_apart(
    fake: FakeFreedomPay,
) -> None:
    fake.inject_faults(Faults(stall_rate=1.0))
    async with fake.client(timeout=Timeout(total=5.0, connect=None), max_retries=0) as client:
        # The caller's own, shorter limit wins and is reported as the caller's TimeoutError,
        # not as the SDK's RequestTimeoutError.
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.2):
                await client.wallets.info("user-1")
        assert not isinstance(caught.value, RequestTimeoutError)
