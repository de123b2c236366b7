"""``concurrency="auto"``: a concurrency limit that finds the server's own pace.

:class:`AdaptiveLimit` gates a batch's calls (``await acquire()`` before a call, ``release()``
after it) and moves its limit with what it measures, round after round (a round is at least
:data:`MIN_ROUND` seconds and at least ``limit`` calls):

- **Slow start.** From ``initial`` (4), the limit doubles each round while latency stays near
  its floor (the lowest round median seen, drifting up slowly so that a server that got slower
  for good is re-learnt).
- **Growth.** Then it grows by :data:`STEP` (at least one) each round while the round's
  median latency stays within :data:`TOLERANCE` of the floor (or under :data:`SLACK`
  seconds, for fast servers: a few milliseconds of queueing cost a batch nothing, and are
  mostly the client's own event loop), or while throughput still grows with it.
- **Queueing.** When the median passes :data:`QUEUEING` times the floor for
  :data:`QUEUEING_ROUNDS` rounds with flat throughput, the limit is scaled by ``floor /
  latency`` (the Gradient rule: what the server served without a queue), by at most
  :data:`QUEUEING_BACKOFF` a round; on leaving slow start, by up to a half at once.
- **Refusals.** On 429, 503 or a timeout (at most once per round trip) the ceiling becomes
  what the server delivered (successful calls per second x latency, Little's law; the median
  of the last :data:`DELIVERED_ROUNDS` rounds), but
  at least :data:`BACKOFF` of the limit and at most the limit; the limit drops to
  :data:`CEILING_SHARE` of it and grows no further until a probe is due:
  :data:`CHEAP_PROBE_WAIT` later, or, when the refusal paused the whole batch
  (``Retry-After``: every probe costs that pause), :data:`PROBE_WAIT` after the pause,
  doubling each time such a probe is refused at about the same ceiling (up to
  :data:`MAX_PROBE_WAIT`).

The gate itself costs a call next to nothing: a caller that releases a slot and asks again
in the same turn of the event loop (a batch's worker does) takes it straight back; only a
slot nobody took back is handed to a parked caller, on the next turn of the loop.

It is bounded by ``minimum`` and ``maximum`` (``max_concurrency``) and keeps a downsampled
history of the limit for :class:`~freedompay_async.batch.BatchStats`. Plain asyncio, no
dependency; the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable
from typing import Final

from ._validate import check_int

__all__ = ["AdaptiveLimit"]

#: A round lasts at least this long (seconds) and at least ``limit`` completed calls.
MIN_ROUND: Final = 0.1
#: Slow start goes on while the round's median latency stays under this times the floor.
SLOW_START_TOLERANCE: Final = 1.5
#: Latency within this factor of the floor counts as "no queue": the limit may grow.
TOLERANCE: Final = 1.2
#: Latency past this factor of the floor (with flat throughput) means a queue: shrink.
QUEUEING: Final = 1.4
#: ... or under this many seconds whatever the floor: against a fast server a few
#: milliseconds of queueing cost a batch nothing (and are mostly the client's own event loop).
SLACK: Final = 0.005
#: Throughput must grow by this share of the limit's growth to count as "still growing".
GROWTH_SHARE: Final = 0.5
#: Growth per round (share of the limit, at least one call) below the ceiling.
STEP: Final = 0.05
#: Rounds in a row past QUEUEING before the limit shrinks for queueing (noise is not a queue),
#: and the most it shrinks by per round then.
QUEUEING_ROUNDS: Final = 2
QUEUEING_BACKOFF: Final = 0.8
#: The delivered level is the median of this many recent rounds (one round is noisy).
DELIVERED_ROUNDS: Final = 8
#: Multiplicative decrease on a refusal (when the delivered estimate is not lower).
BACKOFF: Final = 0.7
#: Below the ceiling the limit climbs back to this share of it, fast.
CEILING_SHARE: Final = 0.97
#: Seconds at the ceiling before the first probe above it after a refusal that paused the
#: batch (``Retry-After``), and the most it doubles to; without a pause, probing is cheap.
PROBE_WAIT: Final = 20.0
CHEAP_PROBE_WAIT: Final = 0.5
MAX_PROBE_WAIT: Final = 120.0
#: The floor latency drifts up by this share per second unless a round refreshes it.
FLOOR_DRIFT: Final = 0.01
#: Points of the limit's history kept (halved in resolution when full).
HISTORY_POINTS: Final = 2048


class AdaptiveLimit:
    """A concurrency limit moved by latency, throughput and refusals (see the module docs)."""

    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 4,
        minimum: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_int(maximum, "max_concurrency", 1)
        check_int(minimum, "minimum", 1, maximum)
        self.minimum = minimum
        self.maximum = maximum
        self._clock = clock
        self._limit = float(min(max(initial, minimum), maximum))
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._wake_soon = False  # a _deferred_wake is scheduled
        self._started = clock()
        #: (seconds since start, limit) at each change, downsampled to at most HISTORY_POINTS.
        self.history: list[tuple[float, int]] = [(0.0, self.limit)]
        self._history_step = 0.0  # minimum seconds between two recorded points
        # The current round.
        self._round_start = self._started
        self._round_done = 0
        self._round_ok = 0
        self._round_latencies: list[float] = []
        # What the rounds taught.
        self._floor = math.inf
        self._floor_at = self._started
        #: successful calls per second x median latency (Little's law), last rounds
        self._delivered: collections.deque[float] = collections.deque(maxlen=DELIVERED_ROUNDS)
        self._last_rate = 0.0
        self._last_limit = 0.0
        self._slow_start = True
        self._ceiling = math.inf
        self._probe_wait = PROBE_WAIT
        self._probe_at = 0.0
        self._hold_until = 0.0
        self._queueing = 0  # rounds in a row past QUEUEING
        #: Decreases on refusals or timeouts, and on queueing.
        self.backoffs = 0

    # -- the gate ---------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        return max(self.minimum, int(self._limit))

    async def acquire(self) -> None:
        # A free slot is taken at once, even with callers parked: the caller that just
        # released one takes it back with no hand-off (a future and a task switch per call
        # would cost a fast server a quarter of its throughput); a slot nobody takes back
        # goes to the parked callers on the next turn of the event loop (see release).
        if self.in_flight < self.limit:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # we were given a slot: give it back
                self._wake()
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(waiter)
            raise

    def release(self, latency: float | None, overload: bool = False) -> None:
        """A call ended after ``latency`` seconds (``None``: no sample); ``overload``: it
        failed with a 429, 503 or timeout."""
        self.in_flight -= 1
        if overload:
            self.overloaded()
        elif latency is not None:
            self._round_latencies.append(latency)
            self._round_ok += 1
        self._round_done += 1
        now = self._clock()
        if self._round_done >= self.limit and now - self._round_start >= MIN_ROUND:
            self._end_round(now)
        if self._waiters and not self._wake_soon:
            self._wake_soon = True
            asyncio.get_running_loop().call_soon(self._deferred_wake)

    def _deferred_wake(self) -> None:
        self._wake_soon = False
        self._wake()

    def give_back(self) -> None:
        """A slot taken for a call that never happened (the input was exhausted)."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    # -- the control law --------------------------------------------------------------------

    def overloaded(self, pause: float = 0.0) -> None:
        """A refusal (429 / 503) or a timeout: back off, at most once per round trip.

        ``pause``: the seconds a ``Retry-After`` holds the whole batch (the brake); such a
        refusal is costly, so the limit waits longer before probing above it again.
        """
        now = self._clock()
        if now < self._hold_until:
            return
        self._slow_start = False
        # Little's law: the calls in flight that carried what the server delivered, rate x
        # latency, the median of recent rounds (one round is noisy, and a server's burst
        # allowance inflates it). Never below a plain multiplicative decrease (the rounds may
        # not have filled the server), never above the refused level.
        levels = sorted(self._delivered)
        delivered = levels[len(levels) // 2] if levels else math.inf
        ceiling = min(self._limit, max(delivered, self._limit * BACKOFF))
        probing = self._limit > self._ceiling * CEILING_SHARE + 1  # above a known ceiling
        if pause <= 0:
            wait = CHEAP_PROBE_WAIT  # a refused request is retried at once: probing is cheap
        elif probing and ceiling >= self._ceiling * BACKOFF:  # the probe found the same level
            wait = self._probe_wait = min(self._probe_wait * 2, MAX_PROBE_WAIT)
        elif probing or ceiling < self._ceiling * BACKOFF:  # the server's pace changed
            wait = self._probe_wait = PROBE_WAIT
        else:  # refused below the ceiling: a lower one, and no more probing than before
            wait = self._probe_wait
        self._ceiling = ceiling
        self._probe_at = now + pause + wait
        self.backoffs += 1
        self._set(ceiling * CEILING_SHARE, now)
        # Calls already in flight may still come back refused, and the brake's pause says
        # nothing of the server's pace: learn nothing until a round trip after both.
        round_trip = self._floor if math.isfinite(self._floor) else MIN_ROUND
        self._hold_until = now + pause + max(MIN_ROUND, 2 * round_trip)
        self._new_round(now)

    def _end_round(self, now: float) -> None:
        latencies = self._round_latencies
        elapsed = now - self._round_start
        if not latencies or now < self._hold_until:
            self._new_round(now)
            return
        rate = self._round_ok / elapsed if elapsed > 0 else 0.0  # calls that went through
        latencies.sort()
        median = latencies[len(latencies) // 2]
        self._delivered.append(rate * median)
        floor = self._floor
        if math.isfinite(floor):
            floor *= 1 + FLOOR_DRIFT * (now - self._floor_at)
        self._floor_at = now
        floor = self._floor = min(floor, median)
        # How far above the floor, in units of TOLERANCE: 1.0 at its edge.
        ratio = median / max(floor * TOLERANCE, SLACK) * TOLERANCE
        limit = self._limit
        grew = self._last_limit > 0 and limit > self._last_limit
        growing = grew and rate - self._last_rate >= GROWTH_SHARE * self._last_rate * (
            limit / self._last_limit - 1
        )
        self._last_rate, self._last_limit = rate, limit
        if self._slow_start:
            if ratio < SLOW_START_TOLERANCE:  # (a throughput gain says little on doubling)
                self._set(limit * 2, now)
            else:  # back to what the server served without a queue (Gradient)
                self._slow_start = False
                self._set(max(limit / 2, limit * TOLERANCE / ratio), now)
        elif ratio <= TOLERANCE or growing:
            target = self._ceiling * CEILING_SHARE
            if math.isfinite(target) and limit + 1 < target:  # back towards the ceiling, fast
                self._set(min(limit + max(1.0, limit * 2 * STEP), target), now)
            elif now >= self._probe_at:  # no ceiling known, or time to probe above it
                self._set(limit + max(1.0, limit * STEP), now)
        elif ratio > QUEUEING:
            self._queueing += 1
            if self._queueing >= QUEUEING_ROUNDS:
                self._queueing = 0
                self.backoffs += 1
                self._set(limit * max(QUEUEING_BACKOFF, TOLERANCE / ratio), now)
            self._new_round(now)
            return
        self._queueing = 0
        self._new_round(now)

    def _new_round(self, now: float) -> None:
        self._round_start = now
        self._round_done = 0
        self._round_ok = 0
        self._round_latencies = []

    def _set(self, limit: float, now: float) -> None:
        before = self.limit
        self._limit = min(float(self.maximum), max(float(self.minimum), limit))
        after = self.limit
        if after == before:
            return
        self._wake()
        at = now - self._started
        history = self.history
        if at - history[-1][0] < self._history_step:
            history[-1] = (history[-1][0], after)
            return
        history.append((at, after))
        if len(history) >= HISTORY_POINTS:
            del history[1::2]
            self._history_step = max(self._history_step * 2, at / HISTORY_POINTS)
