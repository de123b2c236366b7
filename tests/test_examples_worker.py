"""examples/queue_worker.py: one client per worker, graceful shutdown, no message lost.

The worker runs in this test's loop against FakeFreedomPay (slowed down by fault-injected
latency or stalls) and is stopped mid-run; every message must end up in exactly one place:
answered, handed back (requeued), or never taken.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from examples.queue_worker import MemoryBroker, Worker, WorkerReport, run_worker
from freedompay_async import FreedomPayClient
from freedompay_async.testing import FakeFreedomPay, Faults

ROOT = Path(__file__).resolve().parent.parent


def publish(broker: MemoryBroker, count: int) -> set[int]:
    return {broker.publish(f"user-{n}").message_id for n in range(count)}


def assert_each_message_once(broker: MemoryBroker, published: set[int], report: WorkerReport):
    """Answered, requeued or never taken: every message in exactly one of them."""
    answered = set(broker.answers)
    queued = set(broker.queued)
    requeued = set(broker.requeued)
    assert not broker.in_flight  # nothing left unsettled
    assert len(broker.requeued) == len(requeued)  # handed back once each
    assert answered.isdisjoint(queued)
    assert answered | queued == published
    assert requeued <= queued  # handed back = deliverable again
    assert report.answered + report.failed == len(answered)
    assert report.requeued == len(requeued)


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await asyncio.sleep(0.002)


async def test_stop_lets_the_lookups_in_flight_finish_and_takes_no_more() -> None:
    async with FakeFreedomPay(wallets=40, faults=Faults(latency=0.25)) as fake:
        broker = MemoryBroker()
        published = publish(broker, 40)
        async with fake.client() as client, anyio.create_task_group() as tg:
            worker = Worker(client, broker, concurrency=4, grace=5)
            done: list[WorkerReport] = []

            async def work() -> None:
                done.append(await worker.run())

            tg.start_soon(work)
            await wait_until(lambda: fake.stats.in_flight == 4)
            taken = set(broker.in_flight)
            worker.stop()
        (report,) = done
    assert len(taken) == 4
    assert set(broker.answers) == taken  # in flight at stop: all finished within the grace
    assert report == WorkerReport(answered=4, failed=0, requeued=0)
    assert fake.stats.requests == 4  # nothing taken after stop
    assert_each_message_once(broker, published, report)
    for message_id in taken:
        answer = broker.answers[message_id]
        assert answer.balance == fake.wallets[answer.identifier].balance
        assert isinstance(answer.balance, Decimal)


async def test_lookups_still_running_after_the_grace_period_are_cancelled_and_requeued() -> None:
    stall = Faults(stall_rate=1.0, stall_seconds=30)  # never answers (released at close)
    async with FakeFreedomPay(wallets=10, faults=stall) as fake:
        broker = MemoryBroker()
        published = publish(broker, 10)
        async with fake.client() as client:
            worker = Worker(client, broker, concurrency=4, grace=0.05)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await wait_until(lambda: fake.stats.in_flight == 4)
                taken = set(broker.in_flight)
                worker.stop()
            assert not client.closed  # the worker never closes the client it was given
            fake.clear_faults()
            assert (await client.wallets.info("user-1")).wallet.balance >= 0  # and it still works
    report = worker.report
    assert report == WorkerReport(answered=0, failed=0, requeued=4)
    assert broker.requeued == sorted(taken)  # exactly the ones cut short
    assert_each_message_once(broker, published, report)
    assert len(broker.queued) == 10  # every message can be delivered again


async def test_some_finish_within_the_grace_period_the_rest_are_requeued() -> None:
    # Lookups take 0 to 0.4 s; the grace is 0.1 s: both outcomes happen in one shutdown.
    slow = Faults(latency=(0.0, 0.4), seed=3)
    async with FakeFreedomPay(wallets=200, faults=slow) as fake:
        broker = MemoryBroker()
        published = publish(broker, 200)
        async with fake.client() as client:
            worker = Worker(client, broker, concurrency=16, grace=0.1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await wait_until(lambda: len(broker.answers) >= 20)
                in_flight_at_stop = set(broker.in_flight)
                worker.stop()
    report = worker.report
    assert_each_message_once(broker, published, report)
    assert report.answered >= 20 and report.requeued > 0
    assert set(broker.requeued) <= in_flight_at_stop  # only lookups cut short are handed back
    assert len(broker.answers) + len(broker.queued) == 200


async def test_a_second_stop_cancels_at_once() -> None:
    stall = Faults(stall_rate=1.0, stall_seconds=30)
    async with FakeFreedomPay(wallets=10, faults=stall) as fake:
        broker = MemoryBroker()
        published = publish(broker, 10)
        async with fake.client() as client:
            worker = Worker(client, broker, concurrency=3, grace=60)
            with anyio.fail_after(5):  # not the 60 s grace
                async with anyio.create_task_group() as tg:
                    tg.start_soon(worker.run)
                    await wait_until(lambda: fake.stats.in_flight == 3)
                    worker.stop()
                    await asyncio.sleep(0.02)
                    assert len(broker.in_flight) == 3  # still within the grace period
                    worker.stop()
    assert worker.report.requeued == 3
    assert_each_message_once(broker, published, worker.report)


async def test_cancelling_the_worker_requeues_what_it_holds() -> None:
    stall = Faults(stall_rate=1.0, stall_seconds=30)
    async with FakeFreedomPay(wallets=10, faults=stall) as fake:
        broker = MemoryBroker()
        published = publish(broker, 10)
        async with fake.client() as client:
            worker = Worker(client, broker, concurrency=5, grace=60)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await wait_until(lambda: fake.stats.in_flight == 5)
                tg.cancel_scope.cancel()  # e.g. the process's main task is cancelled
    assert worker.report.requeued == 5
    assert_each_message_once(broker, published, worker.report)


async def test_failures_are_answered_with_their_typed_error_not_requeued() -> None:
    async with FakeFreedomPay(wallets=5) as fake:
        broker = MemoryBroker()
        ok = broker.publish("user-1")
        missing = broker.publish("nobody")
        refused = broker.publish("x" * 300)  # refused by the SDK: never sent
        async with fake.client() as client:
            worker = Worker(client, broker, concurrency=2, grace=1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await broker.join()  # every message answered
                worker.stop()
    answers = broker.answers
    assert answers[ok.message_id].ok
    assert answers[ok.message_id].balance == fake.wallets["user-1"].balance
    assert (answers[missing.message_id].error, answers[missing.message_id].error_code) == (
        "WalletNotFoundError",
        1004,
    )
    assert (answers[refused.message_id].error, answers[refused.message_id].error_code) == (
        "InvalidArgumentError",
        None,
    )
    assert worker.report == WorkerReport(answered=1, failed=2, requeued=0)
    assert fake.stats.requests == 2
    assert broker.requeued == [] and broker.queued == {}


async def test_sigterm_stops_the_worker_process_main_and_its_client_is_closed() -> None:
    async with FakeFreedomPay(wallets=30, faults=Faults(latency=0.05)) as fake:
        broker = MemoryBroker()
        published = publish(broker, 30)
        made: list[FreedomPayClient] = []

        def factory() -> FreedomPayClient:
            made.append(fake.client())
            return made[-1]

        async def send_sigterm_mid_run() -> None:
            await wait_until(lambda: fake.stats.in_flight == 2)
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the worker's loop handler

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_sigterm_mid_run)
            report = await run_worker(broker, factory, concurrency=2, grace=5)
    assert report == WorkerReport(answered=2, failed=0, requeued=0)
    assert_each_message_once(broker, published, report)
    (client,) = made  # one client for the worker's whole life ...
    assert client.closed  # ... closed when it stopped
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed


def test_the_example_runs_and_accounts_for_every_message_when_interrupted() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "examples" / "queue_worker.py")]
    command += ["--messages", "300", "--latency", "0.2", "--concurrency", "8", "--grace", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("worker started: 300 messages")
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=10)
            assert process.returncode == 0
        finally:
            if process.poll() is None:
                process.kill()
    # Whatever was in flight when Ctrl-C came was answered (0.2 s each, 5 s of grace).
    found = re.search(r"answered (\d+), failed 0, requeued 0;", output)
    assert found is not None, output
    assert int(found[1]) <= 8  # at most `concurrency` messages were ever taken
    assert "accounted for: 300 of 300" in output


@pytest.mark.parametrize(("concurrency", "grace"), [(0, 1.0), (1, -1.0)])
def test_bad_settings_are_refused(concurrency: int, grace: float) -> None:
    with pytest.raises(ValueError, match=r"concurrency|grace"):
        Worker(FreedomPayClient("1", "k"), MemoryBroker(), concurrency=concurrency, grace=grace)
