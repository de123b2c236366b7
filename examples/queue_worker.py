"""An event-driven worker: one long-lived FreedomPayClient per process, answering balance
lookups taken from a message queue, with a graceful shutdown that loses no message.

    python examples/queue_worker.py                     # 2,000 lookups against a fake server
    python examples/queue_worker.py --latency 0.5       # slower: press Ctrl-C while it runs

The queue here is an in-process stand-in (:class:`MemoryBroker`) for a broker with
acknowledgements (RabbitMQ, SQS, Redis streams, NATS JetStream, ...): a message received is
*in flight* until the consumer acks it (with its answer) or nacks it (hands it back to be
redelivered). The pattern is the point:

- **One client per process**, opened before the first message and closed after the last: one
  connection pool for every lookup, never a client per message.
- **At most ``concurrency`` messages taken at a time.** A message is received only when a slot
  is free, so every message this process holds is being worked on (no hidden prefetch to lose).
- **Every message taken is settled exactly once:** acked with an :class:`Answer` (the balance,
  or the typed error: a missing wallet, a refused identifier, an upstream failure after the
  SDK's own retries) or nacked (requeued). Nothing is silently dropped.
- **Graceful shutdown.** SIGTERM / SIGINT (or :meth:`Worker.stop`) stops taking messages at
  once; the lookups in flight get ``grace`` seconds to finish and be acked; whatever is still
  running then is cancelled and nacked. A second signal skips the rest of the grace period.
  Cancelling :meth:`Worker.run` itself (its task, a task group) nacks the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal

import anyio
import anyio.abc

from freedompay_async import FreedomPayClient, FreedomPayError

#: Makes the worker's client: ``FreedomPayClient`` itself, ``fake.client``, or anything whose
#: ``async with`` gives a client and closes it (an ``asynccontextmanager`` function).
ClientFactory = Callable[[], AbstractAsyncContextManager[FreedomPayClient]]


@dataclasses.dataclass(frozen=True)
class Message:
    """A delivery from the broker: "look this wallet up"."""

    message_id: int
    identifier: str


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the worker publishes for a message: the balance, or the error that prevented it."""

    message_id: int
    identifier: str
    balance: Decimal | None = None
    currency: str | None = None
    #: The error's class name (``"WalletNotFoundError"``, ``"RequestTimeoutError"``, ...).
    error: str | None = None
    #: The API's code for it (``1004``), when there is one.
    error_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class MemoryBroker:
    """An in-process queue with acknowledgements, standing in for a real message broker.

    ``receive()`` is cancel-safe: a cancelled receive leaves the message queued. Acking or
    nacking a message that is not in flight raises, so a double settlement is loud.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._next_id = 0
        #: Messages waiting to be delivered (never taken, or handed back), by id.
        self.queued: dict[int, Message] = {}
        #: Messages received and not yet acked or nacked, by id.
        self.in_flight: dict[int, Message] = {}
        #: Every answer published, by message id.
        self.answers: dict[int, Answer] = {}
        #: Ids of the messages handed back (nacked), in order.
        self.requeued: list[int] = []

    def publish(self, identifier: str) -> Message:
        message = Message(self._next_id, identifier)
        self._next_id += 1
        self.queued[message.message_id] = message
        self._queue.put_nowait(message)
        return message

    async def receive(self) -> Message:
        message = await self._queue.get()  # a cancelled get() takes nothing
        del self.queued[message.message_id]
        self.in_flight[message.message_id] = message
        return message

    async def ack(self, message: Message, answer: Answer) -> None:
        del self.in_flight[message.message_id]  # KeyError: not in flight (settled twice?)
        self.answers[message.message_id] = answer
        self._queue.task_done()

    async def nack(self, message: Message) -> None:
        del self.in_flight[message.message_id]
        self.requeued.append(message.message_id)
        self.queued[message.message_id] = message
        self._queue.put_nowait(message)  # redelivered to the next consumer
        self._queue.task_done()  # (this delivery is over; the requeued one counts anew)

    async def join(self) -> None:
        """Wait until every message published has been answered."""
        await self._queue.join()


@dataclasses.dataclass
class WorkerReport:
    """What one :meth:`Worker.run` did."""

    #: Messages acked with a balance.
    answered: int = 0
    #: Messages acked with an error (``Answer.error``).
    failed: int = 0
    #: Messages handed back because shutdown cut their lookup short.
    requeued: int = 0

    def __str__(self) -> str:
        return f"answered {self.answered}, failed {self.failed}, requeued {self.requeued}"


class Worker:
    """Takes messages from ``broker``, looks each wallet up with ``client``, acks the answer.

    Args:
        client: the process's client (the worker never closes it).
        broker: where messages come from and answers go (see :class:`MemoryBroker`).
        concurrency: messages taken, and lookups in flight, at most at a time.
        grace: seconds the lookups in flight get to finish after :meth:`stop`.
    """

    def __init__(
        self,
        client: FreedomPayClient,
        broker: MemoryBroker,
        *,
        concurrency: int = 32,
        grace: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if grace < 0:
            raise ValueError("grace must be >= 0 seconds")
        self.client = client
        self.broker = broker
        self.concurrency = concurrency
        self.grace = grace
        self.report = WorkerReport()
        self._taken: dict[int, Message] = {}  # taken and not yet acked: nacked if cut short
        self._stopping = anyio.Event()
        self._hurry = anyio.Event()
        self._intake: anyio.CancelScope | None = None
        self._started = False

    def stop(self) -> None:
        """Stop taking messages; lookups in flight get ``grace`` seconds, then are cancelled.

        Calling it again cancels them at once. Safe from a signal handler
        (``loop.add_signal_handler``) and before :meth:`run` has started.
        """
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        if self._intake is not None:
            self._intake.cancel()

    async def run(self) -> WorkerReport:
        """Work until :meth:`stop` (or cancellation); every message taken is acked or nacked."""
        if self._started:
            raise RuntimeError("a Worker runs once; create another")
        self._started = True
        async with anyio.create_task_group() as supervisor:
            try:
                async with anyio.create_task_group() as lookups:
                    supervisor.start_soon(self._end_grace_period, lookups.cancel_scope)
                    await self._take_messages(lookups)
                    # No message is taken from here on; the lookups in flight finish (or are
                    # cancelled by _end_grace_period) before this block ends.
            finally:
                with anyio.CancelScope(shield=True):  # hand back what was cut short
                    for message in list(self._taken.values()):
                        await self.broker.nack(message)
                        del self._taken[message.message_id]
                        self.report.requeued += 1
            supervisor.cancel_scope.cancel()
        return self.report

    async def _take_messages(self, lookups: anyio.abc.TaskGroup) -> None:
        slots = anyio.Semaphore(self.concurrency)
        with anyio.CancelScope() as self._intake:
            if self._stopping.is_set():
                return
            while True:
                await slots.acquire()  # take a message only when it can start at once
                # A cancel scope does not interrupt an await whose result is already in hand
                # (a slot freed, or a message delivered, just before stop()), so the stop is
                # checked again after each of them: nothing is taken once stop() has been called.
                if self._stopping.is_set():
                    slots.release()
                    return
                message = await self.broker.receive()  # cancel-safe: nothing is taken if cut
                self._taken[message.message_id] = message  # no await in between: never lost
                if self._stopping.is_set():  # delivered as stop() came: hand it straight back
                    slots.release()
                    return  # run() nacks what is in self._taken
                lookups.start_soon(self._settle, message, slots)

    async def _end_grace_period(self, lookups: anyio.CancelScope) -> None:
        await self._stopping.wait()
        with anyio.move_on_after(self.grace):
            await self._hurry.wait()
        lookups.cancel()  # whatever still runs is nacked by run()

    async def _settle(self, message: Message, slots: anyio.Semaphore) -> None:
        try:
            answer = await self._look_up(message)
            with anyio.CancelScope(shield=True):  # an answer in hand is always delivered
                await self.broker.ack(message, answer)
                del self._taken[message.message_id]
                if answer.ok:
                    self.report.answered += 1
                else:
                    self.report.failed += 1
        finally:
            slots.release()

    async def _look_up(self, message: Message) -> Answer:
        try:
            info = await self.client.wallets.info(message.identifier)
        except FreedomPayError as error:
            # InvalidArgumentError / ArgumentTypeError: an identifier the SDK refuses before
            # sending anything; a redelivery cannot fix it, so it is answered, not requeued.
            # Upstream failures are answered too: the SDK has already retried them.
            return Answer(
                message.message_id,
                message.identifier,
                error=type(error).__name__,
                error_code=error.error_code,
            )
        return Answer(
            message.message_id,
            message.identifier,
            balance=info.wallet.balance,
            currency=info.wallet.currency,
        )


@contextlib.contextmanager
def stop_on_signals(worker: Worker) -> Iterator[None]:
    """SIGTERM / SIGINT call ``worker.stop()`` while inside the block (Unix event loops)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, worker.stop)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def run_worker(
    broker: MemoryBroker,
    client_factory: ClientFactory = FreedomPayClient,
    *,
    concurrency: int = 32,
    grace: float = 10.0,
    on_start: Callable[[Worker], None] | None = None,
) -> WorkerReport:
    """The worker process's main: one client for its whole life, stopped by SIGTERM / SIGINT."""
    async with client_factory() as client:
        worker = Worker(client, broker, concurrency=concurrency, grace=grace)
        with stop_on_signals(worker):
            if on_start is not None:
                on_start(worker)
            return await worker.run()


@asynccontextmanager
async def fake_freedompay_client(wallets: int, latency: float) -> AsyncIterator[FreedomPayClient]:
    """A client of a fake Freedom Pay started for the worker's lifetime."""
    from freedompay_async.testing import FakeFreedomPay, Faults

    async with (
        FakeFreedomPay(wallets=wallets, faults=Faults(latency=latency)) as fake,
        fake.client() as client,
    ):
        yield client


async def demo(messages: int, latency: float, concurrency: int, grace: float) -> None:
    broker = MemoryBroker()
    for n in range(messages):
        broker.publish(f"user-{n}")
    # The demo's "producer is done" rule; a real worker runs until it is told to stop.

    async def stop_when_all_answered(worker: Worker) -> None:
        await broker.join()
        worker.stop()

    watchers: set[asyncio.Task[None]] = set()

    def on_start(worker: Worker) -> None:
        print(f"worker started: {messages} messages queued (Ctrl-C / SIGTERM to stop)", flush=True)
        watchers.add(asyncio.create_task(stop_when_all_answered(worker)))

    factory = lambda: fake_freedompay_client(messages, latency)  # noqa: E731
    try:
        report = await run_worker(
            broker, factory, concurrency=concurrency, grace=grace, on_start=on_start
        )
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    never_taken = len(broker.queued) - report.requeued
    print(f"{report}; left in the queue: {len(broker.queued)} ({never_taken} never taken)")
    settled = report.answered + report.failed + len(broker.queued)
    print(f"accounted for: {settled} of {messages}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per lookup")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds (5)")
    args = parser.parse_args(argv)
    asyncio.run(demo(args.messages, args.latency, args.concurrency, args.grace))


if __name__ == "__main__":
    main(sys.argv[1:])
