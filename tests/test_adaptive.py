"""Issue 16: ``concurrency="auto"``, the batch-wide brake on ``Retry-After``, the retry budget.

Behaviour only, never speed: the brake is checked by counting what reaches the fake server
while it should be paused; the limit by the direction it moves in; the budget by the resends
the fake server receives during a total outage.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from freedompay_async import HTTPStatusError, RetryPolicy, _pacing, cli
from freedompay_async._adaptive import AdaptiveLimit
from freedompay_async._pacing import Brake, RetryBudget
from freedompay_async._protocol import INFO
from freedompay_async.batch import BatchStats, amap
from freedompay_async.testing import FakeFreedomPay, Faults

TOO_MANY = {"status": "error", "error_description": "too many requests"}


class Clock:
    """A hand-driven clock for the pure parts."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ids(count: int, wallets: int) -> Iterator[str]:
    return (f"user-{i % wallets}" for i in range(count))


@pytest.fixture
async def watched() -> AsyncIterator[tuple[FakeFreedomPay, list[tuple[float, int]]]]:
    """A fake server, and (time, requests received so far) sampled every 2 ms meanwhile."""
    samples: list[tuple[float, int]] = []
    async with FakeFreedomPay(wallets=50, latency=0.01) as fake:

        async def watch() -> None:
            while True:
                samples.append((time.perf_counter(), fake.stats.requests))
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        try:
            yield fake, samples
        finally:
            watcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watcher


def received_between(samples: list[tuple[float, int]], start: float, end: float) -> int:
    """Requests the fake received between two moments (from the samples around them)."""
    before = max((count for at, count in samples if at <= start), default=0)
    after = min((count for at, count in samples if at >= end), default=samples[-1][1])
    return after - before


# -- the brake ------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [16, "auto"])
async def test_one_429_with_retry_after_pauses_every_worker_of_the_batch(
    watched: tuple[FakeFreedomPay, list[tuple[float, int]]], concurrency: int | str
) -> None:
    fake, samples = watched
    refused_at: list[float] = []

    async def on_request_end(_session: object, _context: object, params: object) -> None:
        if getattr(params, "response").status == 429:  # noqa: B009 (typed loosely by aiohttp)
            refused_at.append(time.perf_counter())

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    # The very first request is refused with Retry-After: 1; everything else succeeds.
    fake.respond_with(INFO.path, TOO_MANY, status=429, headers={"Retry-After": "1"})
    async with fake.client(retry=RetryPolicy(backoff=0.001), trace_configs=[trace]) as client:
        batch = client.wallets.info_many(
            ids(400, 50),
            concurrency=concurrency,  # type: ignore[arg-type]
            max_concurrency=16 if concurrency == "auto" else None,
        )
        async with batch as results:
            outcomes = [result async for result in results]
    assert len(outcomes) == 400 and all(result.ok for result in outcomes)  # the 429 was retried
    assert len(refused_at) == 1
    assert results.stats.refused == 1 and results.stats.brake_pauses == 1
    # The calls already in flight when the 429 came back finish; nothing new is sent until the
    # Retry-After moment, by any worker, although most of the batch is still to do.
    during = received_between(samples, refused_at[0] + 0.15, refused_at[0] + 0.85)
    assert during == 0
    assert received_between(samples, 0, refused_at[0] + 0.15) < 100


async def test_without_retry_after_a_429_pauses_nothing(fake: FakeFreedomPay) -> None:
    fake.respond_with(INFO.path, TOO_MANY, status=429)
    async with fake.client(retry=RetryPolicy(backoff=0.001)) as client:
        async with client.wallets.info_many(ids(100, 100), concurrency=8) as results:
            assert sum([result.ok async for result in results]) == 100
    assert results.stats.refused == 1 and results.stats.brake_pauses == 0


async def test_brake_moves_later_never_earlier_and_resumes_with_jitter() -> None:
    clock = Clock()
    slept: list[float] = []
    brake = Brake(clock=clock, uniform=lambda low, high: high)
    brake.engage(2.0)
    brake.engage(1.0)  # an earlier moment does not shorten the pause
    assert brake.until == clock.now + 2.0 and brake.pauses == 1

    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        await real_sleep(0)

    try:
        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        await brake.wait()
    finally:
        asyncio.sleep = real_sleep
    assert slept == [pytest.approx(2.0 + 0.2)]  # the pause, plus 10% of it as jitter at most
    assert not brake.engaged
    await brake.wait()  # off: returns at once
    assert len(slept) == 1


# -- the adaptive limit ---------------------------------------------------------------------


def run_round(limit: AdaptiveLimit, clock: Clock, latency: float, seconds: float = 0.11) -> None:
    """One round: as many calls as the limit, of ``latency`` each, over ``seconds``."""
    calls = limit.limit
    clock.now += seconds  # a round lasts at least MIN_ROUND
    limit.in_flight += calls
    for _ in range(calls):
        limit.release(latency)


def test_limit_slow_starts_then_shrinks_on_refusals_and_grows_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(256, clock=clock)
    assert limit.limit == 4
    for _ in range(4):
        run_round(limit, clock, 0.02)
    assert limit.limit == 64  # doubled each round while latency stayed at its floor
    peak = limit.limit
    limit.overloaded()
    shrunk = limit.limit
    assert shrunk <= 0.7 * peak  # a multiplicative cut at least
    limit.overloaded()  # the other calls of the same round trip: no second cut
    assert limit.limit == shrunk
    for _ in range(3):  # within the hold (no Retry-After: half a second): no growth
        run_round(limit, clock, 0.02)
    assert limit.limit == shrunk
    for _ in range(10):
        run_round(limit, clock, 0.02)
    assert limit.limit > shrunk  # then it grows back while latency stays at its floor
    regrown = limit.limit
    limit.overloaded()  # refused again
    assert limit.limit < regrown
    assert limit.backoffs == 2
    assert [point[1] for point in limit.history][:5] == [4, 8, 16, 32, 64]


def test_a_refusal_that_paused_the_batch_is_probed_again_ever_more_rarely() -> None:
    clock = Clock()
    limit = AdaptiveLimit(256, initial=40, clock=clock)
    run_round(limit, clock, 0.02)  # out of slow start at 80 ...
    limit.overloaded(pause=1.0)  # ... refused with Retry-After: 1
    waits = []
    for _ in range(3):
        level, refused_at = limit.limit, clock.now
        while limit.limit <= level:  # holds just under the ceiling, then probes above it
            run_round(limit, clock, 0.02)
            assert clock.now - refused_at < 200
        waits.append(clock.now - refused_at)
        limit.overloaded(pause=1.0)
    assert waits[0] > 5 and waits[1] > 1.8 * waits[0] and waits[2] > 1.8 * waits[1]


def test_limit_backs_off_when_latency_rises_and_throughput_does_not() -> None:
    clock = Clock()
    limit = AdaptiveLimit(256, clock=clock)
    for _ in range(3):
        run_round(limit, clock, 0.02)
    assert limit.limit == 32
    # A queue: 4x the latency, and no more calls per second (fewer: the round takes longer).
    run_round(limit, clock, 0.08, seconds=0.44)
    assert limit.limit < 32
    level = limit.limit
    for _ in range(2):
        run_round(limit, clock, 0.08, seconds=0.44)
    assert limit.limit < level


async def test_auto_limit_shrinks_on_refusals_and_grows_back_over_http() -> None:
    async with FakeFreedomPay(wallets=100, latency=0.005) as fake:
        async with fake.client(retry=RetryPolicy(max_attempts=1)) as client:
            phase, peak, low = "grow", 0, 0
            async with client.wallets.info_many(
                ids(200_000, 100), concurrency="auto", max_concurrency=64
            ) as results:
                async for _result in results:
                    limit = results.stats.concurrency_limit
                    assert limit is not None
                    if phase == "grow" and limit >= 16:
                        peak, phase = limit, "refuse"
                        # Every request refused, no Retry-After (so no pause): 429s only.
                        fake.inject_faults(Faults(rate_limit_rate=1.0, retry_after=None))
                    elif phase == "refuse" and limit <= peak * 0.7:
                        low, phase = limit, "recover"
                        fake.clear_faults()
                    elif phase == "recover" and limit >= low + 4:
                        phase = "done"
                        break
    assert phase == "done", (phase, peak, low, results.stats.limit_history[-20:])
    assert results.stats.refused > 0
    history = [value for _, value in results.stats.limit_history]
    assert max(history) >= peak and min(history[history.index(peak) :]) <= low


async def test_fixed_concurrency_reports_no_limit_and_auto_does(fake: FakeFreedomPay) -> None:
    async with fake.client() as client:
        async with client.wallets.info_many(ids(50, 100), concurrency=8) as fixed:
            assert len([r async for r in fixed]) == 50
        async with client.wallets.info_many(ids(50, 100), concurrency="auto") as auto:
            assert len([r async for r in auto]) == 50
    assert fixed.stats.concurrency_limit is None and fixed.stats.limit_history == []
    assert auto.stats.concurrency_limit is not None and auto.stats.limit_history[0] == (0.0, 4)
    assert "concurrency limit" in str(auto.stats)
    assert auto.stats.as_dict()["concurrency_limit"] == auto.stats.concurrency_limit


async def test_auto_keeps_at_most_the_limit_in_flight(fake: FakeFreedomPay) -> None:
    in_flight = most = 0

    async def call(item: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return item

    async with amap(call, range(300), concurrency="auto", max_concurrency=6) as results:
        assert sorted([result.value async for result in results]) == list(range(300))
    assert most <= 6
    assert results.stats.concurrency_limit is not None
    assert results.stats.concurrency_limit <= 6


async def test_a_released_slot_is_taken_back_at_once_or_goes_to_a_parked_caller() -> None:
    gate = AdaptiveLimit(2, initial=2)
    await gate.acquire()
    await gate.acquire()
    parked = [asyncio.create_task(gate.acquire()) for _ in range(2)]
    await asyncio.sleep(0)
    assert gate.in_flight == 2 and not any(task.done() for task in parked)
    # The caller that releases takes its slot straight back: no hand-off to a parked one.
    gate.release(0.01)
    await gate.acquire()  # (in the same turn of the loop, as a batch's worker does)
    assert gate.in_flight == 2
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in parked)
    # A slot nobody takes back goes to a parked caller on the next turns of the loop.
    gate.release(0.01)
    done, _ = await asyncio.wait(parked, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and gate.in_flight == 2
    # A parked caller cancelled leaves nothing behind; a slot given back wakes the next.
    (waiting,) = set(parked) - done
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.give_back()
    gate.give_back()
    assert gate.in_flight == 0
    await asyncio.wait_for(gate.acquire(), 0.1)
    assert gate.in_flight == 1


def test_invalid_auto_arguments_raise_before_anything_runs() -> None:
    async def call(item: int) -> int:
        return item

    with pytest.raises(TypeError, match='or "auto"'):
        amap(call, [1], concurrency="fast")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="max_concurrency"):
        amap(call, [1], concurrency=4, max_concurrency=8)
    with pytest.raises(ValueError, match="max_concurrency"):
        amap(call, [1], concurrency="auto", max_concurrency=0)
    with pytest.raises(ValueError, match="retry_budget"):
        amap(call, [1], retry_budget=1.5)
    with pytest.raises(TypeError, match="retry_budget"):
        amap(call, [1], retry_budget="10%")  # type: ignore[call-overload]


# -- the retry budget -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.1, None])
async def test_retry_budget_caps_resends_during_a_total_outage(
    fake: FakeFreedomPay, budget: float | None
) -> None:
    # Every request fails with a 503 (no Retry-After, so no pause); reads may be retried.
    fake.inject_faults(
        Faults(server_error_rate=1.0, server_error_statuses=(503,), retry_after=None)
    )
    async with fake.client(retry=RetryPolicy(max_attempts=3, backoff=0.001)) as client:
        async with client.wallets.info_many(
            ids(300, 100), concurrency=16, retry_budget=budget
        ) as results:
            errors = [result.error async for result in results]
    assert len(errors) == 300
    assert all(isinstance(error, HTTPStatusError) and error.http_status == 503 for error in errors)
    if budget is None:
        assert fake.stats.requests == 900  # three attempts each: the load the budget prevents
        return
    # Retries stay within 10% of the requests (and the minimum of 10 per window).
    retries = fake.stats.requests - 300
    assert retries <= max(10, 0.1 * fake.stats.requests) + 1
    assert results.stats.retries == retries
    assert results.stats.retries_denied >= 300 - retries


def test_retry_budget_window_slides() -> None:
    clock = Clock()
    budget = RetryBudget(0.1, window=10.0, buckets=10, minimum=2, clock=clock)
    for _ in range(100):
        budget.sent()
    assert sum(budget.allow() for _ in range(20)) == 10  # 10% of 100
    clock.now += 5.0
    assert not budget.allow()  # the 100 requests are still in the window
    clock.now += 6.0  # they have left it: only the minimum is allowed
    assert [budget.allow() for _ in range(3)] == [True, True, False]
    assert budget.retried == 12 and budget.denied == 12


async def test_pacing_stays_inside_the_batch(fake: FakeFreedomPay) -> None:
    seen: list[object] = []

    async def call(item: int) -> int:
        seen.append(_pacing.current.get())
        return item

    async with amap(call, range(5)) as results:
        assert len([r async for r in results]) == 5
    assert all(pacing is results.stats._pacing for pacing in seen)
    assert _pacing.current.get() is None
    async with fake.client() as client:  # a call outside any batch consults no pacing
        info = await client.wallets.info("user-1")
    assert info.wallet is not None


# -- the command line -----------------------------------------------------------------------


def test_progress_line_shows_the_auto_limit() -> None:
    stats = BatchStats()
    stats.started = stats.done = 10
    stats._started_at, stats._finished_at = 0.0, 1.0
    stats._pacing = _pacing.Pacing(limit=AdaptiveLimit(64, initial=12))

    class Sink:
        def write(self, _row: object) -> None: ...
        def flush(self) -> None: ...
        def close(self) -> None: ...

    assert "limit 12" in cli.Progress(Sink(), lambda s: None, io.StringIO()).line(stats)
    stats._pacing = _pacing.Pacing()
    assert "limit" not in cli.Progress(Sink(), lambda s: None, io.StringIO()).line(stats)


def test_poll_concurrency_auto(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--wallets", "300", "--concurrency", "auto"]) == 0
    assert "concurrency limit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--concurrency", "lots"])
    assert cli.main(["worker", "redis://127.0.0.1:1/0", "--concurrency", "auto"]) == 2


async def test_a_resend_never_waits_for_the_brake_past_the_call_deadline() -> None:
    # The call's first send is in flight when another request of its batch puts the brake on
    # for 5 s. Its 503 (no Retry-After) would be resent after a tiny backoff, but the brake's
    # wait does not fit in the call's 2 s: it raises at once instead of sleeping 5 s.
    async with FakeFreedomPay(wallets=10, latency=0.3) as fake:
        fake.respond_with(INFO.path, TOO_MANY, status=503)
        pacing = _pacing.Pacing()
        token = _pacing.current.set(pacing)
        try:
            async with fake.client(retry=RetryPolicy(backoff=0.001)) as client:

                async def brake_while_in_flight() -> None:
                    while fake.stats.in_flight == 0:
                        await asyncio.sleep(0.005)
                    pacing.brake.engage(5.0)

                started = time.perf_counter()
                brake_task = asyncio.create_task(brake_while_in_flight())
                with pytest.raises(HTTPStatusError, match="not retried") as caught:
                    await client.wallets.info("user-1", timeout=2)
                elapsed = time.perf_counter() - started
                await brake_task
        finally:
            _pacing.current.reset(token)
    assert caught.value.http_status == 503 and caught.value.attempts == 1
    assert fake.stats.requests == 1  # never resent
    assert elapsed < 2.0  # within the call's deadline, not after the brake's 5 s


async def test_auto_max_concurrency_above_the_pool_is_capped_and_said_once(
    fake: FakeFreedomPay, caplog: pytest.LogCaptureFixture
) -> None:
    async with fake.client(max_connections=5) as client:
        batch = client.wallets.info_many(ids(60, 60), concurrency="auto", max_concurrency=10_000)
        async with batch as results:
            assert sum([result.ok async for result in results]) == 60
    capped = [r.message for r in caplog.records if "capped at the connection pool" in r.message]
    assert capped == [
        "info_many: max_concurrency=10000 capped at the connection pool size 5 (max_connections)"
    ]
    assert fake.stats.max_in_flight <= 5
    assert results.stats.concurrency_limit is not None and results.stats.concurrency_limit <= 5
