"""How long a batch's tasks live, in each form of use: ``async with`` (structured), a plain
``async for`` over ``amap(...)`` itself, and a plain ``async for`` over a batch held in a
variable; when the loop ends, breaks, raises, or its task is cancelled.

Each case checks that no task of the batch remains (at once where the docs promise it, else
within a few event-loop rounds), that the calls in flight were stopped (counted in the calls,
or at the fake server), and that no item was reported twice. Warnings are errors (pyproject),
so an unclosed stream would fail the test."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import pytest

from freedompay_async.batch import Batch, BatchResult, amap
from freedompay_async.testing import FakeFreedomPay

Form = Literal["async with", "async for", "async for over amap()"]
FORMS: list[Form] = ["async with", "async for", "async for over amap()"]


def batch_tasks() -> list[asyncio.Task[object]]:
    """Tasks of any batch (the pool's host task and its workers) still running."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_name().startswith("freedompay-batch")
    ]


async def rounds_until_no_batch_task(most: int = 10) -> int:
    """Event-loop rounds until no task of a batch is left (fails after ``most``)."""
    for rounds in range(most + 1):
        if not batch_tasks():
            return rounds
        await asyncio.sleep(0)
    raise AssertionError(f"batch tasks still running after {most} rounds: {batch_tasks()}")


class Calls:
    """A call per item that takes ``delay`` seconds, counting what starts, ends and is
    cancelled, so that 'the calls in flight were stopped' is checked where they run."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    @property
    def in_flight(self) -> int:
        return self.started - self.finished - self.cancelled

    async def __call__(self, item: int) -> int:
        self.started += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return item


class Case:
    """One batch over ``n`` items of ``calls``, iterated in one of the forms: ``async with``;
    plain ``async for`` over a batch held in a variable (``results = amap(...)``); plain
    ``async for`` over ``amap(...)`` itself (the batch is referenced by nothing else)."""

    def __init__(self, form: Form, calls: Calls, n: int = 100_000) -> None:
        self.form = form
        self.calls = calls
        self.n = n
        self.batch: Batch[int, int, Exception] | None = None

    def _amap(self) -> Batch[int, int, Exception]:
        return amap(self.calls, range(self.n), concurrency=8)

    @asynccontextmanager
    async def loop(self) -> AsyncIterator[AsyncIterator[BatchResult[int, int, Exception]]]:
        """What to write ``async for result in ...`` over, in this case's form."""
        if self.form == "async with":
            self.batch = self._amap()
            async with self.batch as results:
                yield results
        elif self.form == "async for":
            self.batch = self._amap()
            yield self.batch  # type: ignore[misc]  # an AsyncIterable; `async for` calls aiter
        else:
            yield _Fresh(self._amap)  # type: ignore[misc]

    async def check_stopped(self) -> None:
        """After the loop was left: nothing of the batch runs, and nothing runs later."""
        if self.form == "async with":
            assert batch_tasks() == []  # at once
        else:
            await rounds_until_no_batch_task()  # asyncio closes the loop's generator
        if self.batch is not None:
            await self.batch.aclose()  # idempotent: the way to close a batch held in a variable
            assert self.batch.stats.finished
        assert batch_tasks() == []
        assert self.calls.in_flight == 0
        started = self.calls.started
        await asyncio.sleep(self.calls.delay * 3)
        assert self.calls.started == started  # no call starts after the loop was left


class _Fresh:
    """``async for x in _Fresh(make)`` is ``async for x in make()``: the batch is made by the
    loop statement and referenced only by the loop's iterator."""

    def __init__(self, make: Callable[[], Batch[int, int, Exception]]) -> None:
        self._make = make

    def __aiter__(self) -> AsyncIterator[BatchResult[int, int, Exception]]:
        return self._make().__aiter__()


@pytest.mark.parametrize("form", FORMS)
async def test_normal_end(form: Form) -> None:
    case = Case(form, Calls(delay=0.001), n=200)
    seen = Counter[int]()
    async with case.loop() as results:
        async for result in results:
            seen[result.value] += 1
    assert seen == Counter(range(200))  # every item, once
    await case.check_stopped()
    assert case.calls.finished == 200 and case.calls.cancelled == 0


@pytest.mark.parametrize("form", FORMS)
async def test_break(form: Form) -> None:
    case = Case(form, Calls())
    seen = Counter[int]()
    async with case.loop() as results:
        async for result in results:
            seen[result.value] += 1
            if len(seen) == 20:
                break
    assert max(seen.values()) == 1
    await case.check_stopped()
    assert case.calls.cancelled > 0  # the calls in flight were cancelled, not waited for


@pytest.mark.parametrize("form", FORMS)
async def test_exception_in_the_loop_body(form: Form) -> None:
    case = Case(form, Calls())
    seen = Counter[int]()

    async def consume() -> None:
        async with case.loop() as results:
            async for result in results:
                seen[result.value] += 1
                if len(seen) == 20:
                    raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await consume()
    assert max(seen.values()) == 1
    await case.check_stopped()


@pytest.mark.parametrize("where", ["waiting for a result", "in the loop body"])
@pytest.mark.parametrize("form", FORMS)
async def test_consumer_task_cancelled(form: Form, where: str) -> None:
    case = Case(form, Calls())
    seen = Counter[int]()
    twenty = anyio.Event()

    async def consume() -> None:
        async with case.loop() as results:
            async for result in results:
                seen[result.value] += 1
                if len(seen) == 20:
                    twenty.set()
                if where == "in the loop body" and twenty.is_set():
                    await anyio.sleep_forever()

    task = asyncio.ensure_future(consume())
    await twenty.wait()
    if where == "waiting for a result":
        await asyncio.sleep(0.001)  # the consumer is waiting for the next result
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert max(seen.values()) == 1
    if where == "waiting for a result" or form == "async with":
        # Cancelled inside the batch's own await (or leaving `async with`): cleaned up there.
        assert batch_tasks() == []
    await case.check_stopped()


async def test_a_worker_failure_never_interrupts_the_loop_body() -> None:
    # The failing call ends while the body awaits: the body still finishes its step, then the
    # exception comes from the loop, as is (not an exception group).
    async def fails_at_5(item: int) -> int:
        await asyncio.sleep(0.001 * item)
        if item == 5:
            raise KeyError("bug")
        return item

    bodies_started = bodies_finished = 0
    seen = Counter[int]()

    async def consume() -> None:
        nonlocal bodies_started, bodies_finished
        async with amap(fails_at_5, range(1000), concurrency=4, catch=ValueError) as results:
            async for result in results:
                bodies_started += 1
                seen[result.value] += 1
                await asyncio.sleep(0.01)  # the failure lands meanwhile
                bodies_finished += 1

    with pytest.raises(KeyError, match="bug") as raised:
        await consume()
    assert type(raised.value) is KeyError
    assert bodies_started == bodies_finished > 0
    assert set(seen) >= {0, 1, 2, 3, 4} and max(seen.values()) == 1
    assert batch_tasks() == []


async def test_aclose_from_another_task_in_the_structured_form() -> None:
    calls = Calls()
    seen = 0
    async with amap(calls, range(100_000), concurrency=8) as results:
        async with anyio.create_task_group() as task_group:

            async def consume() -> None:
                nonlocal seen
                async for _ in results:
                    seen += 1

            task_group.start_soon(consume)
            await asyncio.sleep(0.05)
            await results.aclose()
            assert batch_tasks() == []  # aclose() waited for the workers
    assert 0 < seen < 100_000
    assert calls.in_flight == 0


async def test_break_and_resume_inside_async_with() -> None:
    async with amap(Calls(delay=0.001), range(50), concurrency=4) as results:
        first = []
        async for result in results:
            first.append(result.value)
            if len(first) == 10:
                break
        rest = [result.value async for result in results]
    assert sorted(first + rest) == list(range(50))


async def test_a_plain_loop_runs_a_batch_once() -> None:
    results = amap(Calls(delay=0.001), range(50), concurrency=4)
    async for _ in results:
        break
    assert [r async for r in results] == []  # it ended with the first loop
    await results.aclose()
    assert batch_tasks() == []
    assert results.stats.finished


async def test_stepping_by_hand_then_looping_continues_the_same_batch() -> None:
    results = amap(Calls(delay=0.001), range(50), concurrency=4)
    first = await results.__anext__()
    rest = [r.value async for r in results]
    assert sorted([first.value, *rest]) == list(range(50))
    await results.aclose()
    assert batch_tasks() == []


async def test_a_batch_stepped_by_hand_and_dropped_unclosed_warns_and_still_stops() -> None:
    calls = Calls()
    results = amap(calls, range(100_000), concurrency=8)
    assert (await results.__anext__()).ok
    # Not closed: the unclosed stream says so, and asyncio's hook for async generators stops
    # the workers anyway (the batch's generator is closed in a task of its own).
    del results
    with pytest.warns(ResourceWarning, match="Unclosed"):
        gc.collect()
    await rounds_until_no_batch_task()
    assert calls.in_flight == 0


# -- info_many through the fake server: requests in flight are stopped -----------------------


@pytest.mark.parametrize("form", FORMS)
async def test_info_many_break_stops_the_requests_at_the_server(form: Form) -> None:
    async with FakeFreedomPay(wallets=2000, latency=0.02) as fake, fake.client() as client:
        batch = client.wallets.info_many((f"user-{i}" for i in range(2000)), concurrency=16)
        seen = Counter[str]()
        if form == "async with":
            async with batch as results:
                async for result in results:
                    seen[result.identifier] += 1
                    if len(seen) == 40:
                        break
            assert batch_tasks() == []
        else:
            async for result in batch if form == "held" else batch.__aiter__():
                seen[result.identifier] += 1
                if len(seen) == 40:
                    break
            await rounds_until_no_batch_task()
            if form == "held":
                await batch.aclose()
        assert max(seen.values()) == 1
        # Counted where they start: one started before the stop may reach the server (in
        # this event loop) a moment later.
        started = batch.stats.started
        await asyncio.sleep(0.1)
        assert batch.stats.started == started  # nothing more was started
        assert fake.stats.requests <= started  # nor sent (no retries here)
        assert fake.stats.in_flight == 0  # and none is still being answered
        assert (await client.wallets.info("user-1")).ok  # the pool is intact
