"""The batch helper: ``amap`` over plain coroutines, and ``client.wallets.info_many`` through
the fake server (real HTTP). No timed assertions: rate is checked from recorded start times,
memory from counts of items held, concurrency where the calls land."""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import pickle
import random
import re
import tracemalloc
from ast import PyCF_ALLOW_TOP_LEVEL_AWAIT
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import (
    ArgumentTypeError,
    FreedomPayClient,
    FreedomPayError,
    HTTPStatusError,
    InvalidArgumentError,
    InvalidRequestError,
    WalletInfo,
    WalletNotFoundError,
)
from freedompay_async._batch_results import _LatencyHistogram
from freedompay_async.batch import Batch, BatchResult, BatchStats, amap
from freedompay_async.testing import FakeFreedomPay

INFO_PATH = "/v5/partner/wallet/info"
T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound=Exception)


def batch_tasks() -> list[asyncio.Task[object]]:
    """Tasks of any batch (the pool's host task and its workers) still running."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_name().startswith("freedompay-batch")
    ]


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def drain(batch: Batch[T, R, E]) -> list[BatchResult[T, R, E]]:
    async with batch as results:
        return [result async for result in results]


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


# -- results -------------------------------------------------------------------------------


async def test_every_item_exactly_once_with_per_item_errors() -> None:
    async def flaky(x: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        if x % 7 == 3:
            raise ValueError(f"bad {x}")
        return x * 10

    async with amap(flaky, range(500), concurrency=16) as results:
        seen = [result async for result in results]
    assert Counter(r.identifier for r in seen) == Counter(range(500))
    for result in seen:
        if result.identifier % 7 == 3:
            assert not result.ok
            assert isinstance(result.error, ValueError)
            assert str(result.error) == f"bad {result.identifier}"
        else:
            assert result.ok and result.error is None
            assert result.value == result.identifier * 10
    stats = results.stats
    failures = sum(1 for i in range(500) if i % 7 == 3)
    assert (stats.done, stats.ok, stats.failed) == (500, 500 - failures, failures)
    assert stats.failed_by_error == {"ValueError": failures}
    assert stats.finished and stats.in_flight == 0 and stats.started == 500


async def test_async_iterable_input() -> None:
    async with amap(double, agen(300), concurrency=8) as results:
        values = sorted([r.value async for r in results])
    assert values == [2 * i for i in range(300)]


async def test_empty_input() -> None:
    async with amap(double, list[int](), concurrency=4) as results:
        assert [r async for r in results] == []
    assert results.stats.done == 0 and results.stats.finished
    assert results.stats.latency_p50 is None


async def test_plain_async_for_without_async_with() -> None:
    seen = [r.value async for r in amap(double, iter(range(100)), concurrency=5)]
    assert sorted(seen) == [2 * i for i in range(100)]
    assert batch_tasks() == []


async def test_ordered_yields_in_input_order() -> None:
    # Later items finish first: as-completed order is (nearly) reversed, ordered=True fixes it.
    async def slow_first(x: int) -> int:
        await asyncio.sleep((40 - x) * 0.001)
        return x

    async with amap(slow_first, range(40), concurrency=40) as results:
        completed = [r.identifier async for r in results]
    assert completed != list(range(40))  # the test below could fail

    async with amap(slow_first, range(40), concurrency=40, ordered=True) as results:
        assert [r.identifier async for r in results] == list(range(40))

    async def jitter(x: int) -> int:
        await asyncio.sleep(random.random() / 500)
        return x

    async with amap(jitter, agen(400), concurrency=16, ordered=True) as results:
        assert [r.value async for r in results] == list(range(400))


async def test_ordered_reorder_buffer_is_bounded_by_a_slow_item() -> None:
    # Item 0 is very slow: the others must wait for it instead of piling up behind it.
    release = anyio.Event()
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    async def head_blocks(x: int) -> int:
        if x == 0:
            await release.wait()
        return x

    async with amap(head_blocks, items(), concurrency=4, ordered=True) as results:
        iterator = results.__aiter__()
        waiter = asyncio.ensure_future(iterator.__anext__())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not waiter.done()
        assert pulled <= 2 * 4 + 1  # the window, plus one item a worker may hold
        assert results.stats.in_flight <= 2 * 4
        release.set()
        first = await waiter
        assert first.identifier == 0
        rest = [r.identifier async for r in iterator]
    assert rest == list(range(1, 10_000))


# -- errors that stop the batch --------------------------------------------------------------


async def test_exception_outside_catch_stops_the_batch_unwrapped() -> None:
    async def boom(x: int) -> int:
        await asyncio.sleep(0.001 * (x == 30))
        if x == 30:
            raise KeyError("bug")
        if x % 2:
            raise ValueError("per item")
        return x

    seen: list[BatchResult[int, int, ValueError]] = []

    async def consume() -> None:
        async with amap(boom, range(10_000), concurrency=4, catch=ValueError) as results:
            async for result in results:
                seen.append(result)

    with pytest.raises(KeyError, match="bug"):
        await consume()
    assert 0 < len(seen) < 10_000
    assert {type(r.error) for r in seen if not r.ok} <= {ValueError}
    assert batch_tasks() == []


async def test_input_iterator_error_stops_the_batch() -> None:
    def items() -> Iterator[int]:
        yield from range(20)
        raise OSError("disk gone")

    seen = []

    async def consume() -> None:
        async for result in amap(double, items(), concurrency=3):
            seen.append(result.identifier)

    with pytest.raises(OSError, match="disk gone"):
        await consume()
    assert sorted(seen) == list(range(20))  # completed results still arrive first
    assert batch_tasks() == []


async def test_exception_in_on_progress_stops_the_batch() -> None:
    def progress(stats: BatchStats) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        await drain(amap(double, range(1000), on_progress=progress))
    assert batch_tasks() == []


async def test_cancellation_is_never_caught_as_a_per_item_error() -> None:
    async def never(x: int) -> int:
        await anyio.sleep_forever()
        raise AssertionError

    with anyio.move_on_after(0.05) as scope:
        async with amap(never, range(100), concurrency=10) as results:
            async for _ in results:
                raise AssertionError("no result expected")
    assert scope.cancelled_caught
    assert results.stats.done == 0
    assert batch_tasks() == []


# -- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": -3}, ValueError),
        ({"concurrency": True}, TypeError),
        ({"concurrency": 2.5}, TypeError),
        ({"rate_limit": 0}, ValueError),
        ({"rate_limit": -1.0}, ValueError),
        ({"rate_limit": math.inf}, ValueError),
        ({"rate_limit": math.nan}, ValueError),
        ({"rate_limit": "10"}, TypeError),
        ({"ordered": 1}, TypeError),
        ({"catch": KeyboardInterrupt}, TypeError),
        ({"catch": (ValueError, asyncio.CancelledError)}, TypeError),
        ({"catch": ()}, ValueError),
        ({"catch": "ValueError"}, TypeError),
        ({"on_progress": 5}, TypeError),
    ],
)
def test_bad_arguments_fail_at_once(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        amap(double, range(3), **kwargs)  # type: ignore[call-overload]


def test_bad_inputs_fail_at_once() -> None:
    with pytest.raises(TypeError, match="single str"):
        amap(double, "user-1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        amap(double, 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callable"):
        amap("nope", range(3))  # type: ignore[call-overload]


async def test_a_batch_runs_once() -> None:
    async with amap(double, range(5)) as results:
        assert len([r async for r in results]) == 5
    assert [r async for r in results] == []
    with pytest.raises(RuntimeError, match="runs once"):
        async with results:
            pass
    await results.aclose()  # idempotent


# -- concurrency, rate, memory -------------------------------------------------------------


async def test_concurrency_cap_counted_in_the_calls() -> None:
    in_flight = peak = 0

    async def tracked(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(random.random() / 1000)
        in_flight -= 1
        return x

    async with amap(tracked, range(2000), concurrency=7) as results:
        assert len([r async for r in results]) == 2000
    assert peak == 7


async def test_the_pool_fills_in_one_loop_round() -> None:
    started = 0
    release = asyncio.Event()

    async def held(x: int) -> int:
        nonlocal started
        started += 1
        await release.wait()
        return x

    async with amap(held, iter(range(1000)), concurrency=50) as results:
        consumer = asyncio.ensure_future(results.__anext__())
        for _ in range(3):  # the runner starts, spawns the pool, the workers take an item each
            await asyncio.sleep(0)
        assert started == 50
        release.set()
        assert (await consumer).ok
        assert len([r async for r in results]) == 999


async def test_a_short_sized_input_gets_no_idle_workers() -> None:
    tasks: list[int] = []

    async def count_tasks(x: int) -> int:
        tasks.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        return x

    async with amap(count_tasks, [1, 2, 3], concurrency=64) as results:
        assert sorted([r.value async for r in results]) == [1, 2, 3]
    # This test's task, the runner, and one worker per item: the pool is sized by len().
    assert max(tasks) == 1 + 1 + 3


async def test_rate_limit_holds_over_two_seconds() -> None:
    rate = 100
    starts: list[float] = []

    async def stamp(x: int) -> int:
        starts.append(anyio.current_time())
        return x

    async with amap(stamp, range(220), concurrency=16, rate_limit=rate) as results:
        assert len([r async for r in results]) == 220
    # Never more than `rate` starts in any one-second window (+1 for the window's edge).
    busiest = max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))
    assert busiest <= rate + 1
    span = starts[-1] - starts[0]
    assert span >= (220 - 1) / rate * 0.98  # not faster than the limit over the whole run
    assert span < (220 - 1) / rate * 2  # and the limiter is not far slower than asked


async def test_memory_stays_bounded_over_a_1e5_generator() -> None:
    n, concurrency = 100_000, 32
    taken = 0
    handed_over = 0
    most_held = 0

    def items() -> Iterator[int]:
        nonlocal taken, most_held
        for i in range(n):
            taken += 1
            most_held = max(most_held, taken - handed_over)
            yield i

    async def trivial(x: int) -> int:
        return x

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        async with amap(trivial, items(), concurrency=concurrency) as results:
            async for _ in results:
                handed_over += 1
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert handed_over == n
    # Items between the input and the loop: one per worker plus the output buffer.
    assert most_held <= 2 * concurrency + 1
    # 1e5 results held at once would be several MB; a bounded pipeline stays far below.
    assert peak < 1_000_000, peak


async def test_ordered_memory_stays_bounded_too() -> None:
    n, concurrency = 20_000, 16
    taken = handed_over = most_held = 0

    def items() -> Iterator[int]:
        nonlocal taken, most_held
        for i in range(n):
            taken += 1
            most_held = max(most_held, taken - handed_over)
            yield i

    async def jitter(x: int) -> int:
        if x % 5 == 0:
            await asyncio.sleep(0)
        return x

    async with amap(jitter, items(), concurrency=concurrency, ordered=True) as results:
        async for result in results:
            assert result.identifier == handed_over
            handed_over += 1
    assert most_held <= 2 * concurrency + 1


# -- stopping early --------------------------------------------------------------------------


async def test_break_inside_async_with_stops_everything() -> None:
    calls = 0

    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return x

    async with amap(slow, range(100_000), concurrency=8) as results:
        async for _ in results:
            break
    assert batch_tasks() == []  # at once, not eventually
    made = calls
    await asyncio.sleep(0.05)
    assert calls == made <= 16


async def test_break_from_plain_async_for_cancels_the_workers() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    async for _ in amap(slow, range(100_000), concurrency=8):
        break
    gc.collect()
    for _ in range(10):
        await asyncio.sleep(0)
    assert batch_tasks() == []


async def test_cancelling_the_consumer_task_stops_everything() -> None:
    got = 0
    ten = asyncio.Event()

    async def slow(x: int) -> int:
        await asyncio.sleep(0.005)
        return x

    async def consume() -> None:
        nonlocal got
        async for _ in amap(slow, range(100_000), concurrency=8):
            got += 1
            if got == 10:
                ten.set()

    task = asyncio.ensure_future(consume())
    await ten.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batch_tasks() == []


async def test_aclose_stops_and_ends_iteration() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    results = amap(slow, range(1000), concurrency=4)
    first = await results.__anext__()
    assert first.ok
    await results.aclose()
    assert batch_tasks() == []
    assert [r async for r in results] == []
    assert results.stats.finished


async def test_aclose_from_another_task_ends_the_consumer_loop() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    seen = 0
    results = amap(slow, range(10_000), concurrency=4)

    async def consume() -> None:
        nonlocal seen
        async for _ in results:
            seen += 1

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(consume)
        await asyncio.sleep(0.05)
        await results.aclose()
    assert 0 < seen < 10_000
    assert batch_tasks() == []


async def test_a_never_started_batch_needs_no_cleanup() -> None:
    results = amap(double, range(10))
    await results.aclose()
    assert [r async for r in results] == []


# -- stats and progress --------------------------------------------------------------------


async def test_stats_and_progress() -> None:
    calls: list[tuple[int, bool]] = []

    async def sleepy(x: int) -> int:
        await asyncio.sleep(0.002)
        if x < 3:
            raise LookupError(x)
        return x

    async with amap(
        sleepy,
        range(100),
        concurrency=10,
        on_progress=lambda stats: calls.append((stats.done, stats.finished)),
    ) as results:
        async for _ in results:
            pass
    stats = results.stats
    assert calls[0][0] == 1  # called with the first result ...
    assert calls[-1] == (100, True)  # ... and once at the end
    assert stats.failed_by_error == {"LookupError": 3}
    p50, p95, p99 = stats.latency_p50, stats.latency_p95, stats.latency_p99
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0.002 <= p50 <= p95 <= p99
    assert stats.latency_mean is not None and stats.latency_mean >= 0.002
    assert stats.rate == pytest.approx(stats.done / stats.elapsed)
    summary = str(stats)
    assert "100 done (97 ok, 3 failed: LookupError 3)" in summary and "p99" in summary
    data = stats.as_dict()
    assert data["done"] == 100 and data["failed_by_error"] == {"LookupError": 3}
    assert stats.elapsed == stats.elapsed  # frozen once finished


@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=1, max_size=300))
def test_latency_histogram_quantiles_within_two_percent(samples: list[float]) -> None:
    histogram = _LatencyHistogram()
    for sample in samples:
        histogram.record(sample)
    ordered = sorted(samples)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]
        estimate = histogram.quantile(q)
        assert estimate is not None
        assert estimate == pytest.approx(exact, rel=0.02)
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram.quantile(1.5)


def test_batch_result_is_a_read_only_record() -> None:
    ok: BatchResult[str, int, Exception] = BatchResult("a", 1)
    failed: BatchResult[str, int, Exception] = BatchResult("b", error=KeyError("b"))
    assert ok.ok and ok.value == 1 and ok.error is None and ok.identifier == "a"
    assert not failed.ok and isinstance(failed.error, KeyError)
    with pytest.raises(KeyError):
        failed.value  # noqa: B018 (the property raises the stored error)
    with pytest.raises(AttributeError):
        ok.identifier = "c"  # type: ignore[misc]
    assert ok == BatchResult("a", 1) and ok != BatchResult("a", 2)
    assert hash(ok) == hash(BatchResult("a", 1))
    assert pickle.loads(pickle.dumps(ok)) == ok
    assert repr(ok) == "BatchResult(identifier='a', value=1)"
    assert repr(failed) == "BatchResult(identifier='b', error=KeyError('b'))"


# -- info_many through HTTP ------------------------------------------------------------------


async def test_info_many_reports_every_wallet_once(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    ids = [f"user-{i}" for i in range(100)] + [f"ghost-{i}" for i in range(20)]
    random.shuffle(ids)
    async with client.wallets.info_many(iter(ids), concurrency=10) as results:
        seen = {}
        async for result in results:
            assert result.identifier not in seen
            seen[result.identifier] = result
    assert set(seen) == set(ids)
    for identifier, result in seen.items():
        if identifier.startswith("ghost-"):
            assert isinstance(result.error, WalletNotFoundError)
            assert result.error.error_code == 1004
            assert result.error.identifier == identifier
        else:
            info = result.value
            assert isinstance(info, WalletInfo)
            assert info.wallet.balance == fake.wallets[identifier].balance
            assert isinstance(info.wallet.balance, Decimal)
    assert results.stats.failed_by_error == {"WalletNotFoundError": 20}
    assert fake.stats.by_path == {INFO_PATH: 120}


async def test_info_many_with_injected_server_errors(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(
        INFO_PATH,
        {"status": "error", "error_code": "1008", "error_description": "blocked"},
        times=5,
    )
    ids = [f"user-{i}" for i in range(60)]
    async with client.wallets.info_many(ids, concurrency=8) as results:
        seen = [result async for result in results]
    assert sorted(r.identifier for r in seen) == sorted(ids)
    errors = [r.error for r in seen if r.error is not None]
    assert len(errors) == 5
    assert all(isinstance(e, FreedomPayError) and e.error_code == 1008 for e in errors)


async def test_info_many_invalid_identifier_is_a_per_item_error_not_sent(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    ids = ["user-1", "", "bad\x00id", "x" * 1000, "user-2"]
    async with client.wallets.info_many(ids, ordered=True) as results:
        seen = [result async for result in results]
    assert [r.identifier for r in seen] == ids
    assert [r.ok for r in seen] == [True, False, False, False, True]
    for result in seen[1:4]:
        # Refused before sending, by the very check `info` runs: never the server's 1001.
        assert isinstance(result.error, InvalidArgumentError)
        assert isinstance(result.error, ValueError)
        assert not isinstance(result.error, InvalidRequestError)
        assert result.error.error_code is None and result.error.http_status is None
    assert fake.stats.requests == 2


@pytest.mark.parametrize("identifier", ["", "bad\x00id", "x" * 1000, 42, None])
async def test_info_and_info_many_refuse_an_identifier_alike(
    client: FreedomPayClient, fake: FakeFreedomPay, identifier: object
) -> None:
    with pytest.raises(FreedomPayError) as caught:
        await client.wallets.info(identifier)  # type: ignore[arg-type]
    async with client.wallets.info_many([identifier]) as results:  # type: ignore[list-item]
        [result] = [r async for r in results]
    assert type(result.error) is type(caught.value)
    assert str(result.error) == str(caught.value)
    expected = InvalidArgumentError if isinstance(identifier, str) else ArgumentTypeError
    assert isinstance(caught.value, expected)
    assert fake.stats.requests == 0


async def test_info_many_uses_the_clients_retry_options(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    fake.respond_with(INFO_PATH, b"busy", status=503)
    async with client.wallets.info_many(["user-1"]) as results:
        assert [r.ok async for r in results] == [True]  # retried inside its lookup
    fake.respond_with(INFO_PATH, b"busy", status=503)
    no_retries = client.with_options(max_retries=0)
    async with no_retries.wallets.info_many(["user-1"]) as results:
        [result] = [r async for r in results]
    assert isinstance(result.error, HTTPStatusError) and result.error.http_status == 503


async def test_info_many_non_str_item_is_reported_on_its_item(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    async with client.wallets.info_many(["user-1", 42, "user-2"], ordered=True) as results:  # type: ignore[list-item]
        seen = [r async for r in results]
    assert [r.ok for r in seen] == [True, False, True]
    assert isinstance(seen[1].error, ArgumentTypeError) and isinstance(seen[1].error, TypeError)
    assert "identifier must be a str, not int" in str(seen[1].error)
    assert fake.stats.requests == 2


async def test_info_many_bad_arguments_send_nothing(
    client: FreedomPayClient, fake: FakeFreedomPay
) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        client.wallets.info_many(["user-1"], concurrency=0)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        client.wallets.info_many(["user-1"], timeout=-1)
    with pytest.raises(TypeError, match="single str"):
        client.wallets.info_many("user-1")
    assert fake.stats.requests == 0


async def test_info_many_ordered_from_an_async_generator(client: FreedomPayClient) -> None:
    async def ids() -> AsyncIterator[str]:
        for i in range(100):
            yield f"user-{i}"

    async with client.wallets.info_many(ids(), concurrency=12, ordered=True) as results:
        assert [r.identifier async for r in results] == [f"user-{i}" for i in range(100)]


async def test_info_many_concurrency_is_capped_at_the_server() -> None:
    async with FakeFreedomPay(wallets=200, latency=0.01) as fake, fake.client() as client:
        results = client.wallets.info_many((f"user-{i}" for i in range(200)), concurrency=8)
        assert len([r for r in await drain(results) if r.ok]) == 200
    assert fake.stats.max_in_flight == 8


async def test_info_many_rate_limit_is_applied(client: FreedomPayClient) -> None:
    start = anyio.current_time()
    async with client.wallets.info_many(
        [f"user-{i}" for i in range(26)], concurrency=26, rate_limit=50
    ) as results:
        assert len([r async for r in results]) == 26
    assert anyio.current_time() - start >= 25 / 50 * 0.98


async def test_info_many_break_stops_requests_and_leaves_nothing_open() -> None:
    async with FakeFreedomPay(wallets=5000, latency=0.02) as fake, fake.client() as client:
        async with client.wallets.info_many(
            (f"user-{i}" for i in range(5000)), concurrency=8
        ) as results:
            async for _ in results:
                break
        assert batch_tasks() == []
        started = results.stats.started  # counted where they start: see the test below
        await asyncio.sleep(0.1)
        assert results.stats.started == started <= 16
        assert fake.stats.requests <= started
        # The pool is intact: the client still works after the early exit.
        assert (await client.wallets.info("user-1")).ok


async def test_info_many_consumer_cancelled_mid_flight() -> None:
    async with FakeFreedomPay(wallets=5000, latency=0.01) as fake, fake.client() as client:
        got = 0
        results = client.wallets.info_many((f"user-{i}" for i in range(5000)), concurrency=16)
        with anyio.move_on_after(0.15):
            async for _ in results:
                got += 1
        assert 0 < got < 5000
        assert batch_tasks() == []
        # The requests started before the stop may reach the server a moment later (it runs
        # in this event loop): count them where they start.
        started = results.stats.started
        await asyncio.sleep(0.05)
        assert results.stats.started == started
        assert fake.stats.requests <= started


# -- the README ------------------------------------------------------------------------------


def bulk_lookup_examples() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Bulk lookups\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


async def test_the_readme_bulk_lookup_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    examples = bulk_lookup_examples()
    assert len(examples) == 3  # info_many, amap, concurrency="auto"
    async with FakeFreedomPay(wallets=100) as fake, fake.client() as client:
        identifiers = [f"user-{i}" for i in range(100)] + ["nobody"]
        namespace: dict[str, object] = {"client": client, "identifiers": identifiers}
        for number, source in enumerate(examples, 1):
            code = compile(
                source, f"README.md bulk example {number}", "exec", flags=PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                await result
    out = capsys.readouterr().out
    assert "nobody WalletNotFoundError 1004" in out
    assert "101 done (100 ok, 1 failed: WalletNotFoundError 1)" in out
    assert fake.stats.requests == 3 * 101


async def test_a_host_task_cancelled_before_its_first_step_still_ends_the_loop() -> None:
    async def echo(item: int) -> int:
        return item

    batch = amap(echo, range(10))
    consumer = asyncio.ensure_future(batch.__anext__())
    await asyncio.sleep(0)  # the consumer's first step creates the pool's host task
    [host] = batch_tasks()
    host.cancel()  # from outside, before it ever ran
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="cancelled from outside"):
        await consumer
    await batch.aclose()
    assert batch_tasks() == []


async def test_a_host_task_cancelled_from_outside_fails_the_loop_not_its_body() -> None:
    release = anyio.Event()

    async def held(item: int) -> int:
        if item:
            await release.wait()
        return item

    body_done = False

    async def consume() -> None:
        nonlocal body_done
        async with amap(held, range(10), concurrency=4) as results:
            async for _ in results:
                [host] = [t for t in batch_tasks() if t.get_name() == "freedompay-batch"]
                host.cancel()
                await asyncio.sleep(0.01)  # the body is not interrupted
                body_done = True

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="cancelled from outside"):
        await consume()
    assert body_done
    assert batch_tasks() == []
