"""The results of a batch (:class:`BatchResult`) and its live counters (:class:`BatchStats`),
with the fixed-size latency histogram behind the percentiles. Public through
:mod:`freedompay_async.batch`."""

from __future__ import annotations

import math
from time import perf_counter
from typing import Any, Final, Generic, TypeVar

from ._pacing import Pacing
from ._validate import check_number

# Covariant twins of the batch's type variables, for the read-only result record.
_ItemT_co = TypeVar("_ItemT_co", covariant=True)
_ValueT_co = TypeVar("_ValueT_co", covariant=True)
_ErrorT_co = TypeVar("_ErrorT_co", bound=Exception, covariant=True)


class BatchResult(Generic[_ItemT_co, _ValueT_co, _ErrorT_co]):
    """The outcome of one item: ``identifier`` and either a ``value`` or an ``error``.

    Read-only. ``ok`` is true when the call succeeded. ``value`` returns what the call returned,
    or *raises* ``error`` when it failed, so it is typed without ``Optional``::

        if result.ok:
            balance = result.value.wallet.balance
        else:
            log.warning("%s: %s", result.identifier, result.error)
    """

    __slots__ = ("_error", "_identifier", "_value")

    def __init__(
        self,
        identifier: _ItemT_co,
        value: _ValueT_co | None = None,
        error: _ErrorT_co | None = None,
    ) -> None:
        self._identifier = identifier
        self._value = value
        self._error = error

    @property
    def identifier(self) -> _ItemT_co:
        """The input item this result is for (for ``info_many``: the wallet identifier)."""
        return self._identifier

    @property
    def error(self) -> _ErrorT_co | None:
        """The exception the call raised, or ``None`` when it succeeded."""
        return self._error

    @property
    def ok(self) -> bool:
        """True when the call succeeded (``error`` is ``None``)."""
        return self._error is None

    @property
    def value(self) -> _ValueT_co:
        """What the call returned; raises :attr:`error` if the call failed."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __repr__(self) -> str:
        outcome = f"value={self._value!r}" if self._error is None else f"error={self._error!r}"
        return f"BatchResult(identifier={self._identifier!r}, {outcome})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchResult):
            return NotImplemented
        return (self._identifier, self._value, self._error) == (
            other._identifier,
            other._value,
            other._error,
        )

    def __hash__(self) -> int:
        return hash((self._identifier, self._value, self._error))

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchResult, (self._identifier, self._value, self._error))


class _LatencyHistogram:
    """Call latencies in log-spaced bins: fixed memory, quantiles within about 1%.

    Each worker calls :meth:`record` once per call (updating it inline instead measured 0.3 %
    of the CPU per lookup: not worth a copy).
    """

    __slots__ = ("counts", "total")

    _LOWEST: Final = 1e-6  # seconds; anything faster lands in bin 0
    _GROWTH: Final = 1.02  # each bin is 2% wider than the previous one
    _SCALE: Final = 1.0 / math.log(_GROWTH)
    _BINS: Final = int(math.log(3600.0 / _LOWEST) * _SCALE) + 2  # up to an hour, ~1100 bins

    def __init__(self) -> None:
        self.counts = [0] * self._BINS
        self.total = 0.0

    @classmethod
    def bin_of(cls, seconds: float) -> int:
        if seconds <= cls._LOWEST:
            return 0
        index = int(math.log(seconds / cls._LOWEST) * cls._SCALE) + 1
        return index if index < cls._BINS else cls._BINS - 1

    def record(self, seconds: float) -> None:
        self.counts[self.bin_of(seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        check_number(q, "quantile", 0, 1)
        count = self.count
        if not count:
            return None
        rank = max(1, math.ceil(q * count))
        seen = 0
        index = 0
        for index, bin_count in enumerate(self.counts):  # noqa: B007 (index is used below)
            seen += bin_count
            if seen >= rank:
                break
        # The bin's geometric middle: within 1% of any value in the bin.
        return self._LOWEST * self._GROWTH ** (index - 0.5) if index else self._LOWEST


class BatchStats:
    """Live counters of one batch; read them at any time, e.g. from ``on_progress``.

    ``done`` counts results handed to you (``ok + failed``); ``started`` counts items taken
    from the input, so ``in_flight`` is what is being worked on or waiting for you. Latency is
    per call, successes and failures alike, from a fixed-size histogram (about 1% precision).
    """

    __slots__ = (
        "_finished_at",
        "_latency",
        "_pacing",
        "_started_at",
        "done",
        "failed",
        "failed_by_error",
        "ok",
        "started",
    )

    def __init__(self) -> None:
        #: Results handed to the consumer.
        self.done = 0
        #: ... of which succeeded.
        self.ok = 0
        #: ... of which failed.
        self.failed = 0
        #: Failures by error class name, e.g. ``{"WalletNotFoundError": 3}``.
        self.failed_by_error: dict[str, int] = {}
        #: Items taken from the input so far.
        self.started = 0
        self._latency = _LatencyHistogram()
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._pacing = Pacing()

    # -- pacing (brake, retry budget, adaptive limit): see freedompay_async._pacing ----------

    @property
    def concurrency_limit(self) -> int | None:
        """With ``concurrency="auto"``: the calls allowed in flight now; else ``None``."""
        limit = self._pacing.limit
        return None if limit is None else limit.limit

    @property
    def limit_history(self) -> list[tuple[float, int]]:
        """With ``concurrency="auto"``: ``(seconds since start, limit)`` at each change
        (downsampled to at most 2048 points); else empty."""
        limit = self._pacing.limit
        return [] if limit is None else list(limit.history)

    @property
    def refused(self) -> int:
        """Replies 429 / 503 the batch's requests got (retried ones included)."""
        return self._pacing.refused

    @property
    def brake_pauses(self) -> int:
        """Times a ``Retry-After`` paused every new send of the batch."""
        return self._pacing.brake.pauses

    @property
    def retries(self) -> int:
        """Retries the retry budget allowed."""
        budget = self._pacing.budget
        return 0 if budget is None else budget.retried

    @property
    def retries_denied(self) -> int:
        """Retries refused because the batch's retry budget was spent."""
        budget = self._pacing.budget
        return 0 if budget is None else budget.denied

    @property
    def in_flight(self) -> int:
        """Items taken from the input whose result has not been handed over yet."""
        return self.started - self.done

    @property
    def finished(self) -> bool:
        """True once the batch has ended (completed, failed or stopped)."""
        return self._finished_at is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started (until it ended, once it has)."""
        if self._started_at is None:
            return 0.0
        end = self._finished_at if self._finished_at is not None else perf_counter()
        return end - self._started_at

    @property
    def rate(self) -> float:
        """Results per second so far (``done / elapsed``)."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of call latency in seconds; ``None`` before any call."""
        return self._latency.quantile(q)

    @property
    def latency_p50(self) -> float | None:
        """Median call latency, seconds."""
        return self._latency.quantile(0.50)

    @property
    def latency_p95(self) -> float | None:
        """95th percentile of call latency, seconds."""
        return self._latency.quantile(0.95)

    @property
    def latency_p99(self) -> float | None:
        """99th percentile of call latency, seconds."""
        return self._latency.quantile(0.99)

    @property
    def latency_mean(self) -> float | None:
        """Mean call latency, seconds."""
        latency = self._latency
        count = latency.count
        return latency.total / count if count else None

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (for JSON logs and dashboards)."""
        return {
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "failed_by_error": dict(self.failed_by_error),
            "elapsed": self.elapsed,
            "rate": self.rate,
            "latency_p50": self.latency_p50,
            "latency_p95": self.latency_p95,
            "latency_p99": self.latency_p99,
            "concurrency_limit": self.concurrency_limit,
            "refused": self.refused,
            "brake_pauses": self.brake_pauses,
            "retries": self.retries,
            "retries_denied": self.retries_denied,
        }

    def __str__(self) -> str:
        failures = ""
        if self.failed_by_error:
            by_class = sorted(self.failed_by_error.items(), key=lambda kv: (-kv[1], kv[0]))
            failures = ": " + ", ".join(f"{name} {count:,}" for name, count in by_class)
        text = (
            f"{self.done:,} done ({self.ok:,} ok, {self.failed:,} failed{failures}) "
            f"in {self.elapsed:.2f}s, {self.rate:,.0f}/s"
        )
        if self._latency.count:
            text += ", latency " + " ".join(
                f"{name} {_milliseconds(self._latency.quantile(q))}"
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            )
        if self._pacing.limit is not None:
            text += f", concurrency limit {self.concurrency_limit}"
        return text

    def __repr__(self) -> str:
        return f"<BatchStats {self}>"


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"
