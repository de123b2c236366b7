"""Chaos: a 10,000-wallet batch through a fake server that fails in every way at once.

Faults are drawn deterministically from ``(seed, path, body, n-th sight)``, so the outcome of
every wallet can be predicted exactly, whatever order the concurrent requests arrive in.
"""

from __future__ import annotations

import asyncio
import collections
import gc

import pytest

from freedompay_async import (
    FreedomPayError,
    HTTPStatusError,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    Timeout,
    TransportError,
)
from freedompay_async._protocol import INFO, encode
from freedompay_async.models import InfoRequest
from freedompay_async.testing import FakeFreedomPay, Faults
from freedompay_async.testing._faults import _draw

N = 10_000
ATTEMPTS = 3
CHAOS = Faults(
    server_error_rate=0.05,
    reset_rate=0.02,
    stall_rate=0.01,
    stall_seconds=30,
    # "1% malformed bodies", split between the three kinds of damage.
    truncated_rate=0.004,
    non_json_rate=0.003,
    wrong_shape_rate=0.003,
    # No Retry-After on the 503s: one would pause the whole batch for a second (issue 16's
    # brake, tested in test_adaptive.py), and this test is about losing nothing, not pacing.
    retry_after=None,
    seed=20261128,
)
ERROR_CLASS = {
    "server_error": HTTPStatusError,
    "reset": TransportError,
    "stall": RequestTimeoutError,
    "truncated": ResponseDecodeError,
    "non_json": ResponseDecodeError,
    "wrong_shape": ResponseDecodeError,
}


def client_side_tasks() -> list[asyncio.Task[object]]:
    """Tasks still running, except this test's own and the fake server's request handlers."""
    me = asyncio.current_task()
    return [
        task
        for task in asyncio.all_tasks()
        if task is not me
        and not task.done()
        and not task.get_coro().__qualname__.startswith("RequestHandler.")  # type: ignore[union-attr]
    ]


def predicted_faults(identifier: str) -> list[str | None]:
    """The fault each of the ``ATTEMPTS`` requests for ``identifier`` draws."""
    body = encode(InfoRequest(identifier=identifier))
    return [CHAOS.pick(_draw(CHAOS.seed, INFO.path, body, n)) for n in range(1, ATTEMPTS + 1)]


async def test_ten_thousand_lookups_under_chaos_lose_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: dict[str, FreedomPayError | None] = {}
    duplicates = 0
    async with FakeFreedomPay(wallets=N, faults=CHAOS) as fake:
        policy = RetryPolicy(max_attempts=ATTEMPTS, backoff=0.002, max_backoff=0.02)
        # A per-attempt read limit, no total: a stalled attempt times out and is retried (a
        # total would be the whole call's deadline, and a stall would use all of it).
        async with fake.client(retry=policy, timeout=Timeout(total=None, read=1.0)) as client:
            identifiers = (f"user-{i}" for i in range(N))  # a generator, never materialised
            async with client.wallets.info_many(identifiers, concurrency=64) as results:
                async for result in results:
                    duplicates += result.identifier in outcomes
                    outcomes[result.identifier] = result.error
                    if result.ok:
                        assert result.value.wallet.identifiers[0].value == result.identifier
            stats = results.stats
            connector = client.session.connector if client.session else None
            assert connector is not None
            assert len(connector._acquired) == 0  # type: ignore[attr-defined]
        injected = dict(fake.stats.faults)
        sent = fake.stats.by_path[INFO.path]

    # Every id reported exactly once.
    assert duplicates == 0
    assert set(outcomes) == {f"user-{i}" for i in range(N)}
    failures = {identifier: error for identifier, error in outcomes.items() if error is not None}
    assert stats.done == N
    assert stats.failed == len(failures)

    # Faults really happened, of every kind, and were retried.
    assert set(injected) == set(ERROR_CLASS)
    assert sum(injected.values()) > 0.08 * N
    # Each fault cost one resend, except on a wallet's last attempt.
    assert sent - N == sum(injected.values()) - len(failures)

    # >= 99.9 % succeed in the end, and exactly the predicted wallets fail, with the right class.
    assert len(failures) <= N // 1000
    draws = {identifier: predicted_faults(identifier) for identifier in outcomes}
    predicted = {
        identifier: faults[-1]
        for identifier, faults in draws.items()
        if all(fault is not None for fault in faults)
    }
    assert set(failures) == set(predicted)
    for identifier, error in failures.items():
        assert type(error) is ERROR_CLASS[predicted[identifier]], (identifier, error)
        assert error.attempts == ATTEMPTS
        assert error.identifier == identifier
    print(
        f"\nchaos: {N} ids, {sum(injected.values())} faults injected {injected}, "
        f"{sent - N} resends, {N - len(failures)} ok, {len(failures)} failed "
        f"{collections.Counter(type(e).__name__ for e in failures.values())}"
    )


async def test_cancelling_a_batch_mid_flight_leaves_no_tasks_and_no_busy_connections() -> None:
    async with FakeFreedomPay(wallets=1000, faults=Faults(latency=(0.01, 0.05))) as fake:
        async with fake.client() as client:
            seen = 0

            async def consume() -> None:
                nonlocal seen
                async with client.wallets.info_many(
                    (f"user-{i}" for i in range(1000)), concurrency=32
                ) as results:
                    async for _ in results:
                        seen += 1

            task = asyncio.create_task(consume())
            while seen < 100:
                await asyncio.sleep(0.01)
            assert fake.stats.in_flight > 0
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert seen < 1000
            assert client_side_tasks() == []
            connector = client.session.connector if client.session else None
            assert connector is not None
            assert len(connector._acquired) == 0  # type: ignore[attr-defined]
            # The client is still fine for the next job.
            assert (await client.wallets.info("user-1")).wallet.identifiers[0].value == "user-1"
    gc.collect()


async def test_breaking_out_of_a_batch_early_stops_the_requests() -> None:
    async with FakeFreedomPay(wallets=500, faults=Faults(latency=0.02)) as fake:
        async with fake.client() as client:
            async with client.wallets.info_many(
                (f"user-{i}" for i in range(500)), concurrency=16
            ) as results:
                async for result in results:
                    assert result.ok
                    break
            sent_at_break = fake.stats.requests
            await asyncio.sleep(0.1)
            assert fake.stats.requests == sent_at_break  # nothing more was started
            assert sent_at_break <= 1 + 2 * 16
            connector = client.session.connector if client.session else None
            assert connector is not None
            assert len(connector._acquired) == 0  # type: ignore[attr-defined]
